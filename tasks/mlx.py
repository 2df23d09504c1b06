"""MLX model servers on the studio: a uv environment with pinned mlx-lm, and one service per
registry model (launchd on macOS, systemd on Linux) running the real mlx_lm.server."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from tasks import ops
from tasks.hostos import is_macos
from tasks.pyenv import PythonEnv
from tasks.registry import Model, Registry
from tasks.render import render
from tasks.service import Service, Wait, managed_services


def server_argv(r: Registry, m: Model) -> list[str]:
    s = r.settings(m.host)
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
    return f"{r.settings(m.host)['mlx_launchd_prefix']}.{m.name}"


def server_environment(r: Registry, m: Model, macos: bool) -> dict[str, str]:
    state = f"{r.settings(m.host)['mlx_home']}/state/{m.name}" if macos else f"/var/lib/{unit_name(m)}"
    # The hub cache of models that are not in mlx_models_dir lives with the server's state.
    return {"HF_HOME": f"{state}/hf", "PYTHONUNBUFFERED": "1"}


def render_unit(r: Registry, m: Model) -> str:
    s = r.settings(m.host)
    return render(
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
    s = r.settings(m.host)
    return render(
        "mlx/mlx.plist.j2",
        model=m,
        label=launchd_label(r, m),
        models_dir=s["mlx_models_dir"],
        argv=server_argv(r, m),
        environment=server_environment(r, m, macos=True),
        log_dir=f"{s['mlx_home']}/logs",
    )


def python_env(r: Registry) -> PythonEnv | None:
    """This host's MLX environment, if it serves any MLX model (mlx runs on the CPU on Linux)."""
    if not r.served_by(host.name, "mlx"):
        return None
    s = r.settings(host.name)
    mlx = f"mlx=={s['mlx_version']}" if is_macos() else f"mlx[cpu]=={s['mlx_version']}"
    return PythonEnv("mlx", f"{s['mlx_home']}/venv", (mlx, f"mlx-lm=={s['mlx_lm_version']}"))


@deploy("MLX model servers")
def deploy_mlx(r: Registry, envs: dict) -> list[Wait]:
    """envs: service -> the operation that built its environment (pyenv.python_environments)."""
    s = r.settings(host.name)
    models = sorted(r.served_by(host.name, "mlx"), key=lambda m: m.port)
    if not models:
        return []
    env = envs["mlx"]
    macos = is_macos()
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
    return [
        Wait(f"http://127.0.0.1:{m.port}/v1/models", s["mlx_start_timeout"], f"the {m.name} MLX server",
             started[unit_name(m)])
        for m in models
    ]
