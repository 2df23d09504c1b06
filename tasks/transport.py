"""SSH transport tuning for pyinfra's paramiko connections.

paramiko sets no socket options on the TCP connection it opens, so Nagle's algorithm stays on.
Every remote command pyinfra runs opens a channel and sends its exec request as two small
packets; the second waits for the ACK of the first, which the server delays (40 ms on Linux), on
every command (OpenSSH's own client sets TCP_NODELAY for the same reason). A converged deploy runs
its remote commands one after the other, so the delay was most of its cost (the figures, with and
without, are in bench/RESULTS.md).

`disable_nagle()` wraps paramiko's public `SSHClient.connect` (pyinfra's client subclasses it) to
set TCP_NODELAY on the connection's socket once it is up. Both inventory files call it, so every
`pyinfra inventory.py deploy.py` gets it; nothing else about the connection changes.
"""

from __future__ import annotations

import functools
import socket

import paramiko

_MARK = "_llmlab_nodelay"


def _set_nodelay(client: paramiko.SSHClient) -> None:
    transport = client.get_transport()
    sock = getattr(transport, "sock", None)
    # ProxyCommand and gateway channels are not TCP sockets; leave them alone.
    if (
        sock is None
        or not hasattr(sock, "setsockopt")
        or getattr(sock, "family", None)
        not in (
            socket.AF_INET,
            socket.AF_INET6,
        )
    ):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def disable_nagle() -> None:
    """Make every paramiko SSHClient connection set TCP_NODELAY. Safe to call more than once."""
    connect = paramiko.SSHClient.connect
    if getattr(connect, _MARK, False):
        return

    @functools.wraps(connect)
    def connect_nodelay(self, *args, **kwargs):
        result = connect(self, *args, **kwargs)
        _set_nodelay(self)
        return result

    setattr(connect_nodelay, _MARK, True)
    paramiko.SSHClient.connect = connect_nodelay
