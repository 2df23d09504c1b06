"""MLX model servers on the studio: a uv environment with pinned mlx-lm, the model weights (uploaded
from the control machine, or fetched into the operator's Hugging Face cache before any server
starts), a memory guard, and one service per registry model running the real mlx_lm.server.

On macOS the servers are LaunchDaemons with UserName set to the operator: they start at boot
without anyone logging in (a per-user LaunchAgent starts only in a login session, which a headless
Mac after a reboot does not have), run as the operator, read the operator's own Hugging Face cache
(~/.cache/huggingface) and log to ~/Library/Logs/llm-lab/. On Linux (the lab) they are systemd
units of a service user."""

from __future__ import annotations

import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import FunctionCommand, deploy, operation
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files

from tasks import ops, pyenv, run
from tasks.facts import HubCache, hub_repo_dir
from tasks.hostos import System
from tasks.pyenv import PythonEnv
from tasks.registry import MLX_GROUP, Model, Registry
from tasks.render import render
from tasks.run import is_macos
from tasks.schema import NONE, DataError, Key, abs_path, fraction, ip, networks, optional_url, positive, user, version
from tasks.service import Port, StackService, answers_line, local_url
from tasks.units import Unit, Wait, answers_http, managed_services, retire, rollback

ROOT = Path(__file__).resolve().parent.parent
LOG_FOLDER = "Library/Logs/llm-lab"  # under the operator's home: where Console.app looks


def _model_sources(key: str, value: Any) -> None:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DataError(f"{key} maps upstream ids to folder paths")
    for upstream, folder in value.items():
        # The upload makes the host's folder equal to this one: an empty or missing folder would
        # delete the model on the host.
        if not os.path.isabs(folder) or not os.path.isdir(folder) or not any(os.scandir(folder)):
            raise DataError(
                f"{key}[{upstream!r}]: {folder!r} is not an existing, non-empty folder (an absolute path "
                f"on the control machine)"
            )


_ID_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _model_ids(key: str, value: Any) -> None:
    for item in value:
        if not isinstance(item, str) or not item:
            raise DataError(f"{key} lists model ids (a hub repo such as org/name, or a folder name), not {item!r}")
        parts = item.split("/")
        if len(parts) > 2 or not all(_ID_PART.fullmatch(p) and p not in (".", "..") for p in parts):
            raise DataError(f"{key}: {item!r} is not a model id (org/name, or a folder name in mlx_models_dir)")


def _label_prefix(key: str, value: Any) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]", value):
        raise DataError(f"{key} must be a launchd label prefix (letters, digits, '.' and '-'), not {value!r}")


