"""Before any change: every port this host's services declare is free, or held by the systemd unit
or launchd job the toolkit runs that service with, or by another unit the toolkit wrote (a server
of a model that left the registry, which this deploy retires before the new one starts: its unit
file carries the toolkit's marker), or by a system unit the data names in llm_takeover (taken
over: stopped and disabled right before that service starts, by tasks/units.py). A port held by
anything else (a hand-kept proxy on :4000, another OpenVINO server on :9000) stops the run,
naming the host, the port, the process, its user and its unit or label; nothing is changed and
nothing else on the host is touched (a service the data does not declare a port for is never
looked at)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tasks import run
from tasks.facts import PortHolders, UnitStates
from tasks.ops import AS_LOGIN
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


def foreign(ports: list[Port], held: dict[int, dict], takeover: set[str] = frozenset()) -> list[str]:
    """One line for each declared port held by a process that is not the toolkit's own for it
    (nor a system unit the data says this stack takes over)."""
    current = {o for p in ports for o in (p.owners or (f"{p.unit}.service",))}
    return [
        f"{host.name}: port {p.port}, declared for {p.unit} ({p.serves}), is held by {describe(held[p.port])}, "
        f"which this toolkit does not run: stop it, or give {p.unit} another port in the data"
        + (" (or name its unit in llm_takeover)" if held[p.port].get("cgroup", "").startswith("/system.slice/") else "")
        + "; nothing was changed"
        for p in ports
        if p.port in held
        and not p.held_by_own(held[p.port].get("unit", ""))
        and not retired_first(p, held[p.port], current)
        and not taken_over(held[p.port], takeover)
    ]


def taken_over(holder: dict, takeover: set[str]) -> bool:
    """Whether the holder runs in a system unit the data names in llm_takeover."""
    return holder.get("unit", "") in takeover and holder.get("cgroup", "").startswith("/system.slice/")


def takeovers(ports: list[Port], held: dict[int, dict], takeover: set[str]) -> dict[str, list[str]]:
    """{a declared service's unit: the llm_takeover units holding its ports now}."""
    found: dict[str, list[str]] = {}
    for p in ports:
        if p.port in held and taken_over(held[p.port], takeover) and not p.held_by_own(held[p.port]["unit"]):
            found.setdefault(p.unit, [])
            if held[p.port]["unit"] not in found[p.unit]:
                found[p.unit].append(held[p.port]["unit"])
    return found


def check(r: Registry, services: list[StackService]) -> None:
    """Refuse this host (one line per port) if one of its declared ports is held by another; plan
    the takeover of the llm_takeover units that hold one (run.current().takeovers). A named unit
    that holds none must be one a deploy took over before (inactive), or the host is refused."""
    ports = [p for s in services for p in s.ports(r, host.name)]
    named = set(r.settings(host.name)["llm_takeover"])
    if not ports and not named:
        return
    held = host.get_fact(PortHolders, ports=tuple(sorted({p.port for p in ports}))) if ports else {}
    lines = foreign(ports, held, named)
    if lines:
        raise DeployError("\n".join(lines))
    plan = takeovers(ports, held, named)
    run.current().takeovers[host.name] = plan
    idle = sorted(named - {u for units in plan.values() for u in units})
    if idle:
        where = r.hosts[host.name].sources.get("llm_takeover", "group data")
        states = host.get_fact(UnitStates, units=tuple(idle), **AS_LOGIN)
        for unit in idle:
            file_state, active = states.get(unit, ("", ""))
            if not file_state:
                raise DeployError(f"{where}: llm_takeover: {host.name} has no unit {unit}; nothing was changed")
            if active not in ("inactive", "failed"):
                raise DeployError(
                    f"{where}: llm_takeover: {unit} on {host.name} is {active} but holds no port the data declares "
                    f"({', '.join(str(p.port) for p in ports) or 'none'}); nothing was changed"
                )
