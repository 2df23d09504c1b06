"""Operations the service deploys share, each reading the host in one remote command (facts in
tasks/facts.py), deciding when it runs, and changing only what differs.

Contract with pyinfra's two passes (pyinfra/api/operation.py), tested on a fake host in
tests/unit/test_ops_contract.py:

- Change detection (pyinfra without -y, and --dry): pyinfra runs each operation's generator
  while preparing and stops at its first command: `will_change` is True if it yields anything.
  The facts it reads then are the host's state before the run, and `_if=` conditions are not
  evaluated: pyinfra shows such an operation as a Conditional Change whenever it would yield.
  So an operation whose need is known before the run is declared only when needed (no `_if=`),
  and one that depends on others' results is declared only when one of them will change
  (may_change()); then a converged host plans nothing, conditional or not (tested on the lab).
  An operation that fills an `Affected` records every item before its first command, so the
  ones reading it (`Affected`, `changed()`) plan what they will do. Where the plan still
  approximates: an `_if=` operation planned as a conditional change may, in principle, not run
  (every such operation here runs whenever one of its inputs changes, which is what is planned).
- Execution: the generator runs again from the start, reading the facts afresh, and every
  command it yields is run; `did_change()` is True when it yielded any. Operations run one after
  the other in the order deploy.py declared them, so an `Affected` filled by an earlier
  operation is complete when a later one reads it.
- Converged host: no command is yielded in either pass (`will_change` False, `did_change()`
  False); `Affected` is empty.

Why not pyinfra's own operations: a converged run is mostly reading, and every fact is one remote
command (through sudo with a password, a password check each). Counted on a converged host by
tests/unit/test_ops_contract.py against pyinfra 3.10: files.put reads each file with three
commands (File, its folder's Directory, Sha1File), files.directory one per folder, systemd.service
two per unit; text_files, directories and units_running read any number in one. What else each
one does that pyinfra's does not:

- text_file(s), local_file: a secret file is never shown, diffed or logged; uploads go through
  the login user's 0700 folder and one command as root places them (owner and mode set before
  the file appears); `written` and `then=` (a reload only when a file changed).
- directories, system_account, link: one command each; link refuses to replace a path that is
  not a link.
- system_packages: apt's lists refreshed only when something is missing and they are old
  (package_lists_max_age), dnf on RHEL, every service's packages in one install.
- tree: a model folder's changed files as one tar (one upload, one unpack) instead of a command
  per file; files the source lacks are removed.
- units_running, launchd_running, units_masked, services_retired: restarts decided from operation results
  (Affected), not from facts read before the run; launchd has no operation in pyinfra.
- services_answer: the health-gated wait and its rollback (tasks/units.py).
"""

from __future__ import annotations

import os
import shlex
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, operation
from pyinfra.api.command import QuoteString as Q
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.util import get_file_sha256
from pyinfra.facts.files import FileContents, Link
from pyinfra.operations.util.files import generate_color_diff

from tasks import run
from tasks.facts import (
    Account,
    Answering,
    DirectoryStates,
    FileState,
    FileStates,
    InstalledDebianPackages,
    InstalledRpmPackages,
    LaunchdJobs,
    TreeDigests,
    UnitStates,
)
from tasks.render import sha256_text
from tasks.run import root_group
from tasks.shell import joined_commands

# Facts about what anyone may read (unit states, packages, accounts, files in world-readable
# folders) are asked without sudo: on a host reached through sudo with a password, each sudo'd
# command pays a password check (about 40 ms on the lab), and a converged run is mostly facts.
AS_LOGIN = {"_sudo": False}


def _as(public: bool) -> dict:
    return AS_LOGIN if public else {}


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
    """Whether an earlier operation changed (once it has run) or will change (change detection,
    and the deploy lock's look ahead right before the run's first operation, tasks/runlock.py,
    when no operation has run on the host yet)."""
    if state.is_executing and (meta.is_complete() or host.executing_op_hash is not None):
        return meta.did_change()
    return meta.will_change


