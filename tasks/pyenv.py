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
from tasks.render import sha256_text
from tasks.run import is_macos
from tasks.shell import one

UV = "/opt/uv/bin/uv"
# This run's name for the environment folders it builds: sortable by time, so pruning keeps the
# newest, and its own even when a run is started again within the second (its process id).
RUN = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"p{os.getpid()}"
# uv-managed interpreters live beside uv, readable by the service users (uv's default is the
# home of whoever runs it: root's, here).
UV_PYTHONS = "/opt/uv/python"
# What uv's own install and the environments' interpreter need from the distribution (Debian,
# Ubuntu and RHEL name them alike).
UV_PACKAGES = ["python3", "ca-certificates", "curl"]
# uv's wheel from PyPI's simple index (as pip and uv read it), fetched with curl (the system's
# trust store: TLS to the index may be intercepted on the way, and the host's store is what an
# operator curates), held to the sha256 the index gives for it, and its one program unpacked
# into <dest>/bin/uv by the host's python3. No venv, no pip: 0.8 s where pip from Debian's
# wheel into a venv took 2.2 s on the lab.
UV_FETCH = r"""
import hashlib, json, os, subprocess, sys, tempfile, zipfile
version, dest = sys.argv[1], sys.argv[2]
index_url = sys.argv[3] if len(sys.argv) > 3 else "https://pypi.org/simple/uv/"
system, machine = os.uname().sysname, os.uname().machine
def fetch(url, path, *headers):
    subprocess.run(["curl", "-fsSL", "--retry", "2", "--max-time", "300", *headers, "-o", path, url], check=True)
def fits(name):
    if system == "Darwin":
        return "macosx" in name and (name.endswith(f"_{machine}.whl") or name.endswith("_universal2.whl"))
    return "manylinux" in name and name.endswith(f"_{machine}.whl")
with tempfile.TemporaryDirectory() as tmp:
    index = os.path.join(tmp, "index.json")
    fetch(index_url, index, "-H", "Accept: application/vnd.pypi.simple.v1+json")
    with open(index) as f:
        wheels = sorted((w for w in json.load(f)["files"] if w["filename"].startswith(f"uv-{version}-")
                         and fits(w["filename"])), key=lambda w: w["filename"])
    if not wheels:
        sys.exit(f"PyPI has no uv {version} wheel for {system} {machine}")
    wheel, path = wheels[0], os.path.join(tmp, "uv.whl")
    fetch(wheel["url"], path)
    with open(path, "rb") as f:
        found = hashlib.sha256(f.read()).hexdigest()
    if found != wheel["hashes"]["sha256"]:
        sys.exit(f"{wheel['filename']}: sha256 {found}, not the {wheel['hashes']['sha256']} PyPI lists")
    with zipfile.ZipFile(path) as z:
        member = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
        os.makedirs(os.path.join(dest, "bin"), exist_ok=True)
        new = os.path.join(dest, "bin", "uv.new")
        with z.open(member) as src, open(new, "wb") as out:
            out.write(src.read())
    os.chmod(new, 0o755)
    os.replace(new, os.path.join(dest, "bin", "uv"))
"""


def packages(system: hostos.System) -> list[str]:
    """What uv's own bootstrap needs from the distribution (nothing on macOS)."""
    return [] if system.macos else list(UV_PACKAGES)


@dataclass(frozen=True)
class PythonEnv:
    """A service's virtual environment: the service it serves, where it lives, its pinned requirements."""

    service: str  # "litellm", "mlx": the key deploys look their environment up by
    venv: str
    requirements: tuple[str, ...]  # name[extras]==version
    python: str = ""  # a version for a uv-managed interpreter; "" for the host's python3
    entry_point: str = ""  # a program in <venv>/bin that must exist and run (judged, not run by us)
    # The modules the service loads as it starts, imported once before the environment is used
    # (see _uv_environment); environment variables for that import (name, value).
    imports: tuple[str, ...] = ()
    import_env: tuple[tuple[str, str], ...] = ()
    # The service's own check of its config imports them instead of the build, with
    # bytecode_command, before the switch (LiteLLM's check loads LiteLLM anyway: one import of it,
    # not two); the build only installs. The record still names the imports: what is switched to
    # has had them.
    imported_by_check: bool = False

    @property
    def pins(self) -> dict[str, str]:
        """Distribution name -> pinned version."""
        return {re.split(r"[\[=]", r, maxsplit=1)[0].lower(): r.split("==", 1)[1] for r in self.requirements}


