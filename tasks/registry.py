"""The model registry: load, validate and derive.

Everything a deploy writes comes from here: router.yaml and env.local values, the MLX servers,
OVMS's config, the ports document and the acceptance tests' expectations. It is pure (no I/O
but reading group data files and the secrets file) so it runs before pyinfra connects anywhere.
"""

from __future__ import annotations

import ipaddress
import os
import re
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

BACKENDS = ("mlx", "ovms", "openai")
SERVER_BACKENDS = ("mlx", "ovms")
# Ports the mini's own services hold; no model server may take them.
RESERVED_PORT_KEYS = ("litellm_port", "ovms_rest_port")
MODEL_FIELDS = {
    "backend": str,
    "host": str,
    "port": int,
    "upstream": str,
    "api_base": str,
    "api_key_secret": str,
    "env_prefix": str,
}
REQUIRED_FIELDS = {
    "mlx": ("host", "port", "upstream"),
    "ovms": ("host", "upstream"),
    "openai": ("api_base", "upstream"),
}
FORBIDDEN_FIELDS = {
    "mlx": ("api_base",),
    "ovms": ("api_base", "port"),
    "openai": ("host", "port"),
}
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
PROXY_KEY_SECRET = "LITELLM_PROXY_KEY"
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
VERSION = re.compile(r"^[0-9][0-9A-Za-z.+-]*$")

# Scalar settings every deploy needs, with their types. Keys are prefixed by their service.
SETTING_TYPES: dict[str, type | tuple[type, ...]] = {
    "llm_secrets_file": str,
    "uv_version": str,
    "litellm_version": str,
    "litellm_prisma_version": str,
    "litellm_port": int,
    "litellm_bind_address": str,
    "litellm_user": str,
    "litellm_home": str,
    "litellm_config_dir": str,
    "litellm_router_settings": dict,
    "litellm_settings": dict,
    "litellm_start_timeout": int,
    "ovms_version": str,
    "ovms_archive_url": str,
    "ovms_archive_sha256": str,
    "ovms_packages": list,
    "ovms_rest_port": int,
    "ovms_bind_address": str,
    "ovms_user": str,
    "ovms_home": str,
    "ovms_models_dir": str,
    "ovms_config_dir": str,
    "ovms_start_timeout": int,
    "mlx_lm_version": str,
    "mlx_version": str,
    "mlx_user": str,
    "mlx_home": str,
    "mlx_models_dir": str,
    "mlx_model_sources": dict,
    "mlx_bind_address": str,
    "mlx_max_tokens": int,
    "mlx_start_timeout": int,
    "mlx_launchd_prefix": str,
}
ABSOLUTE_PATH_KEYS = (
    "litellm_home",
    "litellm_config_dir",
    "ovms_home",
    "ovms_models_dir",
    "ovms_config_dir",
    "mlx_home",
    "mlx_models_dir",
)
USER_KEYS = ("litellm_user", "ovms_user", "mlx_user")
VERSION_KEYS = ("uv_version", "litellm_version", "litellm_prisma_version", "ovms_version", "mlx_lm_version", "mlx_version")
TIMEOUT_KEYS = ("litellm_start_timeout", "ovms_start_timeout", "mlx_start_timeout")


class RegistryError(ValueError):
    """Bad data: the message names the file and the key."""


@dataclass(frozen=True)
class Model:
    name: str
    backend: str
    upstream: str
    env_prefix: str
    host: str | None = None
    port: int | None = None
    api_base: str | None = None
    api_key_secret: str | None = None

    @property
    def env_model(self) -> str:
        return f"{self.env_prefix}_MODEL"

    @property
    def env_api_base(self) -> str:
        return f"{self.env_prefix}_API_BASE"

    @property
    def env_api_key(self) -> str:
        return f"{self.env_prefix}_API_KEY"

    @property
    def litellm_model(self) -> str:
        return f"openai/{self.upstream}"


