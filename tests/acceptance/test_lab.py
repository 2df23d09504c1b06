"""The lab itself, last: after an unclean stop (containers killed, namespaces, bridge and nft table
left behind), a second `up` replaces everything and the deploy brings the stack back."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lab import hosts as labhosts
from lab import lifecycle, network
from lab.paths import ROOT
from lab.proc import run as run_here

from .client import Secret, chat, wait_until
from .labdeploy import lab_deploy

pytestmark = pytest.mark.lab_only


def leftovers() -> dict[str, bool]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    table = subprocess.run(["nft", "list", "table", "ip", network.NFT_TABLE], capture_output=True, text=True)
    return {
        "containers": any(labhosts.nspawn_pids(h) for h in network.HOSTS),
        "namespaces": any(f"{network.PREFIX}-{h}" in netns for h in network.HOSTS),
        "bridge": f" {network.BRIDGE}:" in links,
        "nft table": table.returncode == 0,
    }


def test_second_up_after_an_unclean_stop(registry, timings):
    # An unclean stop: the containers die at once (SIGKILL to the lab's own nspawn processes);
    # namespaces, veths, bridge, nft table and state stay behind.
    for host in network.HOSTS:
        for pid in labhosts.nspawn_pids(host):
            os.kill(pid, signal.SIGKILL)
    gone, _ = wait_until(lambda: not any(labhosts.nspawn_pids(h) for h in network.HOSTS), 10)
    assert gone
    left = leftovers()
    assert left == {"containers": False, "namespaces": True, "bridge": True, "nft table": True}, left

    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "lab", "up"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    timings["lab: second up after an unclean stop"] = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert leftovers() == {"containers": True, "namespaces": True, "bridge": True, "nft table": True}
    rules = subprocess.run(["nft", "-j", "list", "table", "ip", network.NFT_TABLE], capture_output=True, text=True)
    chains = [item["chain"]["name"] for item in json.loads(rules.stdout)["nftables"] if "chain" in item]
    assert sorted(chains) == ["forward", "postrouting"], chains  # one table, not two stacked

    code, text, seconds = lab_deploy()
    timings["lab: deploy after the second up"] = seconds
    assert code == 0, text[-3000:]
    key = Secret(lifecycle.proxy_key())  # the second up made a new one
    proxy = f"http://{network.HOSTS[registry.proxy_host]}:{registry.proxy['litellm_port']}"
    for model in registry.model_names():
        ok, _ = wait_until(lambda model=model: chat(proxy, model, key=key, timeout=30)[0] == 200, 30, interval=1)
        assert ok, f"{model} does not answer through the proxy after the second up"


def test_lab_logins_start_no_user_manager():
    """lab/hosts.py no_login_sessions: an SSH login to a lab host opens no logind session, so no
    user@<uid>.service whose stop can hang on this machine's cgroups (119 s stalls before)."""
    for host in network.HOSTS:
        out = run_here(
            *labhosts.ssh_args(host),
            "loginctl list-sessions --no-legend | wc -l; systemctl is-active user@$(id -u).service || true",
            check=False,
        )
        sessions, state = out.stdout.split()
        assert (sessions, state) == ("0", "inactive"), f"{host}: {out.stdout}"


def test_lab_hosts_are_reached_like_real_ones(lab_state):
    """Like the operator's hosts: root's SSH logins are refused, the operator logs in with the
    lab's key, and sudo wants the operator's password (nothing runs as root without it)."""
    for host, address in network.HOSTS.items():
        as_root = subprocess.run(
            [*labhosts.ssh_args(host)[:-1], f"root@{address}", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert as_root.returncode == 255 and "Permission denied" in as_root.stderr, as_root.stderr
        out = run_here(*labhosts.ssh_args(host), "id -un; sudo -n true 2>&1 || true", check=False)
        user, sudo = out.stdout.split("\n", 1)
        assert user == lab_state["operator"] and "a password is required" in sudo, out.stdout
