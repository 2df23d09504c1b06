"""Running the real deploy.py for one host against recorded facts, without a connection.

As in pyinfra's own operation tests, facts come from a recording instead of a host: any fact the
deploy asks for that the recording lacks fails the test, so the recording is exactly what the
deploy reads. The operations then run in pyinfra's order with a fake executor that records their
commands and reports them as done, so `_if` conditions see real results."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, FunctionCommand
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from tasks import run, runlock

from .conftest import HOSTS, ROOT

SUDO_PASSWORD = "recorded-sudo-password"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fact_key(name: str, **kwargs) -> tuple:
    """How a recording names a fact: its class name and its arguments (global ones left out)."""
    return (name, tuple(sorted((k, v) for k, v in kwargs.items() if not k.startswith("_"))))


RECORDINGS = Path(__file__).parent / "recordings"


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def recording(name: str) -> dict:
    """The facts captured from a real host (tests/unit/recordings/<name>.json, written by
    `python -m lab capture` through tasks/capture.py): fact key -> value."""
    data = json.loads((RECORDINGS / f"{name}.json").read_text())
    return {fact_key(f["fact"], **{k: _hashable(v) for k, v in f["args"].items()}): f["value"] for f in data["facts"]}


def system_of(facts: dict):
    """The tasks.hostos.System a recording's HostFacts describe."""
    from tasks.hostos import System

    return System(**{("login" if k == "user" else k): v for k, v in facts[fact_key("HostFacts")].items()})


def host_facts(system) -> dict:
    """What the HostFacts fact reads on a host that is `system` (a tasks.hostos.System)."""
    return {
        "kernel": system.kernel,
        "arch": system.arch,
        "user": system.login,
        "home": system.home,
        "os": system.os,
        "version": system.version,
        "name": system.name,
        "memory": system.memory,
        "cpus": system.cpus,
        "sudo": system.sudo,
    }


def run_deploy(
    monkeypatch, registry, target: str, facts: dict, sudo: bool = True, sudo_password: str | None = SUDO_PASSWORD
):
    """deploy.py for host `target` against `facts`; returns [(operation name, [commands])].
    sudo_password: what the environment gives (None: nothing)."""
    for name in ("LLMLAB_SUDO_PASSWORD", f"LLMLAB_SUDO_PASSWORD_{target.upper()}"):
        monkeypatch.delenv(name, raising=False)
    if sudo_password is not None:
        monkeypatch.setenv("LLMLAB_SUDO_PASSWORD", sudo_password)
    inventory = Inventory(
        ([(name, {"llm_address": address, "_sudo": sudo}) for name, address in HOSTS.items()], {}),
        mini=(["mini"], {}),
        studio=(["studio"], {}),
    )
    # TEMP_DIR given: pyinfra memoizes the TmpDir fact across hosts, which would make what is
    # asked depend on the order of the tests.
    state = State(inventory, Config(TEMP_DIR="/tmp"), check_for_changes=False)
    asked = set()

    # Every deploy reads the host's lock (tasks/runlock.py): free on these recorded hosts.
    lock = fact_key("DeployLock", path=runlock.LOCK)
    facts = {lock: None, **facts}

    def get_fact(self, fact_cls, *args, **kwargs):
        key = fact_key(fact_cls.__name__, **kwargs)
        asked.add(key)
        if key not in facts:
            raise AssertionError(
                f"the deploy asked for a fact the recording lacks: {key} (a recording of tests/unit/recordings/ "
                f"is captured again by ./labctl capture HOST FILE)"
            )
        return facts[key]

    monkeypatch.setattr(Host, "get_fact", get_fact)
    run.begin(registry, state)
    host = inventory.get_host(target)
    state.set_stage(StateStage.Prepare)
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(host):
        runpy.run_path(str(ROOT / "deploy.py"))  # the real deploy.py, as pyinfra loads it
        state.set_stage(StateStage.Execute)
        state.is_executing = True  # as pyinfra's run: `_if` conditions are evaluated now
        ran = []
        for op_hash in state.get_op_order():
            op = state.ops[host].get(op_hash)
            if op is None:
                continue
            commands = list(op.command_generator())
            op.operation_meta.set_complete(True, commands, CommandOutput([]))
            ran.append((sorted(state.op_meta[op_hash].names)[0], commands))
    unused = set(facts) - asked - {lock}  # a deploy refused before the lock never asks for it
    assert not unused, f"the recording holds facts the deploy never asked for: {sorted(unused)}"
    return ran


def shell_lines(ran) -> list[str]:
    """Every shell command the deploy runs, in order; those joined into one remote command
    (tasks/shell.py) one by one."""
    return [
        str(part.get_raw_value())
        for _, commands in ran
        for c in commands
        if not isinstance(c, (FileUploadCommand, FunctionCommand))
        for part in getattr(c, "parts", [c])
    ]


def remote_commands(ran) -> list[str]:
    """The remote shell commands the deploy runs (joined ones as one), in order."""
    return [
        str(c.get_raw_value())
        for _, commands in ran
        for c in commands
        if not isinstance(c, (FileUploadCommand, FunctionCommand))
    ]


def upload_steps(ran) -> list[str]:
    """shell_lines with the steps of each upload's commands (joined by &&) one per line."""
    return [step for line in shell_lines(ran) for step in line.split(" && ")]


def functions(ran) -> list[tuple[str, tuple]]:
    """(operation name, arguments) of every step run on the control machine (FunctionCommand)."""
    return [(name, c.args) for name, commands in ran for c in commands if isinstance(c, FunctionCommand)]


def uploads(ran) -> dict[str, bytes]:
    """Final path -> content of every file the deploy uploads (uploaded beside it, or into the
    staging folder and copied beside it, then moved into place)."""
    found = {}
    for _, commands in ran:
        for i, c in enumerate(commands):
            if isinstance(c, FileUploadCommand):
                if isinstance(c.src, str):
                    src = Path(c.src).read_bytes()
                else:
                    c.src.seek(0)
                    src = c.src.read()
                dest = c.dest
                for later in commands[i + 1 :]:  # staged: the command that copies it beside dest
                    text = "" if isinstance(later, (FileUploadCommand, FunctionCommand)) else str(later.get_raw_value())
                    if f"cp {c.dest} " in text:
                        dest = text.split(f"cp {c.dest} ", 1)[1].split()[0]
                        break
                found[dest.removesuffix(".upload")] = src
    return found


def upload_commands(ran) -> list[FileUploadCommand]:
    return [c for _, commands in ran for c in commands if isinstance(c, FileUploadCommand)]


def staging_paths(ran) -> set[str]:
    """Where each upload passed through before sudo copied it into place."""
    return {c.dest for _, commands in ran for c in commands if isinstance(c, FileUploadCommand)}
