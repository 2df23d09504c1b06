"""Operations the service deploys share, each built to read the host in one remote command.

pyinfra caches no facts between operations, so its generic operations spend two or three SSH
round trips per file, user or unit on a converged host. These ask one question each (one fact,
one command), decide at execution time, and change only what differs. They run on Linux and
macOS alike (GNU and BSD stat and sha256 tools)."""

from __future__ import annotations

import os
import shlex
from io import BytesIO
from pathlib import Path

from pyinfra import host, logger, state
from pyinfra.api import FactBase, FileUploadCommand, operation
from pyinfra.api.command import QuoteString as Q
from pyinfra.api.command import StringCommand
from pyinfra.api.util import get_file_sha256
from pyinfra.facts.files import FileContents
from pyinfra.operations.util.files import generate_color_diff

from tasks.common import root_group, sha256_text

SHA256 = "(sha256sum {p} 2>/dev/null || shasum -a 256 {p}) | cut -d' ' -f1"
STAT = "(stat -c '%U %G %a' {p} 2>/dev/null || stat -f '%Su %Sg %Lp' {p})"


def _file_probe(p: str) -> str:
    """Shell that prints owner, group, mode and sha256 of regular file p (quoted), or nothing."""
    return f"if [ -f {p} ]; then {STAT.format(p=p)} && {SHA256.format(p=p)}; fi"


def _directory_probe(p: str) -> str:
    """Shell that prints owner, group and mode of directory p (quoted), or nothing."""
    return f"if [ -d {p} ]; then {STAT.format(p=p)}; fi"


def _stat_entry(lines: list[str]) -> dict | None:
    """What a probe printed: None (nothing) or {user, group, mode[, sha256]}."""
    if not lines:
        return None
    user, group, mode = lines[0].split()
    entry = {"user": user, "group": group, "mode": mode.lstrip("0") or "0"}
    if len(lines) > 1:
        entry["sha256"] = lines[1].strip()
    return entry


class FileState(FactBase):
    """Owner, group, mode and sha256 of one regular file; None when it does not exist."""

    def command(self, path):
        return _file_probe(shlex.quote(path))

    def process(self, output):
        return _stat_entry(output) if len(output) >= 2 else None


class TreeDigests(FactBase):
    """Relative path -> sha256 of every regular file under a directory ({} when missing)."""

    @staticmethod
    def default():
        return {}

    def command(self, path):
        p = shlex.quote(path)
        return (
            f"if [ -d {p} ]; then cd {p} && find . -type f -exec sh -c "
            "'sha256sum \"$@\" 2>/dev/null || shasum -a 256 \"$@\"' _ {} +; fi"
        )

    def process(self, output):
        digests = {}
        for line in output:
            digest, _, name = line.strip().partition("  ")
            if name:
                digests[name[2:] if name.startswith("./") else name] = digest
        return digests


class Account(FactBase):
    """The passwd entry of a user as a dict (home, shell, group), None when absent."""

    def command(self, user):
        u = shlex.quote(user)
        return f"getent passwd {u} && id -gn {u} || true"

    def process(self, output):
        if len(output) < 2:
            return None
        fields = output[0].split(":")
        return {"home": fields[5], "shell": fields[6], "group": output[1].strip()}


class UnitStates(FactBase):
    """{unit: (unit file state, active state)} of several systemd units, from one `systemctl
    show` ("enabled"/"disabled"/"" and "active"/"inactive"/"failed"/...)."""

    def command(self, units):
        return "systemctl show --property=Id,UnitFileState,ActiveState -- " + " ".join(
            shlex.quote(u) for u in units
        )

    def process(self, output):
        blocks: list[dict] = []
        for line in output:  # one block per unit; blank lines between them may be dropped
            key, sep, value = line.strip().partition("=")
            if not sep:
                continue
            if not blocks or key in blocks[-1]:
                blocks.append({})
            blocks[-1][key] = value
        return {b.get("Id", ""): (b.get("UnitFileState", ""), b.get("ActiveState", "")) for b in blocks}


