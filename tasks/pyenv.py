"""Python environments built with a pinned uv: one per service that runs Python (LiteLLM, MLX)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from tasks import hostos, ops
from tasks.facts import UvEnvironment
from tasks.hostos import is_macos
from tasks.render import sha256_text

UV = "/opt/uv/bin/uv"
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
    server.shell(
        name=f"Install uv {uv_version} into /opt/uv",
        commands=[
            "python3 -m venv /opt/uv",
            f"/opt/uv/bin/pip install --quiet --disable-pip-version-check {cert} uv=={shlex.quote(uv_version)}",
        ],
        _if=lambda: installed != uv_version,
    )


def python_environments(uv_version: str, envs: list[PythonEnv]) -> dict[str, OperationMeta]:
    """The pinned uv and every environment in envs; returns service -> the operation that
    (re)built its environment. deploy.py calls this first on every host, from one place, so the
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


def _uv_environment(env: PythonEnv, found: dict) -> OperationMeta:
    """Rebuilt when the host's environment is not what the pins say (needs_build); the pins are
    recorded beside it only after a build succeeded, so a build that failed half-way is built
    again."""
    venv = shlex.quote(env.venv)
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
    build = server.shell(
        name=f"Build the {env.service} environment with uv" + (f" ({reason})" if reason else ""),
        commands=[
            f"rm -rf {venv}",
            f"{uv_venv} --quiet {certs} {python} {venv}",
            f"{UV} pip install --quiet {options} --python {venv}/bin/python "
            + " ".join(shlex.quote(r) for r in env.requirements),
        ],
        _if=lambda: bool(reason),  # judged once, from the facts read before this run changed anything
    )
    ops.text_file(
        name=f"Record the {env.service} requirements it was built from",
        dest=f"{env.venv}.requirements.txt",
        content=spec_text,
        public=True,
    )
    return build
