"""The lab's host processes: a stopped systemd-nspawn counts as gone once it has exited, even
while it waits to be reaped (lab/hosts.py)."""

import subprocess
import time

from lab import hosts


def test_an_exited_child_is_gone_at_once_and_a_running_one_is_not():
    running = subprocess.Popen(["sleep", "30"])
    exited = subprocess.Popen(["true"])
    try:
        time.sleep(0.3)  # `true` has exited: a zombie until this process reaps it
        with open(f"/proc/{exited.pid}/stat") as stat:
            assert stat.read().rsplit(")", 1)[1].split()[0] == "Z"
        started = time.monotonic()
        assert hosts._wait_gone([exited.pid, running.pid], 2) == [running.pid]
        assert time.monotonic() - started >= 2  # the running one was waited for, the full timeout
        assert hosts._wait_gone([exited.pid], 5) == []
    finally:
        running.kill()
        running.wait()
    assert hosts._wait_gone([running.pid], 5) == []
