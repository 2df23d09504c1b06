"""lab/jail.py: a client in a network namespace of its own reaches the one address it is given
(through 127.0.0.1 at the given port) and nothing else; its forwarded connections are counted,
and a run that outlives its timeout is killed."""

import socket
import sys
import threading
from pathlib import Path

import pytest

from lab import jail


@pytest.fixture
def upstream():
    """A TCP server on this machine's loopback that answers every connection with one line."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"upstream says hello\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join(timeout=10)
    assert not thread.is_alive()


def _client(target_port: int, other: str) -> list[str]:
    code = f"""
import socket
s = socket.create_connection(("127.0.0.1", {target_port}), timeout=5)
print(s.recv(100).decode().strip())
for host, port in (("{other}", 80), ("1.1.1.1", 443)):
    try:
        socket.create_connection((host, port), timeout=3)
        print("reached", host)
    except OSError as exc:
        print("unreachable", host, type(exc).__name__)
"""
    return [sys.executable, "-c", code]


def test_only_the_given_address_is_reachable(upstream, tmp_path):
    host, port = upstream
    before = threading.active_count()
    # Inside, 127.0.0.1:4000 leads to the upstream; this machine's own loopback port does not.
    run = jail.run(_client(4000, "127.0.0.1"), (host, port), {"PATH": "/usr/bin:/bin"}, Path(tmp_path), 30, port=4000)
    assert run.returncode == 0 and not run.timed_out, run.output
    lines = run.output.splitlines()
    assert lines[0] == "upstream says hello"
    assert lines[1].startswith("unreachable 127.0.0.1") and lines[2].startswith("unreachable 1.1.1.1"), lines
    assert run.connections == 1
    assert threading.active_count() == before  # the forwarder's threads are gone with the run


def test_a_run_past_its_timeout_is_killed(upstream, tmp_path):
    run = jail.run(["sleep", "30"], upstream, {"PATH": "/usr/bin:/bin"}, Path(tmp_path), 1)
    assert run.timed_out and run.returncode != 0
