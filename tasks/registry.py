"""The model registry of one run: validated per host against the schema, and what is derived from
it (router.yaml and env.local values, the servers each host runs, the ports they listen on).

Pure: built from values the caller read (tasks/sources.py), so it runs before any connection.
Each host keeps its own settings (its group data); what every host shares (the models) is the
same for all of them.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks import schema
from tasks.schema import DataError

BACKENDS = ("mlx", "ovms", "openai")
# Backends that serve chat completions only (mlx_lm.server; OVMS 2025.4, whose /v3/responses came
# in 2026.2): LiteLLM answers the Responses and Messages APIs for them through chat completions.
CHAT_ONLY_BACKENDS = ("mlx", "ovms")
PROXY_GROUP = "mini"  # the inventory group whose one host runs LiteLLM and OVMS
MLX_GROUP = "studio"  # the inventory group whose hosts run MLX servers
MODEL_FIELDS = {
    "backend": str,
    "host": str,
    "port": int,
    "upstream": str,
    "api_base": str,
    "api_key_secret": str,
    "env_prefix": str,
    "max_tokens": int,
    "start_timeout": int,
    "serves": str,
    "fallbacks": list,
    "source": str,
    "graph": dict,
}
REQUIRED_FIELDS = {
    "mlx": ("host", "port", "upstream"),
    "ovms": ("host", "upstream", "source"),
    "openai": ("api_base", "upstream"),
}
FORBIDDEN_FIELDS = {
    "mlx": ("api_base", "source", "graph"),
    "ovms": ("api_base", "port", "max_tokens", "start_timeout"),
    "openai": ("host", "port", "max_tokens", "start_timeout", "source", "graph"),
}
# An OVMS model's source: a Hugging Face repo of a pre-converted OpenVINO model ("org/name"),
# pulled on the host by OVMS itself; or a folder on the control machine (an absolute path),
# uploaded. These files must be in it, as OVMS needs them.
HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
OVMS_MODEL_FILES = ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
PROXY_KEY_SECRET = "LITELLM_PROXY_KEY"
REDIS_SECRET = "LITELLM_REDIS_PASSWORD"  # Redis's requirepass, and LiteLLM's redis_password
# Characters a Redis password may not hold: it is written into redis.conf between double quotes.
REDIS_PASSWORD_REFUSED = set("\"\\'") | {chr(c) for c in range(33)} | {chr(127)}
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


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
    max_tokens: int | None = None  # mlx: the server's default completion length (mlx_max_tokens)
    start_timeout: int | None = None  # mlx: seconds to wait for it after a start (mlx_start_timeout)
    serves: str = ""  # the model name clients ask for, when several deployments share one
    fallbacks: tuple[str, ...] = ()  # model names LiteLLM tries, in order, when this one fails
    source: str | None = None  # ovms: a Hugging Face repo id, or a folder on the control machine
    graph: dict = field(default_factory=dict)  # ovms: graph.pbtxt settings (host's ovms_graph + the model's)

    @property
    def source_is_folder(self) -> bool:
        return bool(self.source) and self.source.startswith("/")

    @property
    def model_name(self) -> str:
        """The name clients ask for: its own, or the one it shares with other deployments."""
        return self.serves or self.name

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


@dataclass(frozen=True)
class HostInput:
    """What the sources say about one host: its groups, its layered values and where each was set."""

    name: str
    groups: tuple[str, ...]
    values: dict[str, Any]
    sources: dict[str, str]
    ssh_target: str = ""  # where SSH goes (host data ssh_hostname, else the name)


@dataclass
class HostEntry:
    name: str
    groups: tuple[str, ...]
    address: str  # where the other hosts reach it
    settings: dict[str, Any]  # every schema key, defaults filled in
    sources: dict[str, str]


@dataclass
class Registry:
    models: dict[str, Model]
    hosts: dict[str, HostEntry]
    proxy_host: str
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    workdir: Path = field(default_factory=Path.cwd)  # where pyinfra runs: relative data paths start here

    def settings(self, host: str) -> dict[str, Any]:
        return self.hosts[host].settings

    @property
    def proxy(self) -> dict[str, Any]:
        """The proxy host's settings (LiteLLM and OVMS)."""
        return self.hosts[self.proxy_host].settings

    def model_names(self) -> list[str]:
        """The names clients ask for (what /v1/models lists), in registry order."""
        return list(dict.fromkeys(m.model_name for m in self.models.values()))

    def fallbacks(self) -> list[dict[str, list[str]]]:
        """LiteLLM's router_settings.fallbacks: [{model name: [fallback names]}]."""
        return [{m.model_name: list(m.fallbacks)} for m in self.models.values() if m.fallbacks]

    def served_by(self, host: str, backend: str | None = None) -> list[Model]:
        return [m for m in self.models.values() if m.host == host and (backend is None or m.backend == backend)]

    def api_base(self, model: Model) -> str:
        """The base URL LiteLLM calls for a model, derived from its backend kind."""
        if model.backend == "mlx":
            address = self.hosts[model.host].address
            return f"http://{f'[{address}]' if ':' in address else address}:{model.port}/v1"
        if model.backend == "ovms":
            # OVMS serves its OpenAI-compatible API under /v3; /v1 would not answer.
            return f"http://127.0.0.1:{self.proxy['ovms_rest_port']}/v3"
        return model.api_base

    def secret_names(self) -> list[str]:
        names = [PROXY_KEY_SECRET, REDIS_SECRET]
        return names + sorted({m.api_key_secret for m in self.models.values() if m.api_key_secret} - set(names))

    def check_secret_values(self, where: str) -> None:
        """Secrets that cannot reach their program intact are refused, naming the characters."""
        bad = sorted(set(self.secrets.get(REDIS_SECRET, "")) & REDIS_PASSWORD_REFUSED)
        if bad:
            raise DataError(
                f"{where}: secret {REDIS_SECRET} holds characters redis.conf cannot carry: "
                f"{', '.join(repr(c) for c in bad)}"
            )

    def env_local(self) -> dict[str, str]:
        """Every name router.yaml refers to through os.environ/, with its value."""
        env = {PROXY_KEY_SECRET: self.secrets[PROXY_KEY_SECRET], REDIS_SECRET: self.secrets[REDIS_SECRET]}
        for m in self.models.values():
            env[m.env_model] = m.litellm_model
            env[m.env_api_base] = self.api_base(m)
            # Local servers take no key, but LiteLLM's OpenAI client insists on one.
            env[m.env_api_key] = self.secrets[m.api_key_secret] if m.api_key_secret else "none"
        return env


