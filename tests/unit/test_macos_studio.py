"""The studio deploy on a real Mac, run against recorded facts of macOS 15 on Apple silicon
reached as its owner (chris) with a sudo password: the launchd jobs, the exact launchctl commands,
the weights fetched into the owner's cache, the memory guard (tests/unit/recorded.py)."""

from __future__ import annotations

import json
import plistlib

import pytest

from tasks import mlx as mlx_task
from tasks.hostos import System
from tasks.pyenv import UV

from .conftest import build
from .recorded import (
    fact_key,
    functions,
    host_facts,
    run_deploy,
    sha,
    shell_lines,
    staging_paths,
    upload_steps,
    uploads,
)

LAUNCHD = "/Library/LaunchDaemons"
GIB = 1 << 30
MAC = System(
    os="macos",
    version="15.1",
    name="macOS 15.1",
    arch="arm64",
    kernel="Darwin",
    memory=256 * GIB,
    cpus=24,
    login="chris",
    home="/Users/chris",
    sudo="password",
)
# What the operator's cache already holds (bytes), as `du` reads it on the studio.
CACHED = {
    "halley-ai/gpt-oss-120b-MLX-6bit-gs64": 95_000_000_000,
    "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit": 17_200_000_000,
    "mlx-community/Qwen3-Next-80B-A3B-Instruct-4bit": 44_800_000_000,
    "mlx-community/Llama-3.2-3B-Instruct-4bit": 1_800_000_000,
    "mlx-community/Qwen2.5-0.5B-Instruct-4bit": 280_000_000,
}


def studio_models(registry):
    return sorted(registry.served_by("studio", "mlx"), key=lambda m: m.port)


def spec_text(registry) -> str:
    s = registry.settings("studio")
    return (
        f"# uv venv --python {s['mlx_python']} --managed-python\n# uv pip install\n# import mlx_lm.server\n"
        f"mlx=={s['mlx_version']}\nmlx-lm=={s['mlx_lm_version']}\n"
    )


def recorded_mac(
    registry,
    installed: bool,
    changed_plist: str | None = None,
    new_pins: bool = False,
    cached: dict | None = None,
    loaded: bool | None = None,
    system: System = MAC,
    retired: tuple = (),
) -> dict:
    """Facts of a Mac. `installed`: the deploy converged it before (files as they would be
    rendered now, jobs loaded); otherwise a Mac with nothing of ours and an empty cache."""
    s = registry.settings("studio")
    home = s["mlx_home"]
    venv = f"{home}/venv"
    cached = CACHED if cached is None and installed else (cached or {})
    loaded = installed if loaded is None else loaded
    root_file = {"user": "root", "group": "wheel", "mode": "644"}
    facts = {
        fact_key("HostFacts"): host_facts(system),
        fact_key("EffectiveUser"): "root",
        fact_key("UvEnvironment", uv=UV, venv=venv, entry_point="mlx_lm.server", dists=("mlx", "mlx-lm")): (
            {
                "uv": s["uv_version"],
                "built_from": "stale" if new_pins else sha(spec_text(registry)),
                "venv": True,
                "runs": True,
                "dists": {"mlx": (s["mlx_version"], 0), "mlx-lm": (s["mlx_lm_version"], 0)},
            }
            if installed
            else {"uv": "", "built_from": "", "venv": False, "runs": False, "dists": {}}
        ),
        **(
            {
                fact_key(
                    "UvEnvironment",
                    uv="",
                    venv=f"{venv}.previous",
                    entry_point="mlx_lm.server",
                    dists=("mlx", "mlx-lm"),
                ): {"uv": "", "built_from": "", "venv": False, "runs": False, "dists": {}, "folder": ""}
            }
            if new_pins or not installed
            else {}
        ),
        fact_key("DirectoryStates", paths=(home, s["mlx_models_dir"])): [
            {"mode": "755", "user": "root", "group": "wheel"} if installed else None
        ]
        * 2,
        fact_key("DirectoryStates", paths=(f"{system.home}/Library/Logs/llm-lab",)): [
            {"mode": "755", "user": system.login, "group": "staff"} if installed else None
        ],
        fact_key(
            "HubCache",
            hf_home=f"{system.home}/.cache/huggingface",
            repos=tuple(sorted(m.upstream for m in studio_models(registry))),
        ): {m.upstream: cached.get(m.upstream) for m in studio_models(registry)},
    }
    plists, states = [], []
    for m in studio_models(registry):
        label = mlx_task.launchd_label(registry, m)
        text = mlx_task.render_plist(registry, m, system)
        if label == changed_plist:
            text = text.replace("<true/>", "<false/>", 1)
        plists.append(f"{LAUNCHD}/{label}.plist")
        states.append({**root_file, "sha256": sha(text)} if installed else None)
    facts[fact_key("FileStates", paths=tuple(plists))] = states
    # The firewall: a pf anchor and the daemon that loads it at boot.
    from tasks import firewall

    facts[fact_key("FileState", path=firewall.PF_RULES)] = (
        {**root_file, "sha256": sha(firewall.render_pf(registry, "studio"))} if installed else None
    )
    facts[fact_key("FileStates", paths=(f"{LAUNCHD}/{firewall.PF_LABEL}.plist",))] = [
        {**root_file, "sha256": sha(firewall.render_pf_plist())} if installed else None
    ]
    facts[fact_key("LaunchdJobs", labels=(firewall.PF_LABEL,))] = {firewall.PF_LABEL: loaded}
    facts[
        fact_key("LaunchdJobs", labels=tuple(mlx_task.launchd_label(registry, m) for m in studio_models(registry)))
    ] = {mlx_task.launchd_label(registry, m): loaded for m in studio_models(registry)}
    # The plists the toolkit wrote (its marker in their first lines): the registry's, once installed.
    facts[
        fact_key(
            "RenderedFiles", folder=LAUNCHD, pattern=f"{registry.settings('studio')['mlx_launchd_prefix']}.*.plist"
        )
    ] = (
        sorted(f"{mlx_task.launchd_label(registry, m)}.plist" for m in studio_models(registry)) if installed else []
    ) + [f"{label}.plist" for label in retired]
    # Who listens on the servers' ports (lsof and launchctl): their own jobs, once loaded.
    facts[fact_key("PortHolders", ports=tuple(m.port for m in studio_models(registry)))] = {
        m.port: {"pid": 700 + m.port - 8100, "user": "chris", "command": "Python", "unit": label, "cgroup": label}
        for m in studio_models(registry)
        if loaded and (label := mlx_task.launchd_label(registry, m))
    }
    return facts