def may_change(known: bool, inputs: list) -> bool:
    """Whether to declare an operation that runs (`_if=`) when `known` or one of `inputs` changed.
    Under change detection (--dry, or pyinfra without -y) every operation's will_change is known
    already: declared only if it may run, so the plan shows no conditional change that cannot
    happen. With -y, will_change would cost each input's facts once more: declared always,
    and decided at execution."""
    if not state.should_check_for_changes():
        return True
    return known or any(m.will_change for m in inputs)


def _upload_folder() -> str:
    """The login user's own upload folder (0700, in its home): SFTP writes as that user."""
    return f"{run.system().home}/.llmlab-upload"


def _staged(dest: str, suffix: str = "") -> str:
    """Where the bytes for dest wait in the upload folder."""
    return f"{_upload_folder()}/{sha256_text(dest)[:16]}{suffix}"


def _staging() -> bool:
    """Whether an upload passes through the upload folder before sudo copies it into place;
    not when commands run as the login user itself (root), which writes beside dest directly."""
    return run.system().sudo != "root"


def _upload(data, dest: str, user: str, group: str, mode: str) -> tuple:
    """The three steps that put bytes on a 0600 file beside dest, set owner and mode, then move
    it into place: the content is never readable by others, even for a moment, and dest changes
    atomically. data: bytes, or a local file's path. Returns (prepare, send, place): _placed()
    runs them for several files.

    Under sudo the bytes go by SFTP, as the login user, into its private upload folder (0700),
    and one command as root copies them onto the 0600 file (umask 077), sets owner and mode and
    moves it into place: one sudo per file, where pyinfra's own sudo upload takes three."""
    tmp = f"{dest}.upload"
    body = BytesIO(data) if isinstance(data, bytes) else data
    into_place = [
        "chown",
        Q(f"{user}:{group}"),
        Q(tmp),
        "&&",
        "chmod",
        Q(mode),
        Q(tmp),
        "&&",
        "mv",
        "-f",
        Q(tmp),
        Q(dest),
    ]
    if not _staging():  # root: SFTP writes onto the 0600 file itself
        return (
            StringCommand("rm", "-f", Q(tmp), "&&", "touch", Q(tmp), "&&", "chmod", "600", Q(tmp)),
            FileUploadCommand(body, tmp),
            StringCommand(*into_place),
        )
    staged = _staged(dest)
    # The staged copy goes whether the copy worked or not.
    return (
        _private_folder(_upload_folder()),
        FileUploadCommand(body, staged, **AS_LOGIN),
        StringCommand(
            "rm",
            "-f",
            Q(tmp),
            "&&",
            "(",
            "umask",
            "077",
            "&&",
            "cp",
            Q(staged),
            Q(tmp),
            ")",
            ";",
            "c=$?;",
            "rm",
            "-f",
            Q(staged),
            ";",
            "[",
            "$c",
            "-eq",
            "0",
            "]",
            "&&",
            *into_place,
        ),
    )


def _placed(uploads: list[tuple], fixes: list[StringCommand] = ()):
    """Commands for several files (_upload steps each): every file's preparation (the upload
    folder, made once), every upload, then every move into place and the `fixes` (owner and
    mode of files whose content is right): under joined_commands, one command as the login user
    (as root when it logs in as root), the uploads, and one as root, however many files."""
    prepared = {}
    for prepare, _, _ in uploads:
        prepared.setdefault(prepare.get_raw_value(), prepare)
    yield from prepared.values()
    for _, send, _ in uploads:
        yield send
    for _, _, place in uploads:
        yield place
    yield from fixes


def _private_folder(folder: str) -> StringCommand:
    """The login user's upload folder, 0700 even if it existed with another mode."""
    return StringCommand("mkdir", "-p", Q(folder), "&&", "chmod", "700", Q(folder), **AS_LOGIN)


def _owner_and_mode(current: dict, dest: str, user: str, group: str, mode: str):
    """Commands that fix an existing file's owner and mode, if they differ."""
    if (current["user"], current["group"]) != (user, group):
        yield StringCommand("chown", Q(f"{user}:{group}"), Q(dest))
    if current["mode"] != mode.lstrip("0"):
        yield StringCommand("chmod", Q(mode), Q(dest))


