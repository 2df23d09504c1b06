"""MLX model servers on the studio: a uv environment with pinned mlx-lm, and one service per
registry model (launchd on macOS, systemd on Linux) running the real mlx_lm.server."""

from __future__ import annotations

from pyinfra.api import deploy

from tasks import common, ops
from tasks.registry import Model, Registry
from tasks.service import Service, managed_services


def server_argv(r: Registry, m: Model) -> list[str]:
    s = r.settings
    return [
        f"{s['mlx_home']}/venv/bin/mlx_lm.server",
        "--model",
        m.upstream,
        "--host",
        s["mlx_bind_address"],
        "--port",
        str(m.port),
        "--max-tokens",
        str(s["mlx_max_tokens"]),
    ]


def unit_name(m: Model) -> str:
    return f"mlx-{m.name}"


def launchd_label(r: Registry, m: Model) -> str:
    return f"{r.settings['mlx_launchd_prefix']}.{m.name}"


def server_environment(r: Registry, m: Model, macos: bool) -> dict[str, str]:
    state = f"{r.settings['mlx_home']}/state/{m.name}" if macos else f"/var/lib/{unit_name(m)}"
    # The hub cache of models that are not in mlx_models_dir lives with the server's state.
    return {"HF_HOME": f"{state}/hf", "PYTHONUNBUFFERED": "1"}


def render_unit(r: Registry, m: Model) -> str:
    s = r.settings
    return common.render(
        "mlx/mlx.service.j2",
        model=m,
        unit=unit_name(m),
        user=s["mlx_user"],
        bind=s["mlx_bind_address"],
        models_dir=s["mlx_models_dir"],
        argv=server_argv(r, m),
        environment=server_environment(r, m, macos=False),
    )


def render_plist(r: Registry, m: Model) -> str:
    s = r.settings
    return common.render(
        "mlx/mlx.plist.j2",
        model=m,
        label=launchd_label(r, m),
        models_dir=s["mlx_models_dir"],
        argv=server_argv(r, m),
        environment=server_environment(r, m, macos=True),
        log_dir=f"{s['mlx_home']}/logs",
    )


def python_env(host_name: str) -> common.PythonEnv | None:
    """The MLX environment, if this host serves any MLX model (mlx runs on the CPU on Linux)."""
    r = common.registry()
    s = r.settings
    if not r.served_by(host_name, "mlx"):
        return None
    mlx = f"mlx=={s['mlx_version']}" if common.is_macos() else f"mlx[cpu]=={s['mlx_version']}"
    return common.PythonEnv("MLX", f"{s['mlx_home']}/venv", (mlx, f"mlx-lm=={s['mlx_lm_version']}"))


@deploy("MLX model servers")
def deploy_mlx(host_name: str, env):
    """env: the operation that built the MLX environment (python_environments)."""
    r = common.registry()
    s = r.settings
    models = sorted(r.served_by(host_name, "mlx"), key=lambda m: m.port)
    if not models:
        return
    macos = common.is_macos()
    home = s["mlx_home"]

    if not macos:
        ops.system_account(name=f"Create service user {s['mlx_user']}", user=s["mlx_user"], home=home)
    folders = [home, s["mlx_models_dir"]] + ([f"{home}/logs"] if macos else [])
    ops.directories(name=f"Create {', '.join(folders)}", paths=folders, mode="755")

    uploads = {}
    for upstream, local in sorted(s["mlx_model_sources"].items()):
        uploads[upstream] = ops.tree(
            name=f"Upload model {upstream} from {local}",
            src=local,
            dest=f"{s['mlx_models_dir']}/{upstream}",
        )

    services = [
        Service(
            unit_name(m),
            render_plist(r, m) if macos else render_unit(r, m),
            restart_on=[env] + ([uploads[m.upstream]] if m.upstream in uploads else []),
            label=launchd_label(r, m),
        )
        for m in models
    ]
    started = managed_services(services, "the MLX servers")
    for m in models:
        common.expect_answer(
            f"http://127.0.0.1:{m.port}/v1/models", s["mlx_start_timeout"], f"the {m.name} MLX server",
            started[unit_name(m)],
        )
