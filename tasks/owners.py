"""Before any change: every port this host's services declare is free, or held by the systemd unit
or launchd job the toolkit runs that service with, or by another unit the toolkit wrote (a server
of a model that left the registry, which this deploy retires before the new one starts: its unit
file carries the toolkit's marker). A port held by anything else (a hand-kept
proxy on :4000, another OpenVINO server on :9000) stops the run, naming the host, the port, the
process, its user and its unit or label; nothing is changed and nothing else on the host is
touched (a service the data does not declare a port for is never looked at)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tasks.facts import PortHolders
from tasks.registry import Registry
from tasks.service import Port, StackService


def describe(held: dict) -> str:
    """The holder of a port, in words: its process, pid, user, and unit or launchd job."""
    unit, cgroup = held.get("unit", ""), held.get("cgroup", "")
    if unit.endswith((".service", ".scope")):
        kind = "user unit" if "/user@" in cgroup else "systemd unit"
        where = f", {kind} {unit}"
    elif unit:
        where = f", launchd job {unit}"
    else:
        where = ", started by no service manager"
    return f"{held.get('command') or '?'} (pid {held.get('pid', '?')}, user {held.get('user') or '?'}{where})"


def retired_first(p: Port, holder: dict, current: set[str]) -> bool:
    """Whether the holder is a server this deploy retires before p's service starts: a unit the
    toolkit wrote (its marker), named as the ones p's service retires, and none the data declares."""
    unit = holder.get("unit", "")
    return bool(holder.get("ours")) and unit.startswith(p.retires) and bool(p.retires) and unit not in current


def foreign(ports: list[Port], held: dict[int, dict]) -> list[str]:
    """One line for each declared port held by a process that is not the toolkit's own for it."""
    current = {o for p in ports for o in (p.owners or (f"{p.unit}.service",))}
    return [
        f"{host.name}: port {p.port}, declared for {p.unit} ({p.serves}), is held by {describe(held[p.port])}, "
        f"which this toolkit does not run: stop it, or give {p.unit} another port in the data; nothing was changed"
        for p in ports
        if p.port in held
        and not p.held_by_own(held[p.port].get("unit", ""))
        and not retired_first(p, held[p.port], current)
    ]


def check(r: Registry, services: list[StackService]) -> None:
    """Refuse this host (one line per port) if one of its declared ports is held by another."""
    ports = [p for s in services for p in s.ports(r, host.name)]
    if not ports:
        return
    held = host.get_fact(PortHolders, ports=tuple(sorted({p.port for p in ports})))
    lines = foreign(ports, held)
    if lines:
        raise DeployError("\n".join(lines))
