"""An environment is judged by what is on the host, not by its record alone: the probe run on a
real virtual environment (this machine's own), and each reason a deploy rebuilds one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import pyenv
from tasks.facts import UvEnvironment
from tasks.render import sha256_text

VENV = str(Path(sys.executable).parent.parent)  # the control machine's own .venv
ENV = pyenv.PythonEnv(
    "litellm", "/opt/litellm/venv", ("litellm[proxy]==1.106.2", "prisma==0.15.0"), entry_point="litellm"
)
SPEC = "spec"


def probe(venv: str, entry_point: str, dists: tuple) -> dict:
    command = UvEnvironment().command(uv="/nonexistent/uv", venv=venv, entry_point=entry_point, dists=dists)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return UvEnvironment().process(out.stdout.splitlines())


def bare_venv(tmp_path) -> tuple[Path, Path]:
    """A real environment without pip, and its site-packages, for packages written by hand."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv, next(venv.glob("lib/python*/site-packages"))


def test_probe_reads_a_real_environment():
    found = probe(VENV, "pytest", ("pytest", "no-such-dist"))
    assert found["runs"] is True and found["venv"] is True
    assert found["dists"]["pytest"] == (pytest.__version__, 0)
    assert found["dists"]["no-such-dist"] == ("-", 0)


def test_probe_counts_the_missing_files_of_a_half_removed_package(tmp_path):
    """A real environment with a small package installed, then half of it removed by hand."""
    venv, site = bare_venv(tmp_path)
    (site / "Tiny_Pkg-1.2.3.dist-info").mkdir()
    (site / "tiny_pkg").mkdir()
    for name in ("__init__.py", "core.py"):
        (site / "tiny_pkg" / name).write_text("")
    (site / "Tiny_Pkg-1.2.3.dist-info" / "RECORD").write_text(
        "tiny_pkg/__init__.py,sha256=x,0\ntiny_pkg/core.py,sha256=x,0\nTiny_Pkg-1.2.3.dist-info/RECORD,,\n"
    )
    assert probe(str(venv), "", ("tiny-pkg",))["dists"] == {"tiny-pkg": ("1.2.3", 0)}
    (site / "tiny_pkg" / "core.py").unlink()
    assert probe(str(venv), "", ("tiny-pkg",))["dists"] == {"tiny-pkg": ("1.2.3", 1)}


def test_probe_reads_quoted_and_crlf_record_rows(tmp_path):
    """RECORD is CSV: a path holding a comma is quoted; a RECORD written with CRLF still reads."""
    venv, site = bare_venv(tmp_path)
    (site / "odd.pkg-0.1.dist-info").mkdir()
    (site / "odd").mkdir()
    (site / "odd" / "a,b.txt").write_text("")
    (site / "odd" / "c.py").write_text("")
    record = site / "odd.pkg-0.1.dist-info" / "RECORD"
    record.write_bytes(b'"odd/a,b.txt",sha256=x,0\r\nodd/c.py,sha256=x,0\r\n\r\n')
    assert probe(str(venv), "", ("Odd-Pkg",))["dists"] == {"Odd-Pkg": ("0.1", 0)}
    (site / "odd" / "a,b.txt").unlink()
    (site / "odd" / "c.py").unlink()
    assert probe(str(venv), "", ("odd_pkg",))["dists"] == {"odd_pkg": ("0.1", 2)}


def test_uv_is_asked_only_when_named():
    with_uv = UvEnvironment().command(uv="/opt/uv/bin/uv", venv="/opt/x/venv")
    assert "/opt/uv/bin/uv --version" in with_uv
    assert "--version" not in UvEnvironment().command(uv="", venv="/opt/x/venv")


def test_probe_sees_a_missing_entry_point():
    assert probe(VENV, "no-such-program", ("pytest",))["runs"] is False


def healthy() -> dict:
    return {
        "venv": True,
        "built_from": sha256_text(SPEC),
        "runs": True,
        "dists": {"litellm": ("1.106.2", 0), "prisma": ("0.15.0", 0)},
    }


@pytest.mark.parametrize(
    "change, reason",
    [
        ({}, ""),
        ({"venv": False}, "missing"),
        ({"built_from": "other"}, "built from other pins or options"),
        ({"runs": False}, "its interpreter or entry point does not run"),
        ({"dists": {"litellm": ("1.999.0", 0), "prisma": ("0.15.0", 0)}}, "litellm is 1.999.0, not 1.106.2"),
        ({"dists": {"litellm": ("1.106.2", 12), "prisma": ("0.15.0", 0)}}, "12 files of litellm are missing"),
        ({"dists": {"litellm": ("1.106.2", 0)}}, "prisma is -, not 0.15.0"),
    ],
    ids=["healthy", "absent", "record", "broken", "other-version", "half-removed", "dist-gone"],
)
def test_why_an_environment_is_rebuilt(change, reason):
    assert pyenv.needs_build(ENV, {**healthy(), **change}, SPEC) == reason


def _folders(root: Path) -> dict:
    return {p.name: (str(p.readlink().name) if p.is_symlink() else "dir") for p in sorted(root.iterdir())}


