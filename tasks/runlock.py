"""One deploy at a time per host: a lock file on the host naming the run that holds it, taken
before the run's first operation and given back after its last.

While deploy.py prepares, the lock is only read (facts.DeployLock): a host held by a live run is
refused there with one line naming the holder, before any change. A lock whose holder is gone
(its process on this control machine no longer runs, or the operator says so with
llm_break_lock) is planned to be taken over: that is the lock a failed or interrupted run leaves,
and this run then waits for what it may have left starting (took_over()).

The writes are pyinfra callbacks of the run (Locks is one, attached once deploy.py plans):
before the first operation every planned host that the run changes (or whose lock a gone run left)
is taken at once (atomically, replacing only the record that was read), and a host taken since by
another run refuses the whole run before any operation; a host the run leaves as it is is not
taken, since nothing is done there (a converged run writes no lock), unless an operation runs a
command there after all (the host changed since it was read): it is taken right after that
operation, and refused then if another run took it meanwhile; after the last operation
every host still running gives back its lock, while a host that failed keeps it for the next run
to take over. A dry run, or a run the operator declines at pyinfra's prompt, executes no
operation and so takes nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid

from pyinfra import host, state
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import DeployError
from pyinfra.api.state import BaseStateCallback
from pyinfra.context import ctx_host, ctx_state

from tasks.facts import DeployLock

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


def parse(text: str) -> dict:
    try:
        found = json.loads(text)
        return found if isinstance(found, dict) else {"command": text[:80]}
    except ValueError:
        return {"command": f"unreadable lock {text[:80]!r}"}


def refusal(host_name: str, holder: dict) -> DeployError:
    return DeployError(
        f"{host_name}: another deploy holds this host: {describe(holder)} ({LOCK}); wait for it "
        f"to end, or, if it is gone, run with --data llm_break_lock=true"
    )


def take_command(path: str, record: str, replace: str = "") -> str:
    """Shell: take the lock for record when no run holds it (atomically, with the shell's
    noclobber), after removing a lock that still reads replace (a gone run's). Prints "taken", or
    "held" and the holder's record."""
    p, r = shlex.quote(path), shlex.quote(record)
    swap = f'[ "$(cat {p} 2>/dev/null)" = {shlex.quote(replace)} ] && rm -f {p}; ' if replace else ""
    return (
        f"{swap}if (set -C; printf '%s\\n' {r} > {p}) 2>/dev/null; then chmod 644 {p}; echo taken; "
        f"else echo held; cat {p}; fi"
    )


def give_back_command(path: str, record: str) -> str:
    """Shell: remove the lock if it still holds record. Prints "given back" when it did."""
    p = shlex.quote(path)
    return f'if [ "$(cat {p} 2>/dev/null)" = {shlex.quote(record)} ]; then rm -f {p}; echo given back; fi; true'


def will_change(state, target) -> bool:
    """Whether any operation planned for target will change it: each operation's own will_change,
    as pyinfra reckons it (its commands generated from the facts read so far), in the run's order,
    up to the first that will. One that cannot tell before the run (it raises) counts as a change."""
    with ctx_state.use(state), ctx_host.use(target):
        for op_hash in state.get_op_order():
            data = state.ops[target].get(op_hash)
            try:
                if data is not None and data.operation_meta.will_change:
                    return True
            except Exception:
                if target in state.failed_hosts or not state.active_hosts:
                    raise  # a fact that failed the host (or the run): as pyinfra would
                return True  # an operation's own error is raised when it runs
    return False


class Locks(BaseStateCallback):
    """The run's locks: planned while deploy.py prepares, taken and given back around the run's
    operations (pyinfra's callbacks, which pyinfra calls with the State first)."""

    def __init__(self, path: str = LOCK):
        self.path = path
        self.planned: dict = {}  # pyinfra Host -> the gone run's record to replace ("" when free)
        self.taken: set = set()  # Hosts whose lock this run holds
        self._order: list | None = None  # the run's operations, read at its first

    def plan(self, break_lock: bool) -> None:
        """While preparing this host: refuse it if a live run holds it, else plan to take it."""
        found = host.get_fact(DeployLock, path=self.path)
        if found is not None and not break_lock and not holder_is_gone(parse(found)):
            raise refusal(host.name, parse(found))
        self.planned[ctx_host.get()] = found or ""
        if self not in state.callback_handlers:
            state.add_callback_handler(self)

    def took_over(self) -> bool:
        """Whether this run takes this host's lock from a run that is gone (interrupted or
        failed): that run may have left services starting, which this run must wait for too."""
        return bool(self.planned.get(ctx_host.get()))

    @staticmethod
    def _run(target, command: str) -> list[str]:
        ok, output = target.run_shell_command(StringCommand(command), _sudo=bool(target.data.get("_sudo")))
        if not ok:
            raise DeployError(f"{target.name}: could not read or write the deploy lock {LOCK}")
        return output.stdout_lines

    def take(self, hosts, changes=lambda target: True) -> None:
        """Take every planned host of hosts that this run changes (changes(host): whether any of
        its operations will change it) or whose lock a gone run left; if one is held by another
        run since it was read, give back those taken and refuse the run, naming the holder. A host
        the run leaves as it is, with its lock free, is neither taken nor given back: two sudo'd
        commands fewer, and nothing done there for another run to wait for."""
        wanted = [h for h in hosts if h in self.planned and h not in self.taken]
        for target in [h for h in wanted if self.planned[h] or changes(h)]:
            out = self._run(target, take_command(self.path, record(), self.planned[target]))
            if out[:1] != ["taken"]:
                self.give_back(list(self.taken))
                raise refusal(target.name, parse("\n".join(out[1:])))
            self.taken.add(target)

    def give_back(self, hosts) -> None:
        for target in [h for h in hosts if h in self.taken]:
            self._run(target, give_back_command(self.path, record()))
            self.taken.discard(target)

    def operation_start(self, state, op_hash):
        if self._order is None:
            self._order = state.get_op_order()
        if op_hash == self._order[0]:
            self.take(state.inventory.get_active_hosts(), lambda target: will_change(state, target))

    def operation_host_success(self, state, host, op_hash, retry_count=0):
        self._changed_unlocked(state, host, op_hash)

    def operation_host_error(self, state, host, op_hash, *args, **kwargs):
        self._changed_unlocked(state, host, op_hash)

    def _changed_unlocked(self, state, target, op_hash) -> None:
        """An operation ran commands on a host the look ahead judged unchanged (the host changed
        in between): the lock is taken now, so that the rest of the run holds it, and a host that
        fails keeps it, as for every host the run changes."""
        if target in self.planned and target not in self.taken:
            if state.get_op_data_for_host(target, op_hash).operation_meta.executed:
                self.take([target])

    def operation_end(self, state, op_hash):
        if op_hash == self._order[-1]:
            self.give_back(state.inventory.get_active_hosts())