class InstalledDebianPackages(FactBase):
    """Which of these Debian packages are installed ("ii"), from one dpkg-query."""

    def command(self, packages):
        names = " ".join(shlex.quote(p) for p in packages)
        # dpkg-query prints nothing for a package it has never heard of (and exits 1).
        return f"dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {names} 2>/dev/null || true; echo '@end'"

    def process(self, output):
        installed = []
        for line in output:
            words = line.split()
            if len(words) >= 2 and words[1] == "ii":  # "@end" has one word
                installed.append(words[0])
        return installed


class UvEnvironment(FactBase):
    """What a uv-built environment at venv looks like, in one command: the version of the
    shared uv, the sha256 of the requirements record it was built from, and whether it exists."""

    def command(self, uv, venv):
        v, spec = shlex.quote(venv), shlex.quote(f"{venv}.requirements.txt")
        return (
            f'echo "uv=$({shlex.quote(uv)} --version 2>/dev/null | cut -d" " -f2)"; '
            f'echo "built_from=$([ -f {spec} ] && {SHA256.format(p=spec)})"; '
            f'echo "venv=$([ -f {v}/pyvenv.cfg ] && echo yes)"'
        )

    def process(self, output):
        values = dict(line.strip().partition("=")[::2] for line in output)
        return {"uv": values.get("uv", ""), "built_from": values.get("built_from", ""),
                "venv": values.get("venv") == "yes"}


class _PathStates(FactBase):
    """One probe per path in one command, each after an '@i' mark: [state or None], in order.
    Subclasses name the probe."""

    def command(self, paths):
        return "; ".join(f"echo '@{i}'; {self.probe(shlex.quote(path))}" for i, path in enumerate(paths))

    def process(self, output):
        sections: list[list[str]] = []
        for line in output:
            if line.startswith("@") and line[1:].strip().isdigit():
                sections.append([])
            elif sections:
                sections[-1].append(line)
        return [_stat_entry(lines) for lines in sections]


class FileStates(_PathStates):
    """FileState of several files in one command: [state or None] in the order of paths."""

    probe = staticmethod(_file_probe)


class DirectoryStates(_PathStates):
    """Owner, group and mode of several directories in one command: [state or None]."""

    probe = staticmethod(_directory_probe)


class Affected:
    """What a batched operation changed, item by item, on each host. The operation fills it
    when it runs (again from scratch each time pyinfra runs it: change detection, then the
    real run); later operations read it when they run, so decisions follow what was done."""

    def __init__(self):
        self._by_host: dict[str, set] = {}

    def reset(self):
        self._by_host[host.name] = set()

    def add(self, item):
        self._by_host.setdefault(host.name, set()).add(item)

    def __contains__(self, item) -> bool:
        return item in self._by_host.get(host.name, set())


def changed(meta) -> bool:
    """Whether an earlier operation changed (while executing) or will change (change detection)."""
    return meta.did_change() if state.is_executing else meta.will_change


def _upload(data: bytes, dest: str, user: str, group: str, mode: str):
    """Upload next to dest as a 0600 file, set owner and mode, then move it into place: the
    content is never readable by others, even for a moment, and dest changes atomically."""
    tmp = f"{dest}.upload"
    yield StringCommand("rm", "-f", Q(tmp))
    yield StringCommand("touch", Q(tmp))
    yield StringCommand("chmod", "600", Q(tmp))
    yield FileUploadCommand(BytesIO(data), tmp, remote_temp_filename=tmp)
    yield StringCommand("chown", Q(f"{user}:{group}"), Q(tmp))
    yield StringCommand("chmod", Q(mode), Q(tmp))
    yield StringCommand("mv", "-f", Q(tmp), Q(dest))


def _owner_and_mode(current: dict, dest: str, user: str, group: str, mode: str):
    """Commands that fix an existing file's owner and mode, if they differ."""
    if (current["user"], current["group"]) != (user, group):
        yield StringCommand("chown", Q(f"{user}:{group}"), Q(dest))
    if current["mode"] != mode.lstrip("0"):
        yield StringCommand("chmod", Q(mode), Q(dest))


