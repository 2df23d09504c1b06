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


def doctor(extra: list[str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The doctor's read-only view of the lab (tasks/doctor), through the lab's inventory."""
    if not lifecycle.is_up():
        raise LabError("the lab is not up: run `./labctl up` first")
    command = [sys.executable, "-m", "tasks.doctor", "lab/inventory.py", *(extra or [])]
    return subprocess.run(command, cwd=paths.ROOT, env=deploy_env(), **kwargs)


def deploy_env() -> dict[str, str]:
    """pyinfra's environment for the lab: the operator's sudo password comes from the environment,
    as an operator would export it for an unattended run (tasks/access.py); the fact commands a
    run learned are kept with the lab's state (tasks/factcache.py), gone with `down`."""
    return {
        **os.environ,
        "LLMLAB_SUDO_PASSWORD": lifecycle.sudo_password(),
        "LLMLAB_FACT_CACHE": str(paths.STATE_DIR / "facts"),
    }


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


def capture_fresh(host: str, out: Path) -> None:
    """Record what deploy.py reads from a lab host with nothing of the stack on it: the host is
    recreated empty, its facts are captured (tasks/capture.py) through the real inventory and
    data pointed at it, as the unit tests' registry sees them, and the lab is deployed again."""
    from lab import hosts
    from lab.network import HOSTS

    lifecycle.recreate(host)
    address = HOSTS[host]
    command = [
        sys.executable,
        "-m",
        "tasks.capture",
        "--out",
        str(out),
        "inventory.py",
        "--limit",
        host,
        "--user",
        hosts.OPERATOR,
        "--key",
        str(paths.KEY),
        *("--data", f"ssh_known_hosts_file={paths.KNOWN_HOSTS}"),
        *("--data", "ssh_strict_host_key_checking=accept-new"),
        # Every host's address is the lab's: nothing of the run names the real LAN.
        *("--data", f"llm_address={address}"),
        *("--data", f"llm_secrets_file={paths.SECRETS}"),
        *("--data", f"ovms_archive_sha256={CAPTURE_SHA256}"),
    ]
    env = {**deploy_env(), "LLMLAB_MINI_HOST": address, "LLMLAB_STUDIO_HOST": address}
    captured = subprocess.run(command, cwd=paths.ROOT, env=env)
    redeployed = deploy()
    if captured.returncode:
        raise LabError(f"capturing {host}'s facts failed (exit {captured.returncode}); the lab was deployed again")
    if redeployed.returncode:
        raise LabError(f"{out} was written, but deploying the lab again failed (exit {redeployed.returncode})")


CAPTURE_SHA256 = "ab" * 32  # the OVMS digest the unit tests' data holds (a fresh host has no archive)
