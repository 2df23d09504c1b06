"""The mini deploy on a real Linux box, run against the facts captured from the lab's mini just
made (Ubuntu 24.04 on x86_64, reached as the operator chris with a sudo password; see
tests/unit/recorded.py): a fresh box, and the same box as other systems, refused before any change
or installed with their own tools."""

from __future__ import annotations

import shlex

import pytest

from tasks import litellm as litellm_task
from tasks import pyenv
from tasks.hostos import System
from tasks.ovms import models as ovms_models

from .conftest import build
from .recorded import (
    fact_key,
    functions,
    host_facts,
    recording,
    remote_commands,
    run_deploy,
    shell_lines,
    staging_paths,
    system_of,
    upload_commands,
    upload_steps,
    uploads,
)

PACKAGES = ("python3", "ca-certificates", "curl", "redis-server", "libxml2", "libpython3.12t64")  # uv's, Redis, OVMS's
ARCHIVE = "ovms_ubuntu24_python_on.tar.gz"  # chosen for Ubuntu 24.04 and OVMS 2025.4
FRESH = "ubuntu-24.04-mini-fresh"  # the lab's mini just made: Ubuntu 24.04, the operator chris with a sudo password
UBUNTU = system_of(recording(FRESH))


def recorded_fresh_mini(registry, system: System = UBUNTU) -> dict:
    """A box with nothing of ours, as captured from the lab's mini just made (`./labctl capture
    mini tests/unit/recordings/ubuntu-24.04-mini-fresh.json`); system: what the host is instead."""
    facts = recording(FRESH)
    facts[fact_key("HostFacts")] = host_facts(system)
    return facts


@pytest.fixture
def registry(data):
    return build(data)


