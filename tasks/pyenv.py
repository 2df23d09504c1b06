"""Python environments built with a pinned uv: one per service that runs Python (LiteLLM, MLX)."""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from tasks import hostos, ops
from tasks.facts import ENV_RECORD, UvEnvironment
from tasks.hostos import is_macos
from tasks.render import sha256_text

UV = "/opt/uv/bin/uv"
# This run's name for the environment folders it builds: sortable by time, so pruning keeps the
# newest, and its own even when a run is started again within the second (its process id).
RUN = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"p{os.getpid()}"
# uv-managed interpreters live beside uv, readable by the service users (uv's default is the
# home of whoever runs it: root's, here).
UV_PYTHONS = "/opt/uv/python"
# What uv's own bootstrap (python3 -m venv, pip) needs from the distribution.
UV_PACKAGES = {"debian": ["python3-venv", "ca-certificates", "curl"], "rhel": ["python3", "ca-certificates", "curl"]}


def packages(system: hostos.System) -> list[str]:
    """What uv's own bootstrap needs from the distribution (nothing on macOS)."""
    return [] if system.macos else UV_PACKAGES[system.family]


@dataclass(frozen=True)
class PythonEnv:
    """A service's virtual environment: the service it serves, where it lives, its pinned requirements."""

    service: str  # "litellm", "mlx": the key deploys look their environment up by
    venv: str
    requirements: tuple[str, ...]  # name[extras]==version
    python: str = ""  # a version for a uv-managed interpreter; "" for the host's python3
    entry_point: str = ""  # the service's program in <venv>/bin, which must exist

    @property
    def pins(self) -> dict[str, str]:
        """Distribution name -> pinned version."""
        return {re.split(r"[\[=]", r, 1)[0].lower(): r.split("==", 1)[1] for r in self.requirements}


def _ensure_uv(uv_version: str, installed: str) -> None:
    """A pinned uv in its own virtual environment at /opt/uv (Linux: from Debian's python3).
    `installed` is the version found before this run changed anything ("" if none)."""
    system = hostos.system()
    # pip and uv trust the system's certificate store: TLS to the package index may be
    # intercepted on the way, and the host's store is what an operator curates.
    cert = f"--cert {system.ca_bundle}" if not system.macos else ""
    if installed == uv_version:  # declared only when needed, so a dry run shows it only then
        return
    server.shell(
        name=f"Install uv {uv_version} into /opt/uv",
        commands=[
            "python3 -m venv /opt/uv",
            f"/opt/uv/bin/pip install --quiet --disable-pip-version-check {cert} uv=={shlex.quote(uv_version)}",
        ],
    )


def python_environments(uv_version: str, envs: list[PythonEnv]) -> dict[str, Built]:
    """The pinned uv and every environment in envs; returns service -> its Built (switch() it
    in the service's deploy). deploy.py calls this first on every host, from one place, so the
    slow builds are the same pyinfra operations on all hosts and run side by side."""
    if not envs:
        return {}
    # One question per environment before this run changes anything: uv's version, what the
    # environment was built from, and whether it exists.
    found = [host.get_fact(UvEnvironment, uv=UV, venv=env.venv, entry_point=env.entry_point,
                           dists=tuple(env.pins), **ops.AS_LOGIN) for env in envs]
    _ensure_uv(uv_version, found[0]["uv"])
    return {env.service: _uv_environment(env, state) for env, state in zip(envs, found)}


def needs_build(env: PythonEnv, found: dict, spec_text: str) -> str:
    """Why the environment must be (re)built, judged by what is on the host, or "" if it need not:
    its record, but also its interpreter and entry point running, the installed versions
    matching the pins and no file of the pinned packages missing."""
    if not found["venv"]:
        return "missing"
    if found["built_from"] != sha256_text(spec_text):
        return "built from other pins or options"
    if not found["runs"]:
        return "its interpreter or entry point does not run"
    for name, version in env.pins.items():
        installed, gone = found["dists"].get(name, ("-", 0))
        if installed != version:
            return f"{name} is {installed}, not {version}"
        if gone:
            return f"{gone} files of {name} are missing"
    return ""


@dataclass
class Built:
    """One environment of this run: the folder it is built in side by side with the one in use
    (or the one in use, when nothing is built), the build, and the reason for it ("" if none)."""

    env: PythonEnv
    target: str
    build: OperationMeta | None  # None: nothing to build (in use, or the previous one switched back to)
    reason: str
    reuse: bool = False  # the previous environment has the pins: switched back to, not built

    @property
    def switching(self) -> bool:
        """Whether this run will point the environment's link at another folder (known before it runs)."""
        return self.reuse or self.build is not None

    @property
    def python(self) -> str:
        """The interpreter of the environment this run will switch to (checks run with it first)."""
        return f"{self.target}/bin/python"


def record_path(venv: str) -> str:
    """The pins an environment was built from, written inside it once its build succeeded."""
    return f"{venv}/{ENV_RECORD}"


