"""The data keys' mechanism and the keys of the run itself. A key is declared once, with its
name, type, default, meaning and check, by the one that reads it: each service declares its own
(tasks/service.py, `StackService.keys`), the run's own (the registry, secrets, uv) are here, and
tasks/stack.py holds the union. The preflight validates group data against that union, a key it
does not hold is an error naming the file that set it, and the README's "Data keys" table is
generated from it (`python -m tasks.docs keys`, checked by a unit test). Keys are prefixed by
their service; pinned versions live in the keys' defaults and nowhere else.
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

# OVMS's text-generation graph options (LLMCalculatorOptions) that the data sets: here, not in
# tasks/ovms/, because a model's own `graph` field (tasks/registry.py) is checked the same way.
GRAPH_DEFAULTS = {"device": "CPU", "cache_size": 2, "max_num_seqs": 16, "enable_prefix_caching": True}
# Graph settings that may be left out (OVMS's default applies): a model's tool-call parser, and
# whether tool_choice "required" constrains generation.
GRAPH_OPTIONAL = {"tool_parser": str, "enable_tool_guided_generation": bool}
# The tool parsers OVMS 2025.4 has (src/llm/io_processing: its tool_parser values).
TOOL_PARSERS = ("hermes3", "llama3", "phi4", "mistral", "gptoss", "qwen3coder")


class DataError(ValueError):
    """Bad data: the message names the file (or the command line) and the key."""


# --- checks: each takes (key, value) and raises DataError(message without the file) ---------


def port(key: str, value: Any) -> None:
    if not 1 <= value <= 65535:
        raise DataError(f"{key} is out of range (1-65535): {value}")


def hand_kept_names(key: str, value: Any) -> None:
    """systemd units by name (`name.service`) or launchd labels (`com.example.server`)."""
    for item in value:
        unit = isinstance(item, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9:_.@-]*\.service", item)
        label = isinstance(item, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+", item)
        if not (unit or label):
            raise DataError(
                f"{key} lists systemd units (such as litellm-orch.service) or launchd labels (such as "
                f"com.bebop.mlx), not {item!r}"
            )


def ports(key: str, value: Any) -> None:
    for item in value:
        if not isinstance(item, int) or isinstance(item, bool) or not 1 <= item <= 65535:
            raise DataError(f"{key} lists TCP ports (1-65535), not {item!r}")


def ip(key: str, value: Any) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise DataError(f"{key} is not an IP address: {value!r}") from None


def networks(key: str, value: Any) -> None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            raise DataError(f"{key} must list IP addresses or networks: {item!r}") from None


def optional_ip(key: str, value: Any) -> None:
    if value is not None:
        ip(key, value)


def loopback(key: str, value: Any) -> None:
    ip(key, value)
    if not ipaddress.ip_address(value).is_loopback:
        raise DataError(f"{key} must be a loopback address (Redis is for the proxy on the same host): {value!r}")


def abs_path(key: str, value: Any) -> None:
    if not value.startswith("/") or ".." in value.split("/"):
        raise DataError(f"{key} must be an absolute path")
    if not re.match(r"^[A-Za-z0-9._/+-]+$", value):
        raise DataError(
            f"{key} may hold only letters, digits and . _ / + - (it goes into units and commands): {value!r}"
        )


def state_dir(key: str, value: Any) -> None:
    abs_path(key, value)
    # systemd's StateDirectory= creates and owns it, and only under /var/lib.
    if not re.match(r"^/var/lib/[A-Za-z0-9._-]+$", value):
        raise DataError(f"{key} must be a folder directly under /var/lib (systemd's StateDirectory)")


def user(key: str, value: Any) -> None:
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", value):
        raise DataError(f"{key} is not a valid user name")


def version(key: str, value: Any) -> None:
    if not re.match(r"^[0-9][0-9A-Za-z.+-]*$", value):
        raise DataError(f"{key} is not a version: {value!r}")


def positive(key: str, value: Any) -> None:
    if value <= 0:
        raise DataError(f"{key} must be positive")


def not_negative(key: str, value: Any) -> None:
    if value < 0:
        raise DataError(f"{key} must be 0 or more")


def fraction(key: str, value: Any) -> None:
    if not 0 < value <= 1:
        raise DataError(f"{key} must be above 0 and at most 1: {value}")


def sha256(key: str, value: Any) -> None:
    if value is not None and not re.match(r"^[0-9a-f]{64}$", value):
        raise DataError(f"{key} must be 64 lower-case hex digits")


def is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def optional_url(key: str, value: Any) -> None:
    if value is not None and not is_http_url(value):
        raise DataError(f"{key} must be an http(s) URL: {value!r}")


def optional_archive_url(key: str, value: Any) -> None:
    if value is not None:
        archive_url(key, value)


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


def archive_url(key: str, value: Any) -> None:
    if not (value.startswith("file://") or os.path.isabs(value) or is_http_url(value)):
        raise DataError(f"{key} must be an http(s) URL or a local path on the control machine: {value!r}")


def names(key: str, value: Any) -> None:
    if not all(isinstance(p, str) and p for p in value):
        raise DataError(f"{key} must list names")


@dataclass(frozen=True)
class Key:
    name: str
    type: type | tuple[type, ...]
    default: Any
    meaning: str
    check: Callable[[str, Any], None] | None = None
    shared: bool = False  # the same for every host: only all.py (or --data) may set it
    default_text: str | None = None  # how the README's table names a default too long to show
    origin: str = "tasks/schema.py"  # the file that declares it (tasks/stack.py sets a service's)
    # A port of a service that a bool key switches on: while that key is false, no socket uses it.
    enabled_by: str | None = None

    @property
    def is_port(self) -> bool:
        """A port a service on the host listens on: no two of a host's may be equal."""
        return self.check is port