@dataclass
class Registry:
    models: dict[str, Model]
    settings: dict[str, Any]
    hosts: dict[str, str]  # inventory host name -> address other hosts reach it on
    sources: dict[str, str] = field(default_factory=dict)  # key -> file that set it

    def served_by(self, host: str, backend: str | None = None) -> list[Model]:
        return [
            m
            for m in self.models.values()
            if m.host == host and (backend is None or m.backend == backend)
        ]

    def api_base(self, model: Model) -> str:
        """The base URL LiteLLM calls for a model, derived from its backend kind."""
        s = self.settings
        if model.backend == "mlx":
            return f"http://{self.hosts[model.host]}:{model.port}/v1"
        if model.backend == "ovms":
            # OVMS serves its OpenAI-compatible API under /v3; /v1 would not answer.
            return f"http://127.0.0.1:{s['ovms_rest_port']}/v3"
        return model.api_base

    def retry_policy(self) -> dict[str, int]:
        policy = self.settings["litellm_router_settings"].get("retry_policy", {})
        return {RETRY_FIELDS[name]: value for name, value in policy.items()}

    def router_settings(self) -> dict[str, Any]:
        rendered = dict(self.settings["litellm_router_settings"])
        if "retry_policy" in rendered:
            rendered["retry_policy"] = self.retry_policy()
        return rendered

    def secret_names(self) -> list[str]:
        names = [PROXY_KEY_SECRET]
        names += sorted({m.api_key_secret for m in self.models.values() if m.api_key_secret})
        return names

    def env_local(self, secrets: Mapping[str, str]) -> dict[str, str]:
        """Every name router.yaml refers to through os.environ/, with its value."""
        env = {PROXY_KEY_SECRET: secrets[PROXY_KEY_SECRET]}
        for m in self.models.values():
            env[m.env_model] = m.litellm_model
            env[m.env_api_base] = self.api_base(m)
            # Local servers take no key, but LiteLLM's OpenAI client insists on one.
            env[m.env_api_key] = secrets[m.api_key_secret] if m.api_key_secret else "none"
        return env

    def ports(self) -> list[dict[str, Any]]:
        """Every listening socket the stack owns, for the ports document and the tests."""
        s = self.settings
        rows = []
        for host in sorted(self.hosts):
            if host == self.proxy_host:
                rows.append(
                    {
                        "host": host,
                        "port": s["litellm_port"],
                        "bind": s["litellm_bind_address"],
                        "service": "litellm",
                        "serves": ", ".join(sorted(self.models)),
                    }
                )
            if self.served_by(host, "ovms"):
                rows.append(
                    {
                        "host": host,
                        "port": s["ovms_rest_port"],
                        "bind": s["ovms_bind_address"],
                        "service": "ovms",
                        "serves": ", ".join(m.name for m in self.served_by(host, "ovms")),
                    }
                )
            for m in sorted(self.served_by(host, "mlx"), key=lambda m: m.port):
                rows.append(
                    {
                        "host": host,
                        "port": m.port,
                        "bind": s["mlx_bind_address"],
                        "service": f"mlx-{m.name}",
                        "serves": m.name,
                    }
                )
        return rows

    @property
    def proxy_host(self) -> str:
        return self.settings.get("litellm_host", "mini")


_KINDS = {int: "an integer", float: "a number", str: "a string", dict: "a mapping", list: "a list", bool: "true or false"}


def _kind(expected: Any) -> str:
    """How an error message names the expected type(s): "an integer", "a string or a list"."""
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(_KINDS.get(t, getattr(t, "__name__", str(t))) for t in types)


def _where(sources: Mapping[str, str], key: str) -> str:
    return sources.get(key, "group data")


def load_group_data(folders: list[Path]) -> tuple[dict[str, Any], dict[str, str]]:
    """Read group data files the way pyinfra layers them: later folders override earlier ones,
    and within a folder all.py is the base the group files override. Returns (data, sources)."""
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for folder in folders:
        if folder.is_file() and folder.suffix == ".py":
            files = [folder]  # pyinfra's --group-data also takes one file: its stem is the group
        elif folder.is_dir():
            files = sorted(folder.glob("*.py"), key=lambda p: (p.stem != "all", p.name))
        else:
            continue
        for path in files:
            try:
                values = runpy.run_path(str(path))
            except Exception as exc:  # a syntax or name error in a data file
                raise RegistryError(f"{path}: cannot load: {exc}") from exc
            for key, value in values.items():
                if key.startswith("_") or callable(value) or type(value).__name__ == "module":
                    continue
                data[key] = value
                sources[key] = str(path)
    return data, sources


