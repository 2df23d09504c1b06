import copy
from pathlib import Path

import pytest

from tasks import registry as reg

ROOT = Path(__file__).resolve().parents[2]
HOSTS = {"mini": "192.0.2.71", "studio": "192.0.2.72"}  # documentation addresses, never contacted
TEST_SHA = "ab" * 32


@pytest.fixture(scope="session")
def base_data():
    data, sources = reg.load_group_data([ROOT / "group_data"])
    data["ovms_archive_sha256"] = TEST_SHA
    return data, sources


@pytest.fixture
def data(base_data):
    return copy.deepcopy(base_data[0])


@pytest.fixture
def sources(base_data):
    return dict(base_data[1])


@pytest.fixture
def registry(data, sources):
    return reg.build(data, HOSTS, sources)


@pytest.fixture
def secrets():
    return {"LITELLM_PROXY_KEY": "sk-unit-test-key"}
