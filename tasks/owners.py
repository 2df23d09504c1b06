"""Before any change: every port this host's services declare is free, or held by the systemd unit
or launchd job the toolkit runs that service with, or by another unit the toolkit wrote (a server
of a model that left the registry, which this deploy retires before the new one starts: its unit
file carries the toolkit's marker), or by a service the data names in llm_takeover (a system
unit, a user unit of the user its process runs as, or a launchd job; taken over: stopped and
disabled right before that service starts, by tasks/units.py). A port held by
anything else (a hand-kept proxy on :4000, another OpenVINO server on :9000) stops the run,
naming the host, the port, the process, its user and its unit or label; nothing is changed and
nothing else on the host is touched (a service the data does not declare a port for is never
looked at). Every host's refusals are reported together, in one error, whichever host reads its
ports first."""

from __future__ import annotations

import re
import time

import gevent
from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.context import state

from tasks import run
from tasks.facts import LaunchdDisabled, LaunchdJobs, PortHolders, UnitStates, UserUnitStates
from tasks.ops import AS_LOGIN
from tasks.registry import Registry
from tasks.service import Port, StackService
from tasks.units import HandKept


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
        + (f" (or name its {takeable(held[p.port])} in llm_takeover)" if takeable(held[p.port]) else "")
        + "; nothing was changed"
        for p in ports
        if p.port in held
        and not p.held_by_own(held[p.port].get("unit", ""))
        and not retired_first(p, held[p.port], current)
        and not taken_over(held[p.port], takeover)
    ]


USER_UNIT = re.compile(r"^/user\.slice/user-(\d+)\.slice/user@\d+\.service/")


def hand_kept(holder: dict, takeover: set[str]) -> HandKept | None:
    """The holder's service, if it is one the data names in llm_takeover: a system unit, a user
    unit (of the user its process runs as), or a launchd job (macOS: the plist it came from)."""
    unit, cgroup = holder.get("unit", ""), holder.get("cgroup", "")
    if not unit or unit not in takeover:
        return None
    if cgroup.startswith("/system.slice/"):
        return HandKept(unit)
    if holder.get("plist"):
        return HandKept(unit, plist=holder["plist"])
    user = USER_UNIT.match(cgroup)
    return HandKept(unit, holder.get("user") or None, int(user.group(1))) if user and holder.get("user") else None


def takeable(holder: dict) -> str:
    """What llm_takeover could name the holder by ("unit", "launchd label"), or "" if nothing."""
    found = hand_kept(holder, {holder.get("unit", "")})
    return "" if found is None else "launchd label" if found.plist else "unit"


def taken_over(holder: dict, takeover: set[str]) -> bool:
    return hand_kept(holder, takeover) is not None


def takeovers(ports: list[Port], held: dict[int, dict], takeover: set[str]) -> dict[str, list[HandKept]]:
    """{a declared service's unit: the llm_takeover units holding its ports now}."""
    found: dict[str, list[HandKept]] = {}
    for p in ports:
        unit = hand_kept(held[p.port], takeover) if p.port in held else None
        if unit is not None and not p.held_by_own(unit.name):
            found.setdefault(p.unit, [])
            if unit not in found[p.unit]:
                found[p.unit].append(unit)
    return found


def check(r: Registry, services: list[StackService]) -> None:
    """Refuse the run (one line per port) if a declared port of this host or of another host of
    the run is held by another; plan the takeover of the llm_takeover services that hold one
    (run.current().takeovers). A named one that holds none must be one a deploy took over before,
    or the host is refused."""
    lines = together(host.name, refusals(r, services))
    if lines:
        raise DeployError("\n".join(lines))


def refusals(r: Registry, services: list[StackService]) -> list[str]:
    """Why this host is refused, one line per reason (none: it is not), its takeovers planned."""
    ports = [p for s in services for p in s.ports(r, host.name)]
    named = set(r.settings(host.name)["llm_takeover"])
    if not ports and not named:
        return []
    held = host.get_fact(PortHolders, ports=tuple(sorted({p.port for p in ports}))) if ports else {}
    lines = foreign(ports, held, named)
    if lines:
        return lines
    plan = takeovers(ports, held, named)
    run.current().takeovers[host.name] = plan
    idle = sorted(named - {u.name for units in plan.values() for u in units})
    if idle:
        where = r.hosts[host.name].sources.get("llm_takeover", "group data")
        refusal = (_idle_launchd_jobs if run.is_macos() else _idle_units)(idle, ports)
        if refusal:
            return [f"{where}: llm_takeover: {refusal}; nothing was changed"]
    return []


WAIT_FOR_HOSTS_S = 120.0  # how long a refused host waits for the others' reading of their ports


def together(name: str, lines: list[str], wait_s: float = WAIT_FOR_HOSTS_S) -> list[str]:
    """Host name's refusal lines and, if it has any, every other host's of the run, sorted by host.

    pyinfra reads the deploy file for all hosts at once and stops at the first host that raises,
    so a refused host waits (bounded by wait_s) until every active host has said whether it is
    refused: the operator learns every collision in one run, not one host per run."""
    found = run.current().refusals
    found[name] = lines
    if not lines:
        return []
    active = {h.name for h in state.inventory.get_active_hosts()}
    if len(active) > (state.pool.size or len(active)):  # hosts read a few at a time (--parallel)
        active = set(found)
    deadline = time.monotonic() + wait_s
    while not active <= found.keys() and time.monotonic() < deadline:
        gevent.sleep(0.05)
    return [line for other in sorted(found) for line in found[other]]


def _idle_units(idle: list[str], ports: list[Port]) -> str:
    """Why named systemd units that hold no declared port refuse the host ("" if they do not): one
    must be a unit a deploy took over before (inactive), a system unit or a running user manager's."""
    states = host.get_fact(UnitStates, units=tuple(idle), **AS_LOGIN)
    users = host.get_fact(UserUnitStates, units=tuple(idle))
    for unit in idle:
        found = [states.get(unit, ("", ""))] + users.get(unit, [])
        found = [(file_state, active) for file_state, active in found if file_state]
        if not found:
            return f"{host.name} has no unit {unit} (a system unit, or a user's whose manager runs)"
        active = next((a for _, a in found if a not in ("inactive", "failed")), "inactive")
        if active not in ("inactive", "failed"):
            return f"{unit} on {host.name} is {active} but holds no port the data declares ({_listed(ports)})"
    return ""


def _idle_launchd_jobs(idle: list[str], ports: list[Port]) -> str:
    """The same for launchd labels: one must be a job a deploy took over before (not loaded, and
    disabled)."""
    loaded = host.get_fact(LaunchdJobs, labels=tuple(idle))
    disabled = host.get_fact(LaunchdDisabled)
    for label in idle:
        if loaded.get(label):
            return f"{label} on {host.name} is loaded but holds no port the data declares ({_listed(ports)})"
        if label not in disabled:
            return f"{host.name} has no launchd job {label} (loaded, or disabled by an earlier takeover)"
    return ""


def _listed(ports: list[Port]) -> str:
    return ", ".join(str(p.port) for p in ports) or "none"