def load_secrets(names: list[str], secrets_file: Path, source: str) -> dict[str, str]:
    """Secrets from the operator's environment first, then the untracked secrets file."""
    from_file: dict[str, str] = {}
    if secrets_file.is_file():
        for number, line in enumerate(secrets_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise RegistryError(f"{secrets_file}:{number}: expected NAME=value")
            name, value = line.split("=", 1)
            from_file[name.strip()] = value.strip().strip("'\"")
    secrets = {}
    for name in names:
        value = os.environ.get(name) or from_file.get(name)
        if not value:
            raise RegistryError(
                f"{source}: secret {name} is not set: export it or add it to {secrets_file}"
            )
        if "\n" in value or "\r" in value:
            raise RegistryError(f"{source}: secret {name} holds a line break")
        secrets[name] = value
    return secrets


def _check_settings(data: Mapping[str, Any], sources: Mapping[str, str], for_deploy: bool) -> None:
    for key, expected in SETTING_TYPES.items():
        where = _where(sources, key)
        if key not in data:
            raise RegistryError(f"{where}: {key} is missing")
        value = data[key]
        if key == "ovms_archive_sha256" and value is None:
            if not for_deploy:
                continue
            raise RegistryError(
                f"{where}: ovms_archive_sha256 is not set: run sha256sum on the archive at "
                f"ovms_archive_url and put the digest here"
            )
        if isinstance(value, bool) and expected is int:
            raise RegistryError(f"{where}: {key} must be an integer, not {value!r}")
        if not isinstance(value, expected):
            raise RegistryError(f"{where}: {key} must be {_kind(expected)}, not {type(value).__name__}")
    for key in ("litellm_port", "ovms_rest_port"):
        _check_port(data[key], f"{_where(sources, key)}: {key}")
    if data["litellm_port"] == data["ovms_rest_port"]:
        raise RegistryError(
            f"{_where(sources, 'ovms_rest_port')}: ovms_rest_port equals litellm_port "
            f"({data['litellm_port']})"
        )
    for key in ("litellm_bind_address", "ovms_bind_address", "mlx_bind_address"):
        try:
            ipaddress.ip_address(data[key])
        except ValueError:
            raise RegistryError(
                f"{_where(sources, key)}: {key} is not an IP address: {data[key]!r}"
            ) from None
    for key in ABSOLUTE_PATH_KEYS:
        if not data[key].startswith("/") or ".." in data[key].split("/"):
            raise RegistryError(f"{_where(sources, key)}: {key} must be an absolute path")
    for key in USER_KEYS:
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", data[key]):
            raise RegistryError(f"{_where(sources, key)}: {key} is not a valid user name")
    for key in VERSION_KEYS:
        if not VERSION.match(data[key]):
            raise RegistryError(f"{_where(sources, key)}: {key} is not a version: {data[key]!r}")
    for key in TIMEOUT_KEYS:
        if data[key] <= 0:
            raise RegistryError(f"{_where(sources, key)}: {key} must be positive")
    if data["mlx_max_tokens"] <= 0:
        raise RegistryError(f"{_where(sources, 'mlx_max_tokens')}: mlx_max_tokens must be positive")
    if data["ovms_archive_sha256"] is not None and not SHA256.match(data["ovms_archive_sha256"]):
        raise RegistryError(
            f"{_where(sources, 'ovms_archive_sha256')}: ovms_archive_sha256 must be 64 lower-case "
            f"hex digits"
        )
    url = data["ovms_archive_url"]
    if not (url.startswith("file://") or os.path.isabs(url) or _is_http_url(url)):
        raise RegistryError(
            f"{_where(sources, 'ovms_archive_url')}: ovms_archive_url must be an http(s) URL or "
            f"a local path on the control machine: {url!r}"
        )
    if not all(isinstance(p, str) and p for p in data["ovms_packages"]):
        raise RegistryError(f"{_where(sources, 'ovms_packages')}: ovms_packages must list names")
    _check_router_settings(data["litellm_router_settings"], _where(sources, "litellm_router_settings"))
    for upstream, local in data["mlx_model_sources"].items():
        where = _where(sources, "mlx_model_sources")
        if not isinstance(upstream, str) or not isinstance(local, str):
            raise RegistryError(f"{where}: mlx_model_sources maps upstream ids to folder paths")


def _check_router_settings(settings: Mapping[str, Any], where: str) -> None:
    for key in ("allowed_fails", "cooldown_time"):
        if key in settings and (
            isinstance(settings[key], bool)
            or not isinstance(settings[key], (int, float))
            or settings[key] < 0
        ):
            raise RegistryError(
                f"{where}: litellm_router_settings.{key} must be a non-negative number"
            )
    policy = settings.get("retry_policy", {})
    if not isinstance(policy, dict):
        raise RegistryError(f"{where}: litellm_router_settings.retry_policy must be a mapping")
    for name, value in policy.items():
        if name not in RETRY_FIELDS:
            raise RegistryError(
                f"{where}: litellm_router_settings.retry_policy.{name} is not an exception LiteLLM "
                f"retries by (known: {', '.join(RETRY_FIELDS)})"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RegistryError(
                f"{where}: litellm_router_settings.retry_policy.{name} must be a non-negative integer"
            )


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_port(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegistryError(f"{what} must be an integer port, not {value!r}")
    if not 1 <= value <= 65535:
        raise RegistryError(f"{what} is out of range (1-65535): {value}")


def _model(name: Any, entry: Any, where: str, hosts: Mapping[str, str]) -> Model:
    key = f"llm_models[{name!r}]"
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise RegistryError(
            f"{where}: {key}: model names are lower-case letters, digits, '.', '_' and '-'"
        )
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: {key} must be a mapping, not {type(entry).__name__}")
    for fname, value in entry.items():
        if fname not in MODEL_FIELDS:
            raise RegistryError(
                f"{where}: {key}.{fname} is not a model field (known: {', '.join(MODEL_FIELDS)})"
            )
        expected = MODEL_FIELDS[fname]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise RegistryError(
                f"{where}: {key}.{fname} must be {_kind(expected)}, not {type(value).__name__}"
            )
    backend = entry.get("backend")
    if backend not in BACKENDS:
        raise RegistryError(
            f"{where}: {key}.backend is {backend!r}: expected one of {', '.join(BACKENDS)}"
        )
    for fname in REQUIRED_FIELDS[backend]:
        if fname not in entry:
            raise RegistryError(f"{where}: {key}.{fname} is required for backend {backend}")
    for fname in FORBIDDEN_FIELDS[backend]:
        if fname in entry:
            raise RegistryError(f"{where}: {key}.{fname} does not apply to backend {backend}")
    if not entry["upstream"].strip() or entry["upstream"] != entry["upstream"].strip():
        raise RegistryError(f"{where}: {key}.upstream must be a non-empty model id")
    if any(c.isspace() for c in entry["upstream"]):
        raise RegistryError(f"{where}: {key}.upstream must not contain white space")
    if "host" in entry and entry["host"] not in hosts:
        raise RegistryError(
            f"{where}: {key}.host {entry['host']!r} is not in the inventory "
            f"(hosts: {', '.join(sorted(hosts))})"
        )
    if "port" in entry:
        _check_port(entry["port"], f"{where}: {key}.port")
        if entry["port"] < 1024:
            raise RegistryError(f"{where}: {key}.port {entry['port']} is privileged (< 1024)")
    if "api_base" in entry and not _is_http_url(entry["api_base"]):
        raise RegistryError(f"{where}: {key}.api_base is not an http(s) URL: {entry['api_base']!r}")
    if "api_key_secret" in entry and not ENV_NAME.match(entry["api_key_secret"]):
        raise RegistryError(f"{where}: {key}.api_key_secret must be an environment variable name")
    prefix = entry.get("env_prefix") or re.sub(r"[^A-Z0-9]", "_", name.upper())
    if not ENV_NAME.match(prefix):
        raise RegistryError(f"{where}: {key}.env_prefix {prefix!r} is not an environment name")
    return Model(
        name=name,
        backend=backend,
        upstream=entry["upstream"],
        env_prefix=prefix,
        host=entry.get("host"),
        port=entry.get("port"),
        api_base=entry.get("api_base"),
        api_key_secret=entry.get("api_key_secret"),
    )


def build(
    data: Mapping[str, Any],
    hosts: Mapping[str, str],
    sources: Mapping[str, str] | None = None,
    for_deploy: bool = True,
) -> Registry:
    """Validate data (merged group data of every host) and derive the registry from it.

    for_deploy=False lets documents and template checks run before the operator has pinned
    the OVMS archive digest; a deploy always requires it."""
    sources = dict(sources or {})
    _check_settings(data, sources, for_deploy)
    models_where = _where(sources, "llm_models")
    raw = data.get("llm_models")
    if not isinstance(raw, dict) or not raw:
        raise RegistryError(f"{models_where}: llm_models must be a non-empty mapping")
    overrides = data.get("llm_model_overrides", {})
    over_where = _where(sources, "llm_model_overrides")
    if not isinstance(overrides, dict):
        raise RegistryError(f"{over_where}: llm_model_overrides must be a mapping")
    merged = {}
    for name, entry in raw.items():
        merged[name] = dict(entry) if isinstance(entry, dict) else entry
    for name, patch in overrides.items():
        if name not in merged:
            raise RegistryError(f"{over_where}: llm_model_overrides[{name!r}] names no model")
        if not isinstance(patch, dict):
            raise RegistryError(f"{over_where}: llm_model_overrides[{name!r}] must be a mapping")
        merged[name].update(patch)

    models: dict[str, Model] = {}
    for name, entry in merged.items():
        where = over_where if name in overrides else models_where
        models[name] = _model(name, entry, where, hosts)

    reserved = {data[k]: k for k in RESERVED_PORT_KEYS}
    taken: dict[tuple[str, int], str] = {}
    env_owner: dict[str, str] = {}
    for m in models.values():
        where = over_where if m.name in overrides else models_where
        if m.port is not None:
            if m.port in reserved:
                raise RegistryError(
                    f"{where}: llm_models[{m.name!r}].port {m.port} clashes with "
                    f"{reserved[m.port]}"
                )
            other = taken.get((m.host, m.port))
            if other:
                raise RegistryError(
                    f"{where}: llm_models[{m.name!r}].port {m.port} on {m.host} is already "
                    f"taken by {other!r}"
                )
            taken[(m.host, m.port)] = m.name
        if m.env_prefix in env_owner:
            raise RegistryError(
                f"{where}: llm_models[{m.name!r}] and llm_models[{env_owner[m.env_prefix]!r}] "
                f"share the env prefix {m.env_prefix}"
            )
        env_owner[m.env_prefix] = m.name
        if m.backend == "ovms" and m.host != data.get("litellm_host", "mini"):
            raise RegistryError(
                f"{where}: llm_models[{m.name!r}].host: OVMS listens on loopback, so it must run "
                f"on the LiteLLM host {data.get('litellm_host', 'mini')!r}"
            )
    upstream_owner: dict[str, str] = {}
    for m in models.values():
        if m.backend == "ovms":
            if m.upstream in upstream_owner:
                raise RegistryError(
                    f"{models_where}: llm_models[{m.name!r}].upstream {m.upstream!r} is already "
                    f"served by OVMS for {upstream_owner[m.upstream]!r}"
                )
            upstream_owner[m.upstream] = m.name
    settings = {k: data[k] for k in SETTING_TYPES}
    settings["litellm_host"] = data.get("litellm_host", "mini")
    return Registry(models=models, settings=settings, hosts=dict(hosts), sources=sources)


def real_host_addresses() -> dict[str, str]:
    """inventory.py's host addresses, read without its DNS lookup and preflight."""
    import importlib

    before = os.environ.get("LLMLAB_ADDRESSES_ONLY")
    os.environ["LLMLAB_ADDRESSES_ONLY"] = "1"
    try:
        return dict(importlib.import_module("inventory").HOST_ADDRESSES)
    finally:
        if before is None:
            del os.environ["LLMLAB_ADDRESSES_ONLY"]
        else:
            os.environ["LLMLAB_ADDRESSES_ONLY"] = before


def ports_markdown(registry: Registry) -> str:
    lines = [
        "# Ports and endpoints",
        "",
        "Generated from the model registry (`group_data/`) by `python -m tasks.registry ports`;",
        "a unit test fails when this file and the data disagree.",
        "",
        "| host | port | bound to | service | serves |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in registry.ports():
        lines.append(
            f"| {row['host']} | {row['port']} | {row['bind']} | {row['service']} | {row['serves']} |"
        )
    lines += ["", "| model | backend | upstream | LiteLLM reaches it at |", "| --- | --- | --- | --- |"]
    for m in registry.models.values():
        lines.append(f"| {m.name} | {m.backend} | `{m.upstream}` | {registry.api_base(m)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    group_data, group_sources = load_group_data([root / "group_data"])
    reg = build(group_data, real_host_addresses(), group_sources, for_deploy=False)
    if sys.argv[1:] == ["ports"]:
        sys.stdout.write(ports_markdown(reg))
    else:
        sys.exit("usage: python -m tasks.registry ports")