def test_fresh_ubuntu_mini_as_an_ordinary_user_with_sudo(monkeypatch, registry):
    ran = run_deploy(monkeypatch, registry, "mini", recorded_fresh_mini(registry))
    lines = upload_steps(ran)  # an upload's steps one per line
    files = uploads(ran)
    s = registry.proxy
    conf = s["litellm_config_dir"]
    apt = [line for line in shell_lines(ran) if "apt-get install" in line]
    assert len(apt) == 1  # one install (and at most one refresh) for every service's packages
    assert apt[0].startswith("if find /var/lib/apt/lists -maxdepth 1 -name '*Release' -cmin -1440")
    assert "apt-get update -qq" in apt[0] and "redis-server" in apt[0]
    assert files[f"{conf}/router.yaml"].decode() == litellm_task.render_router_yaml(registry)
    assert files["/etc/ovms/config.json"].decode() == ovms_models.render_config(registry)
    # OVMS: the asset for Ubuntu 24.04, held to its digest, and the model pulled by OVMS as its user.
    assert any(f"releases/download/v2025.4/{ARCHIVE}" in line for line in lines)
    assert any(
        line.startswith(f"echo '{s['ovms_archive_sha256']}  /opt/ovms/archives/{ARCHIVE}' | sha256sum -c")
        for line in lines
    )
    # The pull runs with its output (OVMS's progress) on the operator's terminal.
    pull = [args[0] for name, args in functions(ran) if "--pull" in args[0]]
    assert (
        len(pull) == 1 and "runuser -u ovms -- env HOME=/var/lib/ovms/models/llama-3-2-3b-instruct/hub.tmp" in pull[0]
    )
    assert "HF_ENDPOINT" not in pull[0]  # huggingface.co, OVMS's own default
    assert (
        "--source_model EmbeddedLLM/Llama-3.2-3B-Instruct-int4-sym-ov --model_repository_path "
        "/var/lib/ovms/models/llama-3-2-3b-instruct/hub.tmp --task text_generation --target_device CPU"
    ) in pull[0]
    graph = files["/var/lib/ovms/models/llama-3-2-3b-instruct/graph.pbtxt"].decode()
    assert 'models_path: "./hub/EmbeddedLLM/Llama-3.2-3B-Instruct-int4-sym-ov"' in graph
    ovms_unit = files["/etc/systemd/system/ovms.service"].decode()
    assert "PYTHONPATH=/opt/ovms/current/ovms/lib/python:/opt/ovms/python/lib/python3.12/site-packages" in ovms_unit
    assert "systemctl enable litellm.service" in lines and "systemctl start litellm.service" in lines
    # LiteLLM's new environment: the build only installs; the config check loads the proxy in
    # it, as root from / with bytecode written, the litellm package compiled beside it.
    build = next(line for line in lines if line.startswith("/opt/uv/bin/uv pip install") and "litellm[proxy]" in line)
    assert "--compile-bytecode" not in build
    assert "httptools==0.9.0" in build  # the parser the launcher names
    assert not any(
        line.endswith("-c 'import litellm.proxy.proxy_server' >/dev/null") or "'import litellm" in line
        for line in lines
    )
    check = [line for line in lines if "check_config.py --import" in line]
    assert len(check) == 1 and check[0].startswith("{ env -u PYTHONDONTWRITEBYTECODE /opt/litellm/venv-")
    assert lines[lines.index(check[0]) - 1] == "cd /"
    assert "-m compileall -q -j 1 /opt/litellm/venv-" in check[0] and "/site-packages/litellm >/dev/null" in check[0]
    assert (
        " LITELLM_LOCAL_MODEL_COST_MAP=True /opt/litellm/venv-" in check[0]
        and "/bin/python /opt/litellm/check_config.py --import litellm.proxy.proxy_server "
        "/etc/litellm/candidate/router.yaml /etc/litellm/candidate/env.local"
        in check[0]
    )
    # Uploads pass through the operator's private staging folder, then sudo copies them.
    assert staging_paths(ran) and all(p.startswith("/home/chris/.llmlab-upload/") for p in staging_paths(ran))
    assert "mkdir -p /home/chris/.llmlab-upload" in lines and "chmod 700 /home/chris/.llmlab-upload" in lines
    # SFTP writes as the operator (no sudo); one command as root copies each file beside its
    # destination with umask 077, so it is never readable by others.
    assert all(c.connector_arguments.get("_sudo") is False for c in upload_commands(ran))
    assert "( umask 077" in lines and "cp /home/chris/.llmlab-upload/" in " ".join(lines)
    # The secret env.local is owned by the service user and never readable by others.
    assert f"chown {s['litellm_user']}:{s['litellm_user']} {conf}/env.local.upload" in lines
    assert "chmod 600 /etc/litellm/env.local.upload" in lines
    assert not any("launchctl" in line for line in lines)
    # Redis from the distribution, its own unit masked; ours bound to loopback with a password.
    assert "systemctl mask --now redis-server.service" in lines
    assert "systemctl enable redis-llm.service" in lines
    conf = files["/etc/redis-llm/redis.conf"].decode()
    assert "bind 127.0.0.1\n" in conf and 'requirepass "unit-test-redis"' in conf
    assert (
        "chown root:redis /etc/redis-llm/redis.conf.upload" in lines
        and "chmod 640 /etc/redis-llm/redis.conf.upload" in lines
    )
    unit = files["/etc/systemd/system/litellm.service"].decode()
    # LiteLLM's app under uvicorn, its config and one worker per CPU of the host
    assert (
        "ExecStart=/opt/litellm/venv/bin/python /opt/litellm/llmlab_serve.py /etc/litellm/router.yaml 0.0.0.0 4000 "
        f"{UBUNTU.cpus}\n" in unit
    )


