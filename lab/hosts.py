"""The lab's hosts: the cached root filesystem of each one's system, each host's copy of it, booting it with
systemd-nspawn into its namespace, waiting for it, stopping it, and reaching it over SSH."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import paths
from lab.network import HOSTS, nameservers, namespace
from lab.proc import LabError, log, run

# The account the deploy and the tests log in as, like the operator's own on the real hosts: a
# home under /home, sudo with a password, and root's SSH logins refused.
OPERATOR = "chris"
SSHD_DROPIN = "# lab: like the real hosts, root cannot log in over SSH\nPermitRootLogin no\n"

BASE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "ca-certificates",
    "python3",
    "iproute2",
    "procps",
    "curl",
    "sudo",
    "libpam-systemd",
]
# Host keys are made at first boot so every machine copied from the cached root has its own.
# The distribution's own ExecStartPre (sshd -t) needs the keys, so the list is reset with keygen first.
SSH_KEYGEN_DROPIN = "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"


@dataclass(frozen=True)
class Distro:
    """A root filesystem debootstrap builds: the system a lab host runs."""

    name: str
    suite: str
    mirror: str
    script: str = ""  # debootstrap's script when its own list lacks the suite
    keyring: tuple[str, str, str] = ()  # (.deb URL, its sha256, keyring path inside) when the host lacks it
    sources: str = ""  # /etc/apt/sources.list (debootstrap writes only the release and main)
    # Brought up to date from sources (the updates and security pockets), as a server in use is:
    # debootstrap installs the release as it shipped, and a deploy to it would first upgrade
    # Python, the certificates and the C++ runtime (7 s of a from-scratch deploy on the lab).
    upgraded: bool = False


DEBIAN_12 = Distro("Debian 12", "bookworm", "http://deb.debian.org/debian")
# The real mini runs Ubuntu 24.04 (README, "Your real hosts"), and OVMS publishes builds for
# Ubuntu, not Debian. Debian 12 carries no Ubuntu keyring: the keyring package is fetched from
# Ubuntu's archive and held to the digest recorded here (first fetched 2026-11-25).
UBUNTU_2404 = Distro(
    "Ubuntu 24.04",
    "noble",
    "http://archive.ubuntu.com/ubuntu",
    script="/usr/share/debootstrap/scripts/gutsy",
    keyring=(
        "http://archive.ubuntu.com/ubuntu/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb",
        "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8",
        "usr/share/keyrings/ubuntu-archive-keyring.gpg",
    ),
    sources="".join(
        f"deb http://archive.ubuntu.com/ubuntu {suite} main universe\n"
        for suite in ("noble", "noble-updates", "noble-security")
    ),
    upgraded=True,
)
# The mini like the real one; the studio stands in for a Mac, which the lab cannot run.
SYSTEMS = {"mini": UBUNTU_2404, "studio": DEBIAN_12}


def recipe(distro: Distro) -> str:
    return json.dumps(
        {"distro": asdict(distro), "packages": BASE_PACKAGES, "variant": "minbase", "dropin": SSH_KEYGEN_DROPIN, "v": 3}
    )


def recipe_hash(distro: Distro) -> str:
    return hashlib.sha256(recipe(distro).encode()).hexdigest()[:12]


def _keyring(distro: Distro) -> list[str]:
    """debootstrap's --keyring argument: the distribution's archive keyring, from its package
    held to the recorded digest (none needed for Debian's own)."""
    if not distro.keyring:
        return []
    url, digest, inside = distro.keyring
    target = paths.CACHE / f"keyring-{digest[:12]}.gpg"
    if not target.exists():
        deb = paths.CACHE / f"keyring-{digest[:12]}.deb"
        run("curl", "-fsS", "--max-time", "60", "-o", str(deb), url)
        found = hashlib.sha256(deb.read_bytes()).hexdigest()
        if found != digest:
            deb.unlink()
            raise LabError(f"{url}: sha256 {found}, not the recorded {digest}")
        unpacked = paths.CACHE / f"keyring-{digest[:12]}"
        shutil.rmtree(unpacked, ignore_errors=True)
        run("dpkg-deb", "-x", str(deb), str(unpacked))
        shutil.copy(unpacked / inside, target)
        shutil.rmtree(unpacked)
        deb.unlink()
    return [f"--keyring={target}"]


def base_rootfs(host: str) -> Path:
    """The cached root of the host's system, rebuilt only when its recipe changes."""
    distro = SYSTEMS[host]
    tag = distro.suite
    base = paths.CACHE / f"rootfs-{tag}-{recipe_hash(distro)}"
    if (base / "etc" / "os-release").exists():
        return base
    for old in [*paths.CACHE.glob(f"rootfs-{tag}-*"), *paths.CACHE.glob("rootfs-" + "?" * 12)]:
        shutil.rmtree(old, ignore_errors=True)
    tmp = base.with_name(base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    paths.CACHE.mkdir(parents=True, exist_ok=True)
    log(f"building the {distro.name} root filesystem (debootstrap, cached in {paths.CACHE})")
    started = time.monotonic()
    run(
        "debootstrap",
        "--variant=minbase",
        *_keyring(distro),
        f"--include={','.join(BASE_PACKAGES)}",
        distro.suite,
        str(tmp),
        distro.mirror,
        *([distro.script] if distro.script else []),
    )
    if distro.sources:
        (tmp / "etc/apt/sources.list").write_text(distro.sources)
    if distro.upgraded:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("chroot", str(tmp), "apt-get", "update", "-qq", env=env)
        run("chroot", str(tmp), "apt-get", "dist-upgrade", "-y", "-qq", env=env)
    # The package lists stay, as on an installed system (its installer fetched them, apt's daily
    # timer refreshes them): the deploy refreshes lists older than package_lists_max_age, and
    # whenever an install fails without a refresh (an image cached for long).
    dropin = tmp / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "keygen.conf").write_text(SSH_KEYGEN_DROPIN)
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tmp / "etc/machine-id").write_text("")
    run("chroot", str(tmp), "apt-get", "clean")
    tmp.rename(base)
    log(f"{distro.name} root filesystem built in {time.monotonic() - started:.1f} s")
    return base