def _text(dest: str, content: str, current: dict | None, user: str, group: str, mode: str, show_diff: bool):
    """Commands that make dest hold content with this owner and mode, given its current state.
    Returns True when the content is uploaded. show_diff: print a diff under --dry."""
    if current is not None and current["sha256"] == sha256_text(content):
        yield from _owner_and_mode(current, dest, user, group, mode)
        return False
    if current is not None and show_diff and state.config.DIFF:
        old = [line + "\n" for line in host.get_fact(FileContents, path=dest) or []]
        host.log(f"Will modify {dest}", logger.info)
        for line in generate_color_diff(old, content.splitlines(keepends=True)):
            logger.info("  %s", line)
    yield from _upload(content.encode(), dest, user, group, mode)
    return True


@operation()
def text_file(dest: str, content: str, user: str = "root", group: str | None = None, mode: str = "644",
              secret: bool = False):
    """A file with exactly this content, owner and mode (group: root's unless given). A secret
    file is compared by sha256 only: its content is never printed, diffed (--dry) or logged."""
    current = host.get_fact(FileState, path=dest)
    yield from _text(dest, content, current, user, group or root_group(), mode, show_diff=not secret)


@operation()
def text_files(files: dict, user: str = "root", group: str | None = None, mode: str = "644",
               written: Affected | None = None):
    """Several files with exactly these contents (dest -> text), owner and mode, read in one
    command. `written` collects the paths whose content this run uploaded. Not for secrets: a
    changed file is diffed under --dry (use text_file(secret=True))."""
    group = group or root_group()
    if written is not None:
        written.reset()
    paths = list(files)
    for dest, current in zip(paths, host.get_fact(FileStates, paths=tuple(paths))):
        uploaded = yield from _text(dest, files[dest], current, user, group, mode, show_diff=True)
        if uploaded and written is not None:
            written.add(dest)


@operation()
def directories(paths: list, user: str = "root", group: str | None = None, mode: str = "755"):
    """Directories that exist with an owner and mode, all read in one command. Each entry is a
    path (user, group (root's unless given) and mode as given here) or (path, group, mode)."""
    entries = [(p, group, mode) if isinstance(p, str) else tuple(p) for p in paths]
    found = host.get_fact(DirectoryStates, paths=tuple(p for p, _, _ in entries))
    for (path, dir_group, dir_mode), current in zip(entries, found):
        dir_group = dir_group or root_group()
        if current is None:
            yield StringCommand("install", "-d", "-o", Q(user), "-g", Q(dir_group), "-m", Q(dir_mode), Q(path))
        else:
            yield from _owner_and_mode(current, path, user, dir_group, dir_mode)


@operation()
def debian_packages(packages: list):
    """Debian packages installed. The package lists are refreshed (apt-get update) only when
    something is missing, so a converged host is asked one question and nothing changes."""
    installed = set(host.get_fact(InstalledDebianPackages, packages=tuple(packages)))
    missing = [p for p in packages if p not in installed]
    if missing:
        yield "apt-get update -qq"
        yield StringCommand(
            "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends",
            *[Q(p) for p in missing],
        )


@operation()
def local_file(src: str, dest: str, user: str = "root", group: str | None = None, mode: str = "644"):
    """A file on the host that is a copy of src on the control machine (compared by sha256)."""
    group = group or root_group()
    current = host.get_fact(FileState, path=dest)
    if current is None or current["sha256"] != get_file_sha256(src):
        yield from _upload(Path(src).read_bytes(), dest, user, group, mode)
        return
    yield from _owner_and_mode(current, dest, user, group, mode)


@operation()
def tree(src: str, dest: str):
    """dest on the host holds exactly the files of src on the control machine (root-owned,
    files 0644, folders 0755): changed files are uploaded, files src lacks are removed."""
    local = {}
    for folder, _, names in os.walk(src):
        for name in names:
            path = os.path.join(folder, name)
            local[os.path.relpath(path, src)] = path
    remote = host.get_fact(TreeDigests, path=dest)
    changed = [rel for rel in sorted(local) if remote.get(rel) != get_file_sha256(local[rel])]
    for folder in sorted({os.path.dirname(rel) for rel in changed}):
        yield StringCommand("install", "-d", "-m", "755", Q(f"{dest}/{folder}" if folder else dest))
    for rel in changed:
        yield from _upload(Path(local[rel]).read_bytes(), f"{dest}/{rel}", "root", root_group(), "644")
    for rel in sorted(set(remote) - set(local)):
        yield StringCommand("rm", "-f", Q(f"{dest}/{rel}"))


