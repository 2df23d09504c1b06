"""The lab as a whole: `up` (network, hosts, keys, secrets; repairs what an unclean stop left),
`down`, rebuilding or rebooting one host, and what state it is in."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from lab import hfhub, hosts, network, paths
from lab.artifacts import build_artifacts
from lab.network import HOSTS
from lab.proc import LabError, log, run


def _private_file(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


def sudo_password() -> str:
    """The operator's sudo password on this lab's hosts."""
    try:
        return paths.SUDO_PASSWORD.read_text().strip()
    except OSError as err:
        raise LabError(f"no sudo password for the lab ({err}): run `./labctl up` first") from None


def load_state() -> dict:
    try:
        return json.loads(paths.STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def save_state(state: dict) -> None:
    paths.STATE_DIR.mkdir(parents=True, exist_ok=True)
    paths.STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")


def down() -> None:
    state = load_state()
    for host in HOSTS:
        hosts.stop(host)
    hfhub.stop()
    network.down(state.get("ip_forward_before"))
    for host in HOSTS:
        shutil.rmtree(paths.MACHINES / host, ignore_errors=True)
    # This lab's key, host keys, proxy key and sudo password go with it; the next `up` makes new ones.
    for path in (
        paths.STATE_FILE,
        paths.KEY,
        paths.KEY.with_suffix(".pub"),
        paths.KNOWN_HOSTS,
        paths.SECRETS,
        paths.SUDO_PASSWORD,
    ):
        path.unlink(missing_ok=True)
    log("down: containers, namespaces, veths, bridge and nft table removed")


def up() -> None:
    """Bring up both hosts from the cached root; repairs whatever an earlier run left."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, nftables, systemd-nspawn)")
    previous = load_state()
    forward_before = previous.get("ip_forward_before")
    if forward_before is None:
        forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    # Whatever an earlier (maybe unclean) run left goes first: everything has the lab's names.
    for host in HOSTS:
        hosts.stop(host)
    hfhub.stop()
    network.down(None)
    started = time.monotonic()
    bases = {host: hosts.base_rootfs(host) for host in HOSTS}
    rootfs_seconds = time.monotonic() - started
    build_artifacts()

    paths.STATE_DIR.mkdir(parents=True, exist_ok=True)
    for path in (paths.KEY, paths.KEY.with_suffix(".pub"), paths.KNOWN_HOSTS):
        path.unlink(missing_ok=True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llmlab", "-f", str(paths.KEY))
    paths.KNOWN_HOSTS.write_text("")
    # The lab's proxy key: new for every lab, kept only in the ignored state folder.
    # The proxy key carries the characters systemd's EnvironmentFile= and shells treat specially
    # (a space, $, #, both quotes, a backslash), so every lab proves they reach LiteLLM intact.
    _private_file(
        paths.SECRETS,
        f'LITELLM_PROXY_KEY=sk-lab-{secrets.token_hex(16)}-te$t #1 "q" \\x\'z\n'
        f"LITELLM_REDIS_PASSWORD={secrets.token_hex(24)}\n",
    )
    # The operator's sudo password on every lab host: new for every lab, like the proxy key.
    _private_file(paths.SUDO_PASSWORD, secrets.token_urlsafe(18) + "\n")
    pubkey = paths.KEY.with_suffix(".pub").read_text()

    network.up()
    hfhub.start()  # the studio's model hub (lab/hfhub.py), on the gateway
    save_state({"ip_forward_before": forward_before, "hosts": HOSTS, "key": str(paths.KEY), "operator": hosts.OPERATOR})
    started = time.monotonic()
    for host in HOSTS:
        hosts.prepare_machine(host, bases[host], pubkey, sudo_password())
        hosts.boot(host)
    for host in HOSTS:
        hosts.wait_ready(host)
    log(
        f"up: {', '.join(f'{h} {a}' for h, a in HOSTS.items())} (rootfs {rootfs_seconds:.1f} s, "
        f"boot {time.monotonic() - started:.1f} s)"
    )


def recreate(host: str) -> float:
    """Destroy one host and boot it again empty, from the cached root; returns the seconds
    from destroying it until it is ready."""
    started = time.monotonic()
    hosts.stop(host)
    hosts.prepare_machine(host, hosts.base_rootfs(host), paths.KEY.with_suffix(".pub").read_text(), sudo_password())
    # The new host has new host keys (ssh-keygen -R also finds hashed entries).
    run("ssh-keygen", "-q", "-R", HOSTS[host], "-f", str(paths.KNOWN_HOSTS), check=False)
    Path(f"{paths.KNOWN_HOSTS}.old").unlink(missing_ok=True)
    hosts.boot(host)
    hosts.wait_ready(host)
    return time.monotonic() - started


def reboot(host: str) -> float:
    """Restart one host keeping its disk: a clean power-off of its systemd (nspawn forwards
    SIGTERM as the power button), then a fresh boot of the same root. A reboot requested from
    inside the container (systemctl reboot) hangs the re-spawned systemd on machines whose own
    PID 1 is not systemd, so the lab power-cycles instead; to the host it is the same thing."""
    if not hosts.nspawn_pids(host):
        raise LabError(f"{host} is not running: run `./labctl up` first")
    started = time.monotonic()
    hosts.stop(host)
    hosts.boot(host)
    hosts.wait_ready(host)
    return time.monotonic() - started


def is_up() -> bool:
    return bool(load_state()) and all(hosts.nspawn_pids(h) for h in HOSTS)


def proxy_key() -> str:
    for line in paths.SECRETS.read_text().splitlines():
        if line.startswith("LITELLM_PROXY_KEY="):
            return line.split("=", 1)[1]
    raise LabError(f"no LITELLM_PROXY_KEY in {paths.SECRETS}")


def status() -> int:
    state = load_state()
    if not state:
        print("lab: down")
        return 1
    code = 0
    for host, address in HOSTS.items():
        pids = hosts.nspawn_pids(host)
        if not pids:
            print(f"{host:7} {address:12} stopped")
            code = 1
            continue
        out = run(*hosts.ssh_args(host), "systemctl is-system-running", check=False).stdout.strip()
        units = run(
            *hosts.ssh_args(host),
            "systemctl list-units --no-legend --plain 'litellm*' 'ovms*' 'mlx-*' | awk '{print $1\"=\"$4}'",
            check=False,
        ).stdout.split()
        print(f"{host:7} {address:12} pid {pids[0]:<7} systemd {out:9} {' '.join(units)}")
    return code


def as_root(host: str, script: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a shell script as root on a lab host: over SSH as the operator, through sudo (the
    password on the first line of standard input, the script after it)."""
    command = [*hosts.ssh_args(host), "sudo -k -S -p '' bash -s"]
    stdin = sudo_password() + "\n" + script
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
