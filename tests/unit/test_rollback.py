"""The wait after a switch to a new environment: when the service does not answer, the previous
environment is put back and waited for, and the run fails all the same with one line. The shell
the deploy sends is run here, with probes and rollbacks on files."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from tasks.ops import wait_command


@dataclass
class FakeRollback:
    command: str
    version: str = "litellm 1.999.0"
    log: str = "journalctl -u litellm"


def run(command: str):
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)


def test_an_answering_service_passes(tmp_path):
    (tmp_path / "up").touch()
    out = run(wait_command(f"test -f {tmp_path}/up", 1, "the LiteLLM proxy", FakeRollback(f"touch {tmp_path}/rolled")))
    assert out.returncode == 0 and not (tmp_path / "rolled").exists()


def test_no_answer_without_rollback_fails_with_one_line(tmp_path):
    out = run(wait_command(f"test -f {tmp_path}/up", 1, "the LiteLLM proxy"))
    assert out.returncode == 1 and out.stderr.strip() == "the LiteLLM proxy did not answer within 1 s"


def test_no_answer_rolls_back_and_fails_naming_version_and_log(tmp_path):
    # The rollback brings the service back (here: makes the probe succeed).
    out = run(wait_command(f"test -f {tmp_path}/up", 1, "the LiteLLM proxy", FakeRollback(f"touch {tmp_path}/up")))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "the LiteLLM proxy: litellm 1.999.0 did not answer within 1 s (log: journalctl -u "
        "litellm); rolled back to the previous environment, which answers"
    )


def test_a_rollback_that_does_not_help_says_so(tmp_path):
    for rollback in (f"touch {tmp_path}/rolled", "false"):
        out = run(wait_command(f"test -f {tmp_path}/up", 1, "the LiteLLM proxy", FakeRollback(rollback)))
        assert out.returncode == 1 and out.stderr.strip().endswith("the previous environment does not answer either")
