"""The studio's host firewall, rendered from the registry's ports: the MLX servers admit only the
proxy host and the addresses mlx_allowed_clients lists, so the proxy (and its key) is the only
door. nftables on Linux (a table of our own, loaded by a oneshot unit at boot); on macOS a pf
anchor under com.apple/ (which macOS's own pf.conf already evaluates), loaded at boot by a
LaunchDaemon, leaving /etc/pf.conf untouched."""

from __future__ import annotations

import ipaddress

from pyinfra import host
from pyinfra.api import deploy

from tasks import hostos, mlx, ops, run
from tasks.registry import MLX_GROUP, Registry
from tasks.render import render
from tasks.service import StackService
from tasks.units import Unit, Wait, managed_services

TABLE = "llmlab_mlx"
RULES = "/etc/llm-firewall/mlx.nft"
PF_ANCHOR = "com.apple/llmlab-mlx"
PF_RULES = "/etc/pf.anchors/llmlab-mlx"
PF_LABEL = "lab.llm.firewall"


def mlx_ports(r: Registry, host_name: str) -> list[int]:
    return sorted(m.port for m in r.served_by(host_name, "mlx"))


def render_nft(r: Registry, host_name: str) -> str:
    allowed = [ipaddress.ip_network(a, strict=False) for a in mlx.allowed_clients(r, host_name)]
    return render(
        "firewall/mlx.nft.j2",
        table=TABLE,
        ports=mlx_ports(r, host_name),
        ipv4=[str(a) for a in allowed if a.version == 4],
        ipv6=[str(a) for a in allowed if a.version == 6],
    )


def render_unit(r: Registry, host_name: str) -> str:
    return render(
        "firewall/llm-firewall.service.j2",
        table=TABLE,
        rules=RULES,
        ports=mlx_ports(r, host_name),
        allowed=mlx.allowed_clients(r, host_name),
    )


def render_pf(r: Registry, host_name: str) -> str:
    return render(
        "firewall/pf.anchor.j2",
        anchor=PF_ANCHOR,
        label=PF_LABEL,
        ports=mlx_ports(r, host_name),
        allowed=mlx.allowed_clients(r, host_name),
    )


def render_pf_plist() -> str:
    return render("firewall/pf.plist.j2", label=PF_LABEL, anchor=PF_ANCHOR, rules=PF_RULES)


class Firewall(StackService):
    """It listens on nothing and reads the MLX servers' ports and mlx_allowed_clients (tasks/mlx.py's keys)."""

    name = "llm-firewall"
    group = MLX_GROUP

    def packages(self, r: Registry, system: hostos.System) -> list[str]:
        return [] if system.macos or not r.served_by(host.name, "mlx") else ["nftables"]

    def deploy(self, r: Registry, envs: dict) -> list[Wait]:
        return deploy_firewall(r)


@deploy("Firewall for the MLX servers")
def deploy_firewall(r: Registry) -> list[Wait]:
    """Nothing to wait for: the rules are in place when their loader has run."""
    if not r.served_by(host.name, "mlx"):
        return []
    system = run.system()
    if system.macos:
        rules = ops.text_file(
            name=f"Render the pf anchor {PF_RULES}", dest=PF_RULES, content=render_pf(r, host.name), public=True
        )
        managed_services([Unit("llm-firewall", render_pf_plist(), restart_on=[rules], label=PF_LABEL)], "the firewall")
        return []
    ops.directories(name="Create /etc/llm-firewall", paths=["/etc/llm-firewall"], public=True)
    rules = ops.text_file(name=f"Render {RULES}", dest=RULES, content=render_nft(r, host.name), public=True)
    managed_services([Unit("llm-firewall", render_unit(r, host.name), restart_on=[rules])], "the firewall")
    return []


SERVICE = Firewall()