@operation()
def system_account(user: str, home: str, shell: str = "/usr/sbin/nologin"):
    """A system user with a group of its own name, the given home (not created) and shell."""
    current = host.get_fact(Account, user=user)
    if current is None:
        yield StringCommand("getent", "group", Q(user), ">/dev/null", "||", "groupadd", "--system", Q(user))
        yield StringCommand(
            "useradd", "--system", "--gid", Q(user), "--home-dir", Q(home), "--no-create-home",
            "--shell", Q(shell), Q(user),
        )
        return
    if current["home"] != home or current["shell"] != shell or current["group"] != user:
        yield StringCommand("getent", "group", Q(user), ">/dev/null", "||", "groupadd", "--system", Q(user))
        yield StringCommand("usermod", "--gid", Q(user), "--home", Q(home), "--shell", Q(shell), Q(user))


@operation()
def restart_units(units: dict, written: Affected, restarted: Affected):
    """systemctl try-restart, in one command, of each unit (name -> (unit file, operations))
    whose file this run wrote or one of whose operations changed something."""
    restarted.reset()
    due = [name for name, (path, metas) in units.items() if path in written or any(changed(m) for m in metas)]
    for name in due:
        restarted.add(name)
    if due:
        yield StringCommand("systemctl", "try-restart", *[Q(name) for name in due])


@operation()
def units_enabled_running(units: list, started: Affected):
    """systemd units enabled at boot and active now (started if they are not), read in one
    command. `started` collects the units this run enabled or started."""
    started.reset()
    states = host.get_fact(UnitStates, units=tuple(units))
    to_enable = [u for u in units if states.get(u, ("", ""))[0] != "enabled"]
    to_start = [u for u in units if states.get(u, ("", ""))[1] != "active"]
    for unit in to_enable + to_start:
        started.add(unit)
    if to_enable:
        yield StringCommand("systemctl", "enable", *[Q(u) for u in to_enable])
    if to_start:
        yield StringCommand("systemctl", "start", *[Q(u) for u in to_start])


@operation()
def launchd_load(jobs: dict, written: Affected):
    """Reload each launchd job (label -> plist path) whose plist this run wrote: bootout, then
    bootstrap (bootstrap fails while a job of that label is loaded)."""
    for label, path in jobs.items():
        if path in written:
            yield f"launchctl bootout system/{shlex.quote(label)} 2>/dev/null || true"
            yield f"launchctl bootstrap system {shlex.quote(path)}"


@operation()
def launchd_kickstart(jobs: dict, written: Affected, restarted: Affected):
    """launchctl kickstart -k each job (label -> (plist path, operations)) whose plist is
    unchanged but one of whose operations changed something (a new plist was loaded already)."""
    restarted.reset()
    for label, (path, metas) in jobs.items():
        if path not in written and any(changed(m) for m in metas):
            restarted.add(label)
            yield f"launchctl kickstart -k system/{shlex.quote(label)}"


@operation()
def services_answer(checks: list):
    """For each (url, timeout, what, started) whose `started` operation changed something, wait
    until url answers 200, failing with a clear message after timeout seconds."""
    for url, timeout, what, started in checks:
        if not started.did_change():
            continue
        yield StringCommand(
            f"deadline=$(( $(date +%s) + {int(timeout)} )); "
            f"until curl -fsS -o /dev/null --max-time 5 {shlex.quote(url)}; do "
            f"if [ $(date +%s) -ge $deadline ]; then "
            f"echo {shlex.quote(f'{what} did not answer {url} within {int(timeout)} s')} >&2; exit 1; fi; "
            f"sleep 0.5; done"
        )
