"""The sudo password on sudo's standard input (tasks/sudo.py): the command line never holds it,
sudo reads it and the command reads nothing, and what this cannot stand for is pyinfra's."""

from __future__ import annotations

import os
import shlex
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.api.command import StringCommand
from pyinfra.connectors.ssh import SSHConnector

from tasks import sudo

PASSWORD = "pa$$ 'word\""

# A stand-in for sudo, for running sudo_command's shell here: it reads one line of its input,
# byte by byte as sudo does, refuses a wrong one, skips sudo's options and runs the rest.
FAKE_SUDO = """#!/bin/sh
line=$(dd bs=1 count=%d 2>/dev/null); dd bs=1 count=1 >/dev/null 2>&1
[ "$line" = "$EXPECTED" ] || { echo "sudo: wrong: $line" >&2; exit 1; }
while [ $# -gt 0 ]; do case "$1" in -H|-S|-k|-i|-E) shift;; -p|-u) shift 2;; *) break;; esac; done
exec "$@"
"""


def _run(tmp_path, command, arguments, stdin: str) -> subprocess.CompletedProcess:
    (tmp_path / "bin").mkdir(exist_ok=True)
    fake = tmp_path / "bin" / "sudo"
    fake.write_text(FAKE_SUDO % len(PASSWORD.encode()))
    fake.chmod(0o755)
    line = sudo.sudo_command(StringCommand(command), arguments).get_raw_value()
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "EXPECTED": PASSWORD}
    return subprocess.run(["sh", "-c", line], input=stdin, capture_output=True, text=True, env=env, cwd=tmp_path)


def test_the_command_line_holds_no_password_and_keeps_pyinfras_shape(tmp_path):
    arguments = {"_sudo": True, "_sudo_user": "svc", "_env": {"A": "b c"}, "_chdir": "/srv/x y"}
    line = sudo.sudo_command(StringCommand("echo hi"), arguments).get_raw_value()
    assert line.startswith("sudo -H -S -k -p '' -u svc sh -c ")
    assert PASSWORD not in line and "ASKPASS" not in line
    assert shlex.split(line)[-1] == "exec </dev/null; cd '/srv/x y' && export 'A=b c' && echo hi"


def test_sudo_reads_the_password_and_the_command_reads_nothing(tmp_path):
    (tmp_path / "d").mkdir()
    arguments = {"_sudo": True, "_env": {"GREETING": "hello there"}, "_chdir": str(tmp_path / "d")}
    ran = _run(tmp_path, 'echo "$GREETING"; pwd; cat; echo read=$?', arguments, PASSWORD + "\nleft over\n")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["hello there", str(tmp_path / "d"), "read=0"]  # cat read nothing


def test_a_directory_that_cannot_be_entered_stops_the_command(tmp_path):
    ran = _run(tmp_path, "echo ran", {"_sudo": True, "_chdir": str(tmp_path / "none")}, PASSWORD + "\n")
    assert ran.returncode != 0 and "ran" not in ran.stdout


def _connector(password):
    return SimpleNamespace(host=SimpleNamespace(name="mini", connector_data={"prompted_sudo_password": password}))


@pytest.mark.parametrize(
    "arguments, kept",
    [
        ({"_sudo": True}, "kept"),
        ({"_sudo": True, "_sudo_password": "own"}, "own"),
        ({"_sudo": False}, None),
    ],
)
def test_which_commands_get_the_password_on_their_input(arguments, kept):
    assert sudo.password_for(_connector("kept"), arguments) == kept
    assert sudo.password_for(_connector(None), {"_sudo": True}) is None  # no password: pyinfra's sudo -n


@pytest.mark.parametrize(
    "other",
    [{"_stdin": "data"}, {"_get_pty": True}, {"_su_user": "x"}, {"_use_sudo_login": True}, {"_shell_executable": None}],
)
def test_a_command_that_cannot_get_it_on_its_input_is_refused_not_put_in_a_command_line(other):
    with pytest.raises(Exception, match="mini: a command run through sudo with .* cannot get the sudo password"):
        sudo.password_for(_connector("kept"), {"_sudo": True, **other})


@pytest.mark.parametrize("bad", ["two\nlines", "cr\rhere", "nul\0"])
def test_a_password_sudo_cannot_read_as_one_line_is_refused(bad):
    with pytest.raises(Exception, match="mini: the sudo password holds a line break or NUL"):
        sudo.password_for(_connector(bad), {"_sudo": True})