KEYS = (
    Key("mlx_version", str, "0.32.4", "pinned mlx (`mlx[cpu]` on Linux)", version),
    Key("mlx_lm_version", str, "0.32.2", "pinned mlx-lm", version),
    Key("mlx_user", str, "mlx", "the servers' service user (Linux)", user),
    Key("mlx_home", str, "/opt/mlx", "their environment (`venv/`) and logs (macOS)", abs_path),
    Key(
        "mlx_models_dir",
        str,
        "/opt/mlx/models",
        "the servers' working folder: a model id that exists here as a folder is loaded from it",
        abs_path,
    ),
    Key(
        "mlx_model_sources",
        dict,
        {},
        "upstream id -> model folder on the control machine to upload (the lab's tiny model)",
        _model_sources,
    ),
    Key("mlx_bind_address", str, "0.0.0.0", "the servers' address (LiteLLM reaches them over the LAN)", ip),
    Key(
        "mlx_allowed_clients",
        list,
        [],
        "addresses or networks besides the proxy host that the studio's firewall admits to the MLX ports",
        networks,
    ),
    Key(
        "mlx_max_tokens",
        int,
        8192,
        "`mlx_lm.server --max-tokens`: the completion length when a request names none (mlx_lm's own 512 "
        "cuts coding clients off); a model's `max_tokens` field overrides it",
        positive,
    ),
    Key(
        "mlx_start_timeout",
        int,
        120,
        "seconds the deploy waits for a server's `/v1/models` after a (re)start: loading, not downloading; a "
        "model's `start_timeout` field overrides it (a 120B model loads for minutes)",
        positive,
    ),
    Key("mlx_python", str, "3.12", "macOS: the uv-managed Python the MLX environment is built on", version),
    Key(
        "mlx_memory_fraction",
        (float, int),
        0.75,
        "share of the host's memory the MLX models' weights may take together (macOS lets the GPU wire about "
        "three quarters)",
        fraction,
    ),
    Key("mlx_allow_overcommit", bool, False, "start the MLX servers even when their weights exceed that share"),
    Key("mlx_launchd_prefix", str, "lab.llm.mlx", "launchd labels are `<prefix>.<model>`", _label_prefix),
    Key(
        "mlx_hf_endpoint",
        (str, NONE),
        None,
        "where weights are fetched from (the hub client's HF_ENDPOINT; unset: huggingface.co); the lab points it "
        "at its stand-in hub",
        optional_url,
    ),
    Key(
        "mlx_purge_weights",
        list,
        [],
        "model ids whose weights the deploy deletes from the host (their folder in mlx_models_dir; on macOS also "
        "their entry in the operator's Hugging Face cache): weights of models no longer served are otherwise kept",
        _model_ids,
    ),
)


def max_tokens(r: Registry, m: Model) -> int:
    return m.max_tokens or r.settings(m.host)["mlx_max_tokens"]


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
        str(max_tokens(r, m)),
    ]


def unit_name(m: Model) -> str:
    return f"mlx-{m.name}"


def log_of(m: Model, system: System) -> str:
    """Where a server's log is: its file under ~/Library/Logs (macOS), the journal (Linux)."""
    if system.macos:
        return f"{system.home}/{LOG_FOLDER}/{m.name}.log"
    return f"journalctl -u {unit_name(m)}"


def launchd_label(r: Registry, m: Model) -> str:
    return f"{r.settings(m.host)['mlx_launchd_prefix']}.{m.name}"


def hf_home(r: Registry, host_name: str, system: System) -> str:
    """Where the servers' weights are cached (HF_HOME): the operator's own Hugging Face cache on a
    Mac (huggingface_hub's default for that user), the service user's under mlx_home on Linux."""
    return f"{system.home}/.cache/huggingface" if system.macos else f"{r.settings(host_name)['mlx_home']}/hf"


def weights_path(r: Registry, m: Model, system: System) -> str:
    """Where a model's weights are on its host: its uploaded folder, or its entry in the hub cache."""
    s = r.settings(m.host)
    if m.upstream in s["mlx_model_sources"]:
        return f"{s['mlx_models_dir']}/{m.upstream}"
    return hub_repo_dir(hf_home(r, m.host, system), m.upstream)