@pytest.mark.parametrize(
    "system, complaint",
    [
        (
            System(**{**UBUNTU.__dict__, "version": "20.04", "name": "Ubuntu 20.04.6 LTS"}),
            "mini: Ubuntu 20.04.6 LTS on x86_64 is not supported for the mini (supported: Ubuntu 22.04/24.04 (x86_64), "
            "RHEL 9.6 (x86_64), Debian 12 (x86_64/aarch64)); nothing was changed",
        ),
        (
            System(**{**UBUNTU.__dict__, "os": "fedora", "version": "41", "name": "Fedora Linux 41"}),
            "mini: Fedora Linux 41 on x86_64 is not supported for the mini",
        ),
        (
            System(**{**UBUNTU.__dict__, "arch": "aarch64"}),
            f"mini: {UBUNTU.name} on aarch64 is not supported for the mini",
        ),
    ],
    ids=["ubuntu-20.04", "fedora", "ubuntu-arm"],
)
def test_an_unsupported_system_is_refused_before_any_change(monkeypatch, registry, system, complaint):
    facts = {fact_key("HostFacts"): host_facts(system)}  # the first and only question asked
    with pytest.raises(Exception) as err:
        run_deploy(monkeypatch, registry, "mini", facts)
    assert complaint in str(err.value)


def test_a_wrong_sudo_password_is_refused_before_any_change(monkeypatch, registry):
    facts = {fact_key("HostFacts"): host_facts(UBUNTU), fact_key("EffectiveUser"): "chris"}
    with pytest.raises(Exception, match=r"mini: sudo as chris did not give root \(wrong password, or chris may not"):
        run_deploy(monkeypatch, registry, "mini", facts)


def test_logging_in_as_a_user_without_sudo_set_is_refused(monkeypatch, registry):
    facts = {fact_key("HostFacts"): host_facts(UBUNTU)}
    with pytest.raises(Exception, match="mini: logs in as chris, who is not root: set _sudo=True"):
        run_deploy(monkeypatch, registry, "mini", facts, sudo=False)


def test_rhel_installs_with_dnf(monkeypatch, registry):
    rhel = System(**{**UBUNTU.__dict__, "os": "rhel", "version": "9.6", "name": "Red Hat Enterprise Linux 9.6 (Plow)"})
    facts = recorded_fresh_mini(registry, rhel)
    del facts[fact_key("InstalledDebianPackages", packages=PACKAGES)]
    del facts[fact_key("UnitStates", units=("redis-server.service",))]
    facts[fact_key("UnitStates", units=("redis.service",))] = {"redis.service": ("disabled", "inactive")}
    facts[
        fact_key(
            "InstalledRpmPackages", packages=("python3", "ca-certificates", "curl", "redis", "libxml2", "python3-libs")
        )
    ] = ["python3"]
    ran = run_deploy(monkeypatch, registry, "mini", facts)
    lines = shell_lines(ran)
    assert "dnf install -y -q ca-certificates curl redis libxml2 python3-libs" in lines
    assert any("releases/download/v2025.4/ovms_redhat_python_on.tar.gz" in line for line in lines)
    assert "systemctl mask --now redis.service" in lines
    assert not any("apt-get" in line for line in lines)
    # uv from its wheel on PyPI by the host's python3 and curl (the system's trust store): no pip.
    assert [line for line in lines if "/opt/uv" in line and "uv pip" not in line and " venv " not in line] == [
        f"python3 -c {shlex.quote(pyenv.UV_FETCH)} {registry.settings('mini')['uv_version']} /opt/uv"
    ]


def test_logging_in_as_root_uses_no_sudo_and_no_staging(monkeypatch, registry):
    as_root = System(**{**UBUNTU.__dict__, "login": "root", "home": "/root", "sudo": "root"})
    facts = recorded_fresh_mini(registry, as_root)
    del facts[fact_key("EffectiveUser")]  # nothing to escalate, so nothing to prove
    ran = run_deploy(monkeypatch, registry, "mini", facts)
    lines = shell_lines(ran)
    assert not any(".llmlab-upload" in line for line in lines)
    assert staging_paths(ran) == {f"{dest}.upload" for dest in uploads(ran)}


