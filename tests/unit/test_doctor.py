"""The doctor's view (tasks/doctor): its reads run here where they can (the listeners on Linux and
through lsof as on macOS, the probes), and what it makes of a host's reads: its service rows, and
each thing that is off named with what to look at."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess

from tasks import doctor
from tasks.doctor.facts import Probes, ServiceStates
from tasks.facts import Listeners, listeners_command
from tasks.hostos import System

from .conftest import build

GIB = 1 << 30
LINUX = System(
    "ubuntu", "24.04", "Ubuntu 24.04.5 LTS", "x86_64", "Linux", 8 * GIB, 2, "chris", "/home/chris", "password"
)
MAC = System("macos", "15.1", "macOS 15.1", "arm64", "Darwin", 256 * GIB, 24, "chris", "/Users/chris", "password")


def test_every_listener_is_read_with_its_address_on_linux_and_through_lsof():
    """No port named: every listener, by port and address (IPv4, IPv6 loopback and any), with
    this process as its holder; the macOS branch read through Linux's lsof gives the same."""
    sockets = []
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"), (socket.AF_INET, "0.0.0.0")):
        s = socket.socket(family)
        s.bind((address, 0))
        s.listen()
        sockets.append(s)
    try:
        for macos in (False, True):
            out = subprocess.run(["sh", "-c", listeners_command(macos=macos)], capture_output=True, text=True)
            found = {(x["port"], x["address"]): x for x in Listeners().process(out.stdout.splitlines())}
            for s in sockets:
                address, port = s.getsockname()[:2]
                x = found[(port, address)]
                assert (x["pid"], x["user"], x["ours"]) == (os.getpid(), getpass.getuser(), False), (macos, x)
                assert x["command"].startswith("python")
    finally:
        for s in sockets:
            s.close()


def test_probes_come_back_by_name():
    command = Probes().command(probes=(("one", "echo 1; echo 2"), ("fails", "false"), ("three", "echo 3")))
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert Probes().process(out.stdout.splitlines()) == {"one": "1\n2", "fails": "", "three": "3"}


def test_launchd_jobs_read_as_launchctl_prints_them():
    lines = [
        "@unit lab.llm.mlx.jerry-chat",
        "FragmentPath=/Library/LaunchDaemons/lab.llm.mlx.jerry-chat.plist",
        "LoadState=loaded",
        "SubState=running",
        "MainPID=812",
        "runs=3",
        "LastExit=0",
        "rss=18000000",
        "argv=/opt/mlx/venv/bin/python /opt/mlx/venv/bin/mlx_lm.server --model org/chat --port 8100",
        "@unit lab.llm.mlx.jerry-test",
        "gone=/opt/mlx/models",
        "UnitFileState=disabled",
        "LoadState=not-loaded",
    ]
    states = ServiceStates().process(lines)
    assert states["lab.llm.mlx.jerry-chat"]["runs"] == "3"
    assert states["lab.llm.mlx.jerry-test"] == {
        "gone": ["/opt/mlx/models"],
        "UnitFileState": "disabled",
        "LoadState": "not-loaded",
    }


def _running(unit_pid: int, **more) -> dict:
    return {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "NRestarts": "0",
            "MainPID": str(unit_pid), "rss": "204800", "gone": [], **more}  # fmt: skip


def _mini_reads(registry):
    s = registry.proxy
    listeners = [
        {"port": 22, "address": "0.0.0.0", "pid": 1, "user": "root", "command": "sshd", "unit": "ssh.service"},
        {"port": 53, "address": "127.0.0.53", "pid": 2, "user": "systemd-resolve", "command": "systemd-resolve",
         "unit": "systemd-resolved.service"},
        {"port": s["litellm_port"], "address": "0.0.0.0", "pid": 10, "user": "litellm", "command": "python",
         "unit": "litellm.service"},
        {"port": s["redis_port"], "address": "127.0.0.1", "pid": 11, "user": "redis-llm", "command": "redis-server",
         "unit": "redis-llm.service"},
        {"port": s["ovms_rest_port"], "address": "127.0.0.1", "pid": 12, "user": "ovms", "command": "ovms",
         "unit": "ovms.service"},
    ]  # fmt: skip
    states = {"litellm": _running(10), "redis-llm": _running(11), "ovms": _running(12)}
    probed = {
        "version litellm": "litellm[proxy]==1.106.2\nprisma==0.15.0\n",
        "status litellm": "litellm\tok\talive, 6 model names",
        "version redis-llm": "redis 7.0.15",
        "version ovms": "ovms 2025.4-abababababab",
        "status ovms": "ovms\tok\tlil-jerry (llama-3-2-3b-instruct) ready",
        "available": "4000000",
    }
    return listeners, states, probed


def test_a_healthy_mini_has_nothing_off(registry):
    listeners, states, probed = _mini_reads(registry)
    rep = doctor.report(registry, "mini", LINUX, listeners, states, probed)
    assert rep["off"] == []
    rows = {row["unit"]: row for row in rep["services"]}
    assert set(rows) == {"litellm", "redis-llm", "ovms"}
    assert rows["litellm"]["version"] == "litellm 1.106.2, prisma 0.15.0"
    assert rows["litellm"]["state"] == "active/running" and rows["litellm"]["memory_mb"] == 200
    assert rows["ovms"]["serving"] == "lil-jerry (llama-3-2-3b-instruct) ready"
    assert [(x["port"], x["off"]) for x in rep["listeners"]] == [(22, False), (53, False)]
    assert "nothing is off" in doctor.table([rep])