@pytest.fixture
def registry(data):
    return build(data)


def test_the_server_of_a_model_that_left_the_registry_is_booted_out_and_its_plist_removed(monkeypatch, registry):
    """A plist the toolkit wrote for a model no longer in the registry: booted out and removed, in
    one operation named for it; the weights in the cache are kept; nothing else changes."""
    gone = f"{registry.settings('studio')['mlx_launchd_prefix']}.jerry-old"
    ran = run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=True, retired=(gone,)))
    changed = [(name, commands) for name, commands in ran if commands]
    assert [name for name, _ in changed] == [
        f"MLX model servers | Stop and remove the MLX servers that left the registry: {gone}"
    ]
    assert shell_lines(changed) == [
        f"launchctl bootout system/{gone} 2>/dev/null || true",
        f"i=0; while launchctl print system/{gone} >/dev/null 2>&1 && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done",
        f"rm -f {LAUNCHD}/{gone}.plist",
    ]


def test_weights_the_data_names_are_deleted_from_the_models_folder_and_the_cache(monkeypatch, data):
    """mlx_purge_weights names a model no longer served: its folder in mlx_models_dir and its
    entry in the operator's Hugging Face cache are removed where they exist; nothing else changes."""
    gone = "mlx-community/Qwen3-Old-4bit"
    registry = build({**data, "mlx_purge_weights": [gone]})
    cache = f"/Users/chris/.cache/huggingface/hub/models--{gone.replace('/', '--')}"
    folder = f"{registry.settings('studio')['mlx_models_dir']}/{gone}"
    facts = recorded_mac(registry, installed=True)
    facts[fact_key("Directory", path=cache)] = {"mode": 755, "user": "chris", "group": "staff"}
    facts[fact_key("Directory", path=folder)] = None  # never uploaded here
    ran = run_deploy(monkeypatch, registry, "studio", facts)
    changed = [(name, commands) for name, commands in ran if commands]
    assert [name for name, _ in changed] == [f"MLX model servers | Delete the weights of {gone} ({cache})"]
    assert shell_lines(changed) == [f"rm -rf {cache}"]


