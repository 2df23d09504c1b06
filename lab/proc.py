"""Running commands on this machine for the lab, and how the lab reports."""

from __future__ import annotations

import subprocess


class LabError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def run(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(args, text=True, capture_output=True, **kw)
    if check and out.returncode != 0:
        raise LabError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out
