"""The studio deploy on macOS, run against recorded facts of a Mac (no Mac needed).

As in pyinfra's own operation tests, facts come from a recording instead of a connection: any
fact the deploy asks for that the recording lacks fails the test, so the recording is exactly
what the deploy reads. The operations are then run in pyinfra's order with a fake executor
that records the commands and reports them as done, so `_if` conditions see real results."""

from __future__ import annotations

import hashlib
import plistlib
import re
import runpy
from io import BytesIO

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from tasks import hostos, preflight
from tasks import mlx as mlx_task
from tasks.pyenv import UV

from .conftest import HOSTS, ROOT, build

LAUNCHD = "/Library/LaunchDaemons"


def studio_models(registry):
    return sorted(registry.served_by("studio", "mlx"), key=lambda m: m.port)


def recorded_mac(registry, installed: bool, changed_plist: str | None = None, new_pins: bool = False):
    """Facts of a Mac: (fact name, sorted kwargs) -> value. `installed` records a Mac the deploy
    already converged (files as they would be rendered now); otherwise a Mac with nothing of ours."""
    s = registry.settings("studio")
    home = s["mlx_home"]
    facts = {("Kernel", ()): "Darwin"}
    venv = f"{home}/venv"
    facts[("UvEnvironment", (("uv", UV), ("venv", venv)))] = (
        {"uv": s["uv_version"], "built_from": "stale" if new_pins else _sha(_spec_text(registry)), "venv": True}
        if installed else {"uv": "", "built_from": "", "venv": False}
    )
    folders = (home, s["mlx_models_dir"], f"{home}/logs")
    facts[("DirectoryStates", (("paths", folders),))] = [
        {"mode": "755", "user": "root", "group": "wheel"} if installed else None for _ in folders
    ]
    spec = f"{venv}.requirements.txt"
    facts[("FileState", (("path", spec),))] = (
        {"user": "root", "group": "wheel", "mode": "644", "sha256": _sha(_spec_text(registry))} if installed else None
    )
    plists, states = [], []
    for m in studio_models(registry):
        label = mlx_task.launchd_label(registry, m)
        text = mlx_task.render_plist(registry, m)
        if label == changed_plist:
            text = text.replace("<true/>", "<false/>", 1)
        plists.append(f"{LAUNCHD}/{label}.plist")
        states.append({"user": "root", "group": "wheel", "mode": "644", "sha256": _sha(text)} if installed else None)
    facts[("FileStates", (("paths", tuple(plists)),))] = states
    return facts


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _spec_text(registry) -> str:
    s = registry.settings("studio")
    return (
        "# uv pip install --compile-bytecode\n"
        f"mlx=={s['mlx_version']}\nmlx-lm=={s['mlx_lm_version']}\n"
    )


def run_studio_deploy(monkeypatch, registry, facts):
    """Run deploy.py for the studio against `facts`; returns [(operation name, [commands])]."""
    inventory = Inventory(
        ([("mini", {"llm_address": HOSTS["mini"]}), ("studio", {"llm_address": HOSTS["studio"]})], {}),
        mini=(["mini"], {}),
        studio=(["studio"], {}),
    )
    state = State(inventory, Config(), check_for_changes=False)
    asked = []

    def get_fact(self, fact_cls, *args, **kwargs):
        key = (fact_cls.__name__, tuple(sorted(kwargs.items())))
        asked.append(key)
        if key not in facts:
            raise AssertionError(f"the deploy asked for a fact the recording lacks: {key}")
        return facts[key]

    monkeypatch.setattr(Host, "get_fact", get_fact)
    preflight.use(registry)
    hostos.forget()
    studio = inventory.get_host("studio")
    state.set_stage(StateStage.Prepare)
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(studio):
        runpy.run_path(str(ROOT / "deploy.py"))  # the real deploy.py, as pyinfra loads it for the studio
        state.set_stage(StateStage.Execute)
        state.is_executing = True  # as pyinfra's run: `_if` conditions are evaluated now
        ran = []
        for op_hash in state.get_op_order():
            op = state.ops[studio].get(op_hash)
            if op is None:
                continue
            commands = list(op.command_generator())
            op.operation_meta.set_complete(True, commands, CommandOutput([]))
            ran.append((sorted(state.op_meta[op_hash].names)[0], commands))
    hostos.forget()
    return ran