def test_the_connector_sends_the_password_as_input_and_pyinfras_askpass_is_refused(monkeypatch):
    from pyinfra.connectors import util as connector_util

    calls = []

    def recorder(self, command, print_output=False, print_input=False, **arguments):
        calls.append((str(command), arguments))
        return True, None

    monkeypatch.setattr(SSHConnector, "run_shell_command", recorder)
    monkeypatch.setattr(
        connector_util, "_ensure_sudo_askpass_set_for_host", connector_util._ensure_sudo_askpass_set_for_host
    )
    sudo.install()
    sudo.install()
    connector = _connector(PASSWORD)
    SSHConnector.run_shell_command(connector, StringCommand("id -un"), _sudo=True, _sudo_user="root", _timeout=5)
    SSHConnector.run_shell_command(connector, StringCommand("cat"), _stdin="data")  # no sudo: pyinfra's
    (line, arguments), (other, other_arguments) = calls
    assert line.startswith("sudo -H -S -k -p '' -u root sh -c") and PASSWORD not in line
    assert arguments == {"_sudo": False, "_shell_executable": None, "_stdin": PASSWORD, "_timeout": 5}
    assert other == "cat" and other_arguments == {"_stdin": "data"}
    host = SimpleNamespace(name="mini", connector_data={}, get_temp_dir_config=lambda: "/tmp")
    with pytest.raises(Exception, match="mini: pyinfra's sudo askpass helper would put the sudo password in a command"):
        connector_util.make_unix_command_for_host(None, host, StringCommand("true"), _sudo=True, _sudo_password="pw")


def test_the_sudo_batch_is_read_with_the_login_users_only_with_a_password_from_the_environment(monkeypatch, tmp_path):
    from tasks import access

    for name in access.password_variables("mini"):
        monkeypatch.delenv(name, raising=False)
    mini = SimpleNamespace(name="mini", data={})
    login = {"_sudo": False, "_shell_executable": "sh"}
    way = {"_sudo": True, "_sudo_user": None, "_env": {}, "_chdir": None, "_shell_executable": "sh"}
    wrap, stdin = access.inline_sudo(mini, login, way)  # no password known: sudo -n, or nothing
    assert stdin == "" and "else" not in wrap("id -un")
    assert wrap("id -un").startswith("if sudo -n true </dev/null 2>/dev/null; then sudo -H -n sh -c ")
    monkeypatch.setenv("LLMLAB_SUDO_PASSWORD", PASSWORD)
    wrap, stdin = access.inline_sudo(mini, login, way)
    assert stdin == PASSWORD
    line = wrap("id -un")
    assert line.startswith("if sudo -n true </dev/null 2>/dev/null; then sudo -H -n sh -c ") and PASSWORD not in line
    assert "else sudo -H -S -k -p '' sh -c " in line
    for fake, needs in (("needs", True), ("free", False)):
        # sudo where `sudo -n true` fails (the password is read) and where it succeeds (nothing reads it)
        (tmp_path / fake).mkdir()
        stub = tmp_path / fake / "sudo"
        if needs:  # `sudo -n ...` fails
            check = 'if [ "$1" = -n ] || [ "$2" = -n ]; then exit 1; fi'
        else:  # `sudo -n true` succeeds, `sudo -H -n sh -c ...` runs without reading anything
            check = 'if [ "$1" = -n ]; then exit 0; fi; if [ "$2" = -n ]; then shift 2; exec "$@"; fi'

        stub.write_text(
            "#!/bin/sh\n" + check + '\nIFS= read -r pw; [ "$pw" = "$EXPECTED" ] || exit 9\n'
            'while [ $# -gt 0 ]; do case "$1" in -H|-S|-k|-n) shift;; -p) shift 2;; *) break;; esac; done\n'
            'echo "password read"; exec "$@"\n'
        )
        stub.chmod(0o755)
        env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "EXPECTED": PASSWORD}
        done = subprocess.run(
            ["sh", "-c", wrap("id -un; cat")], input=PASSWORD + "\n", capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        assert ("password read" in done.stdout) is needs and PASSWORD not in done.stdout
    assert access.inline_sudo(mini, {**login, "_get_pty": True}, way) is None
    assert access.inline_sudo(mini, login, {**way, "_sudo": False}) is None
    assert access.inline_sudo(mini, login, {**way, "_stdin": "x"}) is None
    assert access.inline_sudo(SimpleNamespace(name="mini", data={"_sudo_password": "own"}), login, way) is None
    monkeypatch.setenv("LLMLAB_SUDO_PASSWORD_MINI", "two\nlines")
    assert access.inline_sudo(mini, login, way) is None  # refused later, naming its variable
    with pytest.raises(
        Exception, match="mini: LLMLAB_SUDO_PASSWORD_MINI holds a line break or NUL; nothing was changed"
    ):
        access.from_environment("mini")
