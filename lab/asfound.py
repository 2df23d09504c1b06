"""The lab "as found": the hand-kept stack the person's real hosts run before this toolkit ever
did (DESIGN.md, "The real hosts as they are found"), put in place of the toolkit's own services.

On the mini: the operator's own uv project ~/litellm-orch (real LiteLLM, the version the toolkit
pins, installed by the operator's own uv from PyPI) with the seed's router.yaml and an env.local
in the seed's shape holding the lab's addresses and models, run by the system unit
litellm-orch.service as the operator (`uv run litellm --config ... --host 0.0.0.0 --port 4000`);
an OpenVINO server of the operator's on :9000 as their user unit ov-server.service (the lab's
OVMS stand-in, the only OVMS there is here, with a config of its own); and an Ollama-like service
on :11434 (ollama.service: Python's http.server) that no deploy may touch. On the studio: every
MLX server started by a script of the operator's (~/mlx/serve-all.sh) under their unit
bebop-mlx.service (the studio's LaunchDaemon on the real Mac), with the mlx_lm.server the toolkit
installed (the lab builds no second one). The toolkit's units for the same ports are stopped and
removed first (its environments, weights and Redis stay), as on a host it never ran on.

    python -m lab as-found            put the hand-kept stack in place (and wait until it serves)
    python -m lab as-found --undo     take it away again (then `./labctl deploy` restores the lab)
"""

from __future__ import annotations

import shlex

from lab import hosts, lifecycle, paths
from lab.network import HOSTS
from lab.proc import LabError, log
from tasks import mlx as mlx_task
from tasks import preflight
from tasks.facts import user_systemctl
from tasks.pyenv import UV_FETCH
from tasks.registry import Registry

OPERATOR = hosts.OPERATOR
HOME = f"/home/{OPERATOR}"
PROJECT = f"{HOME}/litellm-orch"  # the seed's ~/litellm-orch
USER_UNIT = "ov-server.service"  # the operator's user unit (the others are system units)
HAND_KEPT = {  # host -> the units of the operator's own that hold the stack's ports
    "mini": ["litellm-orch.service", USER_UNIT],
    "studio": ["bebop-mlx.service"],
}
NEIGHBOUR = ("ollama.service", 11434)  # on the mini: not the stack's, never touched
USER_CTL = user_systemctl(OPERATOR, f"$(id -u {OPERATOR})")  # the operator's own systemd manager
WAIT = 180  # seconds the hand-kept stack may take to serve
SEED = paths.ROOT / "tests" / "unit" / "seed"  # the seed's router.yaml, verbatim where the seed shows it


def registry() -> Registry:
    return preflight.build(paths.ROOT / "lab" / "inventory.py", paths.ROOT, for_deploy=False, with_secrets=False)


def env_local(r: Registry) -> str:
    """The seed's env.local with the lab's values: each model's API base (the seed's
    localhost:9000/v1 for OVMS, as it was kept), upstream id and a placeholder key."""
    lines = []
    for m in r.models.values():
        if m.backend == "ovms":
            base = f"http://localhost:{r.settings(m.host)['ovms_rest_port']}/v1"
        else:
            base = f"http://{r.hosts[m.host].address}:{m.port}/v1"
        lines += [f"{m.env_prefix}_API_BASE={base}", f"{m.env_prefix}_MODEL=openai/{m.upstream}"]
        lines.append(f"{m.env_prefix}_API_KEY=dummy")
    return "\n".join(lines) + "\n"


def _file(path: str, text: str, owner: str = OPERATOR, mode: str = "644") -> str:
    """Shell: write path (its folders made as owner too)."""
    folder = path.rsplit("/", 1)[0]
    as_owner = f"sudo -u {owner} " if owner != "root" else ""
    return (
        f"{as_owner}mkdir -p {folder}\n"
        f"printf %s {shlex.quote(text)} | {as_owner}tee {path} >/dev/null\nchmod {mode} {path}\n"
    )


# Each script stops at its first failing command and names it (set -e alone exits in silence).
STRICT = "set -eu\ntrap 'echo \"as found: line $LINENO: $BASH_COMMAND exited $?\" >&2' ERR\n"


