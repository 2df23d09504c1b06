"""The contract of tasks/ops.py with pyinfra's two passes, on a fake host (no connection): what
the operations yield, and what will_change / did_change() and Affected report, when nothing
changes and when one file changed. Facts come from a dict; a fact not in it fails the test."""

from __future__ import annotations

import re

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from tasks import hostos, ops, run
from tasks.render import sha256_text

ROOT_DEBIAN = hostos.System(
    os="debian",
    version="12",
    name="Debian GNU/Linux 12 (bookworm)",
    arch="x86_64",
    kernel="Linux",
    memory=8 << 30,
    cpus=2,
    login="root",
    home="/root",
    sudo="root",
)
UNITS = {"a.service": "/etc/systemd/system/a.service", "b.service": "/etc/systemd/system/b.service"}
TEXT = {path: f"[Unit]\nDescription={unit}\n" for unit, path in UNITS.items()}


def snapshot(affected: ops.Affected) -> dict:
    """What an Affected holds now, for every host (a copy)."""
    return {h: set(items) for h, items in affected._by_host.items()}


def facts(drifted: str | None = None, inactive: str | None = None) -> dict:
    states = [
        {
            "user": "root",
            "group": "root",
            "mode": "644",
            "sha256": sha256_text(TEXT[p] + ("# edited\n" if p == drifted else "")),
        }
        for p in UNITS.values()
    ]
    return {
        ("FileStates", (("paths", tuple(UNITS.values())),)): states,
        ("UnitStates", (("units", tuple(UNITS)),)): {
            u: ("enabled", "inactive" if u == inactive else "active") for u in UNITS
        },
    }


def run_two_passes(monkeypatch, recorded: dict):
    """Declare the operations with change detection on (pyinfra without -y), then execute them
    as pyinfra does. Returns (will_change per op, commands per op, did_change per op, affected)."""
    inventory = Inventory((["h"], {}))
    state = State(inventory, Config(), check_for_changes=True)

    def get_fact(self, fact_cls, *args, **kwargs):
        key = (fact_cls.__name__, tuple(sorted((k, v) for k, v in kwargs.items() if not k.startswith("_"))))
        if key not in recorded:
            raise AssertionError(f"unrecorded fact {key}")
        return recorded[key]

    monkeypatch.setattr(Host, "get_fact", get_fact)
    run.begin(None, state).systems["h"] = ROOT_DEBIAN
    h = inventory.get_host("h")
    written, restarted, started = ops.Affected(), ops.Affected(), ops.Affected()
    state.set_stage(StateStage.Prepare)
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(h):
        metas = {
            "files": ops.text_files(
                name="units", files=TEXT, written=written, then=lambda changed: ["systemctl daemon-reload"]
            ),
            "run": ops.units_running(
                name="run",
                units={u: (p, []) for u, p in UNITS.items()},
                written=written,
                restarted=restarted,
                started=started,
            ),
        }
        prepared = {name: meta.will_change for name, meta in metas.items()}
        # What change detection recorded, having stopped each generator at its first command.
        planned = {"written": snapshot(written), "restarted": snapshot(restarted), "started": snapshot(started)}
        state.set_stage(StateStage.Execute)
        state.is_executing = True
        commands = {}
        for name, meta in metas.items():
            op = state.ops[h][meta._hash]
            commands[name] = list(op.command_generator())
            op.operation_meta.set_complete(True, commands[name], CommandOutput([]))
        did = {name: meta.did_change() for name, meta in metas.items()}
    return (
        prepared,
        commands,
        did,
        {"written": written, "restarted": restarted, "started": started, "host": h, "planned": planned},
    )


def test_converged_host_yields_nothing_in_either_pass(monkeypatch):
    prepared, commands, did, _ = run_two_passes(monkeypatch, facts())
    assert prepared == {"files": False, "run": False}
    assert commands == {"files": [], "run": []}
    assert did == {"files": False, "run": False}