def _ensure_uv(uv_version: str, installed: str) -> None:
    """The pinned uv at /opt/uv/bin/uv, from its wheel on PyPI (UV_FETCH). `installed` is the
    version found before this run changed anything ("" if none)."""
    if installed == uv_version:  # declared only when needed, so a dry run shows it only then
        return
    server.shell(
        name=f"Install uv {uv_version} into /opt/uv",
        commands=[f"python3 -c {shlex.quote(UV_FETCH)} {shlex.quote(uv_version)} /opt/uv"],
    )


def python_environments(uv_version: str, envs: list[PythonEnv]) -> dict[str, Built]:
    """The pinned uv and every environment in envs; returns service -> its Built (switch() it
    in the service's deploy). deploy.py calls this first on every host, from one place, so the
    slow builds are the same pyinfra operations on all hosts and run side by side."""
    if not envs:
        return {}
    # One question per environment before this run changes anything: what the environment was
    # built from and whether it exists; uv's version with the first (uv runs once).
    found = [
        host.get_fact(
            UvEnvironment,
            uv=UV if n == 0 else "",
            venv=env.venv,
            entry_point=env.entry_point,
            dists=tuple(env.pins),
            **ops.AS_LOGIN,
        )
        for n, env in enumerate(envs)
    ]
    _ensure_uv(uv_version, found[0]["uv"])
    planned = {env.service: _uv_environment(env, state) for env, state in zip(envs, found)}
    due = [(built, commands) for built, commands in planned.values() if commands]
    if due:
        # Every build of this host in one operation, one after the other: so whatever the
        # environments of each host, their builds run side by side with the other hosts'.
        build = server.shell(
            name="Build "
            + "; ".join(f"the {b.env.service} environment with uv in {b.target} ({b.reason})" for b, _ in due),
            commands=[one([c for _, commands in due for c in commands])],
        )
        for built, _ in due:
            built.build = build
    return {service: built for service, (built, _) in planned.items()}


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
    build: OperationMeta | None  # None: nothing to build (in use, or the previous one switched back to);
    # the operation that builds it (with the host's other builds), once declared
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


def _uv_environment(env: PythonEnv, found: dict) -> tuple[Built, list[str]]:
    """The environment of this run and the commands that build it (none when it need not be
    built): built when the one in use is not what the pins say (needs_build), in a new folder
    beside it (`<venv>-<run>-<pins digest>`): the service keeps running from the old one until
    switch() points `<venv>` at the new one. A build interrupted half-way leaves only its own
    folder (an orphaned installer writes nowhere else), pruned by a later switch."""
    certs = "--system-certs" if not is_macos() else ""
    # Bytecode is written at build time: the services run as users who cannot write __pycache__
    # into a root-owned environment, and would otherwise recompile at every start. Only for what
    # the service loads: the build imports its modules once (it fails if they do not import), or
    # the service's check does before the switch (imported_by_check), which compiles those.
    # LiteLLM's environment holds 8,500 modules, its proxy loads 3,600: compiling all of them took
    # 25 s of CPU on the lab, the import 16 s; MLX's 14 s and 2 s.
    # Modules loaded later (a model's architecture) are compiled in memory when first used.
    options = certs if env.imports else f"--compile-bytecode {certs}".strip()
    if env.python:
        python = f"--python {shlex.quote(env.python)} --managed-python"
        uv_venv = f"UV_PYTHON_INSTALL_DIR={UV_PYTHONS} {UV} venv"
    else:
        python, uv_venv = "--python python3", f"{UV} venv"
    # The record holds the interpreter and install options too: changing them rebuilds.
    spec_text = (f"# uv venv {python}\n" if env.python else "") + f"# uv pip install {options}".rstrip() + "\n"
    if env.imports:
        spec_text += f"# import {', '.join(env.imports)}\n"
    spec_text += "\n".join(env.requirements) + "\n"
    reason = needs_build(env, found, spec_text)
    if reason:
        # Pins put back after an upgrade: the previous environment may be exactly them.
        previous = host.get_fact(
            UvEnvironment,
            uv="",
            venv=f"{env.venv}.previous",
            entry_point=env.entry_point,
            dists=tuple(env.pins),
            **ops.AS_LOGIN,
        )
        if previous["folder"] and not needs_build(env, previous, spec_text):
            return Built(env, previous["folder"], None, "", reuse=True), []
    if not reason:  # nothing declared: a dry run shows no build
        return Built(env, env.venv, None, ""), []
    target = f"{env.venv}-{RUN}-{sha256_text(spec_text)[:8]}"
    t = shlex.quote(target)
    return Built(env, target, None, reason), [
        f"rm -rf {t}",
        f"{uv_venv} --quiet {certs} {python} {t}",
        # A build that fails leaves nothing behind (the folder in use was never touched).
        f"{UV} pip install --quiet {options} --python {t}/bin/python "
        + " ".join(shlex.quote(r) for r in env.requirements)
        + f" || {{ rm -rf {t}; exit 1; }}",
        *([_import_command(env, t)] if env.imports and not env.imported_by_check else []),
        f"printf %s {shlex.quote(spec_text)} > {shlex.quote(record_path(target))}",
    ]