def _texts(files: list[tuple]):
    """Commands that make each dest hold its content with its owner and mode, given its current
    state: files are (dest, content, current, user, group, mode, show_diff). show_diff: print a
    diff under --dry."""
    uploads, fixes = [], []
    for dest, content, current, user, group, mode, show_diff in files:
        if current is not None and current["sha256"] == sha256_text(content):
            fixes += _owner_and_mode(current, dest, user, group, mode)
            continue
        if current is not None and show_diff and state.config.DIFF:
            old = [line + "\n" for line in host.get_fact(FileContents, path=dest) or []]
            host.log(f"Will modify {dest}", logger.info)
            for line in generate_color_diff(old, content.splitlines(keepends=True)):
                logger.info("  %s", line)
        uploads.append(_upload(content.encode(), dest, user, group, mode))
    yield from _placed(uploads, fixes)


@operation()
@joined_commands
def text_file(
    dest: str,
    content: str,
    user: str = "root",
    group: str | None = None,
    mode: str = "644",
    secret: bool = False,
    public: bool = False,
):
    """A file with exactly this content, owner and mode (group: root's unless given). A secret
    file is compared by sha256 only: its content is never printed, diffed (--dry) or logged.
    public: the file and its folders are readable by anyone, so it is read without sudo."""
    current = host.get_fact(FileState, path=dest, **_as(public))
    yield from _texts([(dest, content, current, user, group or root_group(), mode, not secret)])


@dataclass(frozen=True)
class Text:
    """One file of text_files() with its own owner and mode; a secret one is never shown."""

    content: str
    user: str = "root"
    group: str | None = None  # root's group unless given
    mode: str = "644"
    secret: bool = False


@operation()
@joined_commands
def text_files(
    files: dict,
    user: str = "root",
    group: str | None = None,
    mode: str = "644",
    written: Affected | None = None,
    public: bool = False,
    then=None,
):
    """Several files with exactly these contents, owners and modes, read in one command: dest ->
    text (with the owner and mode given here) or Text (its own). `written` collects the paths
    whose content this run uploaded. A changed file is diffed under --dry unless it is secret.
    then: a function of the paths whose content changed, returning the commands (as root) that
    follow once they are in place (a reload of their service manager); called only if any did."""
    paths = list(files)
    specs = [files[p] if isinstance(files[p], Text) else Text(files[p], user, group, mode) for p in paths]
    found = host.get_fact(FileStates, paths=tuple(paths), **_as(public))
    to_write = [
        dest
        for dest, spec, current in zip(paths, specs, found)
        if current is None or current["sha256"] != sha256_text(spec.content)
    ]
    if written is not None:
        # Recorded before the first command: change detection stops this generator there, and
        # what it recorded is all that the operations after it can see of it.
        written.reset()
        for dest in to_write:
            written.add(dest)
    yield from _texts(
        [
            (dest, spec.content, current, spec.user, spec.group or root_group(), spec.mode, not spec.secret)
            for dest, spec, current in zip(paths, specs, found)
        ]
    )
    if then is not None and to_write:
        yield from then(to_write)


@operation()
@joined_commands
def directories(paths: list, user: str = "root", group: str | None = None, mode: str = "755", public: bool = False):
    """Directories that exist with an owner and mode, all read in one command. Each entry is a
    path (user, group (root's unless given) and mode as given here), or (path, group, mode) or
    (path, group, mode, user). public: their parents are readable by anyone, so they are read
    without sudo."""
    entries = [(p, group, mode, user) if isinstance(p, str) else (*p, user)[:4] for p in paths]
    found = host.get_fact(DirectoryStates, paths=tuple(e[0] for e in entries), **_as(public))
    for (path, dir_group, dir_mode, dir_user), current in zip(entries, found):
        dir_group = dir_group or root_group()
        if current is None:
            yield StringCommand("install", "-d", "-o", Q(dir_user), "-g", Q(dir_group), "-m", Q(dir_mode), Q(path))
        else:
            yield from _owner_and_mode(current, path, dir_user, dir_group, dir_mode)


