"""A second deploy right after the first changes nothing on any host (lab only: it deploys)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_second_deploy_changes_nothing(real, lab_state):
    if real:
        pytest.fail("the idempotence check deploys; run it against the lab, not --real-hosts")
    out = subprocess.run(
        [sys.executable, "-m", "lab", "deploy"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    text = out.stdout + out.stderr  # pyinfra prints its results table to stderr
    assert out.returncode == 0, text[-3000:]
    total = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    assert total, text[-3000:]
    operations, changed, errors, unchanged = total.groups()
    changed_rows = [l for l in text.splitlines() if re.search(r"\|.*\s\d+\s+\d+\s+-\s+-\s*$", l)]
    assert changed in ("-", "0") and errors in ("-", "0"), "changed:\n" + "\n".join(changed_rows)
    assert int(unchanged) == int(operations)