BEBOP = "com.bebop.mlx"  # the operator's LaunchDaemon: a script (as root) starting two servers
BEBOP_PLIST = f"{LAUNCHD}/{BEBOP}.plist"


def _bebop_holds(registry, facts: dict, models) -> dict:
    key = fact_key("PortHolders", ports=tuple(m.port for m in studio_models(registry)))
    held = {
        m.port: {"pid": 900 + i, "user": "root", "command": "Python", "unit": BEBOP, "cgroup": BEBOP}
        for i, m in enumerate(models)
    }
    facts[key] = {**facts[key], **{port: {**h, "ours": False, "plist": BEBOP_PLIST} for port, h in held.items()}}
    return facts


def test_a_launchdaemon_named_for_takeover_is_booted_out_once_before_its_successors_load(monkeypatch, data):
    """The operator's LaunchDaemon com.bebop.mlx (a script starting two servers, as root) holds two
    declared ports, on a Mac with nothing of ours: disabled and booted out (waited for until gone;
    its plist kept) once, before the plists are written (writing one loads it); if either
    successor then does not answer, both are disabled and booted out and the daemon is enabled and
    bootstrapped again from its plist. Nothing else is touched."""
    registry = build({**data, "llm_takeover": [BEBOP]})
    models = studio_models(registry)
    facts = _bebop_holds(registry, recorded_mac(registry, installed=False), models[:2])
    ran = run_deploy(monkeypatch, registry, "studio", facts)
    names = [name for name, commands in ran if commands]
    stop = names.index(f"MLX model servers | Stop and disable {BEBOP} (launchd job), replaced by the MLX servers")
    install = "MLX model servers | Install the launchd jobs of the MLX servers, loading the changed ones"
    assert stop < names.index(install)
    lines = shell_lines([(names[stop], dict(ran)[names[stop]])])
    assert lines[:2] == [f"launchctl disable system/{BEBOP}", f"launchctl bootout system/{BEBOP} 2>/dev/null || true"]
    assert "rm" not in " ".join(lines)  # its plist is kept
    waits = [line for line in shell_lines(ran) if "did not answer within" in line]
    back = f"launchctl enable system/{BEBOP}; launchctl bootstrap system {BEBOP_PLIST}"
    taken = [mlx_task.launchd_label(registry, m) for m in models[:2]]
    for m in models:
        [wait] = [w for w in waits if f"mlx_lm.server for {m.name}" in w or f"/{m.port}/" in w or f":{m.port}/" in w]
        if m in models[:2]:
            assert all(f"launchctl disable system/{label}" in wait for label in taken), wait
            assert back in wait and f"the hand-kept {BEBOP} (launchd job) started again" in wait
        else:
            assert BEBOP not in wait
    assert sum(BEBOP in line for line in shell_lines(ran)) == 3 + 2  # the stop (disable, bootout, wait), 2 ways back


@pytest.mark.parametrize(
    "loaded, disabled, complaint",
    [
        (True, set(), f"{BEBOP} on studio is loaded but holds no port the data declares"),
        (False, set(), f"studio has no launchd job {BEBOP} \\(loaded, or disabled by an earlier takeover\\)"),
        (False, {BEBOP}, None),
    ],
    ids=["loaded elsewhere", "no such job", "taken over before"],
)
def test_a_named_launchdaemon_that_holds_no_declared_port(monkeypatch, data, loaded, disabled, complaint):
    """Not on a declared port: refused while loaded, or when launchd knows no such job; one an
    earlier deploy took over (booted out and disabled) passes, and a converged Mac runs nothing."""
    registry = build({**data, "llm_takeover": [BEBOP]})
    facts = recorded_mac(registry, installed=True)
    facts[fact_key("LaunchdJobs", labels=(BEBOP,))] = {BEBOP: loaded}
    facts[fact_key("LaunchdDisabled")] = disabled
    if complaint is None:
        ran = run_deploy(monkeypatch, registry, "studio", facts)
        assert [(name, commands) for name, commands in ran if commands] == []
    else:
        with pytest.raises(Exception, match=f"llm_takeover: {complaint}.*; nothing was changed"):
            run_deploy(monkeypatch, registry, "studio", facts)


def test_launchds_disabled_jobs_are_read_as_it_prints_them():
    from tasks.facts import LaunchdDisabled

    lines = ["disabled services = {", '\t"com.bebop.mlx" => disabled', '\t"com.apple.x" => enabled',
             '\t"com.old.style" => true', "}"]  # fmt: skip
    assert LaunchdDisabled().process(lines) == {"com.bebop.mlx", "com.old.style"}


