"""Prometheus's node exporter on the mini, from the distribution's packages, when the data switches
it on: the host's own metrics (memory, CPU, disks, network) for the person's Prometheus, from our
own hardened unit on the address and port the data names; the distribution's own unit is masked so
the two never compete. Switched off again, the next deploy stops and removes our unit (the package
stays, and so does the mask: unmasked, the package's unit would listen on every address at boot)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError

from tasks import ops, run
from tasks.registry import PROXY_GROUP, Registry
from tasks.render import render
from tasks.schema import Key, ip, port, positive
from tasks.service import Port, StackService, answers_line, host_port, local_url
from tasks.units import Unit, Wait, answers_http, managed_services, retire

# Debian's and Ubuntu's package (its program and unit names are theirs; RHEL's package differs).
PACKAGES = {"debian": ["prometheus-node-exporter"]}
DISTRO_UNITS = {"debian": ["prometheus-node-exporter.service"]}
EXPORTER = "/usr/bin/prometheus-node-exporter"
UNIT = "node-exporter-llm"

KEYS = (
    Key("node_exporter_enabled", bool, False, "run Prometheus's node exporter on the proxy host (the host's metrics)"),
    Key(
        "node_exporter_port",
        int,
        9100,
        "the node exporter's port (on the proxy host)",
        port,
        enabled_by="node_exporter_enabled",
    ),
    Key(
        "node_exporter_bind_address",
        str,
        "127.0.0.1",
        "the node exporter's address: loopback, or the host's LAN address for a Prometheus elsewhere",
        ip,
    ),
    Key("node_exporter_start_timeout", int, 30, "seconds the deploy waits for the exporter after a restart", positive),
)


def render_unit(r: Registry) -> str:
    s = r.proxy
    return render(
        "node_exporter/node-exporter-llm.service.j2",
        exporter=EXPORTER,
        listen=host_port(s["node_exporter_bind_address"], s["node_exporter_port"]),
    )


class NodeExporter(StackService):
    name = UNIT
    group = PROXY_GROUP
    keys = KEYS

    def ports(self, r: Registry, host: str) -> list[Port]:
        s = r.settings(host)
        if not s["node_exporter_enabled"]:
            return []
        return [
            Port(
                host,
                s["node_exporter_port"],
                s["node_exporter_bind_address"],
                UNIT,
                "the host's metrics for Prometheus",
                f"whoever reaches {s['node_exporter_bind_address']}",
                # and the distribution's own unit, started by its package and masked by this deploy
                (f"{UNIT}.service", *(u for units in DISTRO_UNITS.values() for u in units)),
            )
        ]

    def version_command(self, r: Registry, host: str) -> str:
        if not r.settings(host)["node_exporter_enabled"]:
            return ""
        return f"{EXPORTER} --version 2>&1 | sed -n 's/^node_exporter, version \\([^ ]*\\).*/node_exporter \\1/p'"

    def status_command(self, r: Registry, host: str) -> str:
        s = r.settings(host)
        if not s["node_exporter_enabled"]:
            return ""
        return answers_line(UNIT, self.url(r), "metrics")

    def url(self, r: Registry) -> str:
        s = r.proxy
        return local_url(s["node_exporter_bind_address"], s["node_exporter_port"], "/metrics")

    def packages(self, r: Registry, system) -> list[str]:
        if not r.proxy["node_exporter_enabled"]:
            return []
        if system.family not in PACKAGES:
            raise DeployError(
                f"{r.proxy_host}: node_exporter_enabled: the node exporter is deployed on Debian and Ubuntu "
                f"only, not on {system.name}; nothing was changed"
            )
        return PACKAGES[system.family]

    def deploy(self, r: Registry, envs: dict) -> list[Wait]:
        return deploy_node_exporter(r, self.url(r))


@deploy("Prometheus node exporter")
def deploy_node_exporter(r: Registry, url: str) -> list[Wait]:
    s = r.proxy
    if not s["node_exporter_enabled"]:
        retire(UNIT, [], "the node exporter")  # switched off: our unit goes, the package stays
        return []
    ops.units_masked(
        name="Stop and mask the distribution's own node exporter unit", units=DISTRO_UNITS[run.system().family]
    )
    started = managed_services([Unit(UNIT, render_unit(r))], "the node exporter")[UNIT]
    return [Wait(answers_http(url, 5), s["node_exporter_start_timeout"], "the node exporter", started)]


SERVICE = NodeExporter()
