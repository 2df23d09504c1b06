"""Pieces every service deploy shares: the registry of this run, template rendering, file
uploads (secret ones without diffs), uv environments and waiting for an endpoint."""

from __future__ import annotations

import hashlib
import shlex
from functools import lru_cache
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pyinfra import host, inventory
from pyinfra.api import FileUploadCommand, operation
from pyinfra.api.command import StringCommand
from pyinfra.facts.files import File, Sha256File
from pyinfra.facts.server import Kernel
from pyinfra.operations import apt, files, pip, server

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


def is_macos() -> bool:
    return host.get_fact(Kernel) == "Darwin"


def put_text(dest: str, text: str, name: str, user="root", group="root", mode="644", **kwargs):
    return files.put(
        name=name, src=StringIO(text), dest=dest, user=user, group=group, mode=mode, **kwargs
    )


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@operation()
def secret_file(dest: str, content: str, user: str, group: str, mode: str = "600"):
    """Upload a file whose content is secret: compared by sha256, never printed or diffed."""
    data = content.encode()
    digest = sha256_text(content)
    current = host.get_fact(File, path=dest)
    if host.get_fact(Sha256File, path=dest) != digest or not current:
        # Upload next to the destination (a directory the service user cannot list), fix
        # owner and mode, then move it into place so the secret is never readable by others.
        tmp = f"{dest}.upload"
        yield StringCommand("install", "-m", "600", "/dev/null", tmp)
        yield FileUploadCommand(BytesIO(data), tmp, remote_temp_filename=tmp)
        yield StringCommand("chown", f"{user}:{group}", tmp)
        yield StringCommand("chmod", mode, tmp)
        yield StringCommand("mv", "-f", tmp, dest)
        return
    if current.get("user") != user or current.get("group") != group:
        yield StringCommand("chown", f"{user}:{group}", dest)
    if str(current.get("mode")) != str(mode).lstrip("0"):
        yield StringCommand("chmod", mode, dest)


def ensure_uv(uv_version: str):
    """A pinned uv in its own virtual environment at /opt/uv (Linux: from Debian's python3)."""
    if not is_macos():
        apt.packages(
            name="Install python3-venv and ca-certificates for uv",
            packages=["python3-venv", "ca-certificates", "curl"],
            update=True,
            cache_time=3600,
        )
    pip.venv(name="Create /opt/uv for uv", path="/opt/uv", python="python3")
    pip.packages(
        name=f"Install uv {uv_version} into /opt/uv",
        packages=[f"uv=={uv_version}"],
        pip="/opt/uv/bin/pip",
        extra_install_args=f"--cert {SYSTEM_CA}" if not is_macos() else None,
    )
    return "/opt/uv/bin/uv"


def uv_environment(venv: str, requirements: list[str], what: str):
    """A virtual environment built with uv from pinned requirements; rebuilt when the pins
    change or the environment is missing. Returns the operation that (re)built it.

    The pins are recorded beside the environment only after a build succeeded, so a build that
    failed half-way is built again by the next run."""
    uv = ensure_uv(registry().settings["uv_version"])
    spec_path = f"{venv}.requirements.txt"
    # Bytecode is compiled at build time: the services run as users who cannot write
    # __pycache__ into a root-owned environment, and would otherwise recompile at every start.
    options = f"--compile-bytecode {'--system-certs' if not is_macos() else ''}".strip()
    # The record holds the install options too, so changing them rebuilds the environment.
    spec_text = f"# uv pip install {options}\n" + "\n".join(requirements) + "\n"
    # Both facts are read before this run changes anything. bin/python is a symlink, which the
    # File fact does not report; pyvenv.cfg is a file.
    built_from = host.get_fact(Sha256File, path=spec_path)
    python = host.get_fact(File, path=f"{venv}/pyvenv.cfg")
    certs = "--system-certs" if not is_macos() else ""
    build = server.shell(
        name=f"Build the {what} environment with uv",
        commands=[
            f"rm -rf {shlex.quote(venv)}",
            f"{uv} venv --quiet {certs} --python python3 {shlex.quote(venv)}",
            f"{uv} pip install --quiet {options} --python {shlex.quote(venv)}/bin/python "
            + " ".join(shlex.quote(r) for r in requirements),
        ],
        _if=lambda: built_from != sha256_text(spec_text) or not python,
    )
    put_text(spec_path, spec_text, name=f"Record the {what} requirements it was built from")
    return build


def wait_http(url: str, timeout: int, what: str, _if):
    """Wait until url answers 200, bounded by timeout seconds; only after a (re)start."""
    return server.shell(
        name=f"Wait for {what} to answer {url}",
        commands=[
            f"deadline=$(( $(date +%s) + {int(timeout)} )); "
            f"until curl -fsS -o /dev/null --max-time 5 {shlex.quote(url)}; do "
            f"if [ $(date +%s) -ge $deadline ]; then "
            f"echo '{what} did not answer {url} within {int(timeout)} s' >&2; exit 1; fi; "
            f"sleep 1; done"
        ],
        _if=_if,
    )