APT_LISTS = "/var/lib/apt/lists"


def apt_install_command(packages: list[str], max_age_hours: int, lists: str = APT_LISTS) -> str:
    """Shell: install packages with apt, refreshing the package lists first only when none was
    written within max_age_hours (by ctime: when apt last wrote one here; 0: always), and again
    whenever an install without a refresh fails (lists too old for the archive, a package they
    do not name yet)."""
    install = " ".join(
        [
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends",
            *(shlex.quote(p) for p in packages),
        ]
    )
    refresh_then_install = f"apt-get update -qq && {install}"
    if max_age_hours <= 0:
        return refresh_then_install
    fresh = (
        f"find {shlex.quote(lists)} -maxdepth 1 -name '*Release' -cmin -{max_age_hours * 60} 2>/dev/null | grep -q ."
    )
    return f"if {fresh} && {install}; then :; else {refresh_then_install}; fi"


@operation()
@joined_commands
def system_packages(packages: list, max_age_hours: int = 0):
    """The distribution's packages installed (apt on Debian and Ubuntu, dnf on RHEL). Only when
    something is missing, so a converged host is asked one question and nothing changes; apt's
    package lists are then refreshed unless they are younger than max_age_hours (see
    apt_install_command; dnf refreshes its own metadata when it expires)."""
    if not packages:
        return
    if run.system().family == "rhel":
        installed = set(host.get_fact(InstalledRpmPackages, packages=tuple(packages), **AS_LOGIN))
        missing = [p for p in packages if p not in installed]
        if missing:
            yield StringCommand("dnf", "install", "-y", "-q", *[Q(p) for p in missing])
        return
    installed = set(host.get_fact(InstalledDebianPackages, packages=tuple(packages), **AS_LOGIN))
    missing = [p for p in packages if p not in installed]
    if missing:
        yield apt_install_command(missing, max_age_hours)


@operation()
@joined_commands
def local_file(
    src: str, dest: str, user: str = "root", group: str | None = None, mode: str = "644", public: bool = False
):
    """A file on the host that is a copy of src on the control machine (compared by sha256)."""
    group = group or root_group()
    current = host.get_fact(FileState, path=dest, **_as(public))
    if current is None or current["sha256"] != get_file_sha256(src):
        yield from _placed([_upload(src, dest, user, group, mode)])
        return
    yield from _owner_and_mode(current, dest, user, group, mode)