def test_a_port_held_by_a_server_the_toolkit_does_not_run_is_refused_before_any_change(monkeypatch, registry):
    """The operator's own MLX server (started by a LaunchDaemon of their own) on a declared port:
    the deploy stops, naming the port, the process, its user and its launchd job."""
    from pyinfra.api.exceptions import DeployError

    models = studio_models(registry)
    facts = recorded_mac(registry, installed=True)
    key = fact_key("PortHolders", ports=tuple(m.port for m in models))
    facts[key] = {**facts[key], models[0].port: {**facts[key][models[0].port], "unit": "com.chris.mlx-chat"}}
    with pytest.raises(DeployError) as err:
        run_deploy(monkeypatch, registry, "studio", {k: v for k, v in facts.items() if k[0] in FIRST})
    assert str(err.value) == (
        f"studio: port {models[0].port}, declared for mlx-{models[0].name} ({models[0].model_name}), is held by "
        f"Python (pid 700, user chris, launchd job com.chris.mlx-chat), which this toolkit does not run: stop it, "
        f"or give mlx-{models[0].name} another port in the data; nothing was changed"
    )


FIRST = ("HostFacts", "EffectiveUser", "DeployLock", "PortHolders")  # what a deploy reads before any change


def test_fresh_mac_fetches_weights_then_loads_a_daemon_per_model(monkeypatch, registry):
    ran = run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=False))
    lines = upload_steps(ran)  # an upload's steps one per line
    files = uploads(ran)
    models = studio_models(registry)
    assert len(models) == 5
    s = registry.settings("studio")
    for m in models:
        label = mlx_task.launchd_label(registry, m)
        path = f"{LAUNCHD}/{label}.plist"
        plist = plistlib.loads(files[path])
        assert plist["Label"] == label
        assert plist["UserName"] == "chris"  # a daemon (starts at boot, no login) run as the owner
        assert plist["ProgramArguments"] == mlx_task.server_argv(registry, m)
        assert plist["ProgramArguments"][plist["ProgramArguments"].index("--model") + 1] == m.upstream
        assert plist["ProgramArguments"][plist["ProgramArguments"].index("--max-tokens") + 1] == str(
            s["mlx_max_tokens"]
        )
        assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
        assert (
            plist["StandardOutPath"] == plist["StandardErrorPath"] == f"/Users/chris/Library/Logs/llm-lab/{m.name}.log"
        )
        assert plist["EnvironmentVariables"]["HF_HOME"] == "/Users/chris/.cache/huggingface"
        assert plist["EnvironmentVariables"]["HOME"] == "/Users/chris"
        assert plist["EnvironmentVariables"]["HF_HUB_OFFLINE"] == "1"  # the servers never download
        assert f"chown root:wheel {path}.upload" in lines
        assert f"launchctl bootout system/{label} 2>/dev/null || true" in lines
        assert f"launchctl bootstrap system {path}" in lines
    # Every upload passes through the owner's private staging folder (SFTP writes as the owner).
    assert staging_paths(ran) and all(p.startswith("/Users/chris/.llmlab-upload/") for p in staging_paths(ran))
    assert "mkdir -p /Users/chris/.llmlab-upload" in lines and "chmod 700 /Users/chris/.llmlab-upload" in lines
    # The weights are fetched into the owner's cache before the first job is loaded.
    fetches = functions(ran)
    fetched = [args for name, args in fetches if name.startswith("MLX model servers | Fetch the weights")]
    assert sorted(args[2] for args in fetched) == sorted(m.upstream for m in models)
    for command, as_user, repo, _, _ in fetched:  # as the owner, into the owner's cache, from the hub
        assert as_user is None and command.startswith("env HF_HOME=/Users/chris/.cache/huggingface ")
        assert "HF_ENDPOINT" not in command.split(" -c ")[0] and command.endswith(f" {repo} {mlx_task.PROGRESS_EVERY}")
    order = [name for name, _ in ran]
    assert order.index(next(n for n in order if "Fetch the weights" in n)) < order.index(
        next(n for n in order if "Install the launchd jobs of the MLX servers, loading the changed ones" in n)
    )
    assert any("Check that the MLX models' weights fit in memory" in name for name, _ in fetches)
    # The firewall is loaded (pfctl, from a daemon) before any MLX server.
    fw = plistlib.loads(files["/Library/LaunchDaemons/lab.llm.firewall.plist"])
    assert fw["ProgramArguments"] == [
        "/sbin/pfctl",
        "-E",
        "-a",
        "com.apple/llmlab-mlx",
        "-f",
        "/etc/pf.anchors/llmlab-mlx",
    ]
    assert lines.index("launchctl bootstrap system /Library/LaunchDaemons/lab.llm.firewall.plist") < min(
        lines.index(f"launchctl bootstrap system {LAUNCHD}/{mlx_task.launchd_label(registry, m)}.plist") for m in models
    )
    assert "<llmlab_mlx_clients> const { 192.0.2.71 }" in files["/etc/pf.anchors/llmlab-mlx"].decode()
    # The environment: a uv-managed Python, pinned mlx (not mlx[cpu]) and mlx-lm.
    venv = next(line for line in lines if " venv " in line and "--managed-python" in line)
    assert venv.startswith("UV_PYTHON_INSTALL_DIR=/opt/uv/python /opt/uv/bin/uv venv")
    assert f"--python {s['mlx_python']} --managed-python" in venv
    build_line = next(line for line in lines if "pip install" in line and "mlx-lm==" in line)
    assert f"mlx=={s['mlx_version']}" in build_line and "mlx[cpu]" not in build_line
    assert not any(w in line for line in lines for w in ("systemctl", "apt-get", "useradd", "groupadd"))