def _uv_environment(env: PythonEnv, found: dict) -> Built:
    """Built when the environment in use is not what the pins say (needs_build), in a new folder
    beside it (`<venv>-<run>-<pins digest>`): the service keeps running from the old one until
    switch() points `<venv>` at the new one. A build interrupted half-way leaves only its own
    folder (an orphaned installer writes nowhere else), pruned by a later switch."""
    certs = "--system-certs" if not is_macos() else ""
    # Bytecode is compiled at build time: the services run as users who cannot write
    # __pycache__ into a root-owned environment, and would otherwise recompile at every start.
    options = f"--compile-bytecode {certs}".strip()
    if env.python:
        python = f"--python {shlex.quote(env.python)} --managed-python"
        uv_venv = f"UV_PYTHON_INSTALL_DIR={UV_PYTHONS} {UV} venv"
    else:
        python, uv_venv = "--python python3", f"{UV} venv"
    # The record holds the interpreter and install options too: changing them rebuilds.
    spec_text = (f"# uv venv {python}\n" if env.python else "") + f"# uv pip install {options}\n"
    spec_text += "\n".join(env.requirements) + "\n"
    reason = needs_build(env, found, spec_text)
    if reason:
        # Pins put back after an upgrade: the previous environment may be exactly them.
        previous = host.get_fact(UvEnvironment, uv=UV, venv=f"{env.venv}.previous", entry_point=env.entry_point,
                                 dists=tuple(env.pins), **ops.AS_LOGIN)
        if previous["folder"] and not needs_build(env, previous, spec_text):
            return Built(env, previous["folder"], None, "", reuse=True)
    if not reason:  # nothing declared: a dry run shows no build
        return Built(env, env.venv, None, "")
    target = f"{env.venv}-{RUN}-{sha256_text(spec_text)[:8]}"
    t = shlex.quote(target)
    build = server.shell(
        name=f"Build the {env.service} environment with uv in {target} ({reason})",
        commands=[
            f"rm -rf {t}",
            f"{uv_venv} --quiet {certs} {python} {t}",
            # A build that fails leaves nothing behind (the folder in use was never touched).
            f"{UV} pip install --quiet {options} --python {t}/bin/python "
            + " ".join(shlex.quote(r) for r in env.requirements) + f" || {{ rm -rf {t}; exit 1; }}",
            f"printf %s {shlex.quote(spec_text)} > {shlex.quote(record_path(target))}",
        ],
    )
    return Built(env, target, build, reason)


def _ln(macos: bool) -> str:
    """Replace a link to a folder with another (BSD ln's -h is GNU ln's -n)."""
    return "ln -sfh" if macos else "ln -sfn"


def switch_commands(venv_path: str, target_path: str, keep: int, macos: bool) -> list[str]:
    """Shell: point the link venv_path at target_path; the folder it pointed at becomes
    `<venv>.previous`; older folders pruned to `keep` in all (see switch)."""
    venv, target = shlex.quote(venv_path), shlex.quote(target_path)
    link = _ln(macos)
    old = shlex.quote(f"{venv_path}-00000000000000-old")  # sorts as the oldest
    return [
        # The folder in use becomes the previous one; an environment of the old layout (a folder,
        # not a link) is moved aside to become it.
        f"if [ -L {venv} ]; then {link} \"$(readlink {venv})\" {venv}.previous; "
        f"elif [ -d {venv} ]; then rm -rf {old} && mv {venv} {old} && {link} {old} {venv}.previous "
        f"&& rm -f {venv}.requirements.txt; fi",
        f"{link} {target} {venv}",
        # Prune: the current and the previous are kept, then the newest others up to `keep` in
        # all; an orphaned build still writing may refuse to go (the next switch tries again).
        f"ls -d {venv}-* 2>/dev/null | sort -r | grep -v -x -e {target} -e \"$(readlink {venv}.previous)\" "
        f"| tail -n +{max(keep - 1, 1)} | while read -r d; do rm -rf \"$d\" 2>/dev/null || true; done",
    ]


def switch(built: Built, keep: int) -> OperationMeta | None:
    """Point `<venv>` at the folder this run built (or the previous one it switches back to),
    once it is whole (and checked, where the service checks it first); the one it replaces stays
    as `<venv>.previous` for a rollback, and only `keep` folders are kept in all. Returns the
    operation (restart on it), or None when there is nothing to switch (nothing declared)."""
    if not built.switching:
        return None
    return server.shell(
        name=f"Switch {built.env.venv} to {built.target.rsplit('/', 1)[-1]}"
        + (" (the previous environment, which has these pins)" if built.reuse else ""),
        commands=switch_commands(built.env.venv, built.target, keep, is_macos()),
    )


def rollback_command(built: Built) -> str:
    """Shell: point `<venv>` back at the previous environment (when there is one)."""
    venv = shlex.quote(built.env.venv)
    link = _ln(is_macos())
    return f"[ -L {venv}.previous ] && {link} \"$(readlink {venv}.previous)\" {venv}"