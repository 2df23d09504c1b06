"""A client of the lab run where the lab's proxy is the only address it can reach: a network
namespace of its own (`unshare --net`, loopback only), in which 127.0.0.1:<port> is forwarded,
through a Unix socket, to the proxy. Any other connection the client tries fails at once (no
route); every forwarded connection is counted, so a test sees that the client really went
through the proxy.

    python -m lab.jail inner SOCKET PORT -- CMD...   (what run() starts inside the namespace)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from lab.proc import LabError


@dataclass
class Outcome:
    returncode: int
    output: str
    connections: int  # connections forwarded to the proxy
    timed_out: bool


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (sink, source):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _splice(a: socket.socket, b: socket.socket) -> None:
    threads = [threading.Thread(target=_pump, args=pair, daemon=True) for pair in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.close()
    b.close()


class _Forwarder:
    """Accepts on `listener` and splices each connection to a new one made by `connect`."""

    def __init__(self, listener: socket.socket, connect):
        self.listener, self.connect, self.count, self.splices = listener, connect, 0, []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = self.connect()
            except OSError:
                client.close()
                continue
            self.count += 1
            splice = threading.Thread(target=_splice, args=(client, upstream), daemon=True)
            splice.start()
            self.splices.append(splice)

    def close(self) -> None:
        """Stop accepting, and wait for the threads (their connections end with the client)."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        except OSError:
            pass
        self.listener.close()
        for thread in [self.thread, *self.splices]:
            thread.join(timeout=10)


def run(
    argv: list[str],
    proxy: tuple[str, int],
    env: dict[str, str],
    cwd: Path,
    timeout: float,
    port: int | None = None,
) -> Outcome:
    """argv in a namespace of its own where 127.0.0.1:port (the proxy's port unless given) is the
    proxy at `proxy`; its output (stdout and stderr together) and how it ended. Bounded: killed
    after `timeout` seconds."""
    port = port or proxy[1]
    with tempfile.TemporaryDirectory(prefix="lab-jail-") as folder:
        path = os.path.join(folder, "proxy.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        forwarder = _Forwarder(listener, lambda: socket.create_connection(proxy, timeout=10))
        inner = [sys.executable, "-m", "lab.jail", "inner", path, str(port), "--", *argv]
        command = ["unshare", "--net", "--fork", "--kill-child", "--", *inner]
        child_env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, 9)
            out, _ = proc.communicate()
        forwarder.close()
        return Outcome(proc.returncode, out.decode(errors="replace"), forwarder.count, timed_out)


def _inner(path: str, port: int, argv: list[str]) -> int:
    """Inside the namespace: loopback up, 127.0.0.1:port forwarded to the Unix socket, argv run."""
    if subprocess.run(["ip", "link", "set", "lo", "up"]).returncode != 0:
        raise LabError("could not bring loopback up in the client's namespace")
    listener = socket.create_server(("127.0.0.1", port))

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s

    _Forwarder(listener, connect)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "inner" or sys.argv[4] != "--":
        raise SystemExit(__doc__)
    sys.exit(_inner(sys.argv[2], int(sys.argv[3]), sys.argv[5:]))
