"""Pieces every service deploy shares: the registry of this run, template rendering, file
uploads (secret ones without diffs), uv environments and waiting for an endpoint."""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pyinfra import host, inventory
from pyinfra.facts.server import Kernel
from pyinfra.operations import server

from tasks import registry as reg

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
# uv and the service environments must trust the system's certificate store: TLS to the
# package index may be intercepted on the way, and the host's store is what an operator curates.
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


@lru_cache(maxsize=1)
def _jinja() -> Environment:
    return Environment(
        loader=FileSystemLoader([str(TEMPLATES), str(TEMPLATES / "common")]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(template: str, **values: Any) -> str:
    """Render templates/<template> with exactly the values given (no host data)."""
    return _jinja().get_template(template).render(**values)


def to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")


def inventory_addresses() -> dict[str, str]:
    """Inventory host name -> the address other hosts reach it on (data key llm_address,
    else the SSH address)."""
    return {
        h.name: h.data.get("llm_address") or h.data.get("ssh_hostname") or h.name
        for h in inventory
    }


@lru_cache(maxsize=1)
def _registry_cached() -> reg.Registry:
    merged: dict[str, Any] = {}
    for h in inventory:
        merged.update(h.data.dict())
    return reg.build(merged, inventory_addresses())


def registry() -> reg.Registry:
    """The registry of this run, built from the same data every host sees. The inventory's
    preflight already validated it before any connection, so this cannot fail differently."""
    return _registry_cached()


@lru_cache(maxsize=1)
def secrets() -> dict[str, str]:
    r = registry()
    path = Path(r.settings["llm_secrets_file"])
    return reg.load_secrets(r.secret_names(), path, "group_data/all.py: llm_secrets_file")


_KERNELS: dict[str, str] = {}


def is_macos() -> bool:
    """Asked once per host (pyinfra caches no facts, and the kernel does not change)."""
    if host.name not in _KERNELS:
        _KERNELS[host.name] = host.get_fact(Kernel)
    return _KERNELS[host.name] == "Darwin"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def root_group() -> str:
    """The group root's files belong to: wheel on macOS (which has no group named root)."""
    return "wheel" if is_macos() else "root"


def put_text(dest: str, text: str, name: str, user="root", group=None, mode="644", secret=False):
    """A file on the host with exactly this text (secret: compared by digest, never shown).
    Owned by root and root's group unless told otherwise."""
    from tasks import ops  # noqa: PLC0415 (ops imports this module)

    return ops.text_file(name=name, dest=dest, content=text, user=user, group=group, mode=mode, secret=secret)


UV = "/opt/uv/bin/uv"


def ensure_uv(uv_version: str, installed: str):
    """A pinned uv in its own virtual environment at /opt/uv (Linux: from Debian's python3).
    `installed` is the version found before this run changed anything ("" if none)."""
    from tasks import ops  # noqa: PLC0415 (ops imports this module)

    if not is_macos():
        ops.debian_packages(
            name="Install python3-venv and ca-certificates for uv",
            packages=["python3-venv", "ca-certificates", "curl"],
        )
    cert = f"--cert {SYSTEM_CA}" if not is_macos() else ""
    server.shell(
        name=f"Install uv {uv_version} into /opt/uv",
        commands=[
            "python3 -m venv /opt/uv",
            f"/opt/uv/bin/pip install --quiet --disable-pip-version-check {cert} uv=={shlex.quote(uv_version)}",
        ],
        _if=lambda: installed != uv_version,
    )
    return UV


@dataclass(frozen=True)
class PythonEnv:
    """A service's virtual environment: what it is for, where it lives, its pinned requirements."""

    what: str
    venv: str
    requirements: tuple[str, ...]


def python_environments(envs: list[PythonEnv]) -> dict[str, Any]:
    """The pinned uv and every environment in envs, built with uv; returns what -> the operation
    that (re)built it. deploy.py calls this first on every host, from one place, so the slow
    builds are the same pyinfra operations on all hosts and run side by side."""
    if not envs:
        return {}
    from tasks.ops import UvEnvironment  # noqa: PLC0415 (ops imports this module)

    # One question per environment before this run changes anything: uv's version, what the
    # environment was built from, and whether it exists.
    found = [host.get_fact(UvEnvironment, uv=UV, venv=env.venv) for env in envs]
    uv = ensure_uv(registry().settings["uv_version"], found[0]["uv"])
    return {env.what: _uv_environment(uv, env, state) for env, state in zip(envs, found)}


def _uv_environment(uv: str, env: PythonEnv, found: dict[str, Any]):
    """Rebuilt when the pins change or the environment is missing. The pins are recorded
    beside it only after a build succeeded, so a build that failed half-way is built again."""
    venv = shlex.quote(env.venv)
    certs = "--system-certs" if not is_macos() else ""
    # Bytecode is compiled at build time: the services run as users who cannot write
    # __pycache__ into a root-owned environment, and would otherwise recompile at every start.
    options = f"--compile-bytecode {certs}".strip()
    # The record holds the install options too, so changing them rebuilds the environment.
    spec_text = f"# uv pip install {options}\n" + "\n".join(env.requirements) + "\n"
    build = server.shell(
        name=f"Build the {env.what} environment with uv",
        commands=[
            f"rm -rf {venv}",
            f"{uv} venv --quiet {certs} --python python3 {venv}",
            f"{uv} pip install --quiet {options} --python {venv}/bin/python "
            + " ".join(shlex.quote(r) for r in env.requirements),
        ],
        _if=lambda: found["built_from"] != sha256_text(spec_text) or not found["venv"],
    )
    put_text(f"{env.venv}.requirements.txt", spec_text, name=f"Record the {env.what} requirements it was built from")
    return build


_WAITS: dict[str, list[tuple[str, int, str, Any]]] = {}


def expect_answer(url: str, timeout: int, what: str, started) -> None:
    """Once this host's deploy is done, url must answer 200 within timeout seconds if the
    service was (re)started (`started` changed). Checked by wait_for_services()."""
    _WAITS.setdefault(host.name, []).append((url, timeout, what, started))


def wait_for_services():
    """deploy.py's last step on every host: one operation that waits until each service this run
    (re)started answers. The services start side by side, so the wait is the slowest one's,
    and it is the same operation on every host, so the hosts wait side by side too."""
    from tasks import ops  # noqa: PLC0415 (ops imports this module)

    checks = _WAITS.pop(host.name, [])
    return ops.services_answer(name="Wait for the (re)started services to answer", checks=checks)
