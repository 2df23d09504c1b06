"""A service is one place (tasks/service.py, tasks/stack.py): the keys the preflight checks and
the ports the documents and tests list are the union of what the services declare, so a service
added to the stack brings its keys and ports with it and nothing else has to know them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tasks import registry as reg
from tasks import schema, stack
from tasks.schema import DataError, Key
from tasks.service import Port, StackService

from .conftest import build

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_is_declared_once_where_it_is_read():
    names = [k.name for k in stack.KEYS]
    assert len(names) == len(set(names))
    for key in stack.KEYS:
        assert f'"{key.name}"' in (ROOT / key.origin).read_text(), (key.name, key.origin)
    # each service's keys are its own: prefixed by the service, declared in its module
    for service in stack.SERVICES:
        for key in service.keys:
            assert stack.KEYS.by_name[key.name].origin.startswith(f"tasks/{type(service).__module__.split('.')[1]}")


def test_a_key_declared_twice_is_refused_naming_both_files():
    twice = dataclasses.replace(stack.KEYS.by_name["redis_port"], origin="tasks/exporter.py")
    with pytest.raises(
        ValueError, match=r"tasks/exporter.py: data key redis_port is declared twice \(first in tasks/redis.py\)"
    ):
        schema.KeyTable((*stack.KEYS, twice))


class Exporter(StackService):
    """A service the stack does not have: a metrics exporter on the mini."""

    name = "exporter"
    group = reg.PROXY_GROUP
    keys = (
        Key("exporter_port", int, 9100, "the exporter's port", schema.port),
        Key("exporter_bind_address", str, "127.0.0.1", "its address", schema.ip),
    )

    def ports(self, r, host):
        s = r.settings(host)
        return [Port(host, s["exporter_port"], s["exporter_bind_address"], "exporter", "metrics", "this host")]

    def deploy(self, r, envs):
        return []


@pytest.fixture
def with_exporter(monkeypatch):
    exporter = Exporter()
    monkeypatch.setattr(stack, "SERVICES", (*stack.SERVICES, exporter))
    return schema.KeyTable((*stack.KEYS, *(dataclasses.replace(k, origin="tasks/exporter.py") for k in exporter.keys)))


def test_a_new_service_brings_its_keys_and_ports(data, with_exporter):
    registry = build(data, keys=with_exporter)
    assert registry.settings("mini")["exporter_port"] == 9100
    rows = [p for p in stack.ports(registry) if p.host == "mini"]
    assert [p.port for p in rows] == sorted(p.port for p in rows)  # a host's sockets by port
    assert Port("mini", 9100, "127.0.0.1", "exporter", "metrics", "this host") in rows
    assert not [p for p in stack.ports(registry) if p.host == "studio" and p.unit == "exporter"]  # its group only
    assert "exporter_port" in with_exporter.markdown_table()


def test_a_new_service_s_keys_are_checked_and_its_port_held_against_the_others(data, with_exporter):
    with pytest.raises(DataError, match=r"group_data/all.py: exporter_bind_address is not an IP address"):
        build({**data, "exporter_bind_address": "mini"}, keys=with_exporter)
    with pytest.raises(DataError, match=r"group_data/all.py: exporter_port equals litellm_port \(4000\)"):
        build({**data, "exporter_port": 4000}, keys=with_exporter)
    clash = {
        **data,
        "llm_models": {**data["llm_models"], "x": {"backend": "mlx", "host": "mini", "port": 9100, "upstream": "m/x"}},
    }
    with pytest.raises(DataError, match=r"llm_models\['x'\].port 9100 clashes with exporter_port"):
        build(clash, keys=with_exporter)
    # without the service, its keys are no data keys of this toolkit
    with pytest.raises(DataError, match="exporter_port is not a data key of this toolkit"):
        build({**data, "exporter_port": 9100})


def test_a_port_switched_on_by_a_key_that_is_not_a_bool_is_refused():
    port = Key("exporter_port", int, 9100, "its port", schema.port, enabled_by="redis_port", origin="tasks/exporter.py")
    with pytest.raises(
        ValueError, match=r"tasks/exporter.py: exporter_port is enabled_by redis_port, which is no bool"
    ):
        schema.KeyTable((*stack.KEYS, port))
