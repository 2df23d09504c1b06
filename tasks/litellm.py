"""LiteLLM proxy on the mini: user, uv environment, router.yaml + env.local validated by LiteLLM
before they go live, a hardened systemd unit, and a wait until the proxy answers."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import ops, pyenv, run
from tasks.facts import FileStates
from tasks.pyenv import PythonEnv
from tasks.registry import CHAT_ONLY_BACKENDS, PROXY_GROUP, PROXY_KEY_SECRET, REDIS_SECRET, Registry
from tasks.render import FILES, render, sha256_text, to_yaml
from tasks.schema import NONE, DataError, Key, abs_path, ip, port, positive, state_dir, user, version
from tasks.service import Port, StackService, answers_line, local_url
from tasks.units import Unit, Wait, answers_http, managed_services, rollback

CHECK_SCRIPT = FILES / "litellm" / "check_config.py"
LAUNCHER = FILES / "litellm" / "llmlab_serve.py"  # what the unit runs: LiteLLM's app under uvicorn
AUTH_MODULE = FILES / "litellm" / "llmlab_auth.py"
CUSTOM_AUTH = "llmlab_auth.user_api_key_auth"  # LiteLLM loads it from beside router.yaml
PROXY_MODULE = "litellm.proxy.proxy_server"  # what each worker loads as it starts
# LiteLLM fetches its model price map from the internet at import unless told not to: the one
# place this is set, for the proxy's unit and for the config checker alike.
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
# A worker re-reads the cooldowns in Redis at most this often (LiteLLM's default: 1 s). With 0 it
# reads them on every request (one loopback GET), so a cooldown another worker started holds at
# once, not up to a second later (litellm/router_utils/cooldown_cache.py).
SHARED_STATE_ENV = {"DEFAULT_COOLDOWN_REDIS_READ_INTERVAL_SECONDS": "0"}


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


def _workers_check(key: str, value: Any) -> None:
    if value is not None and value < 1:
        raise DataError(f"{key} must be at least 1 (or unset: one per CPU): {value}")


def _router_settings_check(key: str, settings: Any) -> None:
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


KEYS = (
    Key("litellm_version", str, "1.106.12", "pinned `litellm[proxy]` (1.107.0 was a compromised release)", version),
    Key(
        "litellm_prisma_version",
        str,
        "0.15.0",
        "prisma in the proxy's environment: LiteLLM's auth error path imports it (without it a missing key "
        "answers 500, not 401)",
        version,
    ),
    Key(
        "litellm_httptools_version",
        str,
        "0.9.0",
        "httptools in the proxy's environment: uvicorn's C HTTP parser, less CPU per request than its "
        "pure-Python default (bench/RESULTS.md)",
        version,
    ),
    Key("litellm_port", int, 4000, "where the proxy listens", port),
    Key("litellm_bind_address", str, "0.0.0.0", "the proxy's address (it serves the LAN)", ip),
    Key("litellm_user", str, "litellm", "the proxy's service user", user),
    Key("litellm_home", str, "/opt/litellm", "its environment (`venv/`), config checker and launcher", abs_path),
    Key("litellm_config_dir", str, "/etc/litellm", "router.yaml and env.local", abs_path),
    Key("litellm_state_dir", str, "/var/lib/litellm", "the service user's home and working folder", state_dir),
    Key(
        "litellm_router_settings",
        dict,
        SEED_ROUTER_SETTINGS,
        "`allowed_fails`, `cooldown_time`, `retry_policy` by exception name (the seed's; see below)",
        _router_settings_check,
        default_text="the seed's",
    ),
    Key(
        "litellm_settings",
        dict,
        {"json_logs": True, "turn_off_message_logging": True},
        "LiteLLM's `litellm_settings`: the seed's json_logs, and no prompts or answers in the logs",
    ),
    Key("litellm_start_timeout", int, 120, "seconds the deploy waits for the proxy after a restart", positive),
    Key(
        "litellm_workers",
        (int, NONE),
        None,
        "the proxy's worker processes (unset: one per CPU of the host); they share the router's state through Redis",
        _workers_check,
    ),
)


# A client's bad request is the client's: LiteLLM counts an upstream's 404 toward allowed_fails
# (mlx_lm.server answers an unsupported content part with 404), so one client's refused requests
# would cool the model down for every client. A deployment-level policy gives 404s a counter of
# their own that never trips; 400 and 422 never count; connection errors, timeouts and 5xx still do.
CLIENT_ERRORS_POLICY = {"NotFoundErrorAllowedFails": 1_000_000}

# Every model is served on the person's own hardware: free, said the way LiteLLM documents for a
# free model (every rate 0). Without a price LiteLLM looks, on every answer, for why it cost
# nothing (its zero-cost diagnostic walks the model's pricing entry: about 12% of the proxy's CPU
# per request on the lab, bench/RESULTS.md); the cache rates keep its start free of warnings.
FREE = {
    "input_cost_per_token": 0,
    "output_cost_per_token": 0,
    "cache_creation_input_token_cost": 0,
    "cache_read_input_token_cost": 0,
}


def litellm_settings(r: Registry) -> dict:
    """The data's litellm_settings, and Anthropic's Messages API answered through chat
    completions (no upstream here has /v1/messages; LiteLLM's default goes through its Responses
    bridge, which drops the text of an answer cut at max_tokens)."""
    return {**r.proxy["litellm_settings"], "use_chat_completions_url_for_anthropic_messages": True}


def router_settings(r: Registry) -> dict[str, Any]:
    """router.yaml's router_settings: the data's, LiteLLM's field names for the retry policy, the
    models' fallbacks, and Redis, through which every worker shares cooldowns and failure counts."""
    rendered = dict(r.proxy["litellm_router_settings"])
    if "retry_policy" in rendered:
        rendered["retry_policy"] = {RETRY_FIELDS[n]: v for n, v in rendered["retry_policy"].items()}
    if r.fallbacks():
        rendered["fallbacks"] = r.fallbacks()
    rendered["redis_host"] = r.proxy["redis_bind_address"]
    rendered["redis_port"] = r.proxy["redis_port"]
    rendered["redis_password"] = f"os.environ/{REDIS_SECRET}"
    return rendered