def test_converged_mac_runs_nothing(monkeypatch, registry):
    ran = run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=True))
    assert [(name, commands) for name, commands in ran if commands] == []
    names = [name for name, _ in ran]
    assert any(
        "Weights in /Users/chris/.cache/huggingface: jerry-architect 44.8 GB, jerry-chat 95.0 GB" in n for n in names
    )


@pytest.mark.parametrize("down", [(0, 3), ()], ids=["two-still-starting", "all-answer"])
def test_after_a_run_that_is_gone_the_servers_not_answering_are_waited_for(monkeypatch, registry, down):
    """The lock was left by a run that is gone (interrupted, or failed): it may have started
    servers that do not answer yet. This run, which changes nothing else, asks each server once
    and waits for those that do not answer; when all answer (a failed run's usual case), it
    changes nothing."""
    from tasks import runlock

    models = studio_models(registry)
    dead = json.dumps({**runlock.RUN, "pid": "999999999", "pid_start": "gone"}, sort_keys=True)
    facts = recorded_mac(registry, installed=True)
    facts[fact_key("DeployLock", path=runlock.LOCK)] = dead
    probes = tuple(f"curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:{m.port}/v1/models" for m in models)
    facts[fact_key("Answering", probes=probes)] = [i not in down for i in range(len(models))]
    ran = run_deploy(monkeypatch, registry, "studio", facts)
    changed = [(name, commands) for name, commands in ran if commands]
    if not down:
        assert changed == []
        return
    assert [name for name, _ in changed] == ["Wait for the (re)started services to answer"]
    waits = shell_lines(changed)
    assert len(waits) == len(down)
    for i in down:
        assert any(f":{models[i].port}/" in w for w in waits), models[i].name


def test_one_changed_plist_reloads_only_its_job(monkeypatch, registry):
    label = mlx_task.launchd_label(registry, studio_models(registry)[1])
    ran = run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=True, changed_plist=label))
    lines = shell_lines(ran)
    assert [line for line in lines if line.startswith("launchctl")] == [
        f"launchctl bootout system/{label} 2>/dev/null || true",
        f"launchctl enable system/{label}",
        f"launchctl bootstrap system {LAUNCHD}/{label}.plist",
    ]
    # The job is loaded afresh once its new plist is in place.
    placed = next(
        i for i, line in enumerate(lines) if f"mv -f {LAUNCHD}/{label}.plist.upload {LAUNCHD}/{label}.plist" in line
    )
    assert placed < lines.index(f"launchctl bootout system/{label} 2>/dev/null || true")
    assert set(uploads(ran)) == {f"{LAUNCHD}/{label}.plist"}


