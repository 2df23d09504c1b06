"""Targets of the acceptance suite: the lab by default; inventory.py's real hosts only with
--real-hosts. Expectations come from the registry, never from a hand-written list."""

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest
import testinfra

from tasks import preflight
from tasks import registry as reg

from .client import Secret

ROOT = Path(__file__).resolve().parents[2]
LAB_STATE = ROOT / ".lab" / "state" / "state.json"
LAB_KEY = ROOT / ".lab" / "state" / "id_ed25519"
LAB_KNOWN_HOSTS = ROOT / ".lab" / "state" / "known_hosts"


@lru_cache(maxsize=2)
def expected(real: bool) -> reg.Registry:
    """The registry the deploy used: lab data overrides apply unless --real-hosts."""
    if real:
        folders, hosts = [ROOT / "group_data"], reg.real_host_addresses()
    else:
        folders = preflight.group_data_folders(str(ROOT / "lab" / "inventory.py"))
        from lab.lab import HOSTS as hosts
    data, sources = reg.load_group_data(folders)
    return reg.build(data, hosts, sources, for_deploy=False)


def pytest_generate_tests(metafunc):
    r = expected(metafunc.config.getoption("--real-hosts"))
    services = [("mini", "litellm"), ("mini", "ovms")] + [
        (m.host, f"mlx-{m.name}") for m in r.models.values() if m.backend == "mlx"
    ]
    if "service_on_host" in metafunc.fixturenames:
        metafunc.parametrize("service_on_host", services, ids=[f"{h}:{s}" for h, s in services])
    if "model_name" in metafunc.fixturenames:
        metafunc.parametrize("model_name", list(r.models))
    if "mlx_model" in metafunc.fixturenames:
        mlx = [m for m in r.models.values() if m.backend == "mlx"]
        metafunc.parametrize("mlx_model", mlx, ids=[m.name for m in mlx])


@pytest.fixture(scope="session")
def real(pytestconfig):
    return pytestconfig.getoption("--real-hosts")


@pytest.fixture(scope="session")
def registry(real):
    return expected(real)


@pytest.fixture(scope="session")
def lab_state(real):
    if real:
        return None
    if not LAB_STATE.exists():
        pytest.fail("the lab is not up (no .lab/state/state.json): run `./labctl up` first")
    return json.loads(LAB_STATE.read_text())


@pytest.fixture(scope="session")
def addresses(real, lab_state):
    if real:
        return reg.real_host_addresses()
    return dict(lab_state["hosts"])


@pytest.fixture(scope="session")
def hosts(real, addresses):
    """testinfra hosts over SSH, as the deploy reaches them."""
    result = {}
    for name, address in addresses.items():
        if real:
            result[name] = testinfra.get_host(f"ssh://{address}")
        else:
            # One multiplexed SSH connection per host (testinfra sets ControlMaster but no path,
            # so without one every command paid a new handshake); the master ends itself
            # 10 s after the last command.
            result[name] = testinfra.get_host(
                f"ssh://root@{address}",
                ssh_identity_file=str(LAB_KEY),
                controlpath=str(LAB_KEY.parent / f"cm-{name}"),
                controlpersist=10,
                ssh_extra_args=f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={LAB_KNOWN_HOSTS} -o BatchMode=yes",
            )
    return result


@pytest.fixture(scope="session")
def proxy_key(real):
    if real:
        key = os.environ.get("LITELLM_PROXY_KEY")
        if not key:
            pytest.fail("--real-hosts needs LITELLM_PROXY_KEY in the environment")
        return Secret(key)
    from lab import lab  # noqa: PLC0415

    try:
        return Secret(lab.proxy_key())
    except (lab.LabError, OSError) as err:
        pytest.fail(f"the lab's proxy key: {err}")


@pytest.fixture(scope="session")
def proxy_url(addresses, registry):
    return f"http://{addresses[registry.proxy_host]}:{registry.settings['litellm_port']}"
