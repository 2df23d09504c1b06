"""The lab's hosts, as `python -m lab up` made them: data only. The same deploy.py runs against them."""

import json

from lab import paths

if not paths.STATE_FILE.exists():
    raise SystemExit(f"lab inventory: {paths.STATE_FILE} is missing: run `./labctl up` first")
_state = json.loads(paths.STATE_FILE.read_text())


def _host(name):
    address = _state["hosts"][name]
    return (
        name,
        {
            "ssh_hostname": address,
            "ssh_user": _state["operator"],  # an ordinary user; root's SSH logins are refused
            "_sudo": True,  # the password: LLMLAB_SUDO_PASSWORD (lab/run.py sets it)
            "ssh_key": _state["key"],
            "ssh_known_hosts_file": str(paths.KNOWN_HOSTS),
            "ssh_strict_host_key_checking": "accept-new",
            "llm_address": address,
        },
    )


mini = [_host("mini")]
studio = [_host("studio")]
