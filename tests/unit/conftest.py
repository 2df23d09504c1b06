import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import registry as reg
from tasks import sources, stack

ROOT = Path(__file__).resolve().parents[2]
HOSTS = {"mini": "192.0.2.71", "studio": "192.0.2.72"}  # documentation addresses, never contacted
ALL_PY = str(ROOT / "group_data" / "all.py")
TEST_SHA = "ab" * 32
PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")


def build(
    data: dict, where: dict | None = None, for_deploy: bool = True, secrets: dict | None = None, keys=None
) -> reg.Registry:
    """The registry of an inventory with one mini and one studio, every host seeing `data` as
    if group_data/all.py set it (or where[key] says who did)."""
    where = {k: (where or {}).get(k, ALL_PY) for k in data}
    inputs = [
        reg.HostInput(
            name,
            (name, "inventory"),
            {**data, "llm_address": address},
            {**where, "llm_address": f"inventory.py (host {name})"},
        )
        for name, address in HOSTS.items()
    ]
    registry = reg.build(inputs, keys or stack.KEYS)
    stack.check(registry)
    registry.secrets = {
        "LITELLM_REDIS_PASSWORD": "unit-test-redis",
        **(secrets or {"LITELLM_PROXY_KEY": "sk-unit-test-key"}),
    }
    return registry


@pytest.fixture(scope="session")
def base_data():
    [mini] = [h for h in sources.load_inventory(ROOT / "inventory.py", ROOT) if h.name == "mini"]
    values = {k: v for k, v in mini.values.items() if mini.sources[k] == ALL_PY}
    where = {key: ALL_PY for key in values}
    values["ovms_archive_sha256"] = TEST_SHA
    return values, where


@pytest.fixture
def data(base_data):
    return copy.deepcopy(base_data[0])


@pytest.fixture
def sources_(base_data):
    return dict(base_data[1])


@pytest.fixture
def secrets():
    return {"LITELLM_PROXY_KEY": "sk-unit-test-key", "LITELLM_REDIS_PASSWORD": "unit-test-redis"}


@pytest.fixture
def registry(data, secrets):
    return build(data, secrets=secrets)


def pyinfra(*args, cwd=ROOT, env=None):
    return subprocess.run(
        [PYINFRA, "-y", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "LLMLAB_MINI_HOST": "192.0.2.71",
            "LLMLAB_STUDIO_HOST": "192.0.2.72",
            "LITELLM_PROXY_KEY": "sk-x",
            **(env or {}),
        },
    )
