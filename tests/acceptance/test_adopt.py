"""Adopting what a host runs now, read over SSH (lab only): the seed's router.yaml and env.local in
a folder of the operator's own on the mini, fetched by `python -m tasks.adopt --from`; the registry
it writes renders an equivalent router.yaml, and nothing on the host changes."""

import shlex
import subprocess
import sys

import pytest

from lab import hosts as labhosts

from .labdeploy import ROOT

SEED = ROOT / "tests" / "unit" / "seed"
FOLDER = "litellm-orch-adopted/config"  # under the operator's home, made and removed here


def as_operator(ssh, command, stdin=None):
    return subprocess.run([*ssh, command], input=stdin, capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.mark.lab_only
def test_the_hand_kept_files_are_fetched_from_the_mini_and_adopted(registry, tmp_path):
    ssh = labhosts.ssh_args(registry.proxy_host)
    as_operator(ssh, f"mkdir -p ~/{FOLDER}")
    for name in ("router.yaml", "env.local"):
        as_operator(ssh, f"cat > ~/{FOLDER}/{name}", (SEED / name).read_text())
    look = f"ls -la --time-style=full-iso ~/{FOLDER}; systemctl show -p MainPID --value litellm.service"
    before = as_operator(ssh, look)
    try:
        out = subprocess.run(
            [
                *(sys.executable, "-m", "tasks.adopt", "--from", ssh[-1], "--ssh", shlex.join(ssh[:-1])),
                *("--path", f"~/{FOLDER}", "--out", str(tmp_path / "adopted.py")),
                *("--secrets", str(tmp_path / "secrets.env")),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "LLMLAB_MINI_HOST": "192.0.2.71", "LLMLAB_STUDIO_HOST": "192.0.2.72"},
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "6 models written" in out.stdout and "router.yaml equivalent" in out.stdout
        assert (tmp_path / "adopted.py").read_text().count("'backend'") == 6
        assert as_operator(ssh, look) == before
    finally:
        as_operator(ssh, f"rm -rf ~/{FOLDER.split('/')[0]}")
