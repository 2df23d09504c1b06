"""The local lab: two real Debian 12 hosts (mini, studio) booted with systemd-nspawn into
network namespaces of the lab's own, reachable over SSH from this machine, and reaching only
the package registries through NAT that the lab adds and removes.

Everything the lab creates has a fixed name (namespaces llmlab-<host>, bridge llmlab-br, nft
table `ip llmlab`), so `up` finds and replaces what an unclean stop left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = Path(os.environ.get("LLMLAB_DIR", ROOT / ".lab"))
CACHE = LAB_DIR / "cache"
MACHINES = LAB_DIR / "machines"
STATE_DIR = LAB_DIR / "state"
STATE_FILE = STATE_DIR / "state.json"
KEY = STATE_DIR / "id_ed25519"
KNOWN_HOSTS = STATE_DIR / "known_hosts"
SECRETS = STATE_DIR / "secrets.env"
TINY_MODEL = CACHE / "tiny-model"
OVMS_STANDIN = CACHE / "ovms-standin.tar.gz"
OVMS_STANDIN_SHA256 = CACHE / "ovms-standin.sha256"  # read by lab/group_data/mini.py
OVMS_STANDIN_SOURCE = CACHE / "ovms-standin.source"
LOGS = LAB_DIR / "logs"

PREFIX = "llmlab"
BRIDGE = f"{PREFIX}-br"
NFT_TABLE = PREFIX
SUBNET = "10.231.0.0/24"
GATEWAY = "10.231.0.1"
HOSTS = {"mini": "10.231.0.11", "studio": "10.231.0.12"}
# The lab's tiny model, served under this upstream id by every MLX server in the lab.
TINY_UPSTREAM = "lab/tiny-llama"

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "ca-certificates", "python3",
    "iproute2", "procps", "curl", "sudo", "libpam-systemd",
]
# Host keys are made at first boot so every machine copied from the cached root has its own.
# Debian's own ExecStartPre (sshd -t) needs the keys, so the list is reset with keygen first.
SSH_KEYGEN_DROPIN = (
    "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
)
RECIPE = json.dumps({"suite": SUITE, "mirror": MIRROR, "packages": PACKAGES,
                     "variant": "minbase", "dropin": SSH_KEYGEN_DROPIN, "v": 1})


class LabError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def run(*args: str, check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(args, text=True, capture_output=True, **kw)
    if check and out.returncode != 0:
        raise LabError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def _ns(host: str) -> str:
    return f"{PREFIX}-{host}"


# --- root filesystem ----------------------------------------------------------------------

def recipe_hash() -> str:
    return hashlib.sha256(RECIPE.encode()).hexdigest()[:12]


def base_rootfs() -> Path:
    """The cached Debian root, rebuilt only when the recipe changes."""
    base = CACHE / f"rootfs-{recipe_hash()}"
    if (base / "etc" / "os-release").exists():
        return base
    for old in CACHE.glob("rootfs-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = CACHE / f"rootfs-{recipe_hash()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"building the Debian {SUITE} root filesystem (debootstrap, cached in {CACHE})")
    started = time.monotonic()
    run("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR)
    dropin = tmp / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "keygen.conf").write_text(SSH_KEYGEN_DROPIN)
    for key in (tmp / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tmp / "etc/machine-id").write_text("")
    run("chroot", str(tmp), "apt-get", "clean")
    tmp.rename(base)
    log(f"root filesystem built in {time.monotonic() - started:.1f} s")
    return base


def prepare_machine(host: str, base: Path, pubkey: str) -> Path:
    """A fresh copy of the cached root for one host, with this lab's key, CA bundle and DNS."""
    root = MACHINES / host
    if root.exists():
        shutil.rmtree(root)
    MACHINES.mkdir(parents=True, exist_ok=True)
    run("cp", "-a", "--reflink=auto", str(base), str(root))
    (root / "etc/hostname").write_text(f"{host}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {host}\n"
                                    + "".join(f"{a} {h}\n" for h, a in HOSTS.items()))
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(pubkey)
    os.chmod(ssh / "authorized_keys", 0o600)
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


