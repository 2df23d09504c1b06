"""Run a pyinfra deploy and time each of its operations from its own output.

pyinfra runs one operation at a time on all its hosts, and announces each with a line
"--> Starting operation: <name>"; the time from one announcement to the next is what that
operation cost (on whichever host ran it). No pyinfra internals are touched."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from lab.run import grand_total

START = re.compile(r"^--> Starting operation: (.*?)\s*$")


@dataclass
class Run:
    code: int
    wall: float
    ops: list[tuple[str, float]] = field(default_factory=list)  # (name, seconds) in run order
    operations: int = 0
    changed: int = 0
    errors: int = 0
    output: str = ""

    def seconds(self, predicate) -> float:
        return sum(sec for name, sec in self.ops if predicate(name))


def timed_deploy(argv: list[str], cwd: str, env: dict | None = None, echo: bool = False) -> Run:
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: list[tuple[float, str]] = []
    lines = []
    for line in proc.stdout:
        now = time.monotonic()
        lines.append(line)
        if echo:
            sys.stdout.write(line)
        match = START.match(line)
        if match:
            marks.append((now, match.group(1)))
        elif line.startswith("--> Results") and marks:
            marks.append((now, None))
    code = proc.wait()
    wall = time.monotonic() - started
    run = Run(code=code, wall=wall, output="".join(lines))
    for (t0, name), (t1, _) in zip(marks, marks[1:]):
        if name is not None:
            run.ops.append((name, t1 - t0))
    total = grand_total(run.output)
    if total:
        run.operations, run.changed, run.errors = total["operations"], total["changed"], total["errors"]
    return run


if __name__ == "__main__":
    result = timed_deploy(sys.argv[1:], cwd=".")
    for name, seconds in sorted(result.ops, key=lambda x: -x[1])[:25]:
        print(f"{seconds:7.2f} s  {name}")
    print(f"wall {result.wall:.1f} s, exit {result.code}, {result.operations} operations, {result.changed} changed")