def server_environment(r: Registry, m: Model, system: System) -> dict[str, str]:
    """The servers read weights the deploy fetched before they start, and never download
    themselves (HF_HUB_OFFLINE): a start wait measures loading."""
    env = {"HF_HOME": hf_home(r, m.host, system), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return {"HOME": system.home, **env} if system.macos else env


def render_unit(r: Registry, m: Model, system: System) -> str:
    s = r.settings(m.host)
    return render(
        "mlx/mlx.service.j2",
        model=m,
        unit=unit_name(m),
        user=s["mlx_user"],
        bind=s["mlx_bind_address"],
        models_dir=s["mlx_models_dir"],
        argv=server_argv(r, m),
        environment=server_environment(r, m, system),
    )


def render_plist(r: Registry, m: Model, system: System) -> str:
    s = r.settings(m.host)
    return render(
        "mlx/mlx.plist.j2",
        model=m,
        label=launchd_label(r, m),
        user=system.login,
        models_dir=s["mlx_models_dir"],
        argv=server_argv(r, m),
        environment=server_environment(r, m, system),
        log_dir=f"{system.home}/{LOG_FOLDER}",
    )


def allowed_clients(r: Registry, host_name: str) -> list[str]:
    """Who may reach this host's MLX ports: the proxy host, then the data's extra addresses."""
    return list(dict.fromkeys([r.hosts[r.proxy_host].address, *r.settings(host_name)["mlx_allowed_clients"]]))


class MLX(StackService):
    """One mlx_lm.server per registry model of the host (its port is the model's `port` field)."""

    name = "mlx"
    group = MLX_GROUP
    keys = KEYS

    def ports(self, r: Registry, host: str) -> list[Port]:
        s = r.settings(host)
        clients = ", ".join(allowed_clients(r, host))
        return [
            Port(
                host,
                m.port,
                s["mlx_bind_address"],
                f"mlx-{m.name}",
                m.model_name,
                f"{r.proxy_host} only (firewall: {clients})",
                (f"mlx-{m.name}.service", launchd_label(r, m)),  # Linux, macOS
                ("mlx-", f"{s['mlx_launchd_prefix']}."),  # what deploy_mlx retires first
            )
            for m in sorted(r.served_by(host, "mlx"), key=lambda m: m.port)
        ]

    def status_command(self, r: Registry, host: str) -> str:
        return "\n".join(
            answers_line(
                unit_name(m), local_url(r.settings(host)["mlx_bind_address"], m.port, "/v1/models"), m.upstream
            )
            for m in sorted(r.served_by(host, "mlx"), key=lambda m: m.port)
        )

    def check(self, r: Registry, host: str) -> None:
        s = r.settings(host)
        where = f"{r.hosts[host].sources.get('mlx_purge_weights', 'group data')}: mlx_purge_weights"

        # Compared without case (a Mac's disk ignores it) and by folder: an org's folder holds its
        # models' weights.
        def holds(model_id: str, upstream: str) -> bool:
            gone, kept = model_id.lower(), upstream.lower()
            return gone == kept or kept.startswith(gone + "/")

        for model_id in s["mlx_purge_weights"]:
            for m in r.served_by(host, "mlx"):
                if holds(model_id, m.upstream):
                    raise DataError(
                        f"{where}: {model_id!r} holds the weights of {m.name}, which {host} serves: take it out "
                        f"of the list, or the model out of the registry"
                    )
            if any(holds(model_id, u) for u in s["mlx_model_sources"]):
                raise DataError(f"{where}: {model_id!r} is uploaded by mlx_model_sources: take it out of one of them")

    def python_env(self, r: Registry) -> PythonEnv | None:
        return python_env(r)

    def deploy(self, r: Registry, envs: dict) -> list[Wait]:
        return deploy_mlx(r, envs)


def python_env(r: Registry) -> PythonEnv | None:
    """This host's MLX environment, if it serves any MLX model: on a Mac on a uv-managed Python,
    on Linux on the host's python3 with mlx's CPU build."""
    if not r.served_by(host.name, "mlx"):
        return None
    s = r.settings(host.name)
    if is_macos():
        return PythonEnv(
            "mlx",
            f"{s['mlx_home']}/venv",
            (f"mlx=={s['mlx_version']}", f"mlx-lm=={s['mlx_lm_version']}"),
            python=s["mlx_python"],
            entry_point="mlx_lm.server",
            imports=("mlx_lm.server",),
        )
    return PythonEnv(
        "mlx",
        f"{s['mlx_home']}/venv",
        (f"mlx[cpu]=={s['mlx_version']}", f"mlx-lm=={s['mlx_lm_version']}"),
        entry_point="mlx_lm.server",
        imports=("mlx_lm.server",),
    )


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def _local_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(folder) for f in names)