def render_router_yaml(r: Registry) -> str:
    return render(
        "litellm/router.yaml.j2",
        models=list(r.models.values()),
        chat_only=CHAT_ONLY_BACKENDS,
        client_errors=CLIENT_ERRORS_POLICY,
        prices=FREE,
        router_settings_yaml=to_yaml(router_settings(r)),
        litellm_settings_yaml=to_yaml(litellm_settings(r)),
        proxy_key_env=PROXY_KEY_SECRET,
        custom_auth=CUSTOM_AUTH,
    )


SHELL_ESCAPED = '\\"$`'  # what a backslash escapes inside double quotes, for systemd and sh alike


def systemd_quote(value: str) -> str:
    """value as systemd's EnvironmentFile= parser reads it back exactly: double-quoted, with a
    backslash before each of \\ " $ ` (systemd's env-file parser and a POSIX shell agree on
    exactly these; systemd honours a quote only at the start of a value, so the shell's
    '...'\\''...' splicing would not work). Line breaks cannot be carried; the preflight refuses
    them in secrets."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("a line break or NUL cannot be written to env.local")
    return '"' + "".join("\\" + c if c in SHELL_ESCAPED else c for c in value) + '"'


def render_env_local(r: Registry) -> str:
    return render("litellm/env.local.j2", env={name: systemd_quote(value) for name, value in r.env_local().items()})


def workers(r: Registry, cpus: int) -> int:
    """The proxy's worker processes: the data's count, else one per CPU of the host."""
    return r.proxy["litellm_workers"] or cpus


def render_unit(r: Registry, cpus: int) -> str:
    s = r.proxy
    return render(
        "litellm/litellm.service.j2",
        user=s["litellm_user"],
        home=s["litellm_home"],
        state_dir=s["litellm_state_dir"],
        config_dir=s["litellm_config_dir"],
        bind=s["litellm_bind_address"],
        port=s["litellm_port"],
        environment={**OFFLINE_ENV, **SHARED_STATE_ENV},
        workers=workers(r, cpus),
        launcher=LAUNCHER.name,
    )


class LiteLLM(StackService):
    name = "litellm"
    group = PROXY_GROUP
    keys = KEYS

    def ports(self, r: Registry, host: str) -> list[Port]:
        s = r.settings(host)
        return [
            Port(
                host,
                s["litellm_port"],
                s["litellm_bind_address"],
                "litellm",
                ", ".join(sorted(r.model_names())),
                "the LAN, with the proxy key",
            )
        ]

    def status_command(self, r: Registry, host: str) -> str:
        s = r.settings(host)
        url = local_url(s["litellm_bind_address"], s["litellm_port"], "/health/liveliness")
        return answers_line("litellm", url, f"alive, {len(r.model_names())} model names")

    def python_env(self, r: Registry) -> PythonEnv:
        return python_env(r)

    def deploy(self, r: Registry, envs: dict) -> list[Wait]:
        return deploy_litellm(r, envs)


def python_env(r: Registry) -> PythonEnv:
    s = r.proxy
    # prisma: LiteLLM's auth error handler imports it, and without it a request that lacks the
    # key gets 500 instead of 401 (litellm/proxy/db/exception_handler.py). httptools: the HTTP
    # parser the launcher has uvicorn use (litellm[proxy] brings uvicorn without it).
    return PythonEnv(
        "litellm",
        f"{s['litellm_home']}/venv",
        (
            f"litellm[proxy]=={s['litellm_version']}",
            f"prisma=={s['litellm_prisma_version']}",
            f"httptools=={s['litellm_httptools_version']}",
        ),
        entry_point="litellm",
        imports=(PROXY_MODULE,),
        import_env=tuple(OFFLINE_ENV.items()),
        imported_by_check=True,  # the config check below loads LiteLLM anyway
    )


@deploy("LiteLLM proxy")
def deploy_litellm(r: Registry, envs: dict) -> list[Wait]:
    """envs: service -> its pyenv.Built (pyenv.python_environments)."""
    built = envs["litellm"]
    s = r.proxy
    user, home, conf = s["litellm_user"], s["litellm_home"], s["litellm_config_dir"]

    ops.system_account(name=f"Create service user {user}", user=user, home=s["litellm_state_dir"])
    candidate = f"{conf}/candidate"
    ops.directories(
        name=f"Create {home}, {conf}, {candidate}",
        paths=[(home, None, "755"), (conf, user, "750"), (candidate, None, "700")],
    )
    check = ops.local_file(
        name=f"Install the LiteLLM config checker in {home}",
        src=str(CHECK_SCRIPT),
        dest=f"{home}/check_config.py",
        public=True,
    )

    router_text = render_router_yaml(r)
    env_text = render_env_local(r)
    auth_text = AUTH_MODULE.read_text()
    staged = ops.text_files(
        name="Stage the new router.yaml, env.local (not shown) and key check",
        files={
            f"{candidate}/router.yaml": ops.Text(router_text, mode="600"),
            f"{candidate}/env.local": ops.Text(env_text, mode="600", secret=True),
            f"{candidate}/{AUTH_MODULE.name}": ops.Text(auth_text, mode="600"),
        },
    )
    # LiteLLM itself judges the staged pair; a rejection stops this host's deploy here, before
    # the live files or the running proxy are touched. It judges whenever the live files (the
    # launcher among them) are about to change (read before this run changed anything), so
    # re-running a rejected deploy is rejected again even though its staged files are already in
    # place, and whenever the LiteLLM environment or the checker changed.
    launcher_text = LAUNCHER.read_text()
    live = {
        f"{conf}/router.yaml": router_text,
        f"{conf}/env.local": env_text,
        f"{conf}/{AUTH_MODULE.name}": auth_text,
        f"{home}/{LAUNCHER.name}": launcher_text,
    }  # read with the render's own question: one command
    found = host.get_fact(FileStates, paths=tuple(live))
    live_will_change = any(f is None or f["sha256"] != sha256_text(text) for f, text in zip(found, live.values()))
    # A LiteLLM this run switches to (built, or the previous one put back) judges it too.
    inputs = [m for m in (staged, built.build, check) if m is not None]
    if ops.may_change(live_will_change or built.reuse, inputs):
        staged_pair = f"{candidate}/router.yaml {candidate}/env.local"
        if built.build is not None:
            # An environment built by this run: the check loads the proxy first, as root, and so
            # writes its bytecode (pyenv.PythonEnv.imported_by_check), one import instead of two.
            command = pyenv.bytecode_command(
                built.env,
                built.target,
                f"{home}/check_config.py --import {PROXY_MODULE} {staged_pair}",
                "echo 'the new LiteLLM environment did not pass the config check' >&2; exit 1",
            )
        else:
            command = f"{pyenv.env_prefix(built.env)}{built.python} {home}/check_config.py {staged_pair}"
        server.shell(
            name="Validate the staged router.yaml with LiteLLM"
            + (" (and load the new environment's proxy, writing its bytecode)" if built.build is not None else ""),
            commands=[command],
            _if=lambda: live_will_change or built.reuse or any(ops.changed(m) for m in inputs),
        )
    # A new LiteLLM is switched to only now, its own check of the config passed; the launcher
    # goes with the live files (a restart trigger: installed by a run that stopped at the check,
    # it would wait unseen).
    env = pyenv.switch(built, r.proxy["uv_keep"])
    rendered = ops.text_files(
        name=f"Render {conf}/router.yaml, env.local (not shown), the key check and {home}/{LAUNCHER.name}",
        files={
            f"{conf}/router.yaml": ops.Text(router_text, group=user, mode="640"),
            f"{conf}/env.local": ops.Text(env_text, user=user, group=user, mode="600", secret=True),
            f"{conf}/{AUTH_MODULE.name}": ops.Text(auth_text, group=user, mode="640"),
            f"{home}/{LAUNCHER.name}": ops.Text(launcher_text),
        },
    )
    started = managed_services(
        [Unit("litellm", render_unit(r, run.system().cpus), restart_on=[env, rendered])], "the LiteLLM proxy"
    )["litellm"]
    # Readiness, not only liveness: LiteLLM's own endpoint answers once the router is loaded.
    return [
        Wait(
            answers_http(f"http://127.0.0.1:{s['litellm_port']}/health/readiness"),
            s["litellm_start_timeout"],
            "the LiteLLM proxy",
            started,
            rollback(built, env, [("litellm", None)], "journalctl -u litellm"),
        )
    ]


SERVICE = LiteLLM()
