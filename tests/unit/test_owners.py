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
        assert held[port]["ours"] is False  # whatever runs this test, its unit was not written by the toolkit


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
        "litellm another port in the data (or name its unit in llm_takeover); nothing was changed",
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


def test_only_the_toolkits_own_files_of_a_name_are_found_for_retiring(tmp_path):
    """The files a retirement may remove: the pattern's, carrying the toolkit's marker in their
    first lines; a unit of the same name pattern written by someone else is not among them."""
    from tasks.facts import MARKER, RenderedFiles

    (tmp_path / "mlx-gone.service").write_text(f"# {MARKER} from group_data/: the gone server.\n[Unit]\n")
    (tmp_path / "mlx-mine.service").write_text("# the operator's own server\n[Unit]\n")
    (tmp_path / "litellm.service").write_text(f"# {MARKER}\n")
    (tmp_path / "mlx-late.service").write_text(f"[Unit]\n\n\n\n# {MARKER}\n")  # not in the first lines
    command = RenderedFiles().command(folder=str(tmp_path), pattern="mlx-*.service")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert RenderedFiles().process(out.stdout.splitlines()) == ["mlx-gone.service"]
    missing = RenderedFiles().command(folder=str(tmp_path / "nowhere"), pattern="mlx-*.service")
    assert subprocess.run(["sh", "-c", missing], capture_output=True, text=True, check=True).stdout == ""


def test_a_port_held_by_a_unit_the_toolkit_wrote_is_its_own(registry):
    """A renamed model's old server (its unit written by the toolkit) holds the port the new one
    declares: not foreign; this deploy retires it before the new one starts. Any other unit the
    toolkit wrote is."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.context import ctx_host, ctx_state

    inventory = Inventory((["studio"], {}))
    ports = [p for s in stack.services(("studio",)) for p in s.ports(registry, "studio")]
    held = {ports[0].port: {"pid": 9, "user": "mlx", "command": "python", "unit": "mlx-old.service", "ours": True}}
    with ctx_state.use(State(inventory, Config())), ctx_host.use(inventory.get_host("studio")):
        assert owners.foreign(ports, held) == []
        held[ports[0].port]["ours"] = False
        assert len(owners.foreign(ports, held)) == 1
        # Marked, but not retired by this deploy: another prefix (a renamed mlx_launchd_prefix's
        # job), or another model's server the data still declares (two ports swapped).
        for unit in ("old.prefix.jerry-chat", f"{ports[1].unit}.service"):
            held[ports[0].port] = {"pid": 9, "user": "mlx", "command": "python", "unit": unit, "ours": True}
            assert len(owners.foreign(ports, held)) == 1, unit


def test_a_hand_kept_unit_holding_several_ports_comes_back_in_place_of_all_its_successors():
    """The operator's script unit holds two MLX servers' ports: if one successor does not answer,
    both successors are stopped and disabled (they hold its ports) and it is started once; a
    successor of another hand-kept unit is left alone."""
    from tasks.units import HandKept, _restore

    script, other = HandKept("bebop-mlx.service"), HandKept("other.service")
    taken = {"mlx-a": [script], "mlx-b": [script], "mlx-c": [other]}
    restore = _restore("mlx-b", taken)
    assert restore.command == (
        "systemctl disable --now mlx-a.service mlx-b.service; systemctl enable --now bebop-mlx.service"
    )
    assert restore.what == "the hand-kept bebop-mlx.service"


def test_on_a_mac_a_listener_started_by_a_jobs_script_is_that_jobs_with_its_plist(tmp_path):
    """The macOS branch, run here through Linux's lsof and ps, with a launchctl that knows one job
    whose process is this process's parent (a LaunchDaemon's script that started a server in the
    background): the listener is that job's, and its plist is where launchd loaded it from."""
    from tasks.facts import listeners_command

    launchctl = tmp_path / "launchctl"
    launchctl.write_text(
        '#!/bin/sh\ncase "$1" in\n'
        f"  list) printf 'PID\\tStatus\\tLabel\\n{os.getppid()}\\t0\\tcom.bebop.mlx\\n' ;;\n"
        '  print) [ "$2" = system/com.bebop.mlx ] && '
        "printf 'system/com.bebop.mlx = {\\n\\tpath = /Library/LaunchDaemons/com.bebop.plist\\n}\\n' ;;\n"
        "esac\n"
    )
    launchctl.chmod(0o755)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
        command = listeners_command((port,), macos=True)
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env)
        held = PortHolders().process(out.stdout.splitlines())
    finally:
        server.close()
    assert held[port]["pid"] == os.getpid() and held[port]["unit"] == "com.bebop.mlx", (held, out.stderr)
    assert held[port]["plist"] == "/Library/LaunchDaemons/com.bebop.plist" and held[port]["ours"] is False
    assert owners.takeable(held[port]) == "launchd label"


def test_every_hosts_refusals_are_reported_together_whichever_host_reads_its_ports_first(registry):
    """pyinfra stops at the first host whose deploy file raises: a refused host waits for the
    others to say whether they are refused, and the error names every host's collisions, sorted
    by host; a host that is not refused goes on at once; a host that never says is waited for a
    bounded time."""
    import gevent
    from pyinfra.api import Config, Inventory, State
    from pyinfra.context import ctx_host, ctx_state

    from tasks import run

    inventory = Inventory((["mini", "studio"], {}))
    state = State(inventory, Config())
    for h in inventory:
        state.activate_host(h)
    run.begin(registry, state)

    def refused(name: str, lines: list[str], after_s: float, wait_s: float = 30.0) -> list[str]:
        gevent.sleep(after_s)
        with ctx_state.use(state), ctx_host.use(inventory.get_host(name)):
            return owners.together(name, lines, wait_s)

    studio = gevent.spawn(refused, "studio", ["studio: port 8101 is held"], 0.0)
    mini = gevent.spawn(refused, "mini", ["mini: port 4000 is held", "mini: port 9000 is held"], 0.3)
    gevent.joinall([studio, mini], timeout=10, raise_error=True)
    both = ["mini: port 4000 is held", "mini: port 9000 is held", "studio: port 8101 is held"]
    assert studio.value == both and mini.value == both

    run.begin(registry, state)
    assert gevent.spawn(refused, "mini", [], 0.0).get(timeout=5) == []
    started = gevent.get_hub().loop.now()
    alone = gevent.spawn(refused, "studio", ["studio: port 8101 is held"], 0.0, 0.5).get(timeout=5)
    assert alone == ["studio: port 8101 is held"]
    assert gevent.get_hub().loop.now() - started < 0.5  # the mini had said: nothing to wait for

    run.begin(registry, state)
    started = gevent.get_hub().loop.now()
    alone = gevent.spawn(refused, "studio", ["studio: port 8101 is held"], 0.0, 0.5).get(timeout=5)
    assert alone == ["studio: port 8101 is held"] and gevent.get_hub().loop.now() - started >= 0.4