def prepare_machine(host: str, base: Path, pubkey: str, sudo_password: str) -> Path:
    """A fresh copy of the cached root for one host, with this lab's operator account (its SSH
    key and sudo password), CA bundle and DNS; root logins over SSH refused."""
    root = paths.MACHINES / host
    if root.exists():
        shutil.rmtree(root)
    paths.MACHINES.mkdir(parents=True, exist_ok=True)
    run("cp", "-a", "--reflink=auto", str(base), str(root))
    (root / "etc/hostname").write_text(f"{host}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n127.0.1.1 {host}\n" + "".join(f"{a} {h}\n" for h, a in HOSTS.items())
    )
    add_operator(root, pubkey, sudo_password)
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("".join(f"nameserver {n}\n" for n in nameservers()))
    # Trust what this machine trusts: TLS to the registries may be intercepted on the way.
    local_ca = Path("/usr/local/share/ca-certificates")
    if local_ca.is_dir():
        for crt in local_ca.glob("*.crt"):
            shutil.copy(crt, root / "usr/local/share/ca-certificates" / crt.name)
    run("chroot", str(root), "update-ca-certificates", "--fresh")
    no_login_sessions(root)
    return root


def add_operator(root: Path, pubkey: str, sudo_password: str) -> None:
    """The operator's account: /home/<operator>, in the sudo group, this lab's SSH key, and a
    sudo password (given to chpasswd on its standard input, never on a command line)."""
    run("chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", OPERATOR)
    run("chroot", str(root), "chpasswd", input=f"{OPERATOR}:{sudo_password}\n")
    home = root / "home" / OPERATOR
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(pubkey)
    os.chmod(ssh / "authorized_keys", 0o600)
    uid, gid = home.stat().st_uid, home.stat().st_gid
    for path in (ssh, ssh / "authorized_keys"):
        os.chown(path, uid, gid)
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    (root / "etc/ssh/sshd_config.d/llmlab.conf").write_text(SSHD_DROPIN)


