"""The lab's own tool environments on the control machine (the OpenVINO export tools, the tiny
model's trainer): venvs under the cache, every package pinned and installed without dependency
resolution by uv from the package index, made once per pins and Python; and the build steps'
shared helpers: a step's run with its output in the lab's log folder, the digest a product is
keyed on, and a built folder swapped into place."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab import paths
from lab.proc import LabError, log


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def run_step(args: list[str], what: str, **kw) -> float:
    """Run a build step; its output goes to the lab's log folder. Returns the seconds it took."""
    paths.LOGS.mkdir(parents=True, exist_ok=True)
    logfile = paths.LOGS / f"{what}.log"
    started = time.monotonic()
    with open(logfile, "w") as out:
        rc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw).returncode
    if rc != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
        raise LabError(f"{what} failed ({rc}); see {logfile}:\n{tail}")
    return time.monotonic() - started


def swap_in(tmp: Path, out: Path) -> None:
    """The folder built in tmp takes out's place (the old one moved aside, then removed)."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def key(name: str, pins: tuple[str, ...]) -> str:
    """What a venv is made from: its pins and this interpreter's version."""
    return digest(f"{name}/1", "{}.{}".format(*sys.version_info[:2]), *pins)


def ensure(
    venv: Path,
    pins: tuple[str, ...],
    what: str,
    check: Callable[[Path], None] | None = None,
    resolved_as_of: str | None = None,
) -> Path:
    """venv with exactly pins (no dependency resolution), made from the interpreter running the
    lab; rebuilt only when the pins or the Python change. With resolved_as_of (a date), the pins'
    dependencies are resolved as the index had them on that date (uv's --exclude-newer), so the
    same pins give the same venv on any day. uv reads no pip configuration of this machine, and
    trusts the system's certificates (TLS may be intercepted on the way)."""
    stamp = venv / ".lab-key"
    want = key(venv.name, (*pins, *([f"as of {resolved_as_of}"] if resolved_as_of else [])))
    if (venv / "bin" / "python").exists() and stamp.exists() and stamp.read_text() == want:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    paths.CACHE.mkdir(parents=True, exist_ok=True)
    log(f"installing {what} into {venv} (once)")
    uv = _uv()
    python = getattr(sys, "_base_executable", None) or sys.executable
    seconds = run_step([uv, "venv", "-q", "--python", python, str(venv)], f"{venv.name}-create")
    install = [uv, "pip", "install", "-q", "--system-certs", "--only-binary", ":all:"]
    install += ["--exclude-newer", resolved_as_of] if resolved_as_of else ["--no-deps"]
    seconds += run_step([*install, "--python", str(venv / "bin" / "python"), *pins], f"{venv.name}-install")
    if check:
        check(venv)
    stamp.write_text(want)  # last: an interrupted install is redone
    log(f"installed {what} in {seconds:.1f} s")
    return venv


def _uv() -> str:
    """The control machine's uv (labctl installs it beside the lab's Python)."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if not found:
        raise LabError("no uv beside the lab's Python or on PATH: run the lab through ./labctl")
    return found
