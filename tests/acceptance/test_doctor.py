"""The doctor (tasks/doctor) against the deployed stack: every declared service read as running,
answering, with its version, port and address, and nothing off; then, on the lab, what it names
when a server is down, a hand-kept server listens on the LAN and a unit's file is gone."""

import json
import subprocess
import sys
import time

import pytest

from lab import hosts as labhosts
from lab import run as labrun
from tasks import stack

from .client import wait_until
from .labdeploy import ROOT


def doctor(real: bool, *extra: str) -> tuple[int, dict, float]:
    """The doctor's JSON for the lab (or inventory.py's hosts): (exit code, its report, seconds)."""
    started = time.monotonic()
    if real:
        command = [sys.executable, "-m", "tasks.doctor", "inventory.py", "--json", *extra]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    else:
        out = labrun.doctor(["--json", *extra], capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert out.returncode in (0, 1), out.stdout[-2000:] + out.stderr[-3000:]
    return out.returncode, json.loads(out.stdout), seconds


def test_the_doctor_reads_every_declared_service_and_finds_nothing_off(real, registry, timings):
    code, report, seconds = doctor(real)
    timings["doctor: both hosts read"] = seconds
    by_host = {rep["host"]: rep for rep in report["hosts"]}
    assert set(by_host) == set(registry.hosts)
    for p in stack.ports(registry):
        [row] = [s for s in by_host[p.host]["services"] if s["port"] == p.port]
        assert row["pid"] > 0 and row["off"] == [], row
        assert row["bind"] == p.bind and p.bind in row["listening"], row
        assert row["version"] and row["version"] != "?", row
    mlx = [s for rep in report["hosts"] for s in rep["services"] if s["unit"].startswith("mlx-")]
    upstream = {f"mlx-{m.name}": m.upstream for m in registry.models.values() if m.backend == "mlx"}
    assert {s["unit"]: s["serving"] for s in mlx} == upstream
    assert all("ready" in s["serving"] for s in by_host[registry.proxy_host]["services"] if s["unit"] == "ovms")
    assert code == 0 and report["off"] == 0, [rep["off"] for rep in report["hosts"]]


@pytest.mark.lab_only
def test_drill_the_doctor_names_a_stopped_server_a_hand_kept_listener_and_a_gone_file(hosts, registry):
    """An MLX server stopped, a hand-kept server of the operator's on a LAN port the data does not
    declare, the proxy's env.local moved away (LiteLLM keeps running on what it read): the doctor
    exits 1 naming each, and changes nothing; put back, it finds nothing off."""
    victim = registry.models["jerry-test"]
    studio, mini = hosts[victim.host], hosts[registry.proxy_host]
    env_local = f"{registry.proxy['litellm_config_dir']}/env.local"
    studio.check_output(f"systemctl stop mlx-{victim.name}")
    studio.check_output(
        f"systemd-run --unit=handkept-doctor --uid={labhosts.OPERATOR} --property=Restart=no "
        f"python3 -m http.server 8199 --bind 0.0.0.0"
    )
    mini.check_output(f"mv {env_local} {env_local}.aside")
    try:
        listening, _ = wait_until(lambda: studio.socket("tcp://0.0.0.0:8199").is_listening, 30)
        assert listening, "the hand-kept server did not start"
        code, report, _ = doctor(False)
        off = [line for rep in report["hosts"] for line in rep["off"]]
        assert code == 1 and report["off"] == len(off)
        assert f"mlx-{victim.name}: not running (inactive/dead)" in off, off
        assert f"litellm: its unit names {env_local}, which is gone" in off, off
        [held] = [line for line in off if line.startswith("0.0.0.0:8199: ")]
        assert f"user {labhosts.OPERATOR}, unit handkept-doctor.service) listens where the data declares" in held
        assert len(off) == 3, off
        assert not mini.file(env_local).exists  # it changed nothing
        assert studio.service("handkept-doctor.service").is_running
    finally:
        mini.run(f"mv {env_local}.aside {env_local}")
        studio.run("systemctl stop handkept-doctor")
        studio.run(f"systemctl start mlx-{victim.name}")
    served, _ = wait_until(
        lambda: studio.run(f"curl -fsS -o /dev/null http://127.0.0.1:{victim.port}/v1/models").rc == 0, 60
    )
    assert served
    code, report, _ = doctor(False)
    assert code == 0, [rep["off"] for rep in report["hosts"]]
