"""One deploy at a time per host: a lock file on the host naming the run that holds it, taken
before any change and given back after the last operation.

Taken while deploy.py prepares (facts.DeployLockTake), so a refusal comes before any change and a
converged run still reports no change; given back when pyinfra ends the last operation (a state
callback). A run that finds the lock held by a live run refuses with one line naming it. A lock
whose holder is gone (its process on this control machine no longer runs, or the operator says
so with llm_break_lock) is taken over: that is the lock a failed or interrupted run leaves. A
dry run only looks (it changes nothing, so it takes nothing).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import gevent
from pyinfra import host, state
from pyinfra.api.exceptions import DeployError
from pyinfra.api.state import BaseStateCallback

from tasks.facts import DeployLock, DeployLockGiveBack, DeployLockTake

LOCK = "/var/run/llmlab-deploy.lock"  # emptied at boot on Linux (/run) and on macOS


def _process_start(pid: int) -> str | None:
    """When a process of this machine started (a reused pid is another process), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.strip() or None


# This run, as the lock names it: from where, which process, who, since when, what command.
RUN = {
    "run": uuid.uuid4().hex,
    "control": socket.gethostname(),
    "pid": os.getpid(),
    "pid_start": _process_start(os.getpid()),
    "user": getpass.getuser(),
    "since": int(time.time()),
    "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:200],
}
_TAKEN: set[str] = set()
_TAKEN_OVER: set[str] = set()  # hosts whose lock this run took from a run that is gone


def record() -> str:
    return json.dumps(RUN, sort_keys=True)


def describe(holder: dict) -> str:
    age = int(time.time()) - int(holder.get("since") or time.time())
    return (
        f"{holder.get('user', '?')}@{holder.get('control', '?')} pid {holder.get('pid', '?')} "
        f"({holder.get('command', '?')}), for {age} s"
    )


def holder_is_gone(holder: dict) -> bool:
    """Only a holder on this control machine can be known dead: its process no longer runs."""
    if holder.get("control") != RUN["control"] or not str(holder.get("pid", "")).isdigit():
        return False
    return _process_start(int(holder["pid"])) != holder.get("pid_start")


def _parse(text: str) -> dict:
    try:
        found = json.loads(text)
        return found if isinstance(found, dict) else {"command": text[:80]}
    except ValueError:
        return {"command": f"unreadable lock {text[:80]!r}"}


def _refuse(holder: dict) -> DeployError:
    return DeployError(
        f"{host.name}: another deploy holds this host: {describe(holder)} ({LOCK}); wait for it "
        f"to end, or, if it is gone, run with --data llm_break_lock=true"
    )


def _dry_run() -> bool:
    try:
        import click

        return bool(click.get_current_context().params.get("dry"))
    except (ImportError, RuntimeError):
        return False


def take(break_lock: bool) -> None:
    """Take this host for this run, or refuse naming who holds it (before any change)."""
    if _dry_run():
        found = host.get_fact(DeployLock, path=LOCK)
        if found is not None and not break_lock and not holder_is_gone(_parse(found)):
            raise _refuse(_parse(found))
        return
    first = host.get_fact(DeployLockTake, path=LOCK, record=record())
    if not first["taken"]:
        holder = _parse(first["holder"])
        if not break_lock and not holder_is_gone(holder):
            raise _refuse(holder)
        again = host.get_fact(DeployLockTake, path=LOCK, record=record(), replace=first["holder"])
        if not again["taken"]:
            raise _refuse(_parse(again["holder"]))
        _TAKEN_OVER.add(host.name)
    _TAKEN.add(host.name)
    if not any(isinstance(h, _GiveBack) for h in state.callback_handlers):
        state.add_callback_handler(_GiveBack())


def took_over() -> bool:
    """Whether this run took this host's lock from a run that is gone (interrupted or failed):
    that run may have left services starting, which this run must then wait for too."""
    return host.name in _TAKEN_OVER


class _GiveBack(BaseStateCallback):
    """After the last operation: every host still running gives its lock back. A host that
    failed keeps it, and the next run, seeing this run gone, takes it over."""

    @staticmethod
    def operation_end(state, op_hash):
        order = state.get_op_order()
        if not order or op_hash != order[-1]:
            return
        holders = [h for h in state.inventory.get_active_hosts() if h.name in _TAKEN]
        gevent.joinall([state.pool.spawn(h.get_fact, DeployLockGiveBack, path=LOCK, record=record()) for h in holders])
        _TAKEN.difference_update(h.name for h in holders)
