"""The batched facts of tasks/facts.py read what the hosts print (GNU and BSD stat, systemctl show)."""

import os
import subprocess

import pytest
from pyinfra.api.command import StringCommand

from tasks.facts import DirectoryStates, FileStates, InstalledDebianPackages, TreeDigests, UnitStates
from tasks.ops import apt_install_command, tar_of, untar_command


def run_fact(fact, **kwargs):
    """Run the fact's command in a local shell, as a host would, and process its output."""
    out = subprocess.run(["sh", "-c", fact.command(**kwargs)], capture_output=True, text=True, check=True)
    return fact.process(out.stdout.splitlines())


def test_file_states_reads_each_file_or_none(tmp_path):
    present = tmp_path / "a b.txt"  # a space: quoting is the fact's job
    present.write_text("hello\n")
    present.chmod(0o640)
    states = run_fact(FileStates(), paths=(str(present), str(tmp_path / "missing")))
    assert states[1] is None
    assert states[0]["mode"] == "640"
    assert states[0]["sha256"] == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    assert set(states[0]) == {"user", "group", "mode", "sha256"}


def test_directory_states_ignore_files_and_keep_order(tmp_path):
    (tmp_path / "d").mkdir(mode=0o750)
    (tmp_path / "d").chmod(0o750)
    (tmp_path / "f").write_text("")
    paths = (str(tmp_path / "f"), str(tmp_path / "d"), str(tmp_path / "none"))
    states = run_fact(DirectoryStates(), paths=paths)
    assert states[0] is None and states[2] is None
    assert states[1]["mode"] == "750" and "sha256" not in states[1]


@pytest.mark.parametrize("blank_lines", [True, False])
def test_unit_states_parse_systemctl_show(blank_lines):
    blocks = [
        ["Id=litellm.service", "ActiveState=active", "UnitFileState=enabled"],
        ["Id=ovms.service", "ActiveState=failed", "UnitFileState=disabled"],
        ["Id=nope.service", "ActiveState=inactive", "UnitFileState="],
    ]
    lines = []
    for block in blocks:
        lines += block + ([""] if blank_lines else [])
    assert UnitStates().process(lines) == {
        "litellm.service": ("enabled", "active"),
        "ovms.service": ("disabled", "failed"),
        "nope.service": ("", "inactive"),
    }


def test_unit_states_command_quotes_units():
    assert UnitStates().command(units=("a.service", "b c.service")) == (
        "systemctl show --property=Id,UnitFileState,ActiveState -- a.service 'b c.service'"
    )


def test_installed_debian_packages_keeps_only_fully_installed():
    # dpkg-query's lines for installed, removed-but-configured and half-installed packages;
    # a package it never heard of prints nothing.
    output = ["curl ii ", "libxml2 rc ", "python3-venv iU ", "@end"]
    assert InstalledDebianPackages().process(output) == ["curl"]
    assert InstalledDebianPackages().process(["@end"]) == []


def test_installed_rpm_packages_reads_rpm_query():
    from tasks.facts import InstalledRpmPackages

    # rpm -q for one installed and one missing package (RHEL 9)
    output = ["curl installed", "package libxml2 is not installed", "@end"]
    assert InstalledRpmPackages().process(output) == ["curl"]