def no_login_sessions(root: Path) -> None:
    """SSH logins skip pam_systemd in the lab: no logind session and no per-user manager
    (user@0.service). Under nspawn on this kind of machine, stopping that manager ten seconds
    after the last login ends often hangs on its cgroup ("Failed to kill control group ...:
    Input/output error") until systemd's 90 s stop timeout, and every login meanwhile waits: a
    1.2 s deploy took 119 s. Nothing the deploy or the tests do needs a login session.
    (Seen with root's logins; the operator's user@1000.service would be the same.)"""
    session = root / "etc/pam.d/common-session"
    lines = session.read_text().splitlines()
    session.write_text(
        "".join(
            (
                f"# {line}  (lab: see no_login_sessions in lab/hosts.py)"
                if "pam_systemd.so" in line and not line.lstrip().startswith("#")
                else line
            )
            + "\n"
            for line in lines
        )
    )


def nspawn_pids(host: str) -> list[int]:
    """systemd-nspawn processes the lab started for host (its machine name is the lab's own)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and f"--machine={namespace(host)}".encode() in argv:
            pids.append(int(proc.name))
    return pids


def boot(host: str) -> int:
    paths.LOGS.mkdir(parents=True, exist_ok=True)
    logfile = open(paths.LOGS / f"{host}.console.log", "ab")
    proc = subprocess.Popen(
        [
            "systemd-nspawn",
            f"--directory={paths.MACHINES / host}",
            "--boot",
            f"--machine={namespace(host)}",
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path=/run/netns/{namespace(host)}",
            # The host's own firewall (nftables) in its own network namespace, as on a real host.
            "--capability=CAP_NET_ADMIN",
            "--console=passive",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc.pid


def _container_pids(host: str) -> list[int]:
    """Processes whose root directory is host's machine folder: the container's own, which can
    outlive a killed systemd-nspawn (an unclean stop) and keep files open under it."""
    try:
        root = os.stat(paths.MACHINES / host)
    except OSError:
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                # readlink shows "/" for a process in another mount namespace; the directory
                # itself (device and inode) is what identifies the container's root.
                st = os.stat(proc / "root")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (root.st_dev, root.st_ino):
                pids.append(int(proc.name))
    return pids


def _running(pid: int) -> bool:
    """Whether pid still runs. An exited process stays in /proc until its parent reaps it: a
    systemd-nspawn this process booted (a recreate within one bench or test run) is reaped here,
    and anyone else's zombie counts as gone (otherwise every stop would wait out its timeout)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        if not pids:
            break
        time.sleep(0.2)
    return pids


def stop(host: str, timeout: float = 30) -> None:
    for pid in nspawn_pids(host):
        os.kill(pid, signal.SIGTERM)  # nspawn asks the container's systemd to power off
        if _wait_gone([pid], timeout):
            os.kill(pid, signal.SIGKILL)
            _wait_gone([pid], 5)
    # Whatever still runs inside the container's root (left by an unclean stop) goes too.
    left = _container_pids(host)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if _wait_gone(left, 10):
        raise LabError(f"{host}: processes {left} inside {paths.MACHINES / host} did not stop")


def ssh_args(host: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(paths.KEY),
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={paths.KNOWN_HOSTS}",
        "-o",
        "LogLevel=ERROR",
        f"{OPERATOR}@{HOSTS[host]}",
    ]


def wait_ready(host: str, timeout: float = 90) -> float:
    """Wait for sshd and for systemd to finish booting; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOSTS[host], 22), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    else:
        raise LabError(f"{host}: sshd did not listen within {timeout:.0f} s (see {paths.LOGS}/{host}.console.log)")
    remaining = max(5, deadline - time.monotonic())
    out = run(*ssh_args(host), f"timeout {int(remaining)} systemctl is-system-running --wait", check=False)
    status = out.stdout.strip()
    if status not in ("running", "degraded"):
        raise LabError(f"{host}: systemd did not come up: {status!r} {out.stderr.strip()}")
    if status == "degraded":
        failed = run(*ssh_args(host), "systemctl --failed --no-legend", check=False).stdout.strip()
        log(f"{host}: booted degraded: {failed}")
    return time.monotonic() - started
