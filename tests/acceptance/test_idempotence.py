"""A second deploy right after the first changes nothing on any host (lab only: it deploys)."""

import re

import pytest

from .labdeploy import changed_rows, grand_total, lab_deploy


@pytest.mark.lab_only
def test_second_deploy_changes_nothing(lab_state, timings):
    code, text, seconds = lab_deploy()
    timings["converged re-run (both hosts)"] = seconds
    assert code == 0, text[-3000:]
    total = grand_total(text)
    assert total["changed"] == 0 and total["errors"] == 0, "changed:\n" + "\n".join(changed_rows(text))
    assert total["unchanged"] == total["operations"]


@pytest.mark.lab_only
def test_sudo_password_never_reaches_pyinfras_output(lab_state):
    """pyinfra's --debug prints every command and every deploy's arguments: the sudo password
    (and the proxy key) must be in none of it. The password goes to sudo on its standard input
    (tasks/sudo.py): no command carries it and no askpass helper is written."""
    from lab import lifecycle

    code, text, _ = lab_deploy("--debug")
    assert code == 0, text[-3000:]
    assert "sudo -H -S -k -p " in text  # the deploy did go through sudo with a password
    assert "askpass" not in text.lower() and "PYINFRA_SUDO_PASSWORD" not in text
    assert lifecycle.sudo_password() not in text
    assert lifecycle.proxy_key() not in text


def _main_pids(host, units):
    return {u: host.check_output(f"systemctl show -p MainPID --value {u}") for u in units}


@pytest.mark.lab_only
def test_one_drifted_unit_restarts_only_its_service(hosts, registry, timings):
    """The MLX servers share one set of operations; a hand edit to one unit file must rewrite and
    restart that service alone, and fix a drifted folder mode without restarting anything."""
    studio, mini = hosts["studio"], hosts["mini"]
    units = sorted(f"mlx-{m.name}.service" for m in registry.models.values() if m.backend == "mlx")
    target = units[-1]
    before, proxy_before = _main_pids(studio, units), _main_pids(mini, ["litellm.service"])
    studio.check_output(f"echo '# edited by hand' >> /etc/systemd/system/{target}")
    candidate = f"{registry.proxy['litellm_config_dir']}/candidate"
    mini.check_output(f"chmod 755 {candidate}")

    code, text, seconds = lab_deploy()
    timings["deploy after one drifted unit"] = seconds
    assert code == 0, text[-3000:]
    rows = changed_rows(text)
    expected = [
        "MLX model servers | Install the systemd units of the MLX servers",  # and reload systemd
        "MLX model servers | Enable and run the services of the MLX servers",  # restarting the drifted one
        "Wait for the (re)started services to answer",
        f"LiteLLM proxy | Create {registry.proxy['litellm_home']}",
    ]
    assert all(any(e in r for r in rows) for e in expected), "\n".join(rows)
    assert len(rows) == len(expected), "\n".join(rows)
    assert "# edited by hand" not in studio.file(f"/etc/systemd/system/{target}").content_string
    assert studio.file(f"/etc/systemd/system/{target}").mode == 0o644
    assert mini.file(candidate).mode == 0o700
    after = _main_pids(studio, units)
    assert after[target] != before[target] and after[target] != "0", "the edited unit's service was not restarted"
    assert {u: p for u, p in after.items() if u != target} == {u: p for u, p in before.items() if u != target}
    assert _main_pids(mini, ["litellm.service"]) == proxy_before
    assert studio.service(target).is_running


@pytest.mark.lab_only
def test_pyinfra_ssh_connections_disable_nagle(lab_state):
    """tasks/transport.py: pyinfra's own SSH client connects with TCP_NODELAY (49 -> 4 ms per
    remote command on the lab); without it every command waits on a delayed ACK."""
    import socket

    from pyinfra.connectors.sshuserclient.client import SSHClient

    from tasks import transport

    from .conftest import LAB_KEY, LAB_KNOWN_HOSTS

    transport.disable_nagle()
    client = SSHClient()
    client.connect(
        lab_state["hosts"]["mini"],
        username=lab_state["operator"],
        key_filename=str(LAB_KEY),
        _pyinfra_ssh_known_hosts_file=str(LAB_KNOWN_HOSTS),
    )
    try:
        sock = client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        _, out, _ = client.exec_command("echo ok")
        assert out.read().strip() == b"ok"
    finally:
        client.close()


