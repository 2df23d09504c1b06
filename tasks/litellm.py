"""LiteLLM proxy on the mini: user, uv environment, router.yaml + env.local validated by LiteLLM
before they go live, a hardened systemd unit, and a wait until the proxy answers."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from tasks import hostos, ops, pyenv
from tasks.facts import FileStates
from tasks.pyenv import PythonEnv
from tasks.registry import CHAT_ONLY_BACKENDS, PROXY_KEY_SECRET, Registry
from tasks.render import FILES, render, sha256_text, to_yaml
from tasks.service import Service, Wait, answers_http, managed_services, rollback

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


# A client's bad request is the client's: LiteLLM counts an upstream's 404 toward allowed_fails
# (mlx_lm.server answers an unsupported content part with 404), so one client's refused requests
# would cool the model down for every client. A deployment-level policy gives 404s a counter of
# their own that never trips; 400 and 422 never count; connection errors, timeouts and 5xx still do.
CLIENT_ERRORS_POLICY = {"NotFoundErrorAllowedFails": 1_000_000}


def litellm_settings(r: Registry) -> dict:
    """The data's litellm_settings, and Anthropic's Messages API answered through chat
    completions (no upstream here has /v1/messages; LiteLLM's default goes through its Responses
    bridge, which drops the text of an answer cut at max_tokens)."""
    return {**r.proxy["litellm_settings"], "use_chat_completions_url_for_anthropic_messages": True}


def render_router_yaml(r: Registry) -> str:
    return render(
        "litellm/router.yaml.j2",
        models=list(r.models.values()),
        chat_only=CHAT_ONLY_BACKENDS,
        client_errors=CLIENT_ERRORS_POLICY,
        router_settings_yaml=to_yaml(r.router_settings()),
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


def packages(r: Registry, system) -> list[str]:
    return []


def python_env(r: Registry) -> PythonEnv:
    s = r.proxy
    # prisma: LiteLLM's auth error handler imports it, and without it a request that lacks the
    # key gets 500 instead of 401 (litellm/proxy/db/exception_handler.py).
    return PythonEnv(
        "litellm",
        f"{s['litellm_home']}/venv",
        (f"litellm[proxy]=={s['litellm_version']}", f"prisma=={s['litellm_prisma_version']}"),
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
            _if=lambda: live_will_change or built.reuse or any(m.did_change() for m in inputs),
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
        [Service("litellm", render_unit(r, hostos.system().cpus), restart_on=[env, rendered])], "the LiteLLM proxy"
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