def _import_command(env: PythonEnv, target: str) -> str:
    """Shell: import the service's modules with the new environment; if they do not import, the
    build fails and leaves nothing behind."""
    names = ", ".join(env.imports)
    return bytecode_command(
        env,
        target,
        f"-c {shlex.quote('import ' + names)} >/dev/null",
        f"echo {shlex.quote(f'the new {env.service} environment cannot import {names}')} >&2; rm -rf {target}; exit 1",
    )


def env_prefix(env: PythonEnv) -> str:
    """Shell: the variables the service's modules are loaded with (import_env), as a command's
    prefix ("" when none)."""
    return "".join(f"{k}={shlex.quote(v)} " for k, v in env.import_env)


def bytecode_command(env: PythonEnv, target: str, program: str, failed: str) -> str:
    """Shell: run program (arguments to the new environment's python, which load the service's
    modules) as root, so the bytecode of what it loads is written; `failed` is run when it fails.
    Beside it, on another core, the service's own packages are compiled whole (LiteLLM: 16 s ->
    12 s on the lab); whichever gets to a module first writes its bytecode."""
    writes = "env -u PYTHONDONTWRITEBYTECODE"  # bytecode is the point, whatever the host's shell sets
    python = f"{writes} {target}/bin/python"
    service_python = f"{writes} {env_prefix(env)}{target}/bin/python"
    packages = " ".join(
        f"{target}/lib/python*/site-packages/{shlex.quote(name)}"
        for name in dict.fromkeys(m.split(".")[0] for m in env.imports)
    )
    # From /: `python -c` puts the working directory (the login user's home, under sudo) first
    # on sys.path, where a stray module would shadow the service's own, imported as root.
    return (
        f"cd / && {{ {python} -m compileall -q -j 1 {packages} >/dev/null 2>&1 || true; }} & compiling=$!; "
        f"{service_python} {program} || {{ wait $compiling; {failed}; }}; wait $compiling"
    )


def switch_commands(venv_path: str, target_path: str, keep: int, macos: bool) -> list[str]:
    """Shell: point the link venv_path at target_path; the folder it pointed at becomes
    `<venv>.previous`; older folders pruned to `keep` in all (see switch)."""
    venv, target = shlex.quote(venv_path), shlex.quote(target_path)
    link = ops.replace_link(macos)
    old = shlex.quote(f"{venv_path}-00000000000000-old")  # sorts as the oldest
    return [
        # The folder in use becomes the previous one; an environment of the old layout (a folder,
        # not a link) is moved aside to become it.
        f'if [ -L {venv} ]; then {link} "$(readlink {venv})" {venv}.previous; '
        f"elif [ -d {venv} ]; then rm -rf {old} && mv {venv} {old} && {link} {old} {venv}.previous "
        f"&& rm -f {venv}.requirements.txt; fi",
        f"{link} {target} {venv}",
        # Prune: the current and the previous are kept, then the newest others up to `keep` in
        # all; an orphaned build still writing may refuse to go (the next switch tries again).
        f'ls -d {venv}-* 2>/dev/null | sort -r | grep -v -x -e {target} -e "$(readlink {venv}.previous)" '
        f'| tail -n +{max(keep - 1, 1)} | while read -r d; do rm -rf "$d" 2>/dev/null || true; done',
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
        commands=[one(switch_commands(built.env.venv, built.target, keep, is_macos()))],
    )


def rollback_command(built: Built) -> str:
    """Shell: point `<venv>` back at the previous environment (when there is one)."""
    venv = shlex.quote(built.env.venv)
    link = ops.replace_link(is_macos())
    return f'[ -L {venv}.previous ] && {link} "$(readlink {venv}.previous)" {venv}'
