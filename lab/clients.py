"""The agent clients the acceptance suite runs against the lab, every version pinned here and only
here, installed once into the lab's cache (paths.CLIENTS) from the package registries: the
official SDKs, Tiny Agents with the MCP time server, aider, Codex CLI and Claude Code.

    python3 lab/clients.py sdks    the SDK pins, for labctl's install of .venv (stdlib only)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# The official SDKs, which the tests import: labctl installs them into .venv with requirements.txt.
SDKS = ("openai==2.54.0", "anthropic==2.15.0")
# Python clients, each in a venv of its own (huggingface_hub[mcp] needs mcp<2 and the MCP time
# server mcp>=2.3, so the two cannot share one), their dependencies resolved as PyPI had them on
# RESOLVED_AS_OF: the same venv on any day.
PYTHON_CLIENTS = {
    "tiny-agents": ("huggingface_hub[mcp]==2.4.0",),
    "mcp-server-time": ("mcp-server-time==2026.10.19",),
    "aider": ("aider-chat==0.86.2",),
}
RESOLVED_AS_OF = "2026-12-01T00:00:00Z"
# From the npm registry: each carries its own native binary or bundle (no download at install).
NPM_CLIENTS = {"codex": ("@openai/codex", "0.171.0"), "claude": ("@anthropic-ai/claude-code", "2.1.332")}
NPM_REGISTRY = "https://registry.npmjs.org/"


def python_client(name: str) -> Path:
    """The bin folder of a Python client's venv, installed once."""
    from lab import paths, toolvenv

    venv = toolvenv.ensure(paths.CLIENTS / name, PYTHON_CLIENTS[name], name, resolved_as_of=RESOLVED_AS_OF)
    return venv / "bin"


def npm_client(name: str) -> Path:
    """The executable of an npm client, installed once into a prefix of its own. npm reads no
    configuration of this machine (its registry and CA bundle are given here)."""
    from lab import paths, toolvenv
    from lab.proc import LabError, log

    package, version = NPM_CLIENTS[name]
    prefix = paths.CLIENTS / f"npm-{name}"
    stamp, want = prefix / ".lab-key", toolvenv.digest("npm/1", package, version)
    program = prefix / "node_modules" / ".bin" / name
    if stamp.exists() and stamp.read_text() == want and program.exists():
        return program
    npm = shutil.which("npm")
    if not npm:
        raise LabError(f"{package} needs Node.js and npm on the control machine (Debian: apt install nodejs npm)")
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    for config in ("user.npmrc", "global.npmrc"):  # empty: none of this machine's npm settings
        (prefix / config).write_text("")
    log(f"installing {package}@{version} into {prefix} (once)")
    seconds = toolvenv.run_step(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--userconfig",
            str(prefix / "user.npmrc"),
            "--globalconfig",
            str(prefix / "global.npmrc"),
            "--registry",
            NPM_REGISTRY,
            "--cafile",
            paths.CA_BUNDLE,
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            f"{package}@{version}",
        ],
        f"npm-{name}-install",
        env={**_npm_env(), "npm_config_cache": str(paths.CLIENTS / "npm-cache")},
    )
    if not program.exists():
        raise LabError(f"{package}@{version} installed no {program}")
    stamp.write_text(want)
    log(f"installed {package}@{version} in {seconds:.1f} s")
    return program


def _npm_env() -> dict[str, str]:
    from lab import paths

    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep} | {"NODE_EXTRA_CA_CERTS": str(paths.CA_BUNDLE)}


if __name__ == "__main__":
    if sys.argv[1:] != ["sdks"]:
        raise SystemExit(__doc__)
    print("\n".join(SDKS))