@pytest.mark.parametrize(
    "marker, pulls",
    [("EmbeddedLLM/Llama-3.2-3B-Instruct-int4-sym-ov", False), ("OpenVINO/Phi-3.5-mini-instruct-int4-ov", True)],
    ids=["same-source", "source-changed"],
)
def test_a_model_is_pulled_only_when_its_source_changes(monkeypatch, registry, marker, pulls):
    from tasks.render import sha256_text

    facts = recorded_fresh_mini(registry)
    folder = "/var/lib/ovms/models/llama-3-2-3b-instruct"
    facts[fact_key("FileState", path=f"{folder}/source")] = {
        "user": "root",
        "group": "root",
        "mode": "644",
        "sha256": sha256_text(marker + "\n"),
    }
    pull = [args[0] for _, args in functions(run_deploy(monkeypatch, registry, "mini", facts)) if "--pull" in args[0]]
    assert bool(pull) is pulls
    if pulls:  # into a fresh folder, swapped in only once the pull succeeded
        steps = pull[0].split(" && ")
        swap = steps.index(f"mv {folder}/hub.tmp {folder}/hub")
        assert steps[swap - 1] == f"rm -rf {folder}/hub"
        assert swap > next(i for i, step in enumerate(steps) if "--pull" in step)
        assert f"test -f {folder}/hub.tmp/EmbeddedLLM/Llama-3.2-3B-Instruct-int4-sym-ov/openvino_model.xml" in steps


def test_each_operation_runs_its_commands_as_few_remote_commands(monkeypatch, registry):
    """On a host reached through sudo with a password, every remote command pays a password
    check: an operation's consecutive commands run as one (tasks/shell.py), so no two of its
    shell commands in a row are run apart with the same sudo arguments."""
    from pyinfra.api import StringCommand

    ran = run_deploy(monkeypatch, registry, "mini", recorded_fresh_mini(registry))
    for name, commands in ran:
        for a, b in zip(commands, commands[1:]):
            assert not (
                isinstance(a, StringCommand)
                and isinstance(b, StringCommand)
                and a.connector_arguments == b.connector_arguments
            ), name
    # Four files staged: one command as the login user, the four uploads, one as root.
    staged = next(commands for name, commands in ran if "Stage the new router.yaml" in name)
    assert [type(c).__name__ for c in staged] == ["StringCommand", *["FileUploadCommand"] * 3, "Joined"]
    assert len(remote_commands(ran)) < len(shell_lines(ran)) * 2 // 3


def test_a_current_release_path_that_is_not_a_link_is_refused_not_replaced(monkeypatch, registry):
    from pyinfra.api.exceptions import OperationValueError

    facts = recorded_fresh_mini(registry)
    facts[fact_key("Link", path="/opt/ovms/current")] = False  # a folder someone put there
    with pytest.raises(OperationValueError, match="/opt/ovms/current exists and is not a link"):
        run_deploy(monkeypatch, registry, "mini", facts)


def _hand_kept_proxy(facts: dict, registry) -> dict:
    """The seed's hand-kept proxy on the mini's :4000: litellm-orch.service, as the operator."""
    s = registry.proxy
    ports = tuple(sorted({s["litellm_port"], s["redis_port"], s["ovms_rest_port"]}))
    facts[fact_key("PortHolders", ports=ports)] = {
        registry.proxy["litellm_port"]: {
            "pid": 812,
            "user": "chris",
            "command": "python3",
            "unit": "litellm-orch.service",
            "cgroup": "/system.slice/litellm-orch.service",
            "ours": False,
        }
    }
    return facts