def test_one_changed_file_restarts_only_its_unit_at_execution(monkeypatch):
    drifted = UNITS["b.service"]
    prepared, commands, did, affected = run_two_passes(monkeypatch, facts(drifted=drifted))
    # Execution: the file is uploaded (beside it, then moved), Affected holds it, and the
    # restart operation, run after it, restarts that unit alone.
    uploads = [c for c in commands["files"] if isinstance(c, FileUploadCommand)]
    assert [u.dest for u in uploads] == [f"{drifted}.upload"]
    assert did == {"files": True, "run": True}
    with ctx_host.use(affected["host"]):
        assert drifted in affected["written"] and UNITS["a.service"] not in affected["written"]
        assert "b.service" in affected["restarted"] and "a.service" not in affected["restarted"]
        assert "a.service" not in affected["started"] and "b.service" not in affected["started"]
    # systemd reads the new unit in the same command, after the file is in place (joined: one
    # remote command, each part run only if the one before succeeded).
    file_commands = [str(c.get_raw_value()) for c in commands["files"] if not isinstance(c, FileUploadCommand)]
    assert re.search(r"&& \{ systemctl daemon-reload\s*\}$", file_commands[-1]), file_commands
    assert file_commands[-1].index(f"mv -f {drifted}.upload {drifted}") < file_commands[-1].index("daemon-reload")
    assert [str(c.get_raw_value()) for c in commands["run"]] == ["systemctl try-restart b.service"]
    # Recorded before each operation's first command: change detection saw the same.
    assert affected["planned"] == {
        "written": {"h": {drifted}},
        "restarted": {"h": {"b.service"}},
        "started": {"h": set()},
    }
    # Change detection: pyinfra stops the file operation's generator at its first command, and
    # it has recorded every file it will upload before that, so the restart operation predicts
    # the restart the real run above makes (the dry run's plan is what the run does).
    assert prepared == {"files": True, "run": True}


def test_changed_unit_of_a_stopped_service_is_started_with_it(monkeypatch):
    """A unit whose file changed while its service is stopped: systemd reloads, try-restart
    leaves the stopped service alone and start runs it, in the one command; the unit counts as
    restarted and as started, in the plan as in the run."""
    drifted = UNITS["b.service"]
    prepared, commands, did, affected = run_two_passes(monkeypatch, facts(drifted=drifted, inactive="b.service"))
    assert prepared == {"files": True, "run": True} and did == {"files": True, "run": True}
    run = [str(c.get_raw_value()) for c in commands["run"]]
    assert len(run) == 1
    assert re.fullmatch(r"\{ systemctl try-restart b\.service\s*\} && \{ systemctl start b\.service\s*\}", run[0]), run
    both = {"h": {"b.service"}}
    assert affected["planned"] == {"written": {"h": {drifted}}, "restarted": both, "started": both}


class _Changed:
    """An input operation that changed something (both passes)."""

    will_change = True

    def did_change(self):
        return True

    def is_complete(self):
        return True


def test_launchd_job_not_loaded_is_loaded_not_kickstarted(monkeypatch):
    """launchd_running: a job someone booted out is bootstrapped (which starts it with what
    changed; kickstart would fail on it), a loaded one whose input changed is kickstarted, a
    loaded one with nothing changed is left alone, and one whose plist this run wrote (loaded
    with it) is neither, even if the host said "not loaded" before the run (a dry run's view)."""
    jobs = {
        "lab.a": ("/L/lab.a.plist", [_Changed()]),
        "lab.b": ("/L/lab.b.plist", [_Changed()]),
        "lab.c": ("/L/lab.c.plist", []),
        "lab.d": ("/L/lab.d.plist", [_Changed()]),
    }
    recorded = {
        ("LaunchdJobs", (("labels", tuple(jobs)),)): {"lab.a": True, "lab.b": False, "lab.c": True, "lab.d": False}
    }
    inventory = Inventory((["h"], {}))
    state = State(inventory, Config(), check_for_changes=True)
    monkeypatch.setattr(
        Host,
        "get_fact",
        lambda self, cls, *a, **kw: recorded[
            (cls.__name__, tuple(sorted((k, v) for k, v in kw.items() if not k.startswith("_"))))
        ],
    )
    h = inventory.get_host("h")
    written, restarted, loaded = ops.Affected(), ops.Affected(), ops.Affected()
    state.set_stage(StateStage.Prepare)
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(h):
        written.add("/L/lab.d.plist")
        meta = ops.launchd_running(name="run", jobs=jobs, written=written, restarted=restarted, loaded=loaded)
        # Change detection stopped at the first command, everything recorded by then.
        assert meta.will_change
        assert snapshot(loaded) == {"h": {"lab.b"}} and snapshot(restarted) == {"h": {"lab.a"}}
        state.set_stage(StateStage.Execute)
        state.is_executing = True
        commands = [str(c.get_raw_value()) for c in state.ops[h][meta._hash].command_generator()]
        assert [label in loaded for label in jobs] == [False, True, False, False]
        assert [label in restarted for label in jobs] == [True, False, False, False]
    assert len(commands) == 1  # joined: one remote command
    assert re.fullmatch(
        r"\{ launchctl enable system/lab\.b\s*\} && \{ launchctl bootstrap system /L/lab\.b\.plist\s*\} && "
        r"\{ launchctl kickstart -k system/lab\.a\s*\}",
        commands[0],
    ), commands


