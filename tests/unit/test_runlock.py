"""One deploy at a time per host: the lock's shell, run here on a file, and how a holder is
judged alive or gone."""

from __future__ import annotations

import subprocess
import sys

from tasks import runlock
from tasks.facts import DeployLock, DeployLockGiveBack, DeployLockTake


def fact(cls, **kwargs):
    out = subprocess.run(["sh", "-c", cls().command(**kwargs)], capture_output=True, text=True, check=True)
    return cls().process(out.stdout.splitlines())


def test_the_lock_is_taken_once_and_given_back_only_by_its_holder(tmp_path):
    lock = str(tmp_path / "deploy.lock")
    assert fact(DeployLock, path=lock) is None
    assert fact(DeployLockTake, path=lock, record='{"run": "a"}') == {"taken": True, "holder": ""}
    assert fact(DeployLockTake, path=lock, record='{"run": "b"}') == {"taken": False, "holder": '{"run": "a"}'}
    assert fact(DeployLock, path=lock) == '{"run": "a"}'
    assert fact(DeployLockGiveBack, path=lock, record='{"run": "b"}') is False  # not b's to give
    # A takeover replaces only the record it read: a lock taken since by another run stays.
    assert fact(DeployLockTake, path=lock, record='{"run": "b"}', replace='{"run": "x"}')["taken"] is False
    assert fact(DeployLockTake, path=lock, record='{"run": "b"}', replace='{"run": "a"}') == {
        "taken": True,
        "holder": "",
    }
    assert fact(DeployLockGiveBack, path=lock, record='{"run": "b"}') is True
    assert fact(DeployLock, path=lock) is None


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