def shell_lines(ran) -> list[str]:
    return [str(c.get_raw_value()) for _, commands in ran for c in commands if not isinstance(c, FileUploadCommand)]


def uploads(ran) -> dict[str, bytes]:
    """Final path -> content of every file the deploy uploads (uploaded beside it, then moved)."""
    found = {}
    for _, commands in ran:
        for c in commands:
            if isinstance(c, FileUploadCommand):
                src = c.src.getvalue() if isinstance(c.src, BytesIO) else open(c.src, "rb").read()
                found[c.dest.removesuffix(".upload")] = src
    return found


@pytest.fixture
def registry(data):
    return build(data)


def test_fresh_mac_gets_a_plist_per_model_loaded_with_launchctl(monkeypatch, registry):
    ran = run_studio_deploy(monkeypatch, registry, recorded_mac(registry, installed=False))
    lines = shell_lines(ran)
    files = uploads(ran)
    models = studio_models(registry)
    assert len(models) == 5
    for m in models:
        label = mlx_task.launchd_label(registry, m)
        path = f"{LAUNCHD}/{label}.plist"
        plist = plistlib.loads(files[path])
        assert plist["Label"] == label
        assert plist["ProgramArguments"] == mlx_task.server_argv(registry, m)
        assert plist["ProgramArguments"][0].endswith("/venv/bin/mlx_lm.server")
        assert plist["ProgramArguments"][plist["ProgramArguments"].index("--port") + 1] == str(m.port)
        assert plist["ProgramArguments"][plist["ProgramArguments"].index("--model") + 1] == m.upstream
        assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
        assert plist["StandardOutPath"].endswith(f"{m.name}.out.log")
        assert plist["StandardErrorPath"].endswith(f"{m.name}.err.log")
        assert plist["EnvironmentVariables"]["HF_HOME"].startswith(registry.settings("studio")["mlx_home"])
        assert f"chown root:wheel {path}.upload" in lines
        assert f"launchctl bootout system/{label} 2>/dev/null || true" in lines
        assert f"launchctl bootstrap system {path}" in lines
        assert not any(f"kickstart -k system/{label}" in line for line in lines)
    # the environment: pinned mlx (not mlx[cpu]) and mlx-lm, built by uv without Linux's cert flag
    build = next(line for line in lines if "pip install" in line and "mlx-lm==" in line)
    assert f"mlx=={registry.settings('studio')['mlx_version']}" in build and "mlx[cpu]" not in build
    assert "--system-certs" not in build
    assert not any(re.search(r"\b(systemctl|apt-get|useradd|groupadd)\b", line) for line in lines)


def test_converged_mac_runs_nothing(monkeypatch, registry):
    ran = run_studio_deploy(monkeypatch, registry, recorded_mac(registry, installed=True))
    assert [(name, commands) for name, commands in ran if commands] == []


def test_one_changed_plist_reloads_only_its_job(monkeypatch, registry):
    victim = studio_models(registry)[1]
    label = mlx_task.launchd_label(registry, victim)
    ran = run_studio_deploy(monkeypatch, registry, recorded_mac(registry, installed=True, changed_plist=label))
    lines = shell_lines(ran)
    assert [line for line in lines if line.startswith("launchctl")] == [
        f"launchctl bootout system/{label} 2>/dev/null || true",
        f"launchctl bootstrap system {LAUNCHD}/{label}.plist",
    ]
    assert set(uploads(ran)) == {f"{LAUNCHD}/{label}.plist"}


def test_new_pins_rebuild_the_environment_and_restart_every_job(monkeypatch, registry):
    ran = run_studio_deploy(monkeypatch, registry, recorded_mac(registry, installed=True, new_pins=True))
    lines = shell_lines(ran)
    launchctl = [line for line in lines if line.startswith("launchctl")]
    assert launchctl == [
        f"launchctl kickstart -k system/{mlx_task.launchd_label(registry, m)}" for m in studio_models(registry)
    ]
    assert any(line.startswith(f"rm -rf {registry.settings('studio')['mlx_home']}/venv") for line in lines)
