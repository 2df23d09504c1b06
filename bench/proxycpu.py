"""LiteLLM's CPU time on the mini, read from outside, and the percentile the bench's rows use."""

from __future__ import annotations

from lab import hosts
from lab.proc import run as run_here


def proxy_cpu_seconds() -> float:
    """CPU time (user + system) LiteLLM's processes (master and workers) have used so far, read on
    the mini: systemd's accounting where it has it, else /proc of every process in its cgroup
    (the lab's nspawn hosts have no CPU controller)."""
    out = run_here(*hosts.ssh_args("mini"), "systemctl show -p CPUUsageNSec --value litellm").stdout.strip()
    if out.isdigit():
        return int(out) / 1e9
    script = (
        "procs=/sys/fs/cgroup/system.slice/litellm.service/cgroup.procs; "
        "[ -r $procs ] || procs=/sys/fs/cgroup/systemd/system.slice/litellm.service/cgroup.procs; "
        "for p in $(cat $procs); do cut -d' ' -f14,15 /proc/$p/stat; done; echo tck $(getconf CLK_TCK)"
    )
    lines = run_here(*hosts.ssh_args("mini"), script).stdout.split("\n")
    tck = int(next(line.split()[1] for line in lines if line.startswith("tck")))
    ticks = sum(int(a) + int(b) for a, b in (line.split() for line in lines if line and not line.startswith("tck")))
    return ticks / tck


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