def _units_gone(units: list[str]) -> str:
    """Shell: system units stopped, disabled and their files removed (each on its own: one that
    is missing or already gone stops none of the others)."""
    words = " ".join(units)
    return (
        f"for unit in {words}; do\n"
        "  systemctl stop $unit 2>/dev/null || true; systemctl disable $unit 2>/dev/null || true\ndone\n"
        f"(cd /etc/systemd/system && rm -f {words})\n"
        "systemctl daemon-reload\nsystemctl reset-failed 2>/dev/null || true\n"
    )


def _wait(url: str) -> str:
    return (
        f"for i in $(seq {WAIT}); do curl -fsS -o /dev/null --max-time 2 {url} 2>/dev/null && break; sleep 1; done\n"
        f"curl -fsS -o /dev/null --max-time 2 {url} || {{ echo 'as found: {url} does not answer' >&2; exit 1; }}\n"
    )


def mini_script(r: Registry) -> str:
    s = r.settings(r.proxy_host)
    port, ovms_port = s["litellm_port"], s["ovms_rest_port"]
    uv = f"{HOME}/.local/bin/uv"
    pyproject = (
        '[project]\nname = "litellm-orch"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        f'dependencies = ["litellm[proxy]=={s["litellm_version"]}"]\n\n[tool.uv]\npackage = false\n'
    )
    ov_models = [m for m in r.models.values() if m.backend == "ovms"]
    ov_config = (
        '{"model_config_list": ['
        + ", ".join(
            f'{{"config": {{"name": "{m.upstream}", "base_path": "{s["ovms_models_dir"]}/{m.upstream}"}}}}'
            for m in ov_models
        )
        + "]}\n"
    )
    ovms = "/opt/ovms/current/ovms"
    litellm_unit = (
        "[Unit]\nDescription=LiteLLM (litellm-orch, kept by hand)\nAfter=network-online.target\n\n"
        f"[Service]\nUser={OPERATOR}\nWorkingDirectory={PROJECT}\n"
        f"EnvironmentFile={PROJECT}/config/env.local\n"
        # As the seed's: no key enforced yet (the pinned LiteLLM refuses to start so unless told), and no
        # fetch of LiteLLM's price list from GitHub (these hosts reach only the package registries).
        "Environment=LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true LITELLM_LOCAL_MODEL_COST_MAP=True\n"
        f"ExecStart={uv} run --frozen litellm --config {PROJECT}/config/router.yaml --host 0.0.0.0 --port {port}\n"
        "Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    ov_unit = (
        "[Unit]\nDescription=OpenVINO server (kept by hand)\n\n[Service]\n"
        f"Environment=LD_LIBRARY_PATH={ovms}/lib PATH={ovms}/bin:/usr/bin:/bin\n"
        f"Environment=PYTHONPATH={ovms}/lib/python:/opt/ovms/python/lib/python3.12/site-packages\n"
        f"ExecStart={ovms}/bin/ovms --rest_port {ovms_port} --config_path {HOME}/ov-server/config.json\n"
        "Restart=on-failure\n\n[Install]\nWantedBy=default.target\n"
    )
    neighbour, neighbour_port = NEIGHBOUR
    neighbour_unit = (
        "[Unit]\nDescription=Ollama-like (Python's http.server; not the stack's)\n\n[Service]\n"
        f"DynamicUser=yes\nStateDirectory=ollama\nWorkingDirectory=/var/lib/ollama\n"
        f"ExecStart=/usr/bin/python3 -m http.server {neighbour_port} --bind 0.0.0.0\n"
        "Restart=always\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    as_op = f"sudo -u {OPERATOR} -H"
    uid = f"$(id -u {OPERATOR})"
    return (
        STRICT
        + _units_gone(["litellm.service", "ovms.service"])
        + f"[ -x {uv} ] || {as_op} python3 -c {shlex.quote(UV_FETCH)} {s['uv_version']} {HOME}/.local\n"
        + _file(f"{PROJECT}/pyproject.toml", pyproject)
        + _file(f"{PROJECT}/config/router.yaml", (SEED / "router.yaml").read_text())
        + _file(f"{PROJECT}/config/env.local", env_local(r), mode="600")
        + f"cd {PROJECT} && {as_op} {uv} sync --quiet --system-certs\n"
        + _file("/etc/systemd/system/litellm-orch.service", litellm_unit, owner="root")
        + _file(f"{HOME}/ov-server/config.json", ov_config)
        + _file(f"{HOME}/.config/systemd/user/{USER_UNIT}", ov_unit)
        + _file(f"/etc/systemd/system/{neighbour}", neighbour_unit, owner="root")
        + f"loginctl enable-linger {OPERATOR}\n"
        + f"for i in $(seq 30); do [ -S /run/user/{uid}/systemd/private ] && break; sleep 1; done\n"
        + "systemctl daemon-reload\n"
        + f"systemctl enable --now {neighbour}\nsystemctl enable litellm-orch.service\n"
        + "systemctl restart litellm-orch.service\n"
        + f"{USER_CTL} daemon-reload\n{USER_CTL} enable {USER_UNIT}\n{USER_CTL} restart {USER_UNIT}\n"
        + _wait(f"http://127.0.0.1:{ovms_port}/v2/health/ready")
        + _wait(f"http://127.0.0.1:{port}/health/liveliness")
    )


def studio_script(r: Registry, host: str) -> str:
    mlx = [m for m in r.models.values() if m.backend == "mlx" and m.host == host]
    s = r.settings(host)
    script = (
        "#!/bin/sh\n# The operator's own: every MLX server, started as they were by hand.\n"
        f"export HF_HOME={s['mlx_home']}/hf HF_HUB_OFFLINE=1\ncd {s['mlx_models_dir']}\n"
        + "".join(f"{shlex.join(mlx_task.server_argv(r, m))} &\n" for m in mlx)
        + "wait\n"
    )
    unit = (
        "[Unit]\nDescription=MLX servers (the operator's script)\nAfter=network-online.target\n\n"
        f"[Service]\nUser={OPERATOR}\nExecStart=/bin/sh {HOME}/mlx/serve-all.sh\nRestart=on-failure\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    return (
        STRICT
        + _units_gone([f"mlx-{m.name}.service" for m in mlx])
        + _file(f"{HOME}/mlx/serve-all.sh", script, mode="755")
        + _file("/etc/systemd/system/bebop-mlx.service", unit, owner="root")
        + "systemctl daemon-reload\nsystemctl enable bebop-mlx.service\nsystemctl restart bebop-mlx.service\n"
        + "".join(_wait(f"http://127.0.0.1:{m.port}/v1/models") for m in mlx)
    )


def undo_script(host: str) -> str:
    """The hand-kept units and the operator's files gone (uv's cache with them)."""
    units = [u for u in HAND_KEPT[host] + ([NEIGHBOUR[0]] if host == "mini" else []) if u != USER_UNIT]
    return (
        f"{USER_CTL} disable --now {USER_UNIT} 2>/dev/null || true\n"
        f"loginctl disable-linger {OPERATOR} || true\n"
        + _units_gone(units)
        + f"rm -rf {PROJECT} {HOME}/ov-server {HOME}/mlx {HOME}/.config/systemd/user/{USER_UNIT} "
        f"{HOME}/.local/bin/uv {HOME}/.local/bin/uvx {HOME}/.cache/uv\n"
    )


def arrange(r: Registry | None = None) -> None:
    r = r or registry()
    for host, script in (("studio", studio_script(r, "studio")), ("mini", mini_script(r))):
        done = lifecycle.as_root(host, script)
        if done.returncode:
            said = done.stderr.strip()[-2000:] or "(nothing on its standard error)"
            raise LabError(f"as found: {host}: its script exited {done.returncode}: {said}")
        log(f"as found: {host} runs {', '.join(HAND_KEPT[host])}")


def undo() -> None:
    for host in HOSTS:
        done = lifecycle.as_root(host, undo_script(host))
        if done.returncode:
            raise LabError(f"as found: undo on {host}: {done.stderr.strip()[-2000:]}")
