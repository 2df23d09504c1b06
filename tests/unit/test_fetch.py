"""The studio's weight fetch (files/mlx/fetch.py) with the real huggingface_hub against the lab's
stand-in hub (lab/hfhub.py), here: progress lines while it runs, its size at the end, and a fetch
killed half way resumed by the next one without fetching again what it had."""

from __future__ import annotations

import hashlib
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


@pytest.fixture(params=["same host"])
def hub(tmp_path, request):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "model.safetensors").write_bytes(os.urandom(SIZE))
    (repo / "config.json").write_text('{"model_type": "llama"}\n')
    (repo / "sub" / "tokenizer.json").write_text("{}\n")
    # The weights (an LFS file) are redirected to the address asked, or to another host name.
    cdn = (lambda port: f"http://localhost:{port}") if request.param == "another host" else None
    server = hfhub.serve("127.0.0.1:0", {"lab/tiny": str(repo)}, rate=100_000, cdn=cdn)  # about 4 s for the weights
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, repo
    server.shutdown()


def fetch(server, cache: Path, every: float = 0.5, **more) -> subprocess.Popen:
    env = {
        **more,
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


@pytest.mark.parametrize("hub", ["same host", "another host"], indirect=True)
def test_the_token_goes_to_the_hub_and_not_to_another_host(hub, tmp_path):
    """With a token (a gated model), the redirected weights are fetched with it from the Hub's own
    host and without it from another (the CDN's signed URL)."""
    server, _ = hub
    out, err = fetch(server, tmp_path / "cache", HF_TOKEN="hf_unit_test_token").communicate(timeout=60)
    assert out.splitlines()[-1].startswith("size "), (out, err)
    other = server.lfs_cdn is not None
    assert server.lfs_authorized and all(a is (not other) for a in server.lfs_authorized), server.lfs_authorized


def test_a_partial_file_cut_off_whole_before_its_check_is_checked_not_fetched(hub, tmp_path):
    """Killed after the last byte and before the check: the next fetch asks for nothing more of it
    (the Hub would answer 416), checks it and keeps it."""
    server, repo = hub
    data = (repo / "model.safetensors").read_bytes()
    blobs = tmp_path / "cache" / "hub" / "models--lab--tiny" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / (hashlib.sha256(data).hexdigest() + ".llmlab-part")).write_bytes(data)
    out, err = fetch(server, tmp_path / "cache").communicate(timeout=60)
    assert out.splitlines()[-1].startswith("size "), (out, err)
    assert server.sent < SIZE // 10, server.sent  # the other files only
    assert (blobs / hashlib.sha256(data).hexdigest()).read_bytes() == data