NONE = type(None)

RUN_KEYS: tuple[Key, ...] = (
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
        (str, NONE),
        None,
        "inventory host data: the IP address other hosts reach this host on (default: its SSH address, "
        "which must then be an IP address)",
        optional_ip,
    ),
    Key(
        "llm_break_lock",
        bool,
        False,
        "take this host's deploy lock from a run that is gone but ran elsewhere (`--data llm_break_lock=true`, "
        "once); a run of this machine that is gone is recognised without it",
    ),
    Key(
        "llm_takeover",
        list,
        [],
        "hand-kept services this stack replaces, with your consent: systemd units (`name.service`: a system "
        "unit, or a user's unit) or launchd labels (a LaunchDaemon's, such as `com.bebop.mlx`); one found holding "
        "a port the data declares is stopped and disabled right before that port's service starts (its files "
        "kept), and started again if that service then does not answer; services not named are never touched",
        hand_kept_names,
    ),
    Key(
        "llm_own_listeners",
        list,
        [22],
        "ports that services of the host's own listen on beyond loopback (sshd's 22; on the mini Open WebUI's 3000 "
        "and Ollama's 11434): the doctor lists them without calling them off",
        ports,
    ),
    Key(
        "package_lists_max_age",
        int,
        24,
        "hours: when packages are missing, the distribution's package lists are refreshed first only if "
        "older than this (apt's daily timer keeps them younger), and always when an install without a "
        "refresh fails; 0 refreshes every time",
        not_negative,
    ),
    Key("uv_version", str, "0.13.9", "uv that builds every Python environment", version),
    Key(
        "uv_keep",
        int,
        2,
        "environment folders kept per service, newest first (the one in use and the previous one, for a "
        "rollback, are never removed)",
        positive,
    ),
)

_KINDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
    list: "a list",
    bool: "true or false",
    NONE: "unset (None)",
}


def kind(expected: Any) -> str:
    """How an error message names the expected type(s): "an integer", "a string or unset"."""
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(_KINDS.get(t, getattr(t, "__name__", str(t))) for t in types)


def is_pyinfra_key(name: str) -> bool:
    """Keys pyinfra itself reads from host data (connection settings, global arguments)."""
    return name.startswith(("ssh_", "_"))


class KeyTable:
    """A set of declared keys (tasks/stack.py's union): looked up by name, each value checked."""

    def __init__(self, keys: tuple[Key, ...]):
        self.keys = keys
        self.by_name: dict[str, Key] = {}
        for key in keys:
            if key.name in self.by_name:
                raise ValueError(
                    f"{key.origin}: data key {key.name} is declared twice (first in {self.by_name[key.name].origin})"
                )
            self.by_name[key.name] = key
        for key in keys:
            switch = self.by_name.get(key.enabled_by) if key.enabled_by else None
            if key.enabled_by and (switch is None or switch.type is not bool):
                raise ValueError(f"{key.origin}: {key.name} is enabled_by {key.enabled_by}, which is no bool data key")

    def __iter__(self):
        return iter(self.keys)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def port_keys(self, settings: dict[str, Any]) -> list[str]:
        """A host's port keys (its settings): those of the services it runs."""
        return [k.name for k in self.keys if k.is_port and (k.enabled_by is None or settings[k.enabled_by])]

    def check_value(self, name: str, value: Any) -> None:
        """Raise DataError (naming the key) unless value fits the key's type and check."""
        key = self.by_name[name]
        types = key.type if isinstance(key.type, tuple) else (key.type,)
        if isinstance(value, bool) and bool not in types:
            raise DataError(f"{name} must be {kind(key.type)}, not {value!r}")
        if not isinstance(value, types):
            raise DataError(f"{name} must be {kind(key.type)}, not {type(value).__name__}")
        if key.check is not None:
            key.check(name, value)

    def markdown_table(self) -> str:
        lines = ["| key | default | meaning |", "| --- | --- | --- |"]
        for key in self.keys:
            lines.append(f"| `{key.name}` | {_default_text(key)} | {key.meaning.replace('|', '/')} |")
        return "\n".join(lines) + "\n"


def _default_text(key: Key) -> str:
    if key.default is REQUIRED:
        return "**required**"
    if key.default_text is not None:
        return key.default_text
    if key.default is None:
        return "unset"
    if isinstance(key.default, dict) and len(repr(key.default)) > 40:
        return "see meaning"
    return f"`{key.default!r}`" if not isinstance(key.default, str) else f"`{key.default}`"
