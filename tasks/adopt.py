"""Adopt a hand-kept LiteLLM configuration: read its router.yaml and env.local (the shape of the
person's own `~/litellm-orch/config/`) and write the registry (a group data file) that renders an
equivalent router.yaml, naming whatever it cannot map.

    python -m tasks.adopt router.yaml env.local --out group_data/all.py
    python -m tasks.adopt --from mini --out group_data/all.py     # fetched with `ssh mini cat ...`

Each model_list entry becomes an llm_models entry: an api_base on the address of an MLX host of
the inventory is an MLX server of that host (its port), one on the proxy host's loopback or address
at OVMS's port is OVMS, anything else an external OpenAI-compatible upstream (its api_key a secret
the data names). `openai/<id>` gives the upstream id, the os.environ/ names give env_prefix;
router_settings give the router settings and each model's fallbacks; litellm_settings are kept
over the toolkit's defaults. What the hand-kept files do not hold (an OVMS model's source, a
server's start_timeout) comes from the current data for a model of the same name. The secrets'
values are written only to the untracked secrets file, never printed. Reading and writing happen
on the control machine; no host is changed.
"""

from __future__ import annotations

import argparse
import os
import pprint
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tasks.schema import DataError

ENVIRON = "os.environ/"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
# What the toolkit renders itself, for every model or for the router: not carried over as data.
OWN_PARAMS = ("model", "api_base", "api_key", "use_chat_completions_api")
OWN_ROUTER = ("redis_host", "redis_port", "redis_password", "fallbacks")
SEED_PATH = "~/litellm-orch/config"  # where the seed keeps router.yaml and env.local


@dataclass
class Adopted:
    """What adopt() made of the files: the data, the secret values, and what it could not map."""

    models: dict = field(default_factory=dict)
    router_settings: dict = field(default_factory=dict)
    litellm_settings: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)  # name -> value, for the untracked secrets file
    notes: list = field(default_factory=list)  # what was not carried over, one line each