def test_a_booted_out_job_is_bootstrapped_again(monkeypatch, registry):
    facts = recorded_mac(registry, installed=True)
    labels = [mlx_task.launchd_label(registry, m) for m in studio_models(registry)]
    facts[fact_key("LaunchdJobs", labels=tuple(labels))][labels[0]] = False
    ran = run_deploy(monkeypatch, registry, "studio", facts)
    assert [line for line in shell_lines(ran) if line.startswith("launchctl")] == [
        f"launchctl enable system/{labels[0]}",
        f"launchctl bootstrap system {LAUNCHD}/{labels[0]}.plist",
    ]


def test_new_pins_rebuild_the_environment_and_restart_every_job(monkeypatch, registry):
    ran = run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=True, new_pins=True))
    lines = shell_lines(ran)
    assert [line for line in lines if line.startswith("launchctl")] == [
        f"launchctl kickstart -k system/{mlx_task.launchd_label(registry, m)}" for m in studio_models(registry)
    ]
    # Built beside the one in use, then switched to (the old one kept for a rollback), then restarted.
    venv = f"{registry.settings('studio')['mlx_home']}/venv"
    build = next(i for i, line in enumerate(lines) if "uv pip install" in line)
    target = lines[build].split("--python ")[1].split("/bin/python")[0]
    assert target.startswith(f"{venv}-") and target != venv
    switch = lines.index(f"ln -sfh {target} {venv}")
    assert f'then ln -sfh "$(readlink {venv})" {venv}.previous' in lines[switch - 1]
    assert build < switch < min(i for i, line in enumerate(lines) if line.startswith("launchctl kickstart"))


def test_models_that_do_not_fit_are_refused_before_any_change(monkeypatch, registry):
    small = System(**{**MAC.__dict__, "memory": 128 * GIB})
    with pytest.raises(Exception) as err:
        run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=True, system=small))
    message = str(err.value)
    assert "studio: the MLX models need 159.1 GB of weights but 137.4 GB x 0.75 = 103.1 GB" in message
    assert "jerry-chat 95.0 GB, jerry-architect 44.8 GB, jerry-editor 17.2 GB" in message
    assert "mlx_allow_overcommit" in message


def test_overcommit_can_be_allowed(monkeypatch, data):
    data["mlx_allow_overcommit"] = True
    registry = build(data)
    small = System(**{**MAC.__dict__, "memory": 128 * GIB})
    ran = run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=True, system=small))
    assert [(name, commands) for name, commands in ran if commands] == []


def test_an_intel_mac_is_refused(monkeypatch, registry):
    intel = System(**{**MAC.__dict__, "arch": "x86_64"})
    with pytest.raises(
        Exception, match=r"studio: macOS 15.1 on x86_64 is not supported for the studio \(supported: macOS"
    ):
        run_deploy(monkeypatch, registry, "studio", recorded_mac(registry, installed=False, system=intel))


def test_a_missing_sudo_password_is_refused_before_any_change(monkeypatch, registry):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)  # as in CI: nobody to ask
    facts = recorded_mac(registry, installed=False)
    with pytest.raises(
        Exception,
        match="studio: sudo asks chris for a password and none was given: export "
        "LLMLAB_SUDO_PASSWORD_STUDIO or LLMLAB_SUDO_PASSWORD",
    ):
        run_deploy(monkeypatch, registry, "studio", facts, sudo_password=None)


def test_pins_put_back_switch_to_the_previous_environment_without_building(monkeypatch, registry):
    """After an upgrade, the old pins again: the previous environment is exactly them, so it is
    switched back to (and the jobs restarted) with nothing built."""
    s = registry.settings("studio")
    venv = f"{s['mlx_home']}/venv"
    facts = recorded_mac(registry, installed=True, new_pins=True)
    facts[
        fact_key("UvEnvironment", uv="", venv=f"{venv}.previous", entry_point="mlx_lm.server", dists=("mlx", "mlx-lm"))
    ] = {
        "uv": "",  # asked with the environment in use
        "built_from": sha(spec_text(registry)),
        "venv": True,
        "runs": True,
        "dists": {"mlx": (s["mlx_version"], 0), "mlx-lm": (s["mlx_lm_version"], 0)},
        "folder": f"{venv}-20261101000000p1-abcd1234",
    }
    lines = shell_lines(run_deploy(monkeypatch, registry, "studio", facts))
    assert not any("uv pip install" in line or " venv " in line for line in lines)
    switch = lines.index(f"ln -sfh {venv}-20261101000000p1-abcd1234 {venv}")
    assert switch < min(i for i, line in enumerate(lines) if line.startswith("launchctl kickstart"))
