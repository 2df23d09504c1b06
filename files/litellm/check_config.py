"""Ask LiteLLM itself whether a router.yaml + env.local pair would start.

Usage: check_config.py [--import MODULE] ROUTER_YAML ENV_FILE. Exit 0 when LiteLLM accepts the
config; otherwise print what it rejected (never a secret value) and exit 1. The deploy runs this
with the proxy's own environment before it puts a new config live, so a bad config never reaches
the service. Run it with LITELLM_LOCAL_MODEL_COST_MAP=True (tasks/litellm.py OFFLINE_ENV), as the
proxy runs. With --import, MODULE (the proxy's) is loaded first, in the same process: the deploy
asks this of an environment it has just built, so one run of LiteLLM's slow import both writes
the proxy's bytecode and judges the config (a MODULE that does not load fails the check).
"""

import asyncio
import importlib.util
import os
import sys
import traceback

import yaml

KNOWN_SECTIONS = {"model_list", "router_settings", "litellm_settings", "general_settings"}


def fail(message):
    print(f"router.yaml rejected: {message}", file=sys.stderr)
    sys.exit(1)


def unquote(value):
    """A value as systemd's EnvironmentFile= reads it: "..." with backslash escapes of \\ " $ `,
    '...' literal, or bare (trimmed)."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, chars = [], iter(value[1:-1])
        for c in chars:
            if c == "\\":
                nxt = next(chars, "")
                out.append(nxt if nxt in '\\"$`' else c + nxt)
            else:
                out.append(c)
        return "".join(out)
    return value.strip()


def read_env(path):
    """NAME="value" lines, unquoted as systemd's EnvironmentFile= (and a POSIX shell) reads them."""
    env = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                env[name] = unquote(value)
    return env


def check_custom_auth(config, router_path, env):
    """Load the key check LiteLLM will load (beside router.yaml) and ask it: the proxy key is
    accepted, another key is refused with 401."""
    path = (config.get("general_settings") or {}).get("custom_auth")
    if not path:
        fail("general_settings.custom_auth is not set: a wrong key would get 400, not 401")
    module_name, _, function = path.rpartition(".")
    file = os.path.join(os.path.dirname(os.path.abspath(router_path)), *module_name.split(".")) + ".py"
    if not os.path.exists(file):
        fail(f"general_settings.custom_auth: {file} does not exist")
    os.environ["LITELLM_PROXY_KEY"] = env["LITELLM_PROXY_KEY"]
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    auth = getattr(module, function)
    asyncio.run(auth(None, env["LITELLM_PROXY_KEY"]))
    try:
        asyncio.run(auth(None, env["LITELLM_PROXY_KEY"] + "-wrong"))
    except Exception as exc:  # fastapi's HTTPException
        if getattr(exc, "status_code", None) != 401:
            fail(f"custom_auth refused a wrong key with {exc!r}, not 401")
    else:
        fail("custom_auth accepted a wrong key")


def resolve(value, env, where):
    if isinstance(value, str) and value.startswith("os.environ/"):
        name = value.split("/", 1)[1]
        if name not in env:
            fail(f"{where} refers to {name}, which env.local does not define")
        return env[name]
    if isinstance(value, dict):
        return {k: resolve(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def main(router_path, env_path, preload=None):
    try:
        with open(router_path) as handle:
            config = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        fail(f"not valid YAML: {exc}")
    if not isinstance(config, dict):
        fail("the top level is not a mapping")
    unknown = set(config) - KNOWN_SECTIONS
    if unknown:
        fail(f"unknown top-level sections: {', '.join(sorted(unknown))}")
    env = read_env(env_path)
    config = resolve(config, env, "router.yaml")

    if preload:
        try:
            importlib.import_module(preload)
        except BaseException as exc:  # the new environment cannot load the proxy at all
            traceback.print_exc()
            print(f"the new LiteLLM environment cannot import {preload}: {type(exc).__name__}: {exc}", file=sys.stderr)
            sys.exit(1)
    import litellm
    from litellm.types.router import RetryPolicy

    settings = dict(config.get("router_settings") or {})
    policy = settings.get("retry_policy") or {}
    unknown_retry = set(policy) - set(RetryPolicy.model_fields)
    if unknown_retry:
        # RetryPolicy drops unknown names silently; the proxy would run without them.
        fail(f"router_settings.retry_policy has names LiteLLM ignores: {sorted(unknown_retry)}")
    for key in config.get("litellm_settings") or {}:
        if not hasattr(litellm, key):
            fail(f"litellm_settings.{key} is not a LiteLLM setting")
    master_key = (config.get("general_settings") or {}).get("master_key")
    if not master_key:
        fail("general_settings.master_key is empty: the proxy would accept any caller")
    check_custom_auth(config, router_path, env)
    # The Router is built without Redis: connecting is the running proxy's job (the deploy waits
    # for Redis before the proxy), and a Router that cannot reach it spends seconds retrying.
    for key in ("redis_host", "redis_port", "redis_password"):
        if key in settings and not settings[key]:
            fail(f"router_settings.{key} is empty")
        settings.pop(key, None)
    try:
        litellm.Router(model_list=config.get("model_list") or [], **settings)
    except Exception as exc:  # LiteLLM raises ValueError, TypeError or pydantic errors
        fail(f"{type(exc).__name__}: {exc}")
    print(f"router.yaml accepted by LiteLLM {litellm.version if hasattr(litellm, 'version') else ''}".strip())


if __name__ == "__main__":
    args = sys.argv[1:]
    module = args[1] if args[:1] == ["--import"] and len(args) > 1 else None
    args = args[2:] if module else args
    if len(args) != 2:
        sys.exit("usage: check_config.py [--import MODULE] ROUTER_YAML ENV_FILE")
    main(args[0], args[1], module)
