"""Before any change, a declared port held by a process the toolkit does not run refuses the host
(tasks/owners.py): the listeners read from this machine's own /proc, and the refusal's words."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess

import pytest

from tasks import owners, stack
from tasks.facts import PortHolders
from tasks.service import Port


def test_the_listeners_of_this_machine_are_found_with_their_process(tmp_path):
    """The fact's shell, run here: this process listening on IPv4 and IPv6 loopback; a port
    nobody listens on is absent."""
    v4, v6 = socket.socket(), socket.socket(socket.AF_INET6)
    v4.bind(("127.0.0.1", 0))
    v6.bind(("::1", 0))
    for s in (v4, v6):
        s.listen()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))  # bound, not listening: its port is nobody's listener
    ports = (v4.getsockname()[1], v6.getsockname()[1], free.getsockname()[1])
    try:
        out = subprocess.run(["sh", "-c", PortHolders().command(ports=ports)], capture_output=True, text=True)
    finally:
        for s in (v4, v6, free):
            s.close()
    held = PortHolders().process(out.stdout.splitlines())
    assert set(held) == set(ports[:2]), (out.stdout, out.stderr)
    for port in ports[:2]:
        assert held[port]["pid"] == os.getpid()
        assert held[port]["user"] == getpass.getuser()
        assert held[port]["command"].startswith("python")


def test_a_port_held_by_another_unit_is_named_with_its_process_user_and_unit(registry, monkeypatch):
    from pyinfra.api import Config, Inventory, State
    from pyinfra.context import ctx_host, ctx_state

    inventory = Inventory((["mini"], {}))
    state = State(inventory, Config())
    ports = [p for s in stack.services(("mini",)) for p in s.ports(registry, "mini")]
    by_unit = {p.unit: p for p in ports}
    held = {
        by_unit["litellm"].port: {
            "pid": 812,
            "user": "chris",
            "command": "python3",
            "unit": "litellm-orch.service",
            "cgroup": "/user.slice/user-1000.slice/user@1000.service/app.slice/litellm-orch.service",
        },
        by_unit["ovms"].port: {"pid": 77, "user": "chris", "command": "ovms", "unit": "", "cgroup": "/"},
        # The distribution's Redis, started by its package before this deploy masks it: not foreign.
        by_unit["redis-llm"].port: {
            "pid": 5,
            "user": "redis",
            "command": "redis-server",
            "unit": "redis-server.service",
        },
    }
    with ctx_state.use(state), ctx_host.use(inventory.get_host("mini")):
        lines = owners.foreign(ports, held)
    assert lines == [
        f"mini: port {by_unit['litellm'].port}, declared for litellm ({by_unit['litellm'].serves}), is held by python3 "
        "(pid 812, user chris, user unit litellm-orch.service), which this toolkit does not run: stop it, or give "
        "litellm another port in the data; nothing was changed",
        f"mini: port {by_unit['ovms'].port}, declared for ovms ({by_unit['ovms'].serves}), is held by ovms (pid 77, "
        "user chris, started by no service manager), which this toolkit does not run: stop it, or give ovms another "
        "port in the data; nothing was changed",
    ]


@pytest.mark.parametrize(
    "unit, own",
    [("litellm.service", True), ("litellm-orch.service", False), ("", False), ("litellm", False)],
)
def test_only_the_services_own_unit_holds_its_port(unit, own):
    assert Port("mini", 4000, "0.0.0.0", "litellm", "models", "the LAN").held_by_own(unit) is own
