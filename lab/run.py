"""Running pyinfra against the lab (`pyinfra lab/inventory.py deploy.py`) and reading its results
table: what `./labctl deploy`, the tests and the benchmark all call."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from lab import lifecycle, paths
from lab.artifacts import build_artifacts
from lab.proc import LabError

PYINFRA = [str(Path(sys.executable).parent / "pyinfra"), "-y", "lab/inventory.py", "deploy.py"]
TOTAL = re.compile(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)")


def deploy(extra: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run the one deploy against the lab; kwargs go to subprocess.run (e.g. capture_output)."""
    if not lifecycle.is_up():
        raise LabError("the lab is not up: run `./labctl up` first")
    build_artifacts()
    extra = list(extra or [])
    # A dry run shows pyinfra's change detection, which -y would skip.
    command = [a for a in PYINFRA if a != "-y"] if "--dry" in extra else PYINFRA
    return subprocess.run(command + extra, cwd=paths.ROOT, env=deploy_env(), **kwargs)


def deploy_env() -> dict[str, str]:
    """pyinfra's environment for the lab: the operator's sudo password comes from the environment,
    as an operator would export it for an unattended run (tasks/access.py)."""
    return {**os.environ, "LLMLAB_SUDO_PASSWORD": lifecycle.sudo_password()}


def grand_total(text: str) -> dict[str, int] | None:
    """pyinfra's "Grand total" row: operations, changed, errors, unchanged ("-" reads as 0);
    None when the output has no results table."""
    match = TOTAL.search(text)
    if not match:
        return None
    values = [0 if v == "-" else int(v) for v in match.groups()]
    return dict(zip(("operations", "changed", "errors", "unchanged"), values))


def changed_rows(text: str) -> list[str]:
    """Rows of pyinfra's results table whose operation changed something."""
    return [
        line
        for line in text.splitlines()
        if re.search(r"\s\d+\s+[1-9]\d*\s+\S+\s+\S+\s*$", line) and "Grand total" not in line
    ]
