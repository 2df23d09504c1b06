"""Prometheus's node exporter (tasks/node_exporter.py): off unless the data switches it on; on, its
port joins the host's and its unit listens where the data says."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tasks import node_exporter, stack
from tasks.schema import DataError

from .conftest import build

UBUNTU = SimpleNamespace(family="debian")  # what packages() reads of the host's system


def test_off_by_default_it_declares_no_port_no_package_and_its_port_clashes_with_nothing(data, secrets):
    r = build({**data, "ovms_rest_port": 9100}, secrets=secrets)  # the exporter's default port, unused
    assert not r.settings("mini")["node_exporter_enabled"]
    assert not [p for p in stack.ports(r) if p.unit == node_exporter.UNIT]
    assert node_exporter.SERVICE.packages(r, UBUNTU) == []
    assert node_exporter.SERVICE.status_command(r, "mini") == ""


def test_switched_on_its_port_is_the_hosts_and_held_against_the_others(data, secrets):
    on = {**data, "node_exporter_enabled": True}
    r = build(on, secrets=secrets)
    [row] = [p for p in stack.ports(r) if p.unit == node_exporter.UNIT]
    assert (row.host, row.port, row.bind) == ("mini", 9100, "127.0.0.1")
    assert row.held_by_own("node-exporter-llm.service") and row.held_by_own("prometheus-node-exporter.service")
    assert node_exporter.SERVICE.packages(r, UBUNTU) == ["prometheus-node-exporter"]
    with pytest.raises(DataError, match=r"ovms_rest_port equals node_exporter_port \(9100\)"):
        build({**on, "ovms_rest_port": 9100}, secrets=secrets)


@pytest.mark.parametrize(
    "bind, listen", [("127.0.0.1", "127.0.0.1:9100"), ("::1", "[::1]:9100"), ("192.0.2.7", "192.0.2.7:9100")]
)
def test_its_unit_listens_on_the_address_the_data_names(data, secrets, bind, listen):
    r = build({**data, "node_exporter_enabled": True, "node_exporter_bind_address": bind}, secrets=secrets)
    unit = node_exporter.render_unit(r)
    assert f"ExecStart=/usr/bin/prometheus-node-exporter --web.listen-address={listen} --no-collector.timex\n" in unit
    assert "DynamicUser=yes" in unit and "NoNewPrivileges=yes" in unit  # not root, sandboxed
    assert node_exporter.SERVICE.url(r) == f"http://{listen}/metrics"  # where the deploy and the doctor ask


def test_a_bad_address_is_refused_naming_the_key(data, secrets):
    with pytest.raises(DataError, match=r"node_exporter_bind_address is not an IP address: 'mini'"):
        build({**data, "node_exporter_bind_address": "mini"}, secrets=secrets)


def test_switched_on_for_a_rhel_mini_it_is_refused_naming_the_key_before_any_change(data, secrets):
    from pyinfra.api.exceptions import DeployError

    r = build({**data, "node_exporter_enabled": True}, secrets=secrets)
    with pytest.raises(DeployError, match=r"mini: node_exporter_enabled: .* Debian and Ubuntu only, not on RHEL 9.6"):
        node_exporter.SERVICE.packages(r, SimpleNamespace(family="rhel", name="RHEL 9.6"))