def test_switching_keeps_the_previous_and_prunes_older_folders(tmp_path):
    """The switch's shell, run here: the link moves, the folder it left becomes .previous, and of
    the others only as many as uv_keep allows stay (the newest)."""
    venv = tmp_path / "venv"
    for stamp in ("20260101", "20260201", "20260301", "20260401"):
        (tmp_path / f"venv-{stamp}").mkdir()
    (tmp_path / "venv").symlink_to(tmp_path / "venv-20260301")
    (tmp_path / "venv-20260501").mkdir()  # the new build
    for command in pyenv.switch_commands(str(venv), str(tmp_path / "venv-20260501"), keep=2, macos=False):
        subprocess.run(["sh", "-c", command], check=True)
    assert _folders(tmp_path) == {
        "venv": "venv-20260501",
        "venv-20260301": "dir",
        "venv-20260501": "dir",
        "venv.previous": "venv-20260301",
    }
    # Switching back (pins put back): the two swap, nothing else goes.
    for command in pyenv.switch_commands(str(venv), str(tmp_path / "venv-20260301"), keep=3, macos=False):
        subprocess.run(["sh", "-c", command], check=True)
    assert _folders(tmp_path) == {
        "venv": "venv-20260301",
        "venv-20260301": "dir",
        "venv-20260501": "dir",
        "venv.previous": "venv-20260501",
    }


def test_the_old_layout_becomes_the_previous_environment(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "marker").write_text("old")
    (tmp_path / "venv.requirements.txt").write_text("old record")
    (tmp_path / "venv-20260501").mkdir()
    for command in pyenv.switch_commands(str(venv), str(tmp_path / "venv-20260501"), keep=2, macos=False):
        subprocess.run(["sh", "-c", command], check=True)
    assert (tmp_path / "venv.previous" / "marker").read_text() == "old"
    assert venv.readlink() == tmp_path / "venv-20260501"
    assert not (tmp_path / "venv.requirements.txt").exists()


def test_the_build_imports_the_service_modules_and_writes_their_bytecode(tmp_path):
    """The build's import step, run here: the service's modules are compiled by the import and
    its own package whole (a module it does not load too), even where PYTHONDONTWRITEBYTECODE
    is set (as on this machine); a module that does not import fails the build and removes its
    folder."""
    target = tmp_path / "venv-new"
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "python").symlink_to(sys.executable)
    site = target / "lib" / "python3.x" / "site-packages"
    (site / "service_pkg").mkdir(parents=True)
    (site / "service_pkg" / "__init__.py").write_text("")
    (site / "service_pkg" / "server.py").write_text("VALUE = 1\n")
    (site / "service_pkg" / "unused.py").write_text("VALUE = 2\n")
    env = pyenv.PythonEnv(
        "litellm", "/opt/litellm/venv", (), imports=("service_pkg.server",), import_env=(("PYTHONPATH", str(site)),)
    )
    run = subprocess.run(
        ["sh", "-c", pyenv._import_command(env, str(target))],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, run.stderr
    compiled = {p.name.split(".")[0] for p in (site / "service_pkg" / "__pycache__").glob("*.pyc")}
    assert compiled == {"__init__", "server", "unused"}
    broken = pyenv.PythonEnv(
        "litellm",
        "/opt/litellm/venv",
        (),
        imports=("service_pkg.server", "no_such_module"),
        import_env=(("PYTHONPATH", str(site)),),
    )
    run = subprocess.run(["sh", "-c", pyenv._import_command(broken, str(target))], capture_output=True, text=True)
    assert run.returncode == 1 and not target.exists()
    assert "the new litellm environment cannot import service_pkg.server, no_such_module" in run.stderr


def _fake_index(tmp_path, version, sha=None):
    """A PyPI simple index (PEP 691 JSON) for uv with one wheel for this machine, served as file:// URLs."""
    import hashlib
    import json
    import zipfile

    machine = os.uname().machine
    name = f"uv-{version}-py3-none-manylinux_2_17_{machine}.manylinux2014_{machine}.whl"
    wheel = tmp_path / name
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"uv-{version}.data/scripts/uv", f"#!/bin/sh\necho 'uv {version} (fake)'\n")
        z.writestr(f"uv-{version}.dist-info/METADATA", "Name: uv\n")
    digest = sha or hashlib.sha256(wheel.read_bytes()).hexdigest()
    other = {
        "filename": f"uv-{version}-py3-none-win_amd64.whl",
        "url": "file:///nonexistent",
        "hashes": {"sha256": "0"},
    }
    index = tmp_path / "index.json"
    index.write_text(
        json.dumps({"files": [other, {"filename": name, "url": wheel.as_uri(), "hashes": {"sha256": digest}}]})
    )
    return index.as_uri()


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the fake wheel is a Linux one")
def test_uv_comes_from_its_wheel_held_to_the_index_digest(tmp_path):
    """pyenv.UV_FETCH run as a host runs it (python3, curl), against a local index."""
    from tasks.pyenv import UV_FETCH

    dest = tmp_path / "opt-uv"
    subprocess.run(["python3", "-c", UV_FETCH, "9.8.7", str(dest), _fake_index(tmp_path, "9.8.7")], check=True)
    out = subprocess.run([str(dest / "bin" / "uv"), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == "uv 9.8.7 (fake)\n"
    assert sorted(p.name for p in (dest / "bin").iterdir()) == ["uv"]

    bad = subprocess.run(
        ["python3", "-c", UV_FETCH, "9.8.6", str(tmp_path / "bad"), _fake_index(tmp_path, "9.8.6", "ab" * 32)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and f"not the {'ab' * 32} PyPI lists" in bad.stderr
    assert not (tmp_path / "bad" / "bin" / "uv").exists()

    missing = subprocess.run(
        ["python3", "-c", UV_FETCH, "1.2.3", str(tmp_path / "none"), _fake_index(tmp_path, "9.8.7")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and f"PyPI has no uv 1.2.3 wheel for Linux {os.uname().machine}" in missing.stderr
