"""Every data key the toolkit reads, declared once: name, type, default, meaning and check.

The preflight validates group data against this table, the README's "Data keys" section is
generated from it (`python -m tasks.docs keys`, checked by a unit test), and a key that is not
declared here is an error naming the file that set it. Keys are prefixed by their service.
Pinned versions live here and nowhere else.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

REQUIRED = object()  # a key with no default: the group data must set it

# The operator writes exception names as in the seed; LiteLLM's RetryPolicy has its own field
# names and drops unknown ones silently. APIConnectionError has no field of its own: LiteLLM
# falls back to DefaultRetries for it (litellm/router_utils/get_retry_from_policy.py).
RETRY_FIELDS = {
    "Timeout": "TimeoutErrorRetries",
    "APIConnectionError": "DefaultRetries",
    "RateLimitError": "RateLimitErrorRetries",
    "ServiceUnavailableError": "ServiceUnavailableErrorRetries",
    "InternalServerError": "InternalServerErrorRetries",
    "BadRequestError": "BadRequestErrorRetries",
    "AuthenticationError": "AuthenticationErrorRetries",
    "ContentPolicyViolationError": "ContentPolicyViolationErrorRetries",
    "NotFoundError": "NotFoundErrorRetries",
}

SEED_ROUTER_SETTINGS = {
    "allowed_fails": 2,
    "cooldown_time": 15,
    "retry_policy": {"Timeout": 1, "APIConnectionError": 1, "RateLimitError": 0, "ServiceUnavailableError": 1},
}


OVMS_VERSION = re.compile(r"^(\d{4})\.(\d+)(?:\.(\d+))?$")
# OVMS's text-generation graph options (LLMCalculatorOptions) that the data sets.
GRAPH_DEFAULTS = {"device": "CPU", "cache_size": 2, "max_num_seqs": 16, "enable_prefix_caching": True}
# Graph settings that may be left out (OVMS's default applies): a model's tool-call parser, and
# whether tool_choice "required" constrains generation.
GRAPH_OPTIONAL = {"tool_parser": str, "enable_tool_guided_generation": bool}
# The tool parsers OVMS 2025.4 has (src/llm/io_processing: its tool_parser values).
TOOL_PARSERS = ("hermes3", "llama3", "phi4", "mistral", "gptoss", "qwen3coder")


class DataError(ValueError):
    """Bad data: the message names the file (or the command line) and the key."""


# --- checks: each takes (key, value) and raises DataError(message without the file) ---------


def _port(key: str, value: Any) -> None:
    if not 1 <= value <= 65535:
        raise DataError(f"{key} is out of range (1-65535): {value}")


def _ip(key: str, value: Any) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise DataError(f"{key} is not an IP address: {value!r}") from None


def _networks(key: str, value: Any) -> None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            raise DataError(f"{key} must list IP addresses or networks: {item!r}") from None


def _optional_ip(key: str, value: Any) -> None:
    if value is not None:
        _ip(key, value)


def _loopback(key: str, value: Any) -> None:
    _ip(key, value)
    if not ipaddress.ip_address(value).is_loopback:
        raise DataError(f"{key} must be a loopback address (Redis is for the proxy on the same host): {value!r}")


def _workers(key: str, value: Any) -> None:
    if value is not None and value < 1:
        raise DataError(f"{key} must be at least 1 (or unset: one per CPU): {value}")


def _redis_size(key: str, value: Any) -> None:
    if not re.match(r"^[1-9][0-9]*(b|kb|mb|gb)?$", value.lower()):
        raise DataError(f"{key} must be a Redis size such as 64mb: {value!r}")


def _abs_path(key: str, value: Any) -> None:
    if not value.startswith("/") or ".." in value.split("/"):
        raise DataError(f"{key} must be an absolute path")
    if not re.match(r"^[A-Za-z0-9._/+-]+$", value):
        raise DataError(
            f"{key} may hold only letters, digits and . _ / + - (it goes into units and commands): {value!r}"
        )


def _state_dir(key: str, value: Any) -> None:
    _abs_path(key, value)
    # systemd's StateDirectory= creates and owns it, and only under /var/lib.
    if not re.match(r"^/var/lib/[A-Za-z0-9._-]+$", value):
        raise DataError(f"{key} must be a folder directly under /var/lib (systemd's StateDirectory)")


def _user(key: str, value: Any) -> None:
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", value):
        raise DataError(f"{key} is not a valid user name")


def _version(key: str, value: Any) -> None:
    if not re.match(r"^[0-9][0-9A-Za-z.+-]*$", value):
        raise DataError(f"{key} is not a version: {value!r}")


def _positive(key: str, value: Any) -> None:
    if value <= 0:
        raise DataError(f"{key} must be positive")


def _not_negative(key: str, value: Any) -> None:
    if value < 0:
        raise DataError(f"{key} must be 0 or more")


def _fraction(key: str, value: Any) -> None:
    if not 0 < value <= 1:
        raise DataError(f"{key} must be above 0 and at most 1: {value}")


def _sha256(key: str, value: Any) -> None:
    if value is not None and not re.match(r"^[0-9a-f]{64}$", value):
        raise DataError(f"{key} must be 64 lower-case hex digits")


def is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _optional_archive_url(key: str, value: Any) -> None:
    if value is not None:
        _archive_url(key, value)


def _ovms_version(key: str, value: Any) -> None:
    if not OVMS_VERSION.match(value):
        raise DataError(f"{key} {value!r} is not an OVMS release version (like 2025.4 or 2026.3.0)")


def check_graph(key: str, value: Any, partial: bool = False) -> None:
    """Graph settings: the keys of GRAPH_DEFAULTS, each of its type, all of them unless partial;
    those of GRAPH_OPTIONAL where given."""
    known = {**{name: type(default) for name, default in GRAPH_DEFAULTS.items()}, **GRAPH_OPTIONAL}
    if not isinstance(value, dict):
        raise DataError(f"{key} must be a mapping of {', '.join(known)}")
    for name, setting in value.items():
        if name not in known:
            raise DataError(f"{key}.{name} is not a graph setting (known: {', '.join(known)})")
        expected = known[name]
        if type(setting) is not expected:
            raise DataError(f"{key}.{name} must be {kind(expected)}, not {type(setting).__name__}")
    if not partial:
        missing = [name for name in GRAPH_DEFAULTS if name not in value]
        if missing:
            raise DataError(f"{key} lacks {', '.join(missing)} (a host's ovms_graph replaces the default whole)")
    if "device" in value and not re.match(r"^[A-Z][A-Z0-9.:,()_-]*$", value["device"]):
        raise DataError(f"{key}.device must be an OpenVINO device name like CPU or GPU: {value['device']!r}")
    if value.get("cache_size", 0) < 0:
        raise DataError(f"{key}.cache_size must be 0 or more (GB)")
    if value.get("max_num_seqs", 1) < 1:
        raise DataError(f"{key}.max_num_seqs must be at least 1")
    if "tool_parser" in value and value["tool_parser"] not in TOOL_PARSERS:
        raise DataError(
            f"{key}.tool_parser {value['tool_parser']!r} is not a tool parser of OVMS "
            f"(known: {', '.join(TOOL_PARSERS)})"
        )


def _graph(key: str, value: Any) -> None:
    check_graph(key, value)


def _archive_url(key: str, value: Any) -> None:
    if not (value.startswith("file://") or os.path.isabs(value) or is_http_url(value)):
        raise DataError(f"{key} must be an http(s) URL or a local path on the control machine: {value!r}")


def _names(key: str, value: Any) -> None:
    if not all(isinstance(p, str) and p for p in value):
        raise DataError(f"{key} must list names")


def _model_sources(key: str, value: Any) -> None:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DataError(f"{key} maps upstream ids to folder paths")
    for upstream, folder in value.items():
        # The upload makes the host's folder equal to this one: an empty or missing folder would
        # delete the model on the host.
        if not os.path.isabs(folder) or not os.path.isdir(folder) or not any(os.scandir(folder)):
            raise DataError(
                f"{key}[{upstream!r}]: {folder!r} is not an existing, non-empty folder (an absolute path "
                f"on the control machine)"
            )


def _router_settings(key: str, settings: Any) -> None:
    for name in ("allowed_fails", "cooldown_time"):
        value = settings.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise DataError(f"{key}.{name} must be a non-negative number")
    if "fallbacks" in settings:
        raise DataError(f"{key}.fallbacks: give each model's fallbacks in its llm_models entry (fallbacks)")
    policy = settings.get("retry_policy", {})
    if not isinstance(policy, dict):
        raise DataError(f"{key}.retry_policy must be a mapping")
    for name, value in policy.items():
        if name not in RETRY_FIELDS:
            raise DataError(
                f"{key}.retry_policy.{name} is not an exception LiteLLM retries by (known: {', '.join(RETRY_FIELDS)})"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"{key}.retry_policy.{name} must be a non-negative integer")


@dataclass(frozen=True)
class Key:
    name: str
    type: type | tuple[type, ...]
    default: Any
    meaning: str
    check: Callable[[str, Any], None] | None = None
    shared: bool = False  # the same for every host: only all.py (or --data) may set it


_NONE = type(None)

KEYS: tuple[Key, ...] = (
    # --- the registry and what every host shares
    Key(
        "llm_models",
        dict,
        REQUIRED,
        "the model registry: name -> `backend` (`mlx`, `ovms`, `openai`), `host`, `port` (mlx), `upstream` "
        "model id, `api_base` (openai), `api_key_secret`, `env_prefix`, `max_tokens`, `start_timeout`, `serves` "
        "(another deployment of that name), `fallbacks` (see group_data/all.py)",
        shared=True,
    ),
    Key(
        "llm_model_overrides",
        dict,
        {},
        "per-model field overrides layered over `llm_models` (the lab uses it)",
        shared=True,
    ),
    Key(
        "llm_secrets_file",
        str,
        "secrets.env",
        "untracked NAME=value file for secrets not in the environment (relative to where pyinfra runs)",
        shared=True,
    ),
    Key(
        "llm_address",
        (str, _NONE),
        None,
        "inventory host data: the IP address other hosts reach this host on (default: its SSH address, "
        "which must then be an IP address)",
        _optional_ip,
    ),
    Key(
        "llm_break_lock",
        bool,
        False,
        "take this host's deploy lock from a run that is gone but ran elsewhere (`--data llm_break_lock=true`, "
        "once); a run of this machine that is gone is recognised without it",
    ),
    Key(
        "package_lists_max_age",
        int,
        24,
        "hours: when packages are missing, the distribution's package lists are refreshed first only if "
        "older than this (apt's daily timer keeps them younger), and always when an install without a "
        "refresh fails; 0 refreshes every time",
        _not_negative,
    ),
    Key("uv_version", str, "0.13.9", "uv that builds every Python environment", _version),
    Key(
        "uv_keep",
        int,
        2,
        "environment folders kept per service, newest first (the one in use and the previous one, for a "
        "rollback, are never removed)",
        _positive,
    ),
    # --- LiteLLM
    Key("litellm_version", str, "1.106.2", "pinned `litellm[proxy]` (1.107.0 was a compromised release)", _version),
    Key(
        "litellm_prisma_version",
        str,
        "0.15.0",
        "prisma in the proxy's environment: LiteLLM's auth error path imports it (without it a missing key "
        "answers 500, not 401)",
        _version,
    ),
    Key("litellm_port", int, 4000, "where the proxy listens", _port),
    Key("litellm_bind_address", str, "0.0.0.0", "the proxy's address (it serves the LAN)", _ip),
    Key("litellm_user", str, "litellm", "the proxy's service user", _user),
    Key("litellm_home", str, "/opt/litellm", "its environment (`venv/`), config checker and launcher", _abs_path),
    Key("litellm_config_dir", str, "/etc/litellm", "router.yaml and env.local", _abs_path),
    Key("litellm_state_dir", str, "/var/lib/litellm", "the service user's home and working folder", _state_dir),
    Key(
        "litellm_router_settings",
        dict,
        SEED_ROUTER_SETTINGS,
        "`allowed_fails`, `cooldown_time`, `retry_policy` by exception name (the seed's; see below)",
        _router_settings,
    ),
    Key(
        "litellm_settings",
        dict,
        {"json_logs": True, "turn_off_message_logging": True},
        "LiteLLM's `litellm_settings`: the seed's json_logs, and no prompts or answers in the logs",
    ),
    Key("litellm_start_timeout", int, 120, "seconds the deploy waits for the proxy after a restart", _positive),
    Key(
        "litellm_workers",
        (int, _NONE),
        None,
        "the proxy's worker processes (unset: one per CPU of the host); they share the router's state through Redis",
        _workers,
    ),
    # --- Redis (the proxy's shared router state)
    Key("redis_port", int, 6379, "Redis's port (on the proxy host)", _port),
    Key("redis_bind_address", str, "127.0.0.1", "Redis's address: loopback only", _loopback),
    Key(
        "redis_maxmemory",
        str,
        "64mb",
        "Redis's memory cap (the state is small; least recently used keys go)",
        _redis_size,
    ),
    Key("redis_start_timeout", int, 30, "seconds the deploy waits for Redis after a restart", _positive),
    # --- OpenVINO Model Server
    Key(
        "ovms_version",
        str,
        "2025.4",
        "the pinned OVMS release (its tag is `v<version>`); names the install folder",
        _ovms_version,
    ),
    Key(
        "ovms_python",
        bool,
        True,
        "the python_on build: chat templates with a system message and tools (python_off drops the system "
        "message); it needs the host's libpython and Jinja2, installed from the distribution",
    ),
    Key(
        "ovms_release_url",
        str,
        "https://github.com/openvinotoolkit/model_server/releases/download",
        "where releases are fetched: `<url>/v<version>/<asset>`, the asset chosen from the host's system "
        "(an http(s) URL, or a folder on the control machine)",
        _archive_url,
    ),
    Key(
        "ovms_archive_url",
        (str, _NONE),
        None,
        "one archive instead of the chosen asset (an http(s) URL or a path on the control machine)",
        _optional_archive_url,
    ),
    Key(
        "ovms_archive_sha256",
        (str, _NONE),
        None,
        "the archive's sha256 (GitHub shows it beside each release asset); unset, the lock file holds it",
        _sha256,
    ),
    Key(
        "ovms_lock_file",
        str,
        "ovms.lock",
        "control machine: release URL -> sha256 recorded once (relative to where pyinfra runs); commit it",
    ),
    Key(
        "ovms_record_digest",
        bool,
        False,
        "allow, for this run, recording the digest of an archive the lock file does not know "
        "(`--data ovms_record_digest=true`); every later download is held to it",
    ),
    Key("ovms_packages", list, ["libxml2", "curl"], "system packages the release links against", _names),
    Key(
        "ovms_graph",
        dict,
        dict(GRAPH_DEFAULTS),
        "text-generation settings rendered into each model's graph.pbtxt: `device`, `cache_size` (GB of KV "
        "cache), `max_num_seqs`, `enable_prefix_caching`, optionally `tool_parser` and "
        "`enable_tool_guided_generation`; a model's `graph` overrides some and names its own `tool_parser`",
        _graph,
    ),
    Key("ovms_rest_port", int, 9000, "OVMS's REST (OpenAI `/v3`) port", _port),
    Key("ovms_bind_address", str, "127.0.0.1", "OVMS's address (only LiteLLM, on the same host, calls it)", _ip),
    Key("ovms_user", str, "ovms", "OVMS's service user", _user),
    Key("ovms_home", str, "/opt/ovms", "releases unpack into `<home>/<version>/`; `current` points at one", _abs_path),
    Key("ovms_models_dir", str, "/var/lib/ovms/models", "`<dir>/<upstream id>/` holds each model's files", _abs_path),
    Key("ovms_config_dir", str, "/etc/ovms", "config.json", _abs_path),
    Key("ovms_start_timeout", int, 60, "seconds the deploy waits for `/v2/health/ready`", _positive),
    # --- MLX
    Key("mlx_version", str, "0.32.4", "pinned mlx (`mlx[cpu]` on Linux)", _version),
    Key("mlx_lm_version", str, "0.32.2", "pinned mlx-lm", _version),
    Key("mlx_user", str, "mlx", "the servers' service user (Linux)", _user),
    Key("mlx_home", str, "/opt/mlx", "their environment (`venv/`) and logs (macOS)", _abs_path),
    Key(
        "mlx_models_dir",
        str,
        "/opt/mlx/models",
        "the servers' working folder: a model id that exists here as a folder is loaded from it",
        _abs_path,
    ),
    Key(
        "mlx_model_sources",
        dict,
        {},
        "upstream id -> model folder on the control machine to upload (the lab's tiny model)",
        _model_sources,
    ),
    Key("mlx_bind_address", str, "0.0.0.0", "the servers' address (LiteLLM reaches them over the LAN)", _ip),
    Key(
        "mlx_allowed_clients",
        list,
        [],
        "addresses or networks besides the proxy host that the studio's firewall admits to the MLX ports",
        _networks,
    ),
    Key(
        "mlx_max_tokens",
        int,
        8192,
        "`mlx_lm.server --max-tokens`: the completion length when a request names none (mlx_lm's own 512 "
        "cuts coding clients off); a model's `max_tokens` field overrides it",
        _positive,
    ),
    Key(
        "mlx_start_timeout",
        int,
        120,
        "seconds the deploy waits for a server's `/v1/models` after a (re)start: loading, not downloading; a "
        "model's `start_timeout` field overrides it (a 120B model loads for minutes)",
        _positive,
    ),
    Key("mlx_python", str, "3.12", "macOS: the uv-managed Python the MLX environment is built on", _version),
    Key(
        "mlx_memory_fraction",
        (float, int),
        0.75,
        "share of the host's memory the MLX models' weights may take together (macOS lets the GPU wire about "
        "three quarters)",
        _fraction,
    ),
    Key("mlx_allow_overcommit", bool, False, "start the MLX servers even when their weights exceed that share"),
    Key("mlx_launchd_prefix", str, "lab.llm.mlx", "launchd labels are `<prefix>.<model>`"),
)

BY_NAME = {k.name: k for k in KEYS}

_KINDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
    list: "a list",
    bool: "true or false",
    _NONE: "unset (None)",
}


def kind(expected: Any) -> str:
    """How an error message names the expected type(s): "an integer", "a string or unset"."""
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(_KINDS.get(t, getattr(t, "__name__", str(t))) for t in types)


def is_pyinfra_key(name: str) -> bool:
    """Keys pyinfra itself reads from host data (connection settings, global arguments)."""
    return name.startswith(("ssh_", "_"))


def check_value(name: str, value: Any) -> None:
    """Raise DataError (naming the key) unless value fits the key's type and check."""
    key = BY_NAME[name]
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    if isinstance(value, bool) and bool not in types:
        raise DataError(f"{name} must be {kind(key.type)}, not {value!r}")
    if not isinstance(value, types):
        raise DataError(f"{name} must be {kind(key.type)}, not {type(value).__name__}")
    if key.check is not None:
        key.check(name, value)


def default_text(key: Key) -> str:
    if key.default is REQUIRED:
        return "**required**"
    if key.default is None:
        return "unset"
    if isinstance(key.default, dict) and len(repr(key.default)) > 40:
        return "the seed's" if key.name == "litellm_router_settings" else "see meaning"
    if isinstance(key.default, str) and len(key.default) > 40:
        return "the official Ubuntu 24 build"
    return f"`{key.default!r}`" if not isinstance(key.default, str) else f"`{key.default}`"


def markdown_table() -> str:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key in KEYS:
        lines.append(f"| `{key.name}` | {default_text(key)} | {key.meaning.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