def check_memory(r: Registry, system: System, sizes: dict[str, int]) -> None:
    """Refuse a set of models whose weights (name -> bytes) do not fit the host's memory share."""
    s = r.settings(host.name)
    need, limit = sum(sizes.values()), int(system.memory * s["mlx_memory_fraction"])
    if need <= limit or s["mlx_allow_overcommit"]:
        return
    listed = ", ".join(f"{name} {_gb(size)}" for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]))
    raise DeployError(
        f"{host.name}: the MLX models need {_gb(need)} of weights but {_gb(system.memory)} x "
        f"{s['mlx_memory_fraction']} = {_gb(limit)} is available to them ({listed}); serve fewer models, or set "
        f"mlx_allow_overcommit = True; no server was started"
    )


FETCH_SCRIPT = ROOT / "files" / "mlx" / "fetch.py"  # snapshot_download with progress lines
PROGRESS_EVERY = 10  # seconds between the progress lines of a fetch


def fetch_command(venv: str, home: str, repo: str, endpoint: str | None) -> str:
    """Shell: fetch repo into the hub cache at home with the MLX environment's Python, printing
    progress every PROGRESS_EVERY seconds; its last line is `size <bytes>`."""
    env = [f"HF_HOME={shlex.quote(home)}", "HF_HUB_DISABLE_PROGRESS_BARS=1", "HF_HUB_DISABLE_TELEMETRY=1"]
    if endpoint:
        env.append(f"HF_ENDPOINT={shlex.quote(endpoint)}")
    script = shlex.quote(FETCH_SCRIPT.read_text())
    return f"env {' '.join(env)} {shlex.quote(venv)}/bin/python -c {script} {shlex.quote(repo)} {PROGRESS_EVERY}"


def _fetch(state, host, command: str, as_user: str | None, repo: str, sizes: dict, names: list):
    """Run at execution time: the fetch, as the operator on a Mac (the user SSH logs in as: its
    own cache) or as the service user on Linux, its progress shown on the operator's terminal as
    it comes; then its size and how long it took."""
    started = time.monotonic()
    sudo = {"_sudo": True, "_sudo_user": as_user} if as_user else {}
    ok, output = host.run_shell_command(command, print_output=True, print_input=False, **sudo)
    if not ok:
        host.log(f"fetching {repo} failed: {' '.join(output.stderr_lines[-3:])}")
        return False
    size = int(output.stdout_lines[-1].split()[-1])
    sizes.update(dict.fromkeys(names, size))
    host.log(f"fetched {repo} ({', '.join(names)}): {_gb(size)} in {time.monotonic() - started:.0f} s")
    return True


@operation()
def fetch_weights(models: dict, present: dict, commands: dict, as_user: str | None, sizes: dict):
    """Each hub repo of the models (name -> repo) that is not complete in the hub cache is
    downloaded once before any server starts (commands: repo -> its fetch_command); `sizes` (name
    -> bytes) gets what was fetched. A fetch cut off resumes on the next run."""
    for repo in sorted(set(models.values())):
        if present.get(repo) is None:
            names = sorted(name for name, r in models.items() if r == repo)
            yield FunctionCommand(_fetch, (commands[repo], as_user, repo, sizes, names), {})


@operation()
def memory_guard(r: Registry, system: System, sizes: dict):
    """After fetching: the same memory check, now that every size is known (run only when a
    fetch happened: without one, it was checked before any change)."""
    yield FunctionCommand(lambda state, host: check_memory(r, system, sizes) or True, (), {})


