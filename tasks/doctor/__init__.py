"""The read-only view of the hosts (`python -m tasks.doctor`): every declared service with its
state, version, port and address, what it serves now, its memory and restarts; and what is off.

    python -m tasks.doctor inventory.py [--json] [--limit HOST]      # the real hosts
    ./labctl doctor [--json]                                          # the lab

It runs pyinfra's own command line in this process on tasks/doctor/look.py, a deploy that only
reads: the same inventory, SSH, sudo and preflight as a deploy (no secret is read and no deploy
lock is taken; it declares no operation). Each host is read in four commands (what it is, sudo,
its listeners, its services' units with their probes). What is off:

- a declared service that is not running, is crash-looping, or does not answer;
- its port not listened on, or held by another process;
- its unit file (or plist) naming a path that is gone; a launchd job disabled or not loaded;
- a listener the data does not declare, on an address other hosts reach (loopback ones are
  listed, not called off), unless its port is in `llm_own_listeners` or it is one of macOS's own
  daemons (a launchd label `com.apple.*`);
- the weights of a host's MLX models more than its share of memory (mlx_memory_fraction).

The exit code is 1 when anything is off, 0 when nothing is, 2 when a host could not be read.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field

from tasks import mlx, stack
from tasks.hostos import System
from tasks.registry import Registry


@dataclass
class Row:
    """One declared service's unit on one host, as read."""

    service: str
    unit: str
    state: str
    version: str
    port: int
    bind: str  # declared
    listening: list[str]  # the addresses found listening on the port, with their process if not its own
    pid: int
    memory_mb: int
    restarts: int
    serving: str
    off: list[str] = field(default_factory=list)


def job_name(system: System, unit: str, owners: tuple[str, ...]) -> str:
    """The name the host's service manager knows a port's unit by: its launchd label on macOS."""
    if system.macos:
        return next((o for o in owners if not o.endswith(".service")), unit)
    return unit


def probes(r: Registry, host: str, system: System) -> list[tuple[str, str]]:
    """What the doctor asks each host, by name: each service's version and status, the free
    memory, and the size of each MLX model's weights."""
    found: list[tuple[str, str]] = []
    for service in stack.services(r.hosts[host].groups):
        asked = {"version": service.version_command(r, host), "status": service.status_command(r, host)}
        for kind, command in asked.items():
            if command:
                found.append((f"{kind} {service.name}", command))
    if system.macos:
        found.append(
            (
                "available",
                "vm_stat | awk '/page size of/ { size = $8 } /Pages (free|inactive|speculative)/ "
                '{ gsub(/\\./, "", $NF); n += $NF } END { print n * size / 1024 }\'',
            )
        )
    else:
        found.append(("available", "awk '/^MemAvailable:/ { print $2 }' /proc/meminfo"))
    for m in r.served_by(host, "mlx"):
        found.append((f"weights {m.name}", f"du -sk {shlex.quote(mlx.weights_path(r, m, system))} | cut -f1"))
    return found


def _pins(text: str) -> str:
    """A requirements record's pins as `name version, ...`; any other version text as it is."""
    pins = [line.split("==", 1) for line in text.splitlines() if "==" in line and not line.startswith("#")]
    if not pins:
        return text.strip() or "?"
    return ", ".join(f"{name.split('[')[0]} {version}" for name, version in pins)


def _status(text: str) -> dict[str, tuple[bool, str]]:
    """status_command's lines: unit -> (all ok, what each line says)."""
    units: dict[str, tuple[bool, list[str]]] = {}
    for line in text.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            ok, texts = units.get(parts[0], (True, []))
            units[parts[0]] = (ok and parts[1] == "ok", [*texts, parts[2]])
    return {unit: (ok, "; ".join(texts)) for unit, (ok, texts) in units.items()}


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "localhost")


