"""Running the one deploy against the lab from the tests, and reading pyinfra's results table."""

import re
import subprocess
import sys
import time
from pathlib import Path

from bench import optimes  # tests/conftest.py puts the repository on sys.path

ROOT = Path(__file__).resolve().parents[2]


def lab_deploy(*extra: str, timeout: float = 900) -> tuple[int, str, float]:
    """`python -m lab deploy [extra pyinfra args]`: (exit code, its whole output, seconds)."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "lab", "deploy", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    # pyinfra prints its results table to stderr
    return out.returncode, out.stdout + out.stderr, time.monotonic() - started


def grand_total(text: str) -> dict[str, int]:
    """pyinfra's "Grand total" row (bench.optimes reads it); fails when there is none."""
    total = optimes.grand_total(text)
    if total is None:
        raise AssertionError("no results table in the deploy's output:\n" + text[-3000:])
    return total


def changed_rows(text: str) -> list[str]:
    """Rows of the results table whose operation changed something."""
    return [line for line in text.splitlines() if re.search(r"\s\d+\s+[1-9]\d*\s+\S+\s+\S+\s*$", line)
            and "Grand total" not in line]
