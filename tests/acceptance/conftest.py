"""Targets of the acceptance suite: the lab by default; inventory.py's real hosts only with
--real-hosts. Expectations come from the registry, never from a hand-written list."""

import json
import os
from functools import lru_cache

import pytest

from lab import paths
from tasks import preflight, stack
from tasks import registry as reg

from .client import Secret
from .sudohost import sudo_host

ROOT = paths.ROOT
LAB_STATE = paths.STATE_FILE
LAB_KEY = paths.KEY
LAB_KNOWN_HOSTS = paths.KNOWN_HOSTS


@lru_cache(maxsize=2)
def expected(real: bool) -> reg.Registry:
    """The registry the deploy used, read from the same inventory and group data: the lab's
    unless --real-hosts."""
    inventory = ROOT / ("inventory.py" if real else "lab/inventory.py")
    return preflight.build(inventory, ROOT, for_deploy=False, with_secrets=False)


def pytest_generate_tests(metafunc):
    r = expected(metafunc.config.getoption("--real-hosts"))
    # Every unit that holds a port the services declare (tasks/stack.py's union).
    services = list(dict.fromkeys((p.host, p.unit) for p in stack.ports(r)))
    if "hardened_unit" in metafunc.fixturenames:
        # The proxy host's units of ours that share the sandbox (templates/common/systemd-hardening.j2).
        units = ["litellm.service", "redis-llm.service"]
        units += ["node-exporter-llm.service"] if r.proxy["node_exporter_enabled"] else []
        metafunc.parametrize("hardened_unit", units)
    if "service_on_host" in metafunc.fixturenames:
        metafunc.parametrize("service_on_host", services, ids=[f"{h}:{s}" for h, s in services])
    if "model_name" in metafunc.fixturenames:
        metafunc.parametrize("model_name", r.model_names())
    if "tool_model" in metafunc.fixturenames:
        # One model of each backend kind that parses tool calls: the first MLX model, and the
        # first OVMS model whose graph names a tool parser.
        kinds = {}
        for m in r.models.values():
            if m.backend == "mlx" or (m.backend == "ovms" and m.graph.get("tool_parser")):
                kinds.setdefault(m.backend, m.name)
        metafunc.parametrize("tool_model", list(kinds.values()), ids=list(kinds))
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
def addresses(registry):
    """Where the tests reach each host: its address from the inventory data."""
    return {name: entry.address for name, entry in registry.hosts.items()}


@pytest.fixture(scope="session")
def hosts(real, addresses, lab_state):
    """testinfra hosts over SSH as the deploy reaches them: as the operator, checks run through
    sudo (real hosts: by their SSH alias, so the operator's ~/.ssh/config applies; the password
    from LLMLAB_SUDO_PASSWORD_<HOST> or LLMLAB_SUDO_PASSWORD)."""
    from tasks.access import password_variables

    result = {}
    for name, address in addresses.items():
        if real:
            password = next((os.environ[v] for v in password_variables(name) if os.environ.get(v)), "")
            result[name] = sudo_host(name, password)
        else:
            from lab import lifecycle

            # One multiplexed SSH connection per host (testinfra sets ControlMaster but no path,
            # so without one every command paid a new handshake); the master ends itself
            # 10 s after the last command.
            result[name] = sudo_host(
                f"{lab_state['operator']}@{address}",
                lifecycle.sudo_password(),
                ssh_identity_file=str(LAB_KEY),
                controlpath=str(LAB_KEY.parent / f"cm-{name}"),
                controlpersist=10,
                ssh_extra_args=(
                    f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={LAB_KNOWN_HOSTS} -o BatchMode=yes"
                ),
            )
    return result


@pytest.fixture(scope="session")
def proxy_key(real):
    if real:
        key = os.environ.get("LITELLM_PROXY_KEY")
        if not key:
            pytest.fail("--real-hosts needs LITELLM_PROXY_KEY in the environment")
        return Secret(key)
    from lab import lifecycle
    from lab.proc import LabError

    try:
        return Secret(lifecycle.proxy_key())
    except (LabError, OSError) as err:
        pytest.fail(f"the lab's proxy key: {err}")


@pytest.fixture(scope="session")
def proxy_url(addresses, registry):
    return f"http://{addresses[registry.proxy_host]}:{registry.proxy['litellm_port']}"


@pytest.fixture(scope="session")
def client(proxy_url, proxy_key):
    """The official openai SDK at the proxy, as an agent holds it."""
    import openai

    return openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=str(proxy_key), max_retries=0, timeout=60)