def report(r: Registry, host: str, system: System, listeners: list[dict], states: dict, probed: dict) -> dict:
    """What one host's reads mean: its service rows, every listener, its memory and what is off."""
    services = stack.services(r.hosts[host].groups)
    rows: list[Row] = []
    declared: set[int] = set()
    for service in services:
        version = _pins(probed[f"version {service.name}"]) if f"version {service.name}" in probed else ""
        status = _status(probed.get(f"status {service.name}", ""))
        for p in service.ports(r, host):
            declared.add(p.port)
            name = job_name(system, p.unit, p.owners)
            st = states.get(name, {})
            on_port = [x for x in listeners if x["port"] == p.port]
            # Strictly its own unit (the port check before a deploy also lets a distribution's unit
            # hold Redis's port until the deploy masks it: after a deploy that is off).
            own = [x for x in on_port if x["unit"] in (f"{p.unit}.service", name)]
            rows.append(_row(service.name, p, name, st, version, on_port, own, status.get(p.unit), system))
    off = [f"{row.unit}: {problem}" for row in rows for problem in row.off]

    others = []
    own_ports = set(r.settings(host)["llm_own_listeners"])
    for x in listeners:
        if x["port"] in declared:
            continue
        entry = {k: x[k] for k in ("port", "address", "pid", "user", "command", "unit")}
        # macOS's own daemons (AirPlay, rapportd: launchd labels com.apple.*) are the system's.
        system_daemon = x["unit"].startswith("com.apple.")
        entry["off"] = not _loopback(x["address"]) and x["port"] not in own_ports and not system_daemon
        others.append(entry)
        if entry["off"]:
            off.append(
                f"{x['address']}:{x['port']}: {x['command'] or '?'} (pid {x['pid']}, user {x['user'] or '?'}"
                f"{', unit ' + x['unit'] if x['unit'] else ''}) listens where the data declares nothing "
                f"(add the port to llm_own_listeners if it is yours)"
            )

    memory = {"total_mb": system.memory // (1 << 20)}
    if probed.get("available", "").strip().isdigit():
        memory["available_mb"] = int(probed["available"]) // 1024
    weights = {
        m.name: int(probed[f"weights {m.name}"]) * 1024
        for m in r.served_by(host, "mlx")
        if probed.get(f"weights {m.name}", "").isdigit()
    }
    if weights:
        s = r.settings(host)
        limit = int(system.memory * s["mlx_memory_fraction"])
        memory.update(weights_mb=sum(weights.values()) >> 20, weights_limit_mb=limit >> 20)
        if sum(weights.values()) > limit:
            off.append(
                f"memory: the MLX models' weights ({sum(weights.values()) >> 20} MB) exceed "
                f"{s['mlx_memory_fraction']} of the host's memory ({limit >> 20} MB)"
            )
    return {
        "host": host,
        "system": system.name,
        "memory": memory,
        "services": [asdict(row) for row in rows],
        "listeners": others,
        "off": off,
    }


def _row(service: str, p, name: str, st: dict, version: str, on_port, own, status, system: System) -> Row:
    off = []
    if system.macos:
        loaded = st.get("LoadState") == "loaded"
        running = st.get("SubState") == "running"
        state = st.get("SubState") or ("not loaded" if not loaded else "?")
        restarts = max(int(st.get("runs") or 1) - 1, 0)
        if st.get("UnitFileState") == "disabled":
            off.append("the launchd job is disabled")
        if not loaded:
            off.append("the launchd job is not loaded")
        elif not running:
            off.append(f"not running (last exit code {st.get('LastExit', '?')})")
    else:
        running = st.get("ActiveState") == "active" and st.get("SubState") == "running"
        state = f"{st.get('ActiveState', '?')}/{st.get('SubState', '?')}"
        restarts = int(st.get("NRestarts") or 0)
        if st.get("LoadState") not in (None, "loaded"):
            off.append(f"its unit is {st['LoadState']}")
        elif not running:
            off.append(f"not running ({state})")
    if st.get("SubState") == "auto-restart" or (not running and restarts > 0):
        off.append(f"crash-looping: {restarts} restarts")
    for path in st.get("gone", []):
        off.append(f"its {'plist' if system.macos else 'unit'} names {path}, which is gone")
    if running and not own:
        off.append(f"nothing of it listens on port {p.port}")
    for x in on_port:
        if x not in own:
            off.append(
                f"port {p.port} is held by {x['command']} (pid {x['pid']}, user {x['user']}, unit {x['unit'] or '-'})"
            )
    serving = status[1] if status else ""
    if status and not status[0] and running:
        off.append(serving)
    argv = st.get("argv", "").split()
    if "--model" in argv[:-1]:
        serving = serving or argv[argv.index("--model") + 1]
    return Row(
        service=service,
        unit=name,
        state=state,
        version=version,
        port=p.port,
        bind=p.bind,
        listening=sorted({x["address"] if x in own else f"{x['address']} ({x['command']})" for x in on_port}),
        pid=int(st.get("MainPID") or 0),
        memory_mb=int(st.get("rss") or 0) // 1024,
        restarts=restarts,
        serving=serving,
        off=off,
    )


def table(reports: list[dict]) -> str:
    """The reports as text: per host its services, its other listeners, then what is off."""
    out = []
    for rep in reports:
        mem = rep["memory"]
        line = f"{rep['host']} ({rep['system']}): memory {mem.get('available_mb', '?')} MB free of {mem['total_mb']} MB"
        if "weights_mb" in mem:
            line += f"; MLX weights {mem['weights_mb']} MB of {mem['weights_limit_mb']} MB allowed"
        out.append(line)
        head = ("unit", "state", "version", "port", "bind", "listening", "pid", "MB", "restarts", "serving")
        cells = [
            (
                s["unit"],
                s["state"],
                s["version"],
                str(s["port"]),
                s["bind"],
                ",".join(s["listening"]) or "-",
                str(s["pid"] or "-"),
                str(s["memory_mb"]),
                str(s["restarts"]),
                s["serving"],
            )
            for s in rep["services"]
        ]
        widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
        for c in [head, *cells]:
            out.append("  " + "  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
        for x in rep["listeners"]:
            mark = "OFF " if x["off"] else ""
            out.append(
                f"  {mark}other listener {x['address']}:{x['port']}: {x['command']} (pid {x['pid']}, user {x['user']}"
                f"{', ' + x['unit'] if x['unit'] else ''})"
            )
        out += [f"  OFF {line}" for line in rep["off"]] or ["  nothing is off"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