def test_a_tree_upload_unpacks_the_changed_files_with_their_modes(tmp_path):
    """ops.tree's archive and its unpack command, run here as on a host: the changed files land
    0644 in 0755 folders, a link is sent as the file it points at (a Hugging Face snapshot),
    files not in the archive stay, a server holding a replaced file open keeps reading the old
    one, and the archive is removed, also when the unpack fails."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "sub dir").mkdir(parents=True)
    (tmp_path / "blob").write_bytes(b"new weights")
    (src / "weights.bin").symlink_to(tmp_path / "blob")
    (src / "sub dir" / "tok.json").write_text("{}")
    os.chmod(tmp_path / "blob", 0o600)  # modes on the control machine do not travel
    dest.mkdir()
    (dest / "weights.bin").write_bytes(b"old weights")
    (dest / "kept.txt").write_text("kept")
    held = open(dest / "weights.bin", "rb")
    archive = tmp_path / "upload.tar"
    with tar_of(str(src), ["sub dir/tok.json", "weights.bin"]) as data:
        data.seek(0)
        archive.write_bytes(data.read())
    subprocess.run(["sh", "-c", str(untar_command(str(archive), str(dest)).get_raw_value())], check=True)
    assert not archive.exists()
    assert not (dest / "weights.bin").is_symlink()
    assert (dest / "weights.bin").read_bytes() == b"new weights" and held.read() == b"old weights"
    held.close()
    assert (dest / "kept.txt").read_text() == "kept"
    assert oct((dest / "weights.bin").stat().st_mode & 0o777) == "0o644"
    assert oct((dest / "sub dir").stat().st_mode & 0o777) == "0o755"
    assert set(run_fact(TreeDigests(), path=str(dest))) == {"weights.bin", "sub dir/tok.json", "kept.txt"}
    archive.write_bytes(b"not a tar")
    failed = subprocess.run(["sh", "-c", str(untar_command(str(archive), str(dest)).get_raw_value())])
    assert failed.returncode != 0 and not archive.exists()


@pytest.mark.parametrize(
    "lists, first_install_fails, expected",
    [
        ("none", False, ["update", "install"]),  # no package lists: refreshed first
        ("fresh", False, ["install"]),  # lists written just now: used as they are
        ("fresh", True, ["install", "update", "install"]),  # ... but an install they fail is retried after a refresh
        ("old", False, ["update", "install"]),  # none written within the hours allowed: refreshed first
    ],
)
def test_apt_refreshes_the_package_lists_only_when_old_or_failing(tmp_path, lists, first_install_fails, expected):
    """The shell the deploy runs, with apt-get replaced by a stub that records its calls."""
    folder = tmp_path / "lists"
    folder.mkdir()
    if lists != "none":
        (folder / "archive_dists_noble_InRelease").write_text("")
    calls = tmp_path / "calls"
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {calls}\n'
        f'if [ "$1" = install ] && [ -e {tmp_path}/fail-once ]; then rm {tmp_path}/fail-once; exit 100; fi\n'
    )
    if lists == "old":  # a ctime cannot be set back: find, asked for lists changed within the hours, finds none
        (stub / "find").write_text("#!/bin/sh\nexit 0\n")
    for program in stub.iterdir():
        program.chmod(0o755)
    if first_install_fails:
        (tmp_path / "fail-once").write_text("")
    command = apt_install_command(["redis-server", "python3-venv"], max_age_hours=2, lists=str(folder))
    assert f"find {folder} -maxdepth 1 -name '*Release' -cmin -120" in command
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().split() == expected


def test_apt_refreshes_every_time_when_told():
    assert apt_install_command(["nftables"], max_age_hours=0) == (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables"
    )


def _sh(command) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", str(command.get_raw_value())], capture_output=True, text=True)


def test_joined_commands_run_in_order_and_stop_at_the_first_that_fails(tmp_path):
    from tasks.shell import one

    log = tmp_path / "log"
    ran = _sh(one([f"echo a >> {log}", f"x=1; (exit 3) || {{ echo b >> {log}; exit 3; }}", f"echo c >> {log}"]))
    assert ran.returncode == 3 and log.read_text() == "a\nb\n"  # the failing command's status, nothing after it
    # A command that backgrounds work and waits for it (pyenv.bytecode_command's shape), then the next.
    ran = _sh(one([f"cd / && {{ sleep 0.1; echo bg >> {log}; }} & p=$!; true || exit 1; wait $p", f"echo d >> {log}"]))
    assert ran.returncode == 0 and log.read_text().endswith("bg\nd\n")
    assert one(["echo only"]).get_raw_value() == "echo only"  # a single command as it is


def test_an_untar_joined_with_a_later_command_lets_it_run(tmp_path):
    """untar_command must not end the shell on success: a command joined after it still runs."""
    from tasks.shell import one

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / "f.txt").write_text("x")
    archive = tmp_path / "a.tar"
    with tar_of(str(src), ["f.txt"]) as data:
        data.seek(0)
        archive.write_bytes(data.read())
    assert (
        _sh(one([untar_command(str(archive), str(dest)), StringCommand("touch", str(tmp_path / "after"))])).returncode
        == 0
    )
    assert (dest / "f.txt").read_text() == "x" and (tmp_path / "after").exists()


def test_joined_keeps_uploads_in_place_and_joins_only_alike_commands():
    from pyinfra.api import FileUploadCommand

    from tasks.shell import Joined, joined

    out = list(
        joined(
            [
                StringCommand("a", _sudo=False),
                StringCommand("b", _sudo=False),
                FileUploadCommand("x", "y"),
                StringCommand("c"),
                "d",
                StringCommand("e", _sudo=False),
            ]
        )
    )
    assert [type(c).__name__ for c in out] == ["Joined", "FileUploadCommand", "Joined", "StringCommand"]
    assert [p.get_raw_value() for p in out[0].parts] == ["a", "b"] and out[0].connector_arguments == {"_sudo": False}
    assert [p.get_raw_value() for p in out[2].parts] == ["c", "d"] and out[2].connector_arguments == {}
    assert isinstance(out[0], Joined) and out[3].connector_arguments == {"_sudo": False}


def test_an_uploads_tar_is_made_only_when_the_upload_reads_it(tmp_path):
    """tree's archive (a model's changed files) is not made while the run only looks at what the
    operation will do (change detection, the deploy lock's look ahead), and made once when read."""
    from tasks import ops

    src = tmp_path / "m"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w" * 10)
    made = []
    lazy = ops._MadeOnRead(lambda: made.append(1) or tar_of(str(src), ["weights.bin"]))
    assert made == []
    lazy.seek(0)
    data = lazy.read()
    lazy.seek(0)
    assert made == [1] and lazy.read() == data and lazy.tell() == len(data)
    import io
    import tarfile

    assert tarfile.open(fileobj=io.BytesIO(data)).getnames() == ["weights.bin"]