def test_what_is_off_on_a_mini_is_named(registry):
    """A crash-looping OVMS whose model does not answer, a proxy unit naming a file that is gone,
    a hand-kept server on the LAN, and Redis's port held by another process."""
    listeners, states, probed = _mini_reads(registry)
    s = registry.proxy
    states["ovms"] = {**_running(0), "ActiveState": "activating", "SubState": "auto-restart", "NRestarts": "7"}
    states["litellm"]["gone"] = ["/etc/litellm/env.local"]
    probed["status ovms"] = "ovms\toff\tlil-jerry (llama-3-2-3b-instruct) ready: no answer"
    listeners = [x for x in listeners if x["unit"] not in ("ovms.service", "redis-llm.service")]
    listeners += [
        {"port": 11434, "address": "0.0.0.0", "pid": 40, "user": "chris", "command": "ollama", "unit": ""},
        {"port": s["redis_port"], "address": "127.0.0.1", "pid": 41, "user": "redis", "command": "redis-server",
         "unit": "redis-server.service"},
    ]  # fmt: skip
    off = doctor.report(registry, "mini", LINUX, listeners, states, probed)["off"]
    assert off == [
        f"redis-llm: nothing of it listens on port {s['redis_port']}",
        f"redis-llm: port {s['redis_port']} is held by redis-server (pid 41, user redis, unit redis-server.service)",
        "litellm: its unit names /etc/litellm/env.local, which is gone",
        "ovms: not running (activating/auto-restart)",
        "ovms: crash-looping: 7 restarts",
        "0.0.0.0:11434: ollama (pid 40, user chris) listens where the data declares nothing (add the port to "
        "llm_own_listeners if it is yours)",
    ]
    # The data names it as the host's own: listed, not off.
    registry.settings("mini")["llm_own_listeners"] = [22, 11434]
    off = doctor.report(registry, "mini", LINUX, listeners, states, probed)["off"]
    assert not any("11434" in line for line in off)


def test_a_studio_on_macos_is_read_by_launchd_label_and_its_weights_against_memory(data):
    """The MLX servers' jobs by label: one disabled and not loaded, one running whose server does
    not answer; the weights measured against the memory share."""
    registry = build({**data, "mlx_memory_fraction": 0.5})
    models = sorted(registry.served_by("studio", "mlx"), key=lambda m: m.port)
    prefix = registry.settings("studio")["mlx_launchd_prefix"]
    listeners = [
        {"port": m.port, "address": "0.0.0.0", "pid": 700 + i, "user": "chris", "command": "Python",
         "unit": f"{prefix}.{m.name}"}
        for i, m in enumerate(models[1:], start=1)
    ]  # fmt: skip
    # macOS's own daemon on every address: listed, not off.
    listeners.append({"port": 49152, "address": "0.0.0.0", "pid": 90, "user": "chris", "command": "rapportd",
                      "unit": "com.apple.rapportd"})  # fmt: skip
    states = {
        f"{prefix}.{m.name}": {"LoadState": "loaded", "SubState": "running", "MainPID": str(700 + i), "runs": "1",
                               "rss": "1048576", "gone": [],
                               "argv": f"/opt/mlx/venv/bin/python mlx_lm.server --model {m.upstream}"}
        for i, m in enumerate(models[1:], start=1)
    }  # fmt: skip
    first = models[0]
    states[f"{prefix}.{first.name}"] = {"LoadState": "not-loaded", "UnitFileState": "disabled", "gone": []}
    probed = {
        "status mlx": "\n".join(
            f"mlx-{m.name}\t{'off' if m is models[1] else 'ok'}\t{m.upstream}{': no answer' if m is models[1] else ''}"
            for m in models[1:]
        ),
        "version mlx": "mlx==0.32.4\nmlx-lm==0.32.2",
        "available": str(100 * (1 << 20)),  # kB
        **{f"weights {m.name}": str(30 * (1 << 20)) for m in models},  # 30 GiB each, in kB
    }
    rep = doctor.report(registry, "studio", MAC, listeners, states, probed)
    rows = {row["unit"]: row for row in rep["services"]}
    assert rows[f"{prefix}.{models[2].name}"]["serving"] == models[2].upstream
    assert rows[f"{prefix}.{models[2].name}"]["version"] == "mlx 0.32.4, mlx-lm 0.32.2"
    limit = int(MAC.memory * 0.5) >> 20
    assert rep["off"] == [
        f"{prefix}.{first.name}: the launchd job is disabled",
        f"{prefix}.{first.name}: the launchd job is not loaded",
        f"{prefix}.{models[1].name}: {models[1].upstream}: no answer",
        f"memory: the MLX models' weights ({len(models) * 30 * 1024} MB) exceed 0.5 of the host's memory ({limit} MB)",
    ]
    assert rep["memory"]["available_mb"] == 100 * 1024