def tar_of(src: str, names: list[str]):
    """A tar of these files of src (relative names) and their folders, owned by uid/gid 0,
    files 0644 and folders 0755, whatever they are on the control machine. Kept in memory up
    to 64 MiB, on disk beyond (a model's weights). A link is packed as the file it points at (a
    Hugging Face snapshot is links into its blobs), as its digest was taken."""
    archive = tempfile.SpooledTemporaryFile(max_size=64 << 20)
    with tarfile.open(fileobj=archive, mode="w", dereference=True) as tar:
        folders = sorted({f for rel in names for f in _parents(rel)})
        for rel in folders + names:
            info = tar.gettarinfo(os.path.join(src, rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isdir():
                tar.addfile(info)
            else:
                with open(os.path.join(src, rel), "rb") as handle:
                    tar.addfile(info, handle)
    return archive


class _MadeOnRead:
    """A file object made only when it is first read or sought (an upload's source): pyinfra's
    look ahead at what an operation will do (tasks/runlock.py) sees the upload without making it."""

    def __init__(self, make):
        self._make, self._file = make, None

    def _opened(self):
        if self._file is None:
            self._file = self._make()
        return self._file

    def read(self, *args):
        return self._opened().read(*args)

    def seek(self, *args):
        return self._opened().seek(*args)

    def tell(self):
        return self._opened().tell()

    def close(self):
        if self._file is not None:
            self._file.close()


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def untar_command(archive: str, dest: str) -> StringCommand:
    """Unpack a tar_of archive into dest (made if missing; GNU tar and BSD tar alike), then
    remove the archive, whether the unpack worked or not."""
    return StringCommand(
        "install",
        "-d",
        "-m",
        "755",
        Q(dest),
        "&&",
        "tar",
        "-x",
        "-U",
        "--numeric-owner",
        "-f",
        Q(archive),
        "-C",
        Q(dest),
        ";",
        "s=$?;",
        "rm",
        "-f",
        Q(archive),
        ";",
        "[",
        "$s",
        "-eq",
        "0",
        "]",
    )


@operation()
@joined_commands
def tree(src: str, dest: str):
    """dest on the host holds exactly the files of src on the control machine (root-owned,
    files 0644, folders 0755): changed files are uploaded, files src lacks are removed. The
    changed files travel as one tar (a model is many files; one upload and one unpack instead
    of a round of commands per file); each lands under its name by a new inode (tar -U), so a
    server reading the old one keeps it until it restarts."""
    local = {}
    for folder, _, names in os.walk(src):
        for name in names:
            path = os.path.join(folder, name)
            local[os.path.relpath(path, src)] = path
    if not local:
        raise OperationValueError(f"{src} holds no file: refusing to empty {dest} on the host")
    remote = host.get_fact(TreeDigests, path=dest, **AS_LOGIN)  # model files: 0644 in 0755 folders
    changed = [rel for rel in sorted(local) if remote.get(rel) != get_file_sha256(local[rel])]
    gone = sorted(set(remote) - set(local))
    if changed:
        # Into the login user's upload folder (root's own when it logs in as root), unpacked from
        # there as root: never inside dest, where a leftover would be a file of the model. The tar
        # is made only when the upload reads it (not while changes are detected or looked ahead at).
        archive = _staged(dest, ".tar")
        yield _private_folder(_upload_folder())
        yield FileUploadCommand(_MadeOnRead(lambda: tar_of(src, changed)), archive, **AS_LOGIN)
        yield untar_command(archive, dest)
    if gone:
        yield StringCommand("rm", "-f", *[Q(f"{dest}/{rel}") for rel in gone])


def replace_link(macos: bool) -> str:
    """Shell: `<this> TARGET LINK` points LINK at TARGET, replacing a link to a folder in place
    (BSD ln's -h is GNU ln's -n)."""
    return "ln -sfh" if macos else "ln -sfn"


@operation()
def link(path: str, target: str):
    """path is a symbolic link to target (read without sudo: its folder is readable by anyone).
    A path that exists and is not a link is refused, not replaced."""
    current = host.get_fact(Link, path=path, **AS_LOGIN)
    if current is False:
        raise OperationValueError(f"{path} exists and is not a link: refusing to replace it with one to {target}")
    if current and current["link_target"] == target:
        return
    yield f"{replace_link(run.system().macos)} {shlex.quote(target)} {shlex.quote(path)}"


@operation()
@joined_commands
def system_account(user: str, home: str, shell: str = "/usr/sbin/nologin"):
    """A system user with a group of its own name, the given home (not created) and shell."""
    current = host.get_fact(Account, user=user, **AS_LOGIN)
    if current is None:
        yield StringCommand("getent", "group", Q(user), ">/dev/null", "||", "groupadd", "--system", Q(user))
        yield StringCommand(
            "useradd",
            "--system",
            "--gid",
            Q(user),
            "--home-dir",
            Q(home),
            "--no-create-home",
            "--shell",
            Q(shell),
            Q(user),
        )
        return
    if current["home"] != home or current["shell"] != shell or current["group"] != user:
        yield StringCommand("getent", "group", Q(user), ">/dev/null", "||", "groupadd", "--system", Q(user))
        yield StringCommand("usermod", "--gid", Q(user), "--home", Q(home), "--shell", Q(shell), Q(user))


@operation()
@joined_commands
def units_running(units: dict, written: Affected, restarted: Affected, started: Affected):
    """systemd units (name -> (unit file, operations)) enabled at boot and active, their states
    read in one command: each running one whose file this run wrote or one of whose operations
    changed something is restarted (try-restart), then any not enabled is enabled and any not
    active started. `restarted` and `started` collect what this run restarted, and enabled or
    started."""
    restarted.reset()
    started.reset()
    due = [name for name, (path, metas) in units.items() if path in written or any(changed(m) for m in metas)]
    states = host.get_fact(UnitStates, units=tuple(units), **AS_LOGIN)
    to_enable = [u for u in units if states.get(u, ("", ""))[0] != "enabled"]
    to_start = [u for u in units if states.get(u, ("", ""))[1] != "active"]
    for name in due:  # all recorded before the first command (change detection stops there)
        restarted.add(name)
    for unit in to_enable + to_start:
        started.add(unit)
    if due:
        # Only running units: a stopped one is started just below, with what changed.
        yield StringCommand("systemctl", "try-restart", *[Q(name) for name in due])
    if to_enable:
        yield StringCommand("systemctl", "enable", *[Q(u) for u in to_enable])
    if to_start:
        yield StringCommand("systemctl", "start", *[Q(u) for u in to_start])


def launchd_bootout(label: str, tries: int) -> list[str]:
    """Shell: boot the launchd job out and wait (tries x 0.5 s at most) until it is gone:
    bootout returns before the job has exited (a server unloading a big model takes a while),
    and a bootstrap fails ("5: Input/output error"), or its port is still held, while it is there."""
    job = shlex.quote(label)
    return [
        f"launchctl bootout system/{job} 2>/dev/null || true",
        f"i=0; while launchctl print system/{job} >/dev/null 2>&1 && [ $i -lt {int(tries)} ]; "
        "do sleep 0.5; i=$((i+1)); done",
    ]


def launchd_bootstrap(label: str, path: str) -> list[str]:
    """Shell: load a job from its plist, enabled first (a job disabled, as a takeover's way back
    leaves the successor that failed, cannot be bootstrapped)."""
    return [f"launchctl enable system/{shlex.quote(label)}", f"launchctl bootstrap system {shlex.quote(path)}"]


def launchd_reload(jobs: dict):
    """For text_files(then=): the commands that load afresh each changed plist (jobs: plist path
    -> label): bootout, then bootstrap (bootstrap fails while a job of that label is loaded)."""

    def commands(changed: list[str]):
        for path in changed:
            yield from launchd_bootout(jobs[path], 60)
            yield from launchd_bootstrap(jobs[path], path)

    return commands


@operation()
@joined_commands
def launchd_running(jobs: dict, written: Affected, restarted: Affected, loaded: Affected):
    """launchd jobs (label -> (plist path, operations)) loaded in the system domain, read in one
    command (`launchctl print`): one not loaded (someone booted it out) is bootstrapped; a loaded
    one whose plist is unchanged (a changed one was loaded afresh already, launchd_reload) but
    one of whose operations changed something is restarted (kickstart -k). `restarted` and
    `loaded` collect the labels."""
    restarted.reset()
    loaded.reset()
    states = host.get_fact(LaunchdJobs, labels=tuple(jobs))
    # A job whose plist this run wrote was bootstrapped with it (and a dry run, reading the
    # host before the run, would otherwise plan a second bootstrap that the run never makes).
    to_load = [label for label, (path, _) in jobs.items() if not states.get(label) and path not in written]
    due = [
        label
        for label, (path, metas) in jobs.items()
        if label not in to_load and path not in written and any(changed(m) for m in metas)
    ]
    for label in to_load:  # all recorded before the first command (change detection stops there)
        loaded.add(label)
    for label in due:
        restarted.add(label)
    for label in to_load:
        yield from launchd_bootstrap(label, jobs[label][0])
    for label in due:
        yield f"launchctl kickstart -k system/{shlex.quote(label)}"


def _answers_within(probe: str, timeout: int) -> str:
    """Shell: true once probe succeeds, false after timeout seconds."""
    return (
        f"{{ deadline=$(( $(date +%s) + {int(timeout)} )); answered=yes; until {probe} >/dev/null 2>&1; do "
        f"if [ $(date +%s) -ge $deadline ]; then answered=no; break; fi; sleep 0.5; done; [ $answered = yes ]; }}"
    )


def wait_command(probe: str, timeout: int, what: str, rollback=None, restore=None) -> str:
    """Shell: wait until probe succeeds, or fail after timeout s with one line; with a rollback
    (units.Rollback), first put the previous environment back and wait for it, then fail; with a
    restore (units.Restore: hand-kept units this run took over), stop the service and start them
    again, then fail."""
    failed = f"{what} did not answer within {int(timeout)} s"
    if restore is not None:
        back = f"{failed}; {restore.what} started again"
        return f"{_answers_within(probe, timeout)} || {{ {restore.command}; echo {shlex.quote(back)} >&2; exit 1; }}"
    if rollback is None:
        return f"{_answers_within(probe, timeout)} || {{ echo {shlex.quote(failed)} >&2; exit 1; }}"
    failed = f"{what}: {rollback.version} did not answer within {int(timeout)} s (log: {rollback.log})"
    return (
        f"{_answers_within(probe, timeout)} || {{ "
        f"{{ {rollback.command}; }} && {_answers_within(probe, timeout)} && "
        f"echo {shlex.quote(failed + '; rolled back to the previous environment, which answers')} >&2 || "
        f"echo {shlex.quote(failed + '; the previous environment does not answer either')} >&2; exit 1; }}"
    )


@operation()
@joined_commands
def services_answer(checks: list, every: bool = False):
    """For each (probe, timeout, what, started, rollback) whose `started` operation changed
    something, wait until it answers (wait_command). A rollback applies only when its switch to
    a new environment happened in this run. every: also each other service that does not answer
    now (asked in one command): a run that was interrupted may have left one starting."""
    due = [started.did_change() for _, _, _, started, _ in checks]
    others = [i for i, d in enumerate(due) if not d]
    if every and others:
        answers = host.get_fact(Answering, probes=tuple(checks[i][0] for i in others))
        for i, answering in zip(others, answers):
            due[i] = not answering
    for (probe, timeout, what, started, rollback), wait in zip(checks, due):
        if wait:
            applies = rollback is not None and changed(rollback.switched)
            restore = getattr(started, "restore", None)
            yield StringCommand(wait_command(probe, timeout, what, rollback if applies else None, restore))


@operation()
@joined_commands
def units_taken_over(units: list):
    """Hand-kept services the data names (llm_takeover; units.HandKept: a systemd unit, system
    or a user's, or a launchd job), stopped and disabled so that their successor can start on
    their port; their files stay. Declared only when one holds a port."""
    for unit in units:
        yield from unit.stop()


@operation()
@joined_commands
def services_retired(units: list, jobs: dict):
    """Services this toolkit wrote that left the registry, stopped and removed: systemd units
    (names) disabled and stopped, their files removed and systemd reloaded; launchd jobs (label ->
    plist path) booted out and their plists removed. Declared only when there is one."""
    if units:
        yield StringCommand("systemctl", "disable", "--now", *[Q(u) for u in units])
        yield StringCommand("rm", "-f", *[Q(f"/etc/systemd/system/{u}") for u in units])
        yield "systemctl daemon-reload"
    for label, path in jobs.items():
        yield from launchd_bootout(label, 20)  # gone within 10 s: its port is free for a server after it
        yield StringCommand("rm", "-f", Q(path))


@operation()
@joined_commands
def units_masked(units: list):
    """systemd units stopped and masked (another unit of ours does their job), read in one command."""
    states = host.get_fact(UnitStates, units=tuple(units), **AS_LOGIN)
    to_mask = [u for u in units if states.get(u, ("", ""))[0] != "masked"]
    running = [u for u in units if states.get(u, ("", ""))[1] in ("active", "activating", "reloading")]
    if to_mask or running:
        yield StringCommand("systemctl", "mask", "--now", *[Q(u) for u in dict.fromkeys(to_mask + running)])