def no_login_sessions(root: Path) -> None:
    """SSH logins skip pam_systemd in the lab: no logind session and no per-user manager
    (user@0.service). Under nspawn on this kind of machine, stopping that manager ten seconds
    after the last login ends often hangs on its cgroup ("Failed to kill control group ...:
    Input/output error") until systemd's 90 s stop timeout, and every login meanwhile waits: a
    1.2 s deploy took 119 s. Nothing the deploy or the tests do needs a login session."""
    session = root / "etc/pam.d/common-session"
    lines = session.read_text().splitlines()
    session.write_text("".join(
        (f"# {line}  (lab: see no_login_sessions in lab/lab.py)" if "pam_systemd.so" in line
         and not line.lstrip().startswith("#") else line) + "\n"
        for line in lines
    ))


def nameservers() -> list[str]:
    servers = []
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127."):
            servers.append(parts[1])
    if not servers:
        raise LabError("no non-loopback nameserver in /etc/resolv.conf for the lab hosts to use")
    return servers


# --- network ------------------------------------------------------------------------------

def network_up() -> None:
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    for host, address in HOSTS.items():
        ns = _ns(host)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", ns, "master", BRIDGE)
        run("ip", "link", "set", ns, "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "route", "add", "default", "via", GATEWAY)
    dns = ", ".join(nameservers())
    # Hosts talk to each other (bridged frames pass this hook where br_netfilter is loaded); only
    # DNS to this machine's resolvers and HTTP(S) (the package registries) leave the lab.
    rules = f"""
table ip {NFT_TABLE} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {SUBNET} oifname != "{BRIDGE}" masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr {SUBNET} ip daddr {SUBNET} accept
    iifname "{BRIDGE}" ip daddr {{ {dns} }} udp dport 53 accept
    iifname "{BRIDGE}" ip daddr {{ {dns} }} tcp dport 53 accept
    iifname "{BRIDGE}" ip daddr {{ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 }} drop
    iifname "{BRIDGE}" tcp dport {{ 80, 443 }} accept
    iifname "{BRIDGE}" drop
  }}
}}
"""
    run("nft", "-f", "-", input=rules)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def network_down(state: dict) -> None:
    run("nft", "delete", "table", "ip", NFT_TABLE, check=False)
    for host in HOSTS:
        run("ip", "link", "del", _ns(host), check=False)
        run("ip", "netns", "del", _ns(host), check=False)
    run("ip", "link", "del", BRIDGE, check=False)
    forward = state.get("ip_forward_before")
    if forward is not None:
        Path("/proc/sys/net/ipv4/ip_forward").write_text(f"{forward}\n")


# --- machines -----------------------------------------------------------------------------

def _nspawn_pids(host: str) -> list[int]:
    """systemd-nspawn processes the lab started for host (its machine name is the lab's own)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and f"--machine={_ns(host)}".encode() in argv:
            pids.append(int(proc.name))
    return pids


def boot(host: str) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    logfile = open(LOGS / f"{host}.console.log", "ab")
    proc = subprocess.Popen(
        [
            "systemd-nspawn", f"--directory={MACHINES / host}", "--boot", f"--machine={_ns(host)}",
            "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{_ns(host)}",
            "--console=passive", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        ],
        stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return proc.pid


def _container_pids(host: str) -> list[int]:
    """Processes whose root directory is host's machine folder: the container's own, which can
    outlive a killed systemd-nspawn (an unclean stop) and keep files open under it."""
    try:
        root = os.stat(MACHINES / host)
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


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        if not pids:
            break
        time.sleep(0.2)
    return pids


def stop(host: str, timeout: float = 30) -> None:
    for pid in _nspawn_pids(host):
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
        raise LabError(f"{host}: processes {left} inside {MACHINES / host} did not stop")


def ssh_args(host: str) -> list[str]:
    return [
        "ssh", "-i", str(KEY), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
        "-o", "LogLevel=ERROR", f"root@{HOSTS[host]}",
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
        raise LabError(f"{host}: sshd did not listen within {timeout:.0f} s (see {LOGS}/{host}.console.log)")
    remaining = max(5, deadline - time.monotonic())
    out = run(*ssh_args(host), f"timeout {int(remaining)} systemctl is-system-running --wait", check=False)
    status = out.stdout.strip()
    if status not in ("running", "degraded"):
        raise LabError(f"{host}: systemd did not come up: {status!r} {out.stderr.strip()}")
    if status == "degraded":
        failed = run(*ssh_args(host), "systemctl --failed --no-legend", check=False).stdout.strip()
        log(f"{host}: booted degraded: {failed}")
    return time.monotonic() - started


# --- lab artefacts -------------------------------------------------------------------------

def build_artifacts() -> None:
    """The tiny model and the OVMS stand-in archive, made here, never downloaded."""
    if not (TINY_MODEL / "model.safetensors").exists():
        sys.path.insert(0, str(ROOT / "lab"))
        from tinymodel import generate

        tmp = TINY_MODEL.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        generate(tmp)
        tmp.rename(TINY_MODEL)
        log(f"generated the tiny model in {TINY_MODEL}")
    source = ROOT / "lab" / "ovms_standin" / "ovms"
    digest_file = OVMS_STANDIN_SHA256
    stamp = hashlib.sha256(source.read_bytes()).hexdigest()
    stamp_file = OVMS_STANDIN_SOURCE
    if not OVMS_STANDIN.exists() or not stamp_file.exists() or stamp_file.read_text() != stamp:
        CACHE.mkdir(parents=True, exist_ok=True)
        # The real release's layout: ovms/bin/ovms and ovms/lib/. Fixed mtimes and owners keep
        # the archive (and so its digest) the same for the same stand-in source.
        with tarfile.open(OVMS_STANDIN, "w:gz", format=tarfile.GNU_FORMAT) as tar:
            for name, mode, data in (
                ("ovms", 0o755, None),
                ("ovms/bin", 0o755, None),
                ("ovms/lib", 0o755, None),
                ("ovms/bin/ovms", 0o755, source.read_bytes()),
                ("ovms/STANDIN.txt", 0o644, b"Lab stand-in for the OVMS release: not OpenVINO Model Server.\n"),
            ):
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
                info.mode = mode
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    import io

                    tar.addfile(info, io.BytesIO(data))
        stamp_file.write_text(stamp)
        log(f"packed the OVMS stand-in archive {OVMS_STANDIN}")
    digest_file.write_text(hashlib.sha256(OVMS_STANDIN.read_bytes()).hexdigest() + "\n")


def load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")


# --- commands -----------------------------------------------------------------------------

@dataclass
class Timings:
    rootfs: float = 0.0
    boot: float = 0.0


def down(quiet: bool = False) -> None:
    state = load_state()
    for host in HOSTS:
        stop(host)
    network_down(state)
    for host in HOSTS:
        shutil.rmtree(MACHINES / host, ignore_errors=True)
    # This lab's key, host keys and proxy key go with it; the next `up` makes new ones.
    for path in (STATE_FILE, KEY, KEY.with_suffix(".pub"), KNOWN_HOSTS, SECRETS):
        path.unlink(missing_ok=True)
    if not quiet:
        log("down: containers, namespaces, veths, bridge and nft table removed")


def up() -> Timings:
    """Bring up both hosts from the cached root; repairs whatever an earlier run left."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, nftables, systemd-nspawn)")
    previous = load_state()
    forward_before = previous.get("ip_forward_before")
    if forward_before is None:
        forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    # Whatever an earlier (maybe unclean) run left goes first: everything has the lab's names.
    for host in HOSTS:
        stop(host)
    network_down({})
    timings = Timings()
    started = time.monotonic()
    base = base_rootfs()
    timings.rootfs = time.monotonic() - started
    build_artifacts()

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for path in (KEY, KEY.with_suffix(".pub"), KNOWN_HOSTS):
        path.unlink(missing_ok=True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llmlab", "-f", str(KEY))
    KNOWN_HOSTS.write_text("")
    # The lab's proxy key: new for every lab, kept only in the ignored state folder.
    SECRETS.write_text(f"LITELLM_PROXY_KEY=sk-lab-{secrets.token_hex(16)}\n")
    os.chmod(SECRETS, 0o600)
    pubkey = KEY.with_suffix(".pub").read_text()

    network_up()
    save_state({"ip_forward_before": forward_before, "hosts": HOSTS, "key": str(KEY)})
    started = time.monotonic()
    for host in HOSTS:
        prepare_machine(host, base, pubkey)
        boot(host)
    for host in HOSTS:
        wait_ready(host)
    timings.boot = time.monotonic() - started
    log(f"up: {', '.join(f'{h} {a}' for h, a in HOSTS.items())} (rootfs {timings.rootfs:.1f} s, "
        f"boot {timings.boot:.1f} s)")
    return timings


def recreate(host: str) -> float:
    """Destroy one host and boot it again empty, from the cached root; returns the seconds
    from destroying it until it is ready."""
    started = time.monotonic()
    stop(host)
    prepare_machine(host, base_rootfs(), KEY.with_suffix(".pub").read_text())
    # The new host has new host keys (ssh-keygen -R also finds hashed entries).
    run("ssh-keygen", "-q", "-R", HOSTS[host], "-f", str(KNOWN_HOSTS), check=False)
    Path(f"{KNOWN_HOSTS}.old").unlink(missing_ok=True)
    boot(host)
    wait_ready(host)
    return time.monotonic() - started


def reboot(host: str) -> float:
    """Restart one host keeping its disk: a clean power-off of its systemd (nspawn forwards
    SIGTERM as the power button), then a fresh boot of the same root. A reboot requested from
    inside the container (systemctl reboot) hangs the re-spawned systemd on machines whose own
    PID 1 is not systemd, so the lab power-cycles instead; to the host it is the same thing."""
    if not _nspawn_pids(host):
        raise LabError(f"{host} is not running: run `./labctl up` first")
    started = time.monotonic()
    stop(host)
    boot(host)
    wait_ready(host)
    return time.monotonic() - started


def is_up() -> bool:
    return bool(load_state()) and all(_nspawn_pids(h) for h in HOSTS)


def deploy(extra: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run the one deploy against the lab: pyinfra lab/inventory.py deploy.py."""
    if not is_up():
        raise LabError("the lab is not up: run `./labctl up` first")
    build_artifacts()
    cmd = [str(Path(sys.executable).parent / "pyinfra"), "-y", "lab/inventory.py", "deploy.py"]
    return subprocess.run(cmd + (extra or []), cwd=ROOT, env=lab_env())


def lab_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def proxy_key() -> str:
    for line in SECRETS.read_text().splitlines():
        if line.startswith("LITELLM_PROXY_KEY="):
            return line.split("=", 1)[1]
    raise LabError(f"no LITELLM_PROXY_KEY in {SECRETS}")


def status() -> int:
    state = load_state()
    if not state:
        print("lab: down")
        return 1
    code = 0
    for host, address in HOSTS.items():
        pids = _nspawn_pids(host)
        if not pids:
            print(f"{host:7} {address:12} stopped")
            code = 1
            continue
        out = run(*ssh_args(host), "systemctl is-system-running", check=False).stdout.strip()
        units = run(*ssh_args(host), "systemctl list-units --no-legend --plain 'litellm*' 'ovms*' 'mlx-*' | awk '{print $1\"=\"$4}'", check=False).stdout.split()
        print(f"{host:7} {address:12} pid {pids[0]:<7} systemd {out:9} {' '.join(units)}")
    return code
