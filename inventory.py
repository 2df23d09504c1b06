"""The real hosts. Each address can be overridden from the environment:
LLMLAB_MINI_HOST / LLMLAB_STUDIO_HOST (where SSH goes) and LLMLAB_STUDIO_ADDRESS (where the
mini's LiteLLM reaches the studio's MLX servers)."""

import os
import socket

from tasks import preflight, transport

transport.disable_nagle()  # 49 ms -> 4 ms per remote command (tasks/transport.py)

MINI_ADDRESS = "192.168.1.71"
STUDIO_ADDRESS = os.environ.get("LLMLAB_STUDIO_ADDRESS", "192.168.1.72")
HOST_ADDRESSES = {"mini": MINI_ADDRESS, "studio": STUDIO_ADDRESS}


def _mini_target():
    """`mini` when the name resolves (DNS or hosts file), else its LAN address."""
    if "LLMLAB_MINI_HOST" in os.environ:
        return os.environ["LLMLAB_MINI_HOST"]
    try:
        socket.getaddrinfo("mini", 22)
        return "mini"
    except OSError:
        return MINI_ADDRESS


# Tools that only want the addresses above (the ports document) set LLMLAB_ADDRESSES_ONLY.
if not os.environ.get("LLMLAB_ADDRESSES_ONLY"):
    mini = [("mini", {"ssh_hostname": _mini_target(), "llm_address": MINI_ADDRESS})]
    studio = [
        (
            "studio",
            {
                "ssh_hostname": os.environ.get("LLMLAB_STUDIO_HOST", STUDIO_ADDRESS),
                "llm_address": STUDIO_ADDRESS,
            },
        )
    ]
    preflight.check(__file__, HOST_ADDRESSES)
