"""The preflight's view of the data is pyinfra's: its own inventory loader (tasks/sources.py) read
the inventory and group data, so inline group data, imported names, the order of a host's groups,
the SSH user and port, --limit and ad-hoc commands behave as they do in pyinfra."""

from __future__ import annotations

import shutil

import pytest

from tasks import preflight, sources
from tasks.schema import DataError

from .conftest import ROOT, TEST_SHA, pyinfra

HOSTS = "mini = [('mini', {'llm_address': '192.0.2.71'})]\nstudio = [('studio', {'llm_address': '192.0.2.72'})]\n"


@pytest.fixture
def project(tmp_path):
    """A folder with the project's group data and an inventory the test writes."""
    shutil.copytree(ROOT / "group_data", tmp_path / "group_data")
    return tmp_path


def _build(project, inventory_text):
    (project / "inventory.py").write_text(inventory_text)
    return preflight.build(
        project / "inventory.py",
        project,
        overrides={"ovms_archive_sha256": TEST_SHA},
        for_deploy=False,
        with_secrets=False,
    )


def test_inline_group_data_is_seen(project):
    r = _build(project, HOSTS + "proxies = (['mini'], {'litellm_port': 4500})\n")
    assert r.settings("mini")["litellm_port"] == 4500 and r.settings("studio")["litellm_port"] == 4000
    with pytest.raises(DataError, match=r"inventory.py \(group proxies\): litellm_port is out of range"):
        _build(project, HOSTS + "proxies = (['mini'], {'litellm_port': 70000})\n")


def test_imported_names_are_not_data(project):
    """pyinfra leaves out what a data file imports; a name it imports is not an undeclared key."""
    text = (project / "group_data" / "all.py").read_text()
    (project / "group_data" / "all.py").write_text("from math import pi\n" + text + "_base = 4000\n")
    (project / "group_data" / "mini.py").write_text("from tasks.litellm import KEYS\nlitellm_port = 4001\n")
    r = _build(project, HOSTS)
    assert r.settings("mini")["litellm_port"] == 4001


def test_a_later_group_of_the_host_wins_as_in_pyinfra(project):
    """A host's groups layer in the order of host.groups (the inventory's order), not by file name:
    zeta comes before alpha in the inventory, so alpha's value wins."""
    (project / "group_data" / "zeta.py").write_text("litellm_port = 4100\n")
    (project / "group_data" / "alpha.py").write_text("litellm_port = 4200\n")
    r = _build(project, HOSTS + "zeta = ['mini']\nalpha = ['mini']\n")
    assert r.settings("mini")["litellm_port"] == 4200
    (project / "group_data" / "alpha.py").write_text("litellm_port = 'x'\n")
    with pytest.raises(DataError, match=f"^{project / 'group_data' / 'alpha.py'}: litellm_port must be an integer"):
        _build(project, HOSTS + "zeta = ['mini']\nalpha = ['mini']\n")


def test_host_data_user_and_port_beat_the_ssh_config(tmp_path, monkeypatch):
    """pyinfra's SSH connector applies the host data's ssh_user and ssh_port (and --user, --port)
    over what ~/.ssh/config says for the alias."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host mini\n  HostName 192.0.2.71\n  User chris\n  Port 2222\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    found = sources.ssh_destination("mini", {"ssh_hostname": "mini", "ssh_user": "ops", "ssh_port": 2200})
    assert (found.hostname, found.user, found.port) == ("192.0.2.71", "ops", 2200)
    found = sources.ssh_destination("mini", {"ssh_hostname": "mini"})
    assert (found.user, found.port) == ("chris", 2222)


def test_limit_leaves_other_hosts_alone():
    """--limit mini: the studio, which resolves to no address, is not checked (pyinfra's
    debug-inventory runs the preflight and connects to nothing); without it, it is refused."""
    env = {"LLMLAB_STUDIO_HOST": "studio-nowhere.invalid"}
    data = ["--data", f"ovms_archive_sha256={TEST_SHA}"]
    out = pyinfra(*data, "--limit", "mini", "inventory.py", "debug-inventory", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    out = pyinfra(*data, "inventory.py", "debug-inventory", env=env)
    assert out.returncode == 2 and "SSH goes to 'studio-nowhere.invalid'" in out.stderr, out.stdout + out.stderr
    out = pyinfra(*data, "--exclude", "studio", "inventory.py", "debug-inventory", env=env)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_ad_hoc_command_needs_no_secret():
    """Only a deploy reads the secrets: `pyinfra inventory.py fact ...` and its kin run without the
    proxy key (debug-inventory stands for them here: it connects to nothing)."""
    data = ["--data", f"ovms_archive_sha256={TEST_SHA}"]
    nowhere = ["--data", "llm_secrets_file=/nonexistent/secrets.env"]
    out = pyinfra(*data, *nowhere, "inventory.py", "debug-inventory", env={"LITELLM_PROXY_KEY": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    out = pyinfra(*data, *nowhere, "inventory.py", "deploy.py", env={"LITELLM_PROXY_KEY": ""})
    assert out.returncode == 2 and "secret LITELLM_PROXY_KEY is not set" in out.stderr, out.stdout + out.stderr
    out = pyinfra(*data, "--data", "litellm_port=70000", "inventory.py", "debug-inventory")
    assert out.returncode == 2 and "command line (--data litellm_port): litellm_port is out of range" in out.stderr


@pytest.mark.parametrize("option", ["--serial", "--no-wait"])
def test_a_deploy_in_another_order_than_pyinfras_default_is_refused(option):
    """The deploy lock is taken before the first operation and given back after the last, which
    pyinfra's --serial and --no-wait orders do not signal: refused before any connection."""
    out = pyinfra(option, "--data", f"ovms_archive_sha256={TEST_SHA}", "inventory.py", "deploy.py")
    assert out.returncode == 2 and f"preflight: command line: {option}: a deploy runs" in out.stderr, out.stderr