def test_a_hand_kept_unit_named_for_takeover_is_stopped_right_before_its_successor_starts(monkeypatch, data):
    """llm_takeover names the seed's litellm-orch.service, which holds :4000: it is stopped and
    disabled (its file kept) right before LiteLLM's unit starts, and the wait brings it back if
    the proxy then does not answer; nothing else of the host is touched."""
    registry = build({**data, "llm_takeover": ["litellm-orch.service"]})
    ran = run_deploy(monkeypatch, registry, "mini", _hand_kept_proxy(recorded_fresh_mini(registry), registry))
    names = [name for name, commands in ran if commands]
    stop = names.index("LiteLLM proxy | Stop and disable litellm-orch.service, replaced by the LiteLLM proxy")
    assert names[stop + 1].startswith("LiteLLM proxy | Enable and run the services of the LiteLLM proxy")
    lines = shell_lines(ran)
    assert "systemctl disable --now litellm-orch.service" in lines
    assert sum("litellm-orch" in line for line in lines) == 2  # the stop, and the wait's way back
    [wait] = [line for line in lines if "did not answer within" in line and "the LiteLLM proxy" in line]
    assert "systemctl disable --now litellm.service; systemctl enable --now litellm-orch.service" in wait
    assert "the hand-kept litellm-orch.service started again" in wait


def test_a_hand_kept_unit_not_named_is_refused_with_the_way_to_name_it(monkeypatch, registry):
    with pytest.raises(Exception, match=r"held by python3 \(pid 812, user chris, systemd unit litellm-orch.service\)"
                       r".*\(or name its unit in llm_takeover\); nothing was changed"):  # fmt: skip
        run_deploy(monkeypatch, registry, "mini", _hand_kept_proxy(recorded_fresh_mini(registry), registry))


@pytest.mark.parametrize(
    "states, complaint",
    [
        ({}, r"llm_takeover: mini has no unit ov-server.service \(a system unit, or a user's whose manager runs\)"),
        ({"ov-server.service": ("enabled", "active")}, "ov-server.service on mini is active but holds no port"),
        ({"user": [("enabled", "active")]}, "ov-server.service on mini is active but holds no port"),
    ],
    ids=["no such unit", "a system unit running elsewhere", "a user unit running elsewhere"],
)
def test_a_takeover_naming_a_unit_that_holds_no_declared_port_is_refused(monkeypatch, data, states, complaint):
    registry = build({**data, "llm_takeover": ["ov-server.service"]})
    facts = recorded_fresh_mini(registry)
    user = states.pop("user", None)
    facts[fact_key("UnitStates", units=("ov-server.service",))] = states
    facts[fact_key("UserUnitStates", units=("ov-server.service",))] = {"ov-server.service": user} if user else {}
    with pytest.raises(Exception, match=complaint):
        run_deploy(monkeypatch, registry, "mini", facts)


def test_a_user_unit_named_for_takeover_is_stopped_through_its_users_manager(monkeypatch, data):
    """The seed's ov-server.service, a user unit of chris (uid 1000), on :9000: stopped and
    disabled as chris through chris's manager, and started again the same way if OVMS fails."""
    registry = build({**data, "llm_takeover": ["ov-server.service"]})
    facts = _hand_kept_proxy(recorded_fresh_mini(registry), registry)
    s = registry.proxy
    ports = tuple(sorted({s["litellm_port"], s["redis_port"], s["ovms_rest_port"]}))
    holders = facts[fact_key("PortHolders", ports=ports)]
    holders.clear()
    holders[s["ovms_rest_port"]] = {
        "pid": 901,
        "user": "chris",
        "command": "ovms",
        "unit": "ov-server.service",
        "cgroup": "/user.slice/user-1000.slice/user@1000.service/app.slice/ov-server.service",
        "ours": False,
    }
    lines = shell_lines(run_deploy(monkeypatch, registry, "mini", facts))
    as_chris = "sudo -u chris env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user"
    assert f"{as_chris} disable --now ov-server.service" in lines
    [wait] = [line for line in lines if "OVMS and its models did not answer within" in line]
    assert f"systemctl disable --now ovms.service; {as_chris} enable --now ov-server.service" in wait
