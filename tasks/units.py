"""Units and waiting for them: systemd units on Linux, launchd jobs on macOS, and the wait until
every service a run (re)started answers. Each service deploy hands managed_services() its units
(a rendered definition and the operations whose change must restart each one); restarts follow
operation results, never facts read before the run.

All the services of one deploy are handled by the same two operations (the definitions with the
service manager's reload; restart, enable and run), each reading the host in one command: five
MLX servers cost two operations, not twenty."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api.operation import OperationMeta

from tasks import ops, pyenv, run
from tasks.facts import RenderedFiles, user_systemctl

LAUNCHD_DIR = "/Library/LaunchDaemons"


@dataclass
class Unit:
    """One systemd unit or launchd job of a service."""

    name: str  # the systemd unit is <name>.service
    definition: str  # the rendered unit (Linux) or plist (macOS)
    restart_on: list[OperationMeta | None] = field(default_factory=list)  # None: an operation not declared
    label: str | None = None  # the launchd label (macOS); name when not given


@dataclass(frozen=True)
class HandKept:
    """A hand-kept service this stack takes over (llm_takeover): a systemd system unit, a user
    unit of `user` (uid) reached through that user's manager, or a launchd job in the system
    domain (plist: the file launchd loaded it from)."""

    name: str
    user: str | None = None
    uid: int | None = None
    plist: str | None = None

    def systemctl(self, *args: str) -> str:
        words = " ".join(shlex.quote(a) for a in (*args, self.name))
        if self.user is None:
            return f"systemctl {words}"
        return f"{user_systemctl(shlex.quote(self.user), str(int(self.uid)))} {words}"

    def stop(self) -> list[str]:
        """Shell: stopped and disabled (a boot does not start it), its files kept; a launchd job
        waited for until gone, so that its port is free."""
        if self.plist is None:
            return [self.systemctl("disable", "--now")]
        return [f"launchctl disable system/{shlex.quote(self.name)}", *ops.launchd_bootout(self.name, 60)]

    def start(self) -> str:
        """Shell: enabled and started again."""
        if self.plist is None:
            return self.systemctl("enable", "--now")
        return f"launchctl enable system/{shlex.quote(self.name)}; launchctl bootstrap system {shlex.quote(self.plist)}"

    def __str__(self) -> str:
        if self.plist is not None:
            return f"{self.name} (launchd job)"
        return self.name if self.user is None else f"{self.name} ({self.user}'s user unit)"


@dataclass(frozen=True)
class Restore:
    """Hand-kept units this run took over for a service: if the service then does not answer,
    `command` stops it and starts them again."""

    command: str
    what: str


class Started:
    """did_change(): this run installed, (re)loaded, restarted or started the service; restore:
    what brings back the hand-kept units it took over (None: none)."""

    def __init__(self, checks, restore: Restore | None = None):
        self.checks = checks
        self.restore = restore

    def did_change(self) -> bool:
        return any(check() for check in self.checks)


def _declared(operations: list) -> list[OperationMeta]:
    """The operations of a restart_on list that this run declared (a switch with nothing to
    switch, for one, is not declared)."""
    return [m for m in operations if m is not None]


def managed_services(services: list[Unit], what: str) -> dict[str, Started]:
    """Install each service's definition and keep it enabled and running; restart a service when
    its definition or anything in its restart_on changed. Returns name -> Started."""
    if not services:
        return {}
    written = ops.Affected()
    restarted = ops.Affected()
    # Hand-kept services the data lets this stack replace (tasks/owners.py found them on the
    # ports): stopped right before their successors start. One may hold several ports (a script
    # of the operator's starting every MLX server): it is stopped once.
    plan = run.current().takeovers.get(host.name, {})
    taken = {s.name: plan[s.name] for s in services if plan.get(s.name)}
    hand_kept = list(dict.fromkeys(u for us in taken.values() for u in us))
    labels = {s.name: s.label or s.name for s in services}
    if run.is_macos():
        jobs = {s.label or s.name: (f"{LAUNCHD_DIR}/{s.label or s.name}.plist", s) for s in services}
        if hand_kept:  # before the plists: writing a changed one loads (starts) it
            ops.units_taken_over(
                name=f"Stop and disable {', '.join(map(str, hand_kept))}, replaced by {what}", units=hand_kept
            )
        # A changed plist is loaded afresh (which starts it) as it is written; then an unchanged
        # one whose program, environment or model changed is restarted in place, and one that
        # is not loaded is loaded.
        ops.text_files(
            name=f"Install the launchd jobs of {what}, loading the changed ones",
            files={path: s.definition for path, s in jobs.values()},
            written=written,
            public=True,
            then=ops.launchd_reload({path: label for label, (path, _) in jobs.items()}),
        )
        loaded = ops.Affected()
        ops.launchd_running(
            name=f"Load and run the launchd jobs of {what}, restarting those whose environment or config changed",
            jobs={label: (path, _declared(s.restart_on)) for label, (path, s) in jobs.items()},
            written=written,
            restarted=restarted,
            loaded=loaded,
        )
        return {
            s.name: Started(
                [
                    lambda path=path: path in written,
                    lambda label=label: label in restarted,
                    lambda label=label: label in loaded,
                ],
                _restore(s.name, taken, labels) if s.name in taken else None,
            )
            for label, (path, s) in jobs.items()
        }

    units = {f"{s.name}.service": (f"/etc/systemd/system/{s.name}.service", s) for s in services}
    # systemd reads changed units as they are written (one command with them); then the services
    # whose definition or inputs changed are restarted and the others kept enabled and running,
    # both decided at execution time, from what the operations before actually did.
    ops.text_files(
        name=f"Install the systemd units of {what}, reloading systemd if any changed",
        files={path: s.definition for path, s in units.values()},
        written=written,
        public=True,
        then=lambda changed: ["systemctl daemon-reload"],
    )
    if hand_kept:
        ops.units_taken_over(
            name=f"Stop and disable {', '.join(map(str, hand_kept))}, replaced by {what}", units=hand_kept
        )
    ran = ops.Affected()
    ops.units_running(
        name=f"Enable and run the services of {what}, restarting those whose definition, environment or config changed",
        units={unit: (path, _declared(s.restart_on)) for unit, (path, s) in units.items()},
        written=written,
        restarted=restarted,
        started=ran,
    )
    return {
        s.name: Started(
            [
                lambda path=path: path in written,
                lambda unit=unit: unit in restarted,
                lambda unit=unit: unit in ran,
            ],
            _restore(s.name, taken) if s.name in taken else None,
        )
        for unit, (path, s) in units.items()
    }


def _restore(name: str, taken: dict[str, list[HandKept]], labels: dict[str, str] | None = None) -> Restore:
    """Stop and disable the service `name` and every other one that took over from the same
    hand-kept services (they hold the ports those need; disabled, so that a boot does not start
    both), then enable and start the hand-kept ones again. labels: the services' launchd labels
    (macOS; None: systemd units)."""
    hand_kept = taken[name]
    successors = [n for n, units in taken.items() if set(units) & set(hand_kept)]
    if labels is None:
        stop = [f"systemctl disable --now {' '.join(shlex.quote(f'{n}.service') for n in successors)}"]
    else:
        stop = [c for n in successors for c in (f"launchctl disable system/{shlex.quote(labels[n])}",
                                                *ops.launchd_bootout(labels[n], 60))]  # fmt: skip
    again = [h.start() for h in hand_kept]
    return Restore("; ".join(stop + again), f"the hand-kept {', '.join(map(str, hand_kept))}")


def retire(prefix: str, keep: list[Unit], what: str):
    """Stop and remove the services named `prefix*` that this toolkit wrote (their files carry its
    marker) and that are not in keep: a model that left the registry takes its server with it.
    Files of anyone else, and services of other names, are never looked at."""
    if run.is_macos():
        found = host.get_fact(RenderedFiles, folder=LAUNCHD_DIR, pattern=f"{prefix}*.plist", _sudo=False)
        labels = {s.label or s.name for s in keep}
        gone = {
            name[: -len(".plist")]: f"{LAUNCHD_DIR}/{name}" for name in found if name[: -len(".plist")] not in labels
        }
        units: list[str] = []
    else:
        found = host.get_fact(RenderedFiles, folder="/etc/systemd/system", pattern=f"{prefix}*.service", _sudo=False)
        units, gone = [name for name in found if name not in {f"{s.name}.service" for s in keep}], {}
    if units or gone:
        ops.services_retired(
            name=f"Stop and remove {what} that left the registry: {', '.join(units or gone)}", units=units, jobs=gone
        )


@dataclass(frozen=True)
class Rollback:
    """What to do when a service that this run switched to a new environment does not answer:
    `command` puts the previous environment back and restarts the service; `version` names the
    one that failed and `log` where its log is."""

    command: str
    switched: OperationMeta
    version: str
    log: str


@dataclass(frozen=True)
class Wait:
    """After the deploys: the shell command `probe` must succeed within timeout seconds if
    `started` did_change(); if not, and `rollback` applies, the previous environment is put
    back, and the run still fails, naming what failed."""

    probe: str
    timeout: int
    what: str
    started: Started
    rollback: Rollback | None = None


def restart_command(name: str, label: str | None = None) -> str:
    """Shell: restart one service now (systemd unit <name>.service, or the launchd job label)."""
    if run.is_macos():
        return f"launchctl kickstart -k system/{shlex.quote(label or name)}"
    # A unit that failed to start too often is held by systemd's start limit until reset.
    unit = shlex.quote(f"{name}.service")
    return f"{{ systemctl reset-failed {unit} || true; }} && systemctl restart {unit}"


def rollback(
    built: pyenv.Built, switched: OperationMeta | None, services: list[tuple[str, str | None]], log: str
) -> Rollback | None:
    """The Rollback of the services (name, launchd label) that run from built.env (pyenv.Built),
    switched by `switched` (None: this run switches nothing, so there is nothing to roll back).
    Every service of that environment is restarted: they all ran from the new one."""
    if switched is None:
        return None
    version = ", ".join(f"{n} {v}" for n, v in built.env.pins.items())
    restarts = " && ".join(restart_command(name, label) for name, label in services)
    return Rollback(f"{pyenv.rollback_command(built)} && {restarts}", switched, version, log)


def answers_http(url: str, seconds: int = 5) -> str:
    """A probe: url answers 200 within seconds."""
    return f"curl -fsS -o /dev/null --max-time {int(seconds)} {shlex.quote(url)}"


def wait_for(waits: list[Wait]):
    """deploy.py's last step on every host: one operation that waits until each service this run
    (re)started answers, or each service, after a run that was interrupted or failed (it may have
    started one that does not answer yet). The services start side by side, so the wait is the
    slowest one's, and it is the same operation on every host, so the hosts wait side by side too."""
    return ops.services_answer(
        name="Wait for the (re)started services to answer",
        checks=[(w.probe, w.timeout, w.what, w.started, w.rollback) for w in waits],
        every=run.current().locks.took_over(),
    )
