"""The lab's hosts, as `python -m lab up` made them: the same deploy.py runs against them."""

import json
from pathlib import Path

from tasks import preflight, transport

transport.disable_nagle()  # 49 ms -> 4 ms per remote command (tasks/transport.py)

_LAB = Path(__file__).resolve().parent.parent / ".lab"
_STATE = _LAB / "state" / "state.json"

if not _STATE.exists():
    raise SystemExit(f"lab inventory: {_STATE} is missing: run `./labctl up` first")
_state = json.loads(_STATE.read_text())


def _host(name):
    address = _state["hosts"][name]
    return (
        name,
        {
            "ssh_hostname": address,
            "ssh_user": "root",
            "ssh_key": _state["key"],
            "ssh_known_hosts_file": str(_LAB / "state" / "known_hosts"),
            "ssh_strict_host_key_checking": "accept-new",
            "llm_address": address,
        },
    )


mini = [_host("mini")]
studio = [_host("studio")]
preflight.check(__file__, {name: address for name, address in _state["hosts"].items()})