def _converged_fact(cls, **kwargs):
    """What a converged host answers, for pyinfra's own facts and the toolkit's (root-owned files
    0644 holding TEXT, folders 0755, units enabled and active, a package installed)."""
    import hashlib

    path = kwargs.get("path", "")
    files = dict(TEXT)
    answers = {
        "File": lambda: {"user": "root", "group": "root", "mode": 644, "size": 1} if path in files else None,
        "Directory": lambda: None if path in files else {"user": "root", "group": "root", "mode": 755},
        "Sha1File": lambda: hashlib.sha1(files[path].encode()).hexdigest(),
        "SystemdStatus": lambda: dict.fromkeys(UNITS, True),
        "SystemdEnabled": lambda: dict.fromkeys(UNITS, True),
        "DebPackages": lambda: {"curl": ["8.0"]},
        "FileStates": lambda: [
            {"user": "root", "group": "root", "mode": "644", "sha256": sha256_text(TEXT[p])} for p in kwargs["paths"]
        ],
        "DirectoryStates": lambda: [{"user": "root", "group": "root", "mode": "755"} for _ in kwargs["paths"]],
        "UnitStates": lambda: {u: ("enabled", "active") for u in kwargs["units"]},
        "InstalledDebianPackages": lambda: ["curl"],
    }
    return answers[cls.__name__]()


def test_the_operations_read_a_converged_host_in_fewer_commands_than_pyinfras_own(monkeypatch):
    """Why tasks/ops.py has its own operations: on a converged host pyinfra 3.10's files.put reads
    each file with three commands (File, its folder's Directory, Sha1File), files.directory one
    per folder, systemd.service two per unit; the toolkit's read all of them in one. Both plan no
    change here. When pyinfra's own read as little, this test fails and they should give way."""
    from io import StringIO

    from pyinfra.operations import apt, files, systemd

    asked = []

    def get_fact(self, fact_cls, *args, **kwargs):
        asked.append(fact_cls.__name__)
        return _converged_fact(fact_cls, **{k: v for k, v in kwargs.items() if not k.startswith("_")})

    monkeypatch.setattr(Host, "get_fact", get_fact)
    inventory = Inventory((["h"], {}))
    state = State(inventory, Config(), check_for_changes=True)
    run.begin(None, state).systems["h"] = ROOT_DEBIAN
    folders = sorted({p.rsplit("/", 1)[0] for p in TEXT} | {"/etc/llm-a", "/etc/llm-b"})
    pairs = {
        "files": (
            lambda: [
                files.put(src=StringIO(t), dest=p, user="root", group="root", mode="644") for p, t in TEXT.items()
            ],
            lambda: [ops.text_files(files=TEXT)],
        ),
        "folders": (
            lambda: [files.directory(path=p, user="root", group="root", mode="755") for p in folders],
            lambda: [ops.directories(paths=folders)],
        ),
        "units": (
            lambda: [systemd.service(service=u, running=True, enabled=True) for u in UNITS],
            lambda: [
                ops.units_running(
                    units={u: (p, []) for u, p in UNITS.items()},
                    written=ops.Affected(),
                    restarted=ops.Affected(),
                    started=ops.Affected(),
                )
            ],
        ),
        "packages": (lambda: [apt.packages(packages=["curl"])], lambda: [ops.system_packages(packages=["curl"])]),
    }
    counted = {}
    state.set_stage(StateStage.Prepare)
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(inventory.get_host("h")):
        for what, (theirs, ours) in pairs.items():
            for side, declare in (("pyinfra", theirs), ("ours", ours)):
                asked.clear()
                assert not any(meta.will_change for meta in declare()), (what, side)
                counted[what, side] = len(asked)
    assert counted == {
        ("files", "pyinfra"): 3 * len(TEXT),
        ("files", "ours"): 1,
        ("folders", "pyinfra"): len(folders),
        ("folders", "ours"): 1,
        ("units", "pyinfra"): 2 * len(UNITS),
        ("units", "ours"): 1,
        ("packages", "pyinfra"): 1,  # the same: ours is for dnf and the package lists' age
        ("packages", "ours"): 1,
    }, counted


class _NotRunYet:
    """An input operation the run has not reached: its result cannot be asked yet."""

    def __init__(self, will_change):
        self.will_change = will_change

    def is_complete(self):
        return False

    def did_change(self):
        raise RuntimeError("Cannot evaluate operation result before execution")


def test_an_input_the_run_has_not_reached_is_judged_by_its_will_change_only_in_the_look_ahead():
    """Right before the run's first operation the deploy lock looks ahead (tasks/runlock.py)
    while pyinfra is executing: an operation that asks whether an earlier one changed gets that
    one's will_change, and once it has run, its did_change(). While an operation runs, asking
    about one not run yet is the error it always was."""
    inventory = Inventory((["h"], {}))
    state = State(inventory, Config())
    state.is_executing = True
    h = inventory.get_host("h")
    with ctx_state.use(state), ctx_host.use(h):
        assert ops.changed(_NotRunYet(True)) and not ops.changed(_NotRunYet(False))
        assert ops.changed(_Changed())
        h.executing_op_hash = "an operation"
        with pytest.raises(RuntimeError, match="before execution"):
            ops.changed(_NotRunYet(False))