def _check_port(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{what} must be an integer port, not {value!r}")
    if not 1 <= value <= 65535:
        raise DataError(f"{what} is out of range (1-65535): {value}")


def _settings(host: HostInput, keys: schema.KeyTable) -> dict[str, Any]:
    """Every declared key for one host (defaults filled in), each value checked; an undeclared
    key is an error naming the file that set it, and so are two ports of the host's that are equal."""
    for key, where in host.sources.items():
        if key not in keys and not schema.is_pyinfra_key(key):
            raise DataError(f"{where}: {key} is not a data key of this toolkit (see README, Data keys)")
    settings = {}
    for key in keys:
        where = host.sources.get(key.name, f"{key.origin} (default)")
        if key.name not in host.values:
            if key.default is schema.REQUIRED:
                raise DataError(f"group data: {key.name} is missing (set it in group_data/all.py)")
            settings[key.name] = copy.deepcopy(key.default)  # never share the schema's own objects
            continue
        if key.shared and host.sources[key.name].endswith(".py") and not host.sources[key.name].endswith("all.py"):
            raise DataError(f"{where}: {key.name} is shared by every host: set it in group_data/all.py")
        try:
            keys.check_value(key.name, host.values[key.name])
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        settings[key.name] = host.values[key.name]
    seen: dict[int, str] = {}
    # the keys the data sets last, so that a clash is reported where it was made
    for key in sorted(keys.port_keys(settings), key=lambda k: k in host.sources):
        if settings[key] in seen:
            raise DataError(
                f"{host.sources.get(key, f'{keys.by_name[key].origin} (default)')}: {key} equals "
                f"{seen[settings[key]]} ({settings[key]})"
            )
        seen[settings[key]] = key
    return settings


def _model(name: Any, entry: Any, where: str, hosts: Mapping[str, HostEntry]) -> Model:
    key = f"llm_models[{name!r}]"
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise DataError(f"{where}: {key}: model names are lower-case letters, digits, '.', '_' and '-'")
    if not isinstance(entry, dict):
        raise DataError(f"{where}: {key} must be a mapping, not {type(entry).__name__}")
    for fname, value in entry.items():
        if fname not in MODEL_FIELDS:
            raise DataError(f"{where}: {key}.{fname} is not a model field (known: {', '.join(MODEL_FIELDS)})")
        expected = MODEL_FIELDS[fname]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise DataError(f"{where}: {key}.{fname} must be {schema.kind(expected)}, not {type(value).__name__}")
    backend = entry.get("backend")
    if backend not in BACKENDS:
        raise DataError(f"{where}: {key}.backend is {backend!r}: expected one of {', '.join(BACKENDS)}")
    for fname in REQUIRED_FIELDS[backend]:
        if fname not in entry:
            raise DataError(f"{where}: {key}.{fname} is required for backend {backend}")
    for fname in FORBIDDEN_FIELDS[backend]:
        if fname in entry:
            raise DataError(f"{where}: {key}.{fname} does not apply to backend {backend}")
    if not entry["upstream"].strip() or entry["upstream"] != entry["upstream"].strip():
        raise DataError(f"{where}: {key}.upstream must be a non-empty model id")
    if any(c.isspace() for c in entry["upstream"]):
        raise DataError(f"{where}: {key}.upstream must not contain white space")
    if "host" in entry and entry["host"] not in hosts:
        raise DataError(
            f"{where}: {key}.host {entry['host']!r} is not in the inventory (hosts: {', '.join(sorted(hosts))})"
        )
    if "port" in entry:
        _check_port(entry["port"], f"{where}: {key}.port")
        if entry["port"] < 1024:
            raise DataError(f"{where}: {key}.port {entry['port']} is privileged (< 1024)")
    if "api_base" in entry and not schema.is_http_url(entry["api_base"]):
        raise DataError(f"{where}: {key}.api_base is not an http(s) URL: {entry['api_base']!r}")
    for fname in ("max_tokens", "start_timeout"):
        if fname in entry and entry[fname] <= 0:
            raise DataError(f"{where}: {key}.{fname} must be positive")
    if "fallbacks" in entry and not all(isinstance(f, str) and f for f in entry["fallbacks"]):
        raise DataError(f"{where}: {key}.fallbacks must list model names")
    if "source" in entry:
        source = entry["source"]
        if source.startswith("/"):
            if not os.path.isdir(source):
                raise DataError(f"{where}: {key}.source {source!r} is not a folder on the control machine")
            missing = [f for f in OVMS_MODEL_FILES if not os.path.isfile(os.path.join(source, f))]
            if missing:
                raise DataError(
                    f"{where}: {key}.source {source!r} lacks {', '.join(missing)}: OVMS serves an "
                    f"OpenVINO IR model with its tokenizer and detokenizer"
                )
        elif not HF_REPO.match(source):
            raise DataError(
                f"{where}: {key}.source {source!r} is neither a Hugging Face repo id (org/name) nor "
                f"an absolute path to a folder on the control machine"
            )
    if "graph" in entry:
        schema.check_graph(f"{where}: {key}.graph", entry["graph"], partial=True)
    graph = {**hosts[entry["host"]].settings["ovms_graph"], **entry.get("graph", {})} if backend == "ovms" else {}
    if graph.get("tool_parser") and not hosts[entry["host"]].settings["ovms_python"]:
        raise DataError(
            f"{where}: {key}.graph.tool_parser needs ovms_python: true (only OVMS's python_on build "
            f"renders the request's tools into the chat template; without it the model never sees them)"
        )
    if "api_key_secret" in entry and not ENV_NAME.match(entry["api_key_secret"]):
        raise DataError(f"{where}: {key}.api_key_secret must be an environment variable name")
    prefix = entry.get("env_prefix") or re.sub(r"[^A-Z0-9]", "_", name.upper())
    if not ENV_NAME.match(prefix):
        raise DataError(f"{where}: {key}.env_prefix {prefix!r} is not an environment name")
    return Model(
        name=name,
        backend=backend,
        upstream=entry["upstream"],
        env_prefix=prefix,
        host=entry.get("host"),
        port=entry.get("port"),
        api_base=entry.get("api_base"),
        api_key_secret=entry.get("api_key_secret"),
        max_tokens=entry.get("max_tokens"),
        start_timeout=entry.get("start_timeout"),
        serves=entry.get("serves", ""),
        fallbacks=tuple(entry.get("fallbacks", ())),
        source=entry.get("source"),
        graph=graph,
    )


def _models(hosts: dict[str, HostEntry], proxy_host: str, keys: schema.KeyTable) -> dict[str, Model]:
    # Shared keys: every host sees the same all.py, so any host's copy is the registry's.
    first = next(iter(hosts.values()))
    s, src = first.settings, first.sources
    models_where = src.get("llm_models", "group data")
    over_where = src.get("llm_model_overrides", "group data")
    raw, overrides = s["llm_models"], s["llm_model_overrides"]
    if not raw:
        raise DataError(f"{models_where}: llm_models must be a non-empty mapping")
    merged = {name: dict(entry) if isinstance(entry, dict) else entry for name, entry in raw.items()}
    for name, patch in overrides.items():
        if name not in merged:
            raise DataError(f"{over_where}: llm_model_overrides[{name!r}] names no model")
        if not isinstance(patch, dict):
            raise DataError(f"{over_where}: llm_model_overrides[{name!r}] must be a mapping")
        merged[name].update(patch)

    models: dict[str, Model] = {}
    for name, entry in merged.items():
        models[name] = _model(name, entry, over_where if name in overrides else models_where, hosts)

    _check_names_and_fallbacks(models, models_where, over_where, overrides)
    taken: dict[tuple[str, int], str] = {}
    env_owner: dict[str, str] = {}
    ovms_upstreams: dict[str, str] = {}
    for m in models.values():
        where = over_where if m.name in overrides else models_where
        if m.port is not None:
            settings = hosts[m.host].settings
            reserved = {settings[k]: k for k in keys.port_keys(settings)}  # the host's services' ports
            if m.port in reserved:
                raise DataError(f"{where}: llm_models[{m.name!r}].port {m.port} clashes with {reserved[m.port]}")
            other = taken.get((m.host, m.port))
            if other:
                raise DataError(
                    f"{where}: llm_models[{m.name!r}].port {m.port} on {m.host} is already taken by {other!r}"
                )
            taken[(m.host, m.port)] = m.name
        if m.env_prefix in env_owner:
            raise DataError(
                f"{where}: llm_models[{m.name!r}] and llm_models[{env_owner[m.env_prefix]!r}] "
                f"share the env prefix {m.env_prefix}"
            )
        env_owner[m.env_prefix] = m.name
        if m.backend == "ovms":
            if m.host != proxy_host:
                raise DataError(
                    f"{where}: llm_models[{m.name!r}].host: OVMS listens on loopback, so it must "
                    f"run on the LiteLLM host {proxy_host!r}"
                )
            if m.upstream in ovms_upstreams:
                raise DataError(
                    f"{where}: llm_models[{m.name!r}].upstream {m.upstream!r} is already served "
                    f"by OVMS for {ovms_upstreams[m.upstream]!r}"
                )
            ovms_upstreams[m.upstream] = m.name
        if m.backend == "mlx" and MLX_GROUP not in hosts[m.host].groups:
            raise DataError(
                f"{where}: llm_models[{m.name!r}].host {m.host!r} is not in the inventory group "
                f"{MLX_GROUP!r}, whose hosts run the MLX servers"
            )
    return models


def _check_names_and_fallbacks(models: dict[str, Model], models_where: str, over_where: str, overrides) -> None:
    """serves names a model that serves itself; fallbacks name model names, never their own,
    and are given once per model name (on the deployment that carries the name)."""
    names = {m.model_name for m in models.values()}
    for m in models.values():
        where = over_where if m.name in overrides else models_where
        key = f"llm_models[{m.name!r}]"
        if m.serves:
            target = models.get(m.serves)
            if target is None or target.serves:
                raise DataError(
                    f"{where}: {key}.serves {m.serves!r} is not a model of its own name "
                    f"(known: {', '.join(sorted(n for n, t in models.items() if not t.serves))})"
                )
            if m.fallbacks:
                raise DataError(
                    f"{where}: {key}.fallbacks: give the fallbacks of {m.serves!r} on llm_models[{m.serves!r}]"
                )
        for fallback in m.fallbacks:
            if fallback not in names:
                raise DataError(
                    f"{where}: {key}.fallbacks names {fallback!r}, which is no model (known: "
                    f"{', '.join(sorted(names))})"
                )
            if fallback == m.model_name:
                raise DataError(f"{where}: {key}.fallbacks names the model itself")
        if len(set(m.fallbacks)) != len(m.fallbacks):
            raise DataError(f"{where}: {key}.fallbacks names a model twice")


def build(hosts: list[HostInput], keys: schema.KeyTable) -> Registry:
    """Validate every host's values against the declared keys (tasks/stack.py's KEYS) and derive
    the registry."""
    entries = {}
    for h in hosts:
        settings = _settings(h, keys)
        address = settings["llm_address"] or h.ssh_target or h.name
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise DataError(
                f"{h.sources.get('llm_address', 'inventory')}: host {h.name}: set llm_address to the IP "
                f"address the other hosts reach it on (found {address!r}; the studio's firewall and "
                f"LiteLLM's upstream URLs need an address)"
            ) from None
        entries[h.name] = HostEntry(h.name, h.groups, address, settings, h.sources)
    proxies = [name for name, e in entries.items() if PROXY_GROUP in e.groups]
    if len(proxies) != 1:
        raise DataError(
            f"inventory: the group {PROXY_GROUP!r} must hold exactly one host (the LiteLLM host), "
            f"found {proxies or 'none'}"
        )
    proxy_host = proxies[0]
    return Registry(models=_models(entries, proxy_host, keys), hosts=entries, proxy_host=proxy_host)
