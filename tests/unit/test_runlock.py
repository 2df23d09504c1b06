"""One deploy at a time per host: the lock's shell, run here on a file; the run taking every
host before its first operation and giving back after its last; how a holder is judged alive or
gone."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from pyinfra.api.exceptions import DeployError

from tasks import runlock
from tasks.facts import DeployLock


def fact(cls, **kwargs):
    out = subprocess.run(["sh", "-c", cls().command(**kwargs)], capture_output=True, text=True, check=True)
    return cls().process(out.stdout.splitlines())


def shell(command: str, cwd=None) -> list[str]:
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=True, cwd=cwd
    ).stdout.splitlines()


def test_the_lock_is_taken_once_and_given_back_only_by_its_holder(tmp_path):
    lock = str(tmp_path / "deploy.lock")
    assert fact(DeployLock, path=lock) is None
    assert shell(runlock.take_command(lock, '{"run": "a"}')) == ["taken"]
    assert shell(runlock.take_command(lock, '{"run": "b"}')) == ["held", '{"run": "a"}']
    assert fact(DeployLock, path=lock) == '{"run": "a"}'
    assert shell(runlock.give_back_command(lock, '{"run": "b"}')) == []  # not b's to give
    # A takeover replaces only the record it read: a lock taken since by another run stays.
    assert shell(runlock.take_command(lock, '{"run": "b"}', replace='{"run": "x"}'))[0] == "held"
    assert shell(runlock.take_command(lock, '{"run": "b"}', replace='{"run": "a"}')) == ["taken"]
    assert shell(runlock.give_back_command(lock, '{"run": "b"}')) == ["given back"]
    assert fact(DeployLock, path=lock) is None


class FakeHost:
    """A host whose commands run here, in a folder of its own (the lock's path is relative)."""

    def __init__(self, name, folder):
        self.name, self.folder, self.data = name, folder, {"_sudo": True}
        folder.mkdir()

    def run_shell_command(self, command, **arguments):
        assert arguments == {"_sudo": True}  # as the host's other commands: through sudo
        return True, SimpleNamespace(stdout_lines=shell(str(command), cwd=self.folder))

    def lock(self):
        path = self.folder / "deploy.lock"
        return path.read_text().strip() if path.exists() else None


class FakeState:
    """The run's operations (hashes, in order) on every host; each will change its host unless
    the host is one of unchanged."""

    def __init__(self, hosts, order, unchanged=()):
        self.active, self.order, self.ran = list(hosts), order, set()
        self.inventory = SimpleNamespace(get_active_hosts=lambda: list(self.active))
        self.ops = {
            h: {o: SimpleNamespace(operation_meta=SimpleNamespace(will_change=h.name not in unchanged)) for o in order}
            for h in hosts
        }

    def get_op_order(self):
        return self.order

    def get_op_data_for_host(self, target, op_hash):
        """What pyinfra records of an operation run on a host: executed when it ran commands."""
        return SimpleNamespace(operation_meta=SimpleNamespace(executed=(target.name, op_hash) in self.ran))


def planned(tmp_path, **found):
    hosts = {name: FakeHost(name, tmp_path / name) for name in ("mini", "studio")}
    locks = runlock.Locks(path="deploy.lock")
    locks.planned = {hosts[name]: found.get(name, "") for name in hosts}  # what plan() read
    return hosts, locks


def test_the_run_takes_before_its_first_operation_and_gives_back_after_its_last(tmp_path):
    hosts, locks = planned(tmp_path)
    state = FakeState(hosts.values(), ["first", "second", "last"])
    locks.operation_start(state, "first")
    assert [h.lock() for h in hosts.values()] == [runlock.record()] * 2
    locks.operation_end(state, "first")
    locks.operation_start(state, "second")
    locks.operation_end(state, "second")
    assert [h.lock() for h in hosts.values()] == [runlock.record()] * 2
    locks.operation_start(state, "last")
    locks.operation_end(state, "last")
    assert [h.lock() for h in hosts.values()] == [None, None]


def test_a_host_the_run_leaves_as_it_is_is_neither_taken_nor_given_back(tmp_path):
    hosts, locks = planned(tmp_path)
    mini_ran = []
    hosts["mini"].run_shell_command = lambda command, **arguments: mini_ran.append(command)
    state = FakeState(hosts.values(), ["first", "last"], unchanged=["mini"])
    locks.operation_start(state, "first")
    assert hosts["studio"].lock() == runlock.record()  # the host it changes
    locks.operation_end(state, "first")
    locks.operation_start(state, "last")
    locks.operation_end(state, "last")
    assert hosts["studio"].lock() is None and hosts["mini"].lock() is None and mini_ran == []  # not one command


def test_a_host_judged_unchanged_is_taken_right_after_an_operation_ran_commands_there(tmp_path):
    hosts, locks = planned(tmp_path)
    state = FakeState(hosts.values(), ["first", "second", "last"], unchanged=["mini", "studio"])
    locks.operation_start(state, "first")
    locks.operation_host_success(state, hosts["mini"], "first")  # it ran nothing
    locks.operation_end(state, "first")
    assert [h.lock() for h in hosts.values()] == [None, None]
    state.ran.add(("mini", "second"))  # the host changed since it was read: the operation ran a command
    locks.operation_start(state, "second")
    locks.operation_host_error(state, hosts["mini"], "second", 0, 0)
    state.active.remove(hosts["mini"])  # it failed: pyinfra took it out of the run
    locks.operation_end(state, "second")
    locks.operation_start(state, "last")
    locks.operation_end(state, "last")
    assert hosts["mini"].lock() == runlock.record() and hosts["studio"].lock() is None  # kept for the next run


def test_a_gone_runs_lock_is_taken_over_even_where_nothing_changes(tmp_path):
    dead = json.dumps({**runlock.RUN, "run": "gone", "pid": "999999999", "pid_start": "gone"})
    hosts, locks = planned(tmp_path, mini=dead)
    (tmp_path / "mini" / "deploy.lock").write_text(dead + "\n")
    locks.operation_start(FakeState(hosts.values(), ["first", "last"], unchanged=["mini", "studio"]), "first")
    assert hosts["mini"].lock() == runlock.record() and hosts["studio"].lock() is None


def test_a_host_that_failed_keeps_its_lock_for_the_next_run(tmp_path):
    hosts, locks = planned(tmp_path)
    state = FakeState(hosts.values(), ["only"])
    locks.operation_start(state, "only")
    state.active.remove(hosts["studio"])  # pyinfra took it out of the run
    locks.operation_end(state, "only")
    assert hosts["mini"].lock() is None and hosts["studio"].lock() == runlock.record()


def test_a_lock_taken_since_it_was_read_refuses_the_run_before_any_operation(tmp_path):
    hosts, locks = planned(tmp_path)
    other = json.dumps({**runlock.RUN, "run": "other", "user": "sam", "command": "pyinfra inventory.py deploy.py"})
    (tmp_path / "studio" / "deploy.lock").write_text(other + "\n")
    with pytest.raises(DeployError) as err:
        locks.operation_start(FakeState(hosts.values(), ["first"]), "first")
    assert str(err.value).startswith(f"studio: another deploy holds this host: sam@{runlock.RUN['control']}")
    assert hosts["mini"].lock() is None  # given back before refusing
    assert hosts["studio"].lock() == other


def test_a_gone_runs_lock_is_taken_over(tmp_path):
    dead = json.dumps({**runlock.RUN, "run": "gone", "pid": "999999999", "pid_start": "gone"})
    hosts, locks = planned(tmp_path, studio=dead)
    (tmp_path / "studio" / "deploy.lock").write_text(dead + "\n")
    locks.operation_start(FakeState(hosts.values(), ["first"]), "first")
    assert [h.lock() for h in hosts.values()] == [runlock.record()] * 2


def test_a_holder_of_this_machine_is_gone_when_its_process_is():
    assert not runlock.holder_is_gone(runlock.RUN)  # this very process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = runlock._process_start(child.pid)
    child.wait()
    assert runlock.holder_is_gone({**runlock.RUN, "pid": child.pid, "pid_start": started})
    # The same pid reused by another process is not the holder either.
    assert runlock.holder_is_gone({**runlock.RUN, "pid_start": "not-when-it-started"})


def test_a_holder_elsewhere_is_never_presumed_gone():
    assert not runlock.holder_is_gone({**runlock.RUN, "control": "another-machine", "pid": 1, "pid_start": None})


def test_the_refusal_names_the_holder():
    holder = {
        **runlock.RUN,
        "user": "chris",
        "control": "laptop",
        "pid": 4242,
        "command": "pyinfra inventory.py deploy.py",
    }
    text = runlock.describe(holder)
    assert text.startswith("chris@laptop pid 4242 (pyinfra inventory.py deploy.py), for ")
