"""The real inventory reaches the hosts through the operator's ~/.ssh/config, as `ssh mini` does:
HostName, User, Port and IdentityFile of the aliases, resolved the way pyinfra's SSH connector
resolves them; an alias that resolves to nothing is refused before any connection."""

from __future__ import annotations

import pytest
from pyinfra.connectors.sshuserclient.client import SSHClient

from tasks import preflight, sources
from tasks.schema import DataError

from .conftest import ROOT

SSH_CONFIG = """
Host mini
    HostName 192.0.2.71
    User chris
    Port 2222
    IdentityFile ~/.ssh/id_mini

Host studio
    HostName 192.0.2.72
    User christopher
    IdentityFile ~/.ssh/id_studio
"""


@pytest.fixture
def operator_home(tmp_path, monkeypatch):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(SSH_CONFIG)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("LLMLAB_MINI_HOST", "LLMLAB_STUDIO_HOST"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_real_inventory_goes_through_the_ssh_config_aliases(operator_home):
    hosts = {h.name: h for h in sources.load_inventory(ROOT / "inventory.py", ROOT)}
    mini = sources.ssh_destination("mini", hosts["mini"].values)
    studio = sources.ssh_destination("studio", hosts["studio"].values)
    assert mini == sources.SshDestination("192.0.2.71", "chris", 2222, (f"{operator_home}/.ssh/id_mini",))
    assert studio == sources.SshDestination("192.0.2.72", "christopher", 22, (f"{operator_home}/.ssh/id_studio",))
    # pyinfra's own SSH client reads the same config the same way.
    for host, expected in (("mini", mini), ("studio", studio)):
        hostname, cfg, *_ = SSHClient().parse_config(hosts[host].values["ssh_hostname"], {"port": 22})
        assert (hostname, cfg["username"], cfg["port"]) == (expected.hostname, expected.user, expected.port)
        assert [str(k) for k in cfg["key_filename"]] == list(expected.identity_files)


def test_without_a_config_the_local_user_logs_in(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("getpass.getuser", lambda: "localuser")
    assert sources.ssh_destination("mini", {"ssh_hostname": "mini"}).user == "localuser"
    assert sources.ssh_destination("mini", {"ssh_hostname": "mini", "ssh_user": "ops"}).user == "ops"


def test_an_alias_that_resolves_to_nothing_is_refused_before_connecting(operator_home, monkeypatch):
    monkeypatch.setenv("LITELLM_PROXY_KEY", "sk-x")
    monkeypatch.setenv("LITELLM_REDIS_PASSWORD", "redis-x")
    monkeypatch.setenv("LLMLAB_STUDIO_HOST", "studio-nowhere.invalid")
    with pytest.raises(DataError) as err:
        preflight.build(ROOT / "inventory.py", ROOT, overrides={"ovms_archive_sha256": "ab" * 32})
    assert str(err.value).startswith(
        f"{ROOT / 'inventory.py'} (host studio): SSH goes to 'studio-nowhere.invalid', which resolves to no address"
    )
    assert "add a Host entry with its HostName to ~/.ssh/config" in str(err.value)
