"""Running the one deploy against the lab from the tests, and reading pyinfra's results table."""

import subprocess
import sys
import time

from lab import paths
from lab import run as labrun
from lab.run import changed_rows  # noqa: F401  (the tests read the results table through here)

ROOT = paths.ROOT


def lab_deploy(*extra: str, timeout: float = 900) -> tuple[int, str, float]:
    """`python -m lab deploy [extra pyinfra args]`: (exit code, its whole output, seconds)."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "lab", "deploy", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    # pyinfra prints its results table to stderr
    return out.returncode, out.stdout + out.stderr, time.monotonic() - started


def grand_total(text: str) -> dict[str, int]:
    """pyinfra's "Grand total" row; fails when there is none."""
    total = labrun.grand_total(text)
    if total is None:
        raise AssertionError("no results table in the deploy's output:\n" + text[-3000:])
    return total
