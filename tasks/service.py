"""One service-manager helper for both kinds of host: systemd units on Linux, launchd jobs on
macOS. Each service deploy hands it a rendered definition and the operations whose change must
restart the service; restarts follow operation results, never facts read before the run."""

from __future__ import annotations

import shlex
from typing import Iterable

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from tasks.common import is_macos, put_text
from tasks.ops import unit_enabled_running

LAUNCHD_DIR = "/Library/LaunchDaemons"


def _changes(metas: Iterable[OperationMeta]):
    metas = list(metas)
    return lambda: any(m.did_change() for m in metas)


def managed_service(
    name: str,
    definition: str,
    restart_on: Iterable[OperationMeta] = (),
    label: str | None = None,
):
    """Install `definition` (a systemd unit or a launchd plist) for service `name` and keep it
    enabled and running; restart it when the definition or anything in restart_on changed.
    Returns the operation whose change means the service was (re)started."""
    restart_on = list(restart_on)
    if is_macos():
        label = label or name
        path = f"{LAUNCHD_DIR}/{label}.plist"
        plist = put_text(path, definition, name=f"Install launchd job {path}", group="wheel")
        # bootstrap fails while a job of that label is loaded, so reload = bootout + bootstrap,
        # and only when the plist changed.
        load = server.shell(
            name=f"Load launchd job {label}",
            commands=[
                f"launchctl bootout system/{shlex.quote(label)} 2>/dev/null || true",
                f"launchctl bootstrap system {shlex.quote(path)}",
            ],
            _if=plist.did_change,
        )
        restart = server.shell(
            name=f"Restart launchd job {label}",
            commands=[f"launchctl kickstart -k system/{shlex.quote(label)}"],
            _if=lambda: not plist.did_change() and _changes(restart_on)(),
        )
        return _either(load, restart)

    unit_path = f"/etc/systemd/system/{name}.service"
    unit = put_text(unit_path, definition, name=f"Install systemd unit {unit_path}")
    reload = server.shell(
        name="Reload systemd units",
        commands=["systemctl daemon-reload"],
        _if=unit.did_change,
    )
    # try-restart touches only a running service; a stopped one is started just below. Both
    # decisions are taken at execution time, from what the operations before actually did.
    restart = server.shell(
        name=f"Restart {name}.service (its definition, environment or config changed)",
        commands=[f"systemctl try-restart {shlex.quote(name)}.service"],
        _if=_changes([unit, *restart_on]),
    )
    run = unit_enabled_running(name=f"Enable and run {name}.service", unit=f"{name}.service")
    return _either(reload, restart, run)


class _either:
    """did_change of any of several operations: the service was (re)loaded or (re)started."""

    def __init__(self, *metas: OperationMeta):
        self.metas = metas

    def did_change(self) -> bool:
        return any(m.did_change() for m in self.metas)