DETECTED = re.compile(r"^\s+(?P<name>.+?)\s{2,}(?P<change>-|\d+ \([^)]*\))\s{2,}(?P<maybe>-|\d+ \([^)]*\))\s*$")


def _same_op(name: str) -> str:
    """An operation's name less this run's own stamp (environment folders are named by run)."""
    return re.sub(r"\d{14}p\d+", "<run>", name.strip())


def detected_changes(text: str) -> dict[str, tuple[str, str]]:
    """pyinfra's "Detected changes" table of a dry run: operation -> (Change, Conditional Change),
    for the operations with either."""
    if "--> Detected changes:" not in text:
        raise AssertionError("no change detection in the dry run's output:\n" + text[-3000:])
    table = text.split("--> Detected changes:", 1)[1].split("Detected changes may not include", 1)[0]
    rows = {}
    for line in table.splitlines():
        m = DETECTED.match(line)
        if m and m["name"].strip() != "Operation" and (m["change"] != "-" or m["maybe"] != "-"):
            rows[_same_op(m["name"])] = (m["change"], m["maybe"])
    return rows


def changed_names(text: str) -> set[str]:
    return {_same_op(re.split(r"\s{2,}", row.strip())[0]) for row in changed_rows(text)}


@pytest.mark.lab_only
def test_dry_run_tells_the_truth(lab_state, tmp_path, monkeypatch):
    """`./labctl deploy --dry` (pyinfra's change detection shown): on a converged lab it plans no
    change, conditional or not; a new proxy key is planned with `--diff` without being shown."""
    code, text, _ = lab_deploy("--dry")
    assert code == 0, text[-3000:]
    assert detected_changes(text) == {}, detected_changes(text)

    new_key = "sk-dry-run-only-" + "7" * 24
    with monkeypatch.context() as m:
        m.setenv("LITELLM_PROXY_KEY", new_key)  # the environment comes before the secrets file
        code, text, _ = lab_deploy("--dry", "--diff")
    assert code == 0, text[-3000:]
    assert any("env.local (not shown)" in name for name in detected_changes(text)), detected_changes(text)
    assert new_key not in text and "7" * 24 not in text


def _router_setting(data):
    from tasks.litellm import SEED_ROUTER_SETTINGS

    settings = dict(SEED_ROUTER_SETTINGS, routing_strategy="simple-shuffle")
    (data / "mini.py").write_text(f"litellm_router_settings = {settings!r}\n")
    return ()


def _unit(data):
    (data / "mini.py").write_text("litellm_workers = 1\n")  # the proxy's unit: one worker
    return ()


def _model_file(data):
    # lil-jerry's graph.pbtxt (the lab's own overrides, with one more sequence)
    (data / "all.py").write_text(
        "import runpy\nfrom lab import paths\n"
        "llm_model_overrides = runpy.run_path(\n"
        "    str(paths.ROOT / 'lab' / 'group_data' / 'all.py'))['llm_model_overrides']\n"
        "llm_model_overrides['lil-jerry'] = {**llm_model_overrides['lil-jerry'],\n"
        "                                    'graph': {'cache_size': 1, 'max_num_seqs': 5}}\n"
    )
    return ()


def _pin(data):
    return ("--data", "litellm_version=1.106.11")


@pytest.mark.lab_only
@pytest.mark.parametrize(
    "change", [_router_setting, _unit, _model_file, _pin], ids=["router-setting", "unit", "model-file", "pin"]
)
def test_dry_run_plans_exactly_what_the_real_run_makes(lab_state, tmp_path, change):
    """After one input changes, `--dry` names exactly the operations the real run then makes
    (Change and Conditional Change together), and no others."""
    data = tmp_path / "data"
    data.mkdir()
    extra = ("--group-data", str(data), *change(data))
    try:
        code, text, _ = lab_deploy(*extra, "--dry")
        assert code == 0, text[-3000:]
        planned = set(detected_changes(text))
        code, text, _ = lab_deploy(*extra)
        assert code == 0, text[-3000:]
        made = changed_names(text)
        assert planned and planned == made, (
            f"planned but not made: {planned - made}; made but not planned: {made - planned}"
        )
        if change is _router_setting:
            assert not any("MLX" in name for name in planned), planned  # no MLX server restarts
    finally:
        code, text, _ = lab_deploy()
        assert code == 0, text[-3000:]