@deploy("MLX model servers")
def deploy_mlx(r: Registry, envs: dict) -> list[Wait]:
    """envs: service -> its pyenv.Built (pyenv.python_environments)."""
    s = r.settings(host.name)
    models = sorted(r.served_by(host.name, "mlx"), key=lambda m: m.port)
    system = run.system()
    macos = system.macos
    # First, the servers of models that left the registry: stopped and removed, their weights kept
    # unless the data names them.
    prefix = f"{s['mlx_launchd_prefix']}." if macos else "mlx-"
    retire(prefix, [Unit(unit_name(m), "", label=launchd_label(r, m)) for m in models], "the MLX servers")
    cache = hf_home(r, host.name, system)
    for model_id in s["mlx_purge_weights"]:
        for path in (f"{s['mlx_models_dir']}/{model_id}", hub_repo_dir(cache, model_id)):
            files.directory(name=f"Delete the weights of {model_id} ({path})", path=path, present=False)
    if not models:
        return []
    built = envs["mlx"]
    home = s["mlx_home"]

    if not macos:
        ops.system_account(name=f"Create service user {s['mlx_user']}", user=s["mlx_user"], home=home)
    # On Linux the servers' hub cache too, the service user's (on a Mac, the operator's own).
    folders = [home, s["mlx_models_dir"]] + ([] if macos else [(cache, s["mlx_user"], "755", s["mlx_user"])])
    names = [f if isinstance(f, str) else f[0] for f in folders]
    ops.directories(name=f"Create {', '.join(names)}", paths=folders, mode="755", public=True)
    if macos:
        ops.directories(
            name=f"Create the servers' log folder ~/{LOG_FOLDER}",
            paths=[f"{system.home}/{LOG_FOLDER}"],
            user=system.login,
            group="staff",
            mode="755",
            public=True,
        )

    uploads = {}
    sizes: dict[str, int] = {}
    for upstream, local in sorted(s["mlx_model_sources"].items()):
        uploads[upstream] = ops.tree(
            name=f"Upload model {upstream} from {local}",
            src=local,
            dest=f"{s['mlx_models_dir']}/{upstream}",
        )
    for m in models:
        if m.upstream in s["mlx_model_sources"]:
            sizes[m.name] = _local_size(s["mlx_model_sources"][m.upstream])

    # Weights of hub models come before any server starts, so a start wait measures loading.
    hub = {m.name: m.upstream for m in models if m.upstream not in s["mlx_model_sources"]}
    fetched = None
    if hub:
        present = host.get_fact(HubCache, hf_home=cache, repos=tuple(sorted(set(hub.values()))), _sudo=False)
        missing = sorted(name for name, repo in hub.items() if present.get(repo) is None)
        for name, repo in hub.items():
            if present.get(repo) is not None:
                sizes[name] = present[repo]
        fetched = fetch_weights(
            name=(
                f"Fetch the weights of {', '.join(missing)} into {cache}"
                if missing
                else f"Weights in {cache}: " + ", ".join(f"{n} {_gb(sizes[n])}" for n in sorted(hub))
            ),
            models=hub,
            present=present,
            commands={repo: fetch_command(built.target, cache, repo, s["mlx_hf_endpoint"]) for repo in hub.values()},
            as_user=None if macos else s["mlx_user"],
            sizes=sizes,
        )
    if fetched is None or not fetched.will_change:
        check_memory(r, system, sizes)  # every size is known: refuse before any change
    else:
        memory_guard(
            name="Check that the MLX models' weights fit in memory",
            r=r,
            system=system,
            sizes=sizes,
            _if=lambda: ops.changed(fetched),
        )

    env = pyenv.switch(built, s["uv_keep"])
    services = [
        Unit(
            unit_name(m),
            render_plist(r, m, system) if macos else render_unit(r, m, system),
            restart_on=[env, uploads.get(m.upstream)],
            label=launchd_label(r, m),
        )
        for m in models
    ]
    started = managed_services(services, "the MLX servers")
    return [
        Wait(
            answers_http(f"http://127.0.0.1:{m.port}/v1/models"),
            m.start_timeout or s["mlx_start_timeout"],
            f"the {m.name} MLX server",
            started[unit_name(m)],
            rollback(built, env, [(unit_name(x), launchd_label(r, x)) for x in models], log_of(m, system)),
        )
        for m in models
    ]


SERVICE = MLX()
