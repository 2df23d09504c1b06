"""The OVMS archive: chosen from the host's system and the pinned version (names as each release
published them), and held to a digest from the data or the control machine's lock file."""

from __future__ import annotations

import hashlib
import json

import pytest

from tasks import stack
from tasks.ovms import release as ovms_release
from tasks.schema import DataError

DEFAULTS = {k.name: k.default for k in stack.KEYS}


@pytest.mark.parametrize(
    "version, tag, python, name",
    [
        ("2025.4", "ubuntu24", True, "ovms_ubuntu24_python_on.tar.gz"),
        ("2025.4", "ubuntu24", False, "ovms_ubuntu24.tar.gz"),
        ("2025.0", "redhat", True, "ovms_redhat_python_on.tar.gz"),
        ("2025.4.1", "ubuntu22", False, "ovms_ubuntu22_python_off.tar.gz"),
        ("2026.0", "ubuntu24", True, "ovms_ubuntu24_python_on.tar.gz"),
        ("2026.0", "ubuntu24", False, "ovms_ubuntu24_python_off.tar.gz"),
        ("2026.1", "ubuntu22", False, "ovms_ubuntu22_2026.1.0_python_off.tar.gz"),
        ("2026.3", "ubuntu24", True, "ovms_ubuntu24_2026.3.0_python_on.tar.gz"),
        ("2026.2.1", "redhat", True, "ovms_redhat_2026.2.1_python_on.tar.gz"),
    ],
)
def test_asset_names_follow_each_release(version, tag, python, name):
    assert ovms_release.asset_name(version, tag, python) == name


@pytest.mark.parametrize(
    "os_id, version, arch, tag",
    [
        ("ubuntu", "22.04", "x86_64", "ubuntu22"),
        ("ubuntu", "24.04", "x86_64", "ubuntu24"),
        ("rhel", "9.6", "x86_64", "redhat"),
    ],
)
def test_supported_systems(os_id, version, arch, tag):
    assert ovms_release.system_tag(os_id, version, arch) == tag


@pytest.mark.parametrize(
    "os_id, version, arch",
    [
        ("debian", "12", "x86_64"),
        ("ubuntu", "24.04", "aarch64"),
        ("ubuntu", "20.04", "x86_64"),
        ("fedora", "41", "x86_64"),
    ],
)
def test_a_system_without_a_release_is_refused_naming_what_was_found(os_id, version, arch):
    with pytest.raises(DataError) as err:
        ovms_release.system_tag(os_id, version, arch)
    assert f"OVMS publishes no release for {os_id} {version} {arch}" in str(err.value)
    assert "ovms_archive_url" in str(err.value)


def settings(**values):
    return {**DEFAULTS, **values}


def resolve(tmp_path, **values):
    return ovms_release.resolve(settings(**values), {}, "ubuntu", "24.04", "x86_64", tmp_path)


def test_the_default_is_the_python_on_asset_for_the_system_from_github(tmp_path):
    rel = resolve(tmp_path, ovms_archive_sha256="ab" * 32)
    assert rel.url == (
        "https://github.com/openvinotoolkit/model_server/releases/download/v2025.4/ovms_ubuntu24_python_on.tar.gz"
    )
    assert rel.sha256 == "ab" * 32 and rel.digest_from == "ovms_archive_sha256"


def test_without_a_digest_the_error_says_where_to_find_one_and_what_to_set(tmp_path):
    with pytest.raises(DataError) as err:
        resolve(tmp_path)
    message = str(err.value)
    assert "no sha256 for the OVMS archive https://github.com/" in message
    assert "set ovms_archive_sha256" in message and "ovms_ubuntu24_python_on.tar.gz" in message
    assert "https://github.com/openvinotoolkit/model_server/releases/tag/v2025.4" in message
    command = "python -m tasks.ovms.release " + (
        "https://github.com/openvinotoolkit/model_server/releases/download/v2025.4/ovms_ubuntu24_python_on.tar.gz"
    )
    assert f"{command} --lock {tmp_path / 'ovms.lock'}" in message
    assert not (tmp_path / "ovms.lock").exists()


def release_folder(tmp_path, content=b"an archive"):
    folder = tmp_path / "releases" / "v2025.4"
    folder.mkdir(parents=True)
    (folder / "ovms_ubuntu24_python_on.tar.gz").write_bytes(content)
    return str(tmp_path / "releases"), hashlib.sha256(content).hexdigest()


def test_the_first_digest_is_recorded_by_its_command_and_held_to_ever_after(tmp_path, capsys):
    """Choosing an archive never reads it (the deploy plans without a download); the command the
    error names records its digest once, and an archive that changed afterwards is refused."""
    base, digest = release_folder(tmp_path)
    with pytest.raises(DataError, match="no sha256") as err:
        resolve(tmp_path, ovms_release_url=base)
    url = f"{base}/v2025.4/ovms_ubuntu24_python_on.tar.gz"
    lock_path = tmp_path / "ovms.lock"
    assert f"python -m tasks.ovms.release {url} --lock {lock_path}" in str(err.value)
    assert ovms_release.main([url, "--lock", str(lock_path)]) == 0
    assert f"recorded: {digest}" in capsys.readouterr().out
    rel = resolve(tmp_path, ovms_release_url=base)
    assert rel.sha256 == digest and rel.digest_from == str(lock_path)
    assert json.loads(lock_path.read_text()) == {url: {"sha256": digest, "asset": "ovms_ubuntu24_python_on.tar.gz"}}
    assert ovms_release.main([url, "--lock", str(lock_path)]) == 0
    assert "already recorded" in capsys.readouterr().out
    # An archive that changed stays held to the first digest: the command refuses to record it.
    (tmp_path / "releases/v2025.4/ovms_ubuntu24_python_on.tar.gz").write_bytes(b"another archive")
    assert ovms_release.main([url, "--lock", str(lock_path)]) == 1
    assert "the archive changed; nothing was recorded" in capsys.readouterr().err
    assert json.loads(lock_path.read_text())[url]["sha256"] == digest
    assert resolve(tmp_path, ovms_release_url=base).sha256 == digest


def test_a_pin_and_the_lock_that_disagree_are_refused(tmp_path):
    base, digest = release_folder(tmp_path)
    ovms_release.record(f"{base}/v2025.4/ovms_ubuntu24_python_on.tar.gz", tmp_path / "ovms.lock")
    with pytest.raises(DataError, match="disagree"):
        resolve(tmp_path, ovms_release_url=base, ovms_archive_sha256="cd" * 32)


def test_a_broken_lock_file_is_named(tmp_path):
    (tmp_path / "ovms.lock").write_text('{"x": {"sha256": "nope"}}')
    with pytest.raises(DataError, match="ovms.lock: every entry must be URL"):
        resolve(tmp_path, ovms_archive_sha256="ab" * 32)


def test_an_explicit_archive_skips_the_choice(tmp_path):
    rel = ovms_release.resolve(
        settings(ovms_archive_url="https://mirror.example/ovms-custom.tar.gz", ovms_archive_sha256="ab" * 32),
        {},
        "debian",
        "12",
        "x86_64",
        tmp_path,
    )
    assert rel.asset == "ovms-custom.tar.gz" and rel.system_tag == ""
