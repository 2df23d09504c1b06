"""The studio's weight fetch (files/mlx/fetch.py) with the real huggingface_hub against the lab's
stand-in hub (lab/hfhub.py), here: progress lines while it runs, its size at the end, and a fetch
killed half way resumed by the next one without fetching again what it had."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import hfhub
from tasks import mlx
from tasks.facts import HubCache

SIZE = 400_000


@pytest.fixture
def hub(tmp_path):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "model.safetensors").write_bytes(os.urandom(SIZE))
    (repo / "config.json").write_text('{"model_type": "llama"}\n')
    (repo / "sub" / "tokenizer.json").write_text("{}\n")
    server = hfhub.serve("127.0.0.1:0", {"lab/tiny": str(repo)}, rate=100_000)  # about 4 s for the weights
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, repo
    server.shutdown()


def fetch(server, cache: Path, every: float = 0.5) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HOME": str(cache),
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    command = [sys.executable, str(mlx.FETCH_SCRIPT), "lab/tiny", str(every)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_fetch_reports_its_progress_and_its_size(hub, tmp_path):
    server, repo = hub
    out, err = fetch(server, tmp_path / "cache").communicate(timeout=60)
    lines = out.splitlines()
    progress = [line for line in lines if " of " in line]
    assert progress, (out, err)
    assert all(line.startswith("lab/tiny: ") and "kB of 400.0 kB (" in line and "/s, " in line for line in progress)
    assert lines[-1].startswith("size ") and int(lines[-1].split()[1]) >= SIZE
    [snapshot] = (tmp_path / "cache" / "hub" / "models--lab--tiny" / "snapshots").iterdir()
    assert (snapshot / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    assert (snapshot / "sub" / "tokenizer.json").exists()
    # What the deploy reads next time: complete (refs/main names the snapshot), so nothing is fetched.
    check = HubCache().command(hf_home=str(tmp_path / "cache"), repos=("lab/tiny",))
    found = HubCache().process(subprocess.run(["sh", "-c", check], capture_output=True, text=True).stdout.splitlines())
    assert found["lab/tiny"] and found["lab/tiny"] >= SIZE


def test_a_fetch_killed_half_way_resumes_where_it_stopped(hub, tmp_path):
    server, repo = hub
    cache = tmp_path / "cache"
    first = fetch(server, cache)
    deadline = time.monotonic() + 30
    while server.sent < SIZE // 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    sent_before = server.sent
    assert SIZE // 3 <= sent_before < SIZE, sent_before
    out, err = fetch(server, cache).communicate(timeout=60)
    assert "lab/tiny: resuming with " in out, (out, err)
    assert out.splitlines()[-1].startswith("size ")
    # What the first one had was not sent again (a few chunks in flight when it was killed may be).
    assert server.sent < SIZE + 4 * hfhub.CHUNK, (sent_before, server.sent)
    [snapshot] = (cache / "hub" / "models--lab--tiny" / "snapshots").iterdir()
    assert (snapshot / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