def parse_env(text: str, where: str) -> dict[str, str]:
    """An env.local: NAME=value lines (optionally `export`, quoted), comments and blank lines."""
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        name, sep, value = line.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise DataError(f"{where}: line {number}: not NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


def _resolve(value, env: dict, where: str) -> tuple[str | None, str | None]:
    """(the value, the env name it came from) of a literal or an os.environ/ reference."""
    if isinstance(value, str) and value.startswith(ENVIRON):
        name = value[len(ENVIRON) :]
        if name not in env:
            raise DataError(f"{where}: {value} is not set in env.local")
        return env[name], name
    return (None, None) if value is None else (str(value), None)


def _retry_names() -> dict[str, str]:
    from tasks.litellm import RETRY_FIELDS

    return {field_name: seed for seed, field_name in RETRY_FIELDS.items()}


def adopt(router_text: str, env_text: str, router_where: str, env_where: str, hosts: dict, current: dict) -> Adopted:
    """hosts: inventory host name -> (its groups, its llm_address, its settings); current: the
    data's llm_models now (for what the hand-kept files do not hold). Raises DataError naming the
    file and key of input not in the seed's shape."""
    from tasks.registry import MLX_GROUP, PROXY_GROUP

    try:
        config = yaml.safe_load(router_text)
    except yaml.YAMLError as exc:
        raise DataError(f"{router_where}: not YAML ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_list"), list) or not config["model_list"]:
        raise DataError(f"{router_where}: model_list: expected a list of models (the seed's router.yaml shape)")
    env = parse_env(env_text, env_where)
    out = Adopted()
    proxy = next((name for name, (groups, _, _) in hosts.items() if PROXY_GROUP in groups), None)
    mlx_hosts = {address: name for name, (groups, address, _) in hosts.items() if MLX_GROUP in groups}
    proxy_addresses = set(LOOPBACK) | ({hosts[proxy][1]} if proxy else set())
    ovms_port = hosts[proxy][2].get("ovms_rest_port", 9000) if proxy else 9000
    for i, entry in enumerate(config["model_list"]):
        where = f"{router_where}: model_list[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
            raise DataError(f"{where}: no model_name")
        params = entry.get("litellm_params")
        if not isinstance(params, dict) or "model" not in params:
            raise DataError(f"{where} ({entry['model_name']}): litellm_params.model is missing")
        name = entry["model_name"]
        where = f"{router_where}: model_list[{i}] ({name})"
        model, model_env = _resolve(params.get("model"), env, f"{where}: litellm_params.model")
        if not model.startswith("openai/"):
            raise DataError(
                f"{where}: litellm_params.model {model!r}: only OpenAI-compatible upstreams (openai/<id>) are adopted"
            )
        base, base_env = _resolve(params.get("api_base"), env, f"{where}: litellm_params.api_base")
        if not base:
            raise DataError(f"{where}: litellm_params.api_base is missing")
        key, key_env = _resolve(params.get("api_key"), env, f"{where}: litellm_params.api_key")
        url = urlsplit(base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise DataError(f"{where}: litellm_params.api_base {base!r} is not an http(s) URL")
        entry_data: dict = {}
        port = url.port or (443 if url.scheme == "https" else 80)
        if url.hostname in mlx_hosts:
            entry_data = {"backend": "mlx", "host": mlx_hosts[url.hostname], "port": port}
        elif url.hostname in proxy_addresses and port == ovms_port:
            entry_data = {"backend": "ovms", "host": proxy}
            if url.path.rstrip("/") not in ("/v3", ""):
                out.notes.append(f"{name}: api_base {base}: OVMS is called at its own /v3 path")
        else:
            entry_data = {"backend": "openai", "api_base": base}
        entry_data["upstream"] = model[len("openai/") :]
        if entry_data["backend"] == "openai" and key_env and key:
            entry_data["api_key_secret"] = key_env
            out.secrets[key_env] = key
        elif key and key.lower() not in ("", "none", "dummy", "sk-none", "not-needed", "sk-local"):
            out.notes.append(
                f"{name}: api_key not carried over ({entry_data['backend']} servers of the stack need none)"
            )
        names = [n for n in (model_env, base_env, key_env) if n]
        prefix = os.path.commonprefix(names).rstrip("_") if names else ""
        if prefix and prefix != re.sub(r"[^A-Z0-9]", "_", name.upper()):
            entry_data["env_prefix"] = prefix
        for extra in sorted(set(params) - set(OWN_PARAMS)):
            out.notes.append(f"{name}: litellm_params.{extra} not carried over")
        if entry.get("model_info"):
            out.notes.append(f"{name}: model_info not carried over (the toolkit renders its own)")
        known = current.get(name, {})
        if known.get("backend") == entry_data["backend"]:
            for kept in ("source", "graph", "start_timeout", "max_tokens"):
                if kept in known:
                    entry_data[kept] = known[kept]
        if entry_data["backend"] == "ovms" and "source" not in entry_data:
            out.notes.append(f"{name}: source (where OVMS gets the model's files) is not in the files: set it")
        target = name
        if name in out.models:  # one more deployment of that name
            target = f"{name}-{sum(1 for m in out.models if m == name or out.models[m].get('serves') == name) + 1}"
            entry_data["serves"] = name
        out.models[target] = entry_data
    _router(config.get("router_settings") or {}, router_where, out)
    _settings(config, router_where, env, out)
    return out


def _router(settings: dict, where: str, out: Adopted) -> None:
    if not isinstance(settings, dict):
        raise DataError(f"{where}: router_settings must be a mapping")
    names = _retry_names()
    for key, value in settings.items():
        if key in ("allowed_fails", "cooldown_time"):
            out.router_settings[key] = value
        elif key == "retry_policy":
            if not isinstance(value, dict):
                raise DataError(f"{where}: router_settings.retry_policy must be a mapping")
            out.router_settings[key] = {names.get(k, k): v for k, v in value.items()}
        elif key == "fallbacks":
            for item in value or []:
                for model, targets in (item or {}).items():
                    if model not in out.models:
                        raise DataError(f"{where}: router_settings.fallbacks: {model} is not in model_list")
                    out.models[model]["fallbacks"] = list(targets)
        elif key not in OWN_ROUTER:
            out.notes.append(f"router_settings.{key} not carried over")


def _settings(config: dict, where: str, env: dict, out: Adopted) -> None:
    from tasks import litellm as litellm_task
    from tasks.registry import PROXY_KEY_SECRET

    settings = config.get("litellm_settings") or {}
    if not isinstance(settings, dict):
        raise DataError(f"{where}: litellm_settings must be a mapping")
    defaults = dict(next(k.default for k in litellm_task.KEYS if k.name == "litellm_settings"))
    out.litellm_settings = {**defaults, **settings}
    general = config.get("general_settings") or {}
    for key, value in general.items():
        if key == "master_key":
            resolved, name = _resolve(value, env, f"{where}: general_settings.master_key")
            if resolved:
                out.secrets[PROXY_KEY_SECRET] = resolved
        else:
            out.notes.append(f"general_settings.{key} not carried over")
    for key in sorted(set(config) - {"model_list", "router_settings", "litellm_settings", "general_settings"}):
        out.notes.append(f"{key} not carried over")


def render_data(adopted: Adopted, source: str) -> str:
    """The group data file: Python, as pyinfra reads it."""
    notes = "".join(f"#   {n}\n" for n in adopted.notes) or "#   nothing\n"
    return (
        f"# Adopted by `python -m tasks.adopt` from\n#   {source}:\n"
        f"# the registry that renders a router.yaml equivalent to it. Not carried over:\n{notes}\n"
        f"llm_models = {pprint.pformat(adopted.models, sort_dicts=False, width=100)}\n\n"
        f"litellm_router_settings = {pprint.pformat(adopted.router_settings, sort_dicts=False, width=100)}\n\n"
        f"litellm_settings = {pprint.pformat(adopted.litellm_settings, sort_dicts=False, width=100)}\n"
    )


def resolved(router_text: str, env_text: str) -> dict:
    """A router.yaml as what it asks of LiteLLM, for comparing two: per model name the sorted
    deployments (upstream, api_base's scheme, host and port, whether it sends a key), the router's
    allowed_fails, cooldown_time, retry policy (LiteLLM's field names) and fallbacks, and
    litellm_settings."""
    from tasks.litellm import RETRY_FIELDS

    config = yaml.safe_load(router_text)
    env = parse_env(env_text, "env.local")
    models: dict = {}
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        model, _ = _resolve(params["model"], env, "model")
        base, _ = _resolve(params["api_base"], env, "api_base")
        url = urlsplit(base)
        host = "loopback" if url.hostname in LOOPBACK else url.hostname
        models.setdefault(entry["model_name"], []).append((model, url.scheme, host, url.port))
    router = config.get("router_settings") or {}
    policy = {RETRY_FIELDS.get(k, k): v for k, v in (router.get("retry_policy") or {}).items()}
    return {
        "models": {name: sorted(d) for name, d in models.items()},
        "allowed_fails": router.get("allowed_fails"),
        "cooldown_time": router.get("cooldown_time"),
        "retry_policy": policy,
        "fallbacks": sorted((m, tuple(t)) for item in router.get("fallbacks") or [] for m, t in item.items()),
        "litellm_settings": config.get("litellm_settings") or {},
    }


def differences(a: dict, b: dict) -> list[str]:
    """Where two resolved() router.yamls differ; b's litellm_settings may hold more than a's."""
    found = [f"{key}: {a[key]!r} against {b[key]!r}" for key in a if key != "litellm_settings" and a[key] != b[key]]
    found += [
        f"litellm_settings.{k}: {v!r} against {b['litellm_settings'].get(k)!r}"
        for k, v in a["litellm_settings"].items()
        if b["litellm_settings"].get(k) != v
    ]
    return found


def round_trip(data_file: Path, inventory: Path, router_text: str, env_text: str) -> list[str]:
    """Where the router.yaml that the inventory renders with data_file as its `all` group data
    (over group_data/) differs from the input's (nothing: equivalent)."""
    import shutil
    import tempfile

    from tasks import litellm, preflight

    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(data_file, Path(folder) / "all.py")
        registry = preflight.build(
            inventory, Path.cwd(), extra_group_data=[Path(folder)], for_deploy=False, with_secrets=False
        )
    registry.secrets = {name: "x" for name in registry.secret_names()}
    mine = resolved(litellm.render_router_yaml(registry), litellm.render_env_local(registry))
    return differences(resolved(router_text, env_text), mine)


def _remote_path(path: str) -> str:
    """path for the remote shell, quoted; a leading ~/ is the login user's home."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _fetch(ssh: str, host: str, path: str) -> str:
    """A file of the host, read with the operator's own ssh (its ~/.ssh/config applies)."""
    out = subprocess.run([*shlex.split(ssh), host, f"cat {path}"], capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise DataError(f"{host}:{path}: could not be read ({out.stderr.strip() or out.returncode})")
    return out.stdout


def main(argv: list[str] | None = None) -> int:
    from tasks import sources

    parser = argparse.ArgumentParser(prog="python -m tasks.adopt", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="router.yaml and env.local (or --from HOST)")
    parser.add_argument("--from", dest="host", help="read them from this inventory host over ssh")
    parser.add_argument("--path", default=SEED_PATH, help=f"their folder on the host (default {SEED_PATH})")
    parser.add_argument("--ssh", default="ssh", help="the ssh command and its options (default: ssh)")
    parser.add_argument("--out", required=True, type=Path, help="the group data file to write")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--inventory", default="inventory.py", type=Path)
    parser.add_argument("--secrets", default="secrets.env", type=Path, help="the untracked secrets file")
    args = parser.parse_args(argv)
    try:
        if args.host:
            folder = args.path.rstrip("/")
            router_where, env_where = f"{args.host}:{folder}/router.yaml", f"{args.host}:{folder}/env.local"
            router_text = _fetch(args.ssh, args.host, _remote_path(f"{folder}/router.yaml"))
            env_text = _fetch(args.ssh, args.host, _remote_path(f"{folder}/env.local"))
        elif len(args.files) == 2:
            router_where, env_where = args.files
            router_text, env_text = Path(args.files[0]).read_text(), Path(args.files[1]).read_text()
        else:
            parser.error("give router.yaml and env.local, or --from HOST")
        if args.out.exists() and not args.force:
            raise DataError(f"{args.out} exists: give another --out, or --force to replace it")
        loaded = sources.load_inventory(args.inventory.resolve(), Path.cwd())
        hosts = {h.name: (h.groups, str(h.values.get("llm_address") or h.name), h.values) for h in loaded}
        current = next((h.values.get("llm_models", {}) for h in loaded), {})
        adopted = adopt(router_text, env_text, router_where, env_where, hosts, current)
        args.out.write_text(render_data(adopted, f"{router_where} and {env_where}"))
        differ = round_trip(args.out, args.inventory.resolve(), router_text, env_text)
    except (DataError, OSError) as exc:
        print(f"adopt: {exc}", file=sys.stderr)
        return 2
    _write_secrets(args.secrets, adopted.secrets)
    for note in adopted.notes:
        print(f"adopt: not carried over: {note}")
    for d in differ:
        print(f"adopt: the registry renders a different router.yaml: {d}", file=sys.stderr)
    print(f"adopt: {len(adopted.models)} models written to {args.out}" + ("" if differ else ", router.yaml equivalent"))
    return 1 if differ else 0


def _write_secrets(path: Path, secrets: dict) -> None:
    """Add the secrets the file lacks (never replacing one), the file 0600; values never printed."""
    if not secrets:
        return
    have = parse_env(path.read_text(), str(path)) if path.exists() else {}
    new = {k: v for k, v in secrets.items() if k not in have}
    if new:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as f:
            f.writelines(f"{k}={v}\n" for k, v in new.items())
        os.chmod(path, 0o600)
    print(f"adopt: secrets {', '.join(sorted(secrets))} in {path} (values not shown)")


if __name__ == "__main__":
    sys.exit(main())
