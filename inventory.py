"""The real hosts and how to reach them: data only.

SSH goes to the host aliases `mini` and `studio`, so the operator's ~/.ssh/config (HostName,
User, Port, IdentityFile) applies as it does for `ssh mini`. llm_address is where the other host
reaches each one on the LAN. LLMLAB_MINI_HOST / LLMLAB_STUDIO_HOST override where SSH goes.
"""

import os

# _sudo: you log in as yourself and the deploy escalates with sudo (the password: the variable
# LLMLAB_SUDO_PASSWORD_MINI / _STUDIO / LLMLAB_SUDO_PASSWORD, else asked once on the terminal).
mini = [
    ("mini", {"ssh_hostname": os.environ.get("LLMLAB_MINI_HOST", "mini"), "llm_address": "192.168.1.71", "_sudo": True})
]
studio = [
    (
        "studio",
        {"ssh_hostname": os.environ.get("LLMLAB_STUDIO_HOST", "studio"), "llm_address": "192.168.1.72", "_sudo": True},
    )
]
