"""The facts read together (tasks/factcache.py): a batch answers each command as the command run
alone would, the learned list is used and rewritten, and nothing is answered from memory once an
operation has run a command on the host."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from types import SimpleNamespace

from pyinfra.api.command import StringCommand
from pyinfra.connectors.util import CommandOutput, OutputLine

from tasks import factcache

# Commands whose output a batch must keep exactly: no line break at the end, blank lines, a
# marker-like text, standard error with and without a line break, failures, nothing at all.
TRICKY = [
    "echo one; echo two",
    "printf 'no line break'",
    "printf 'a\\n\\n'",
    "true",
    "echo out; echo err >&2; exit 3",
    "printf 'err without a break' >&2",
    "echo '@@llmlab-fact 7'; echo '@@llmlab-fact-rc 9'; echo '@@llmlab-fact-x 1'",
    "printf '\\n\\nx\\n'",
    "if [ -f /nonexistent-file ]; then echo held; fi",
    "cat <<'EOF'\nhere\ndoc\nEOF",
]


def alone(command: str, stdin: str | None = None) -> tuple[int, list[str], list[str]]:
    """What pyinfra reads from the command run on its own: exit status, stdout and stderr lines
    (its input: stdin and a line break, as pyinfra writes it, or none)."""
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, input=f"{stdin}\n" if stdin else "")
    return done.returncode, done.stdout.splitlines(), done.stderr.splitlines()


def test_a_batch_answers_each_command_as_it_would_answer_alone():
    done = subprocess.run(["sh", "-c", factcache.batch_command(TRICKY, "t1")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    answers = factcache.parse_batch(done.stdout.splitlines(), len(TRICKY), "t1")
    assert answers == {i: alone(c) for i, c in enumerate(TRICKY)}


def test_a_cut_off_batch_answers_only_the_commands_it_finished():
    done = subprocess.run(["sh", "-c", factcache.batch_command(TRICKY[:3], "t1")], capture_output=True, text=True)
    lines = done.stdout.splitlines()
    cut = lines[: lines.index("@@llmlab-fact-t1 2") + 1]
    assert sorted(factcache.parse_batch(cut, 3, "t1")) == [0, 1]


class Connector:
    """A host's connector that runs each command here, with sh, and counts them."""

    def __init__(self):
        self.commands: list[tuple[str, dict]] = []

    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        raw = command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)
        self.commands.append((raw, arguments))
        code, out, err = alone(raw, arguments.get("_stdin"))
        lines = [OutputLine("stdout", x) for x in out] + [OutputLine("stderr", x) for x in err]
        return code == 0, CommandOutput(lines)


def host_with(tmp_path, monkeypatch, learned: dict | None = None):
    monkeypatch.setenv("LLMLAB_FACT_CACHE", str(tmp_path / "facts"))
    state = SimpleNamespace(callback_handlers=[], add_callback_handler=lambda h: state.callback_handlers.append(h))
    host = SimpleNamespace(name="mini", data={}, connector=Connector(), executing_op_hash=None, state=state)
    caches = factcache.FactCaches(("s3cret",))
    if learned is not None:
        path = factcache._file_for(tmp_path / "facts", host)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"format": factcache.FORMAT, "host": "mini", "commands": learned}))
    cache = caches.of(host)
    return host, cache, caches


def fact(host, cache, command: str, **arguments):
    cache.in_fact += 1
    try:
        ok, output = host.connector.run_shell_command(StringCommand(command), **arguments)
    finally:
        cache.in_fact -= 1
    return ok, output.stdout_lines, output.stderr_lines


LOGIN = factcache._arguments_key({"_sudo": False})
SUDO = factcache._arguments_key({"_sudo": True})


def test_the_learned_commands_are_read_in_one_command_for_each_way_of_running_them(tmp_path, monkeypatch):
    host, cache, caches = host_with(tmp_path, monkeypatch, {LOGIN: ["echo a", "echo b"], SUDO: ["id -u"]})
    real = host.connector.run_shell_command.args[0].__self__
    assert fact(host, cache, "echo a", _sudo=False) == (True, ["a"], [])
    assert fact(host, cache, "echo b", _sudo=False) == (True, ["b"], [])
    assert fact(host, cache, "id -u", _sudo=True, _sudo_password="pw")[1] == [str(__import__("os").getuid())]
    assert len(real.commands) == 2  # one for the login user's, one for sudo's
    assert real.commands[1][1]["_sudo_password"] == "pw"  # the batch runs with the live arguments
    assert fact(host, cache, "echo new", _sudo=False) == (True, ["new"], [])  # not learned: asked alone
    assert len(real.commands) == 3
    caches.operation_end(SimpleNamespace(get_op_order=lambda: ["op"]), "op")
    written = json.loads(next((tmp_path / "facts").glob("mini-*.json")).read_text())["commands"]
    assert written == {LOGIN: ["echo a", "echo b", "echo new"], SUDO: ["id -u"]}
    assert "pw" not in json.dumps(written)


def test_nothing_is_answered_from_memory_after_an_operation_ran_a_command(tmp_path, monkeypatch):
    host, cache, _ = host_with(tmp_path, monkeypatch, {LOGIN: ["cat marker 2>/dev/null || echo none"]})
    marker = tmp_path / "marker"
    monkeypatch.chdir(tmp_path)
    assert fact(host, cache, "cat marker 2>/dev/null || echo none", _sudo=False)[1] == ["none"]
    host.connector.run_shell_command(StringCommand("echo x > marker"))  # between operations: the lock's
    assert fact(host, cache, "cat marker 2>/dev/null || echo none", _sudo=False)[1] == ["none"]  # from the batch
    host.executing_op_hash = "op"
    host.connector.run_shell_command(StringCommand("echo changed > marker"))  # an operation's command
    assert marker.read_text() == "changed\n"
    assert fact(host, cache, "cat marker 2>/dev/null || echo none", _sudo=False)[1] == ["changed"]


def test_a_list_holding_a_secret_of_the_run_is_never_written(tmp_path, monkeypatch):
    host, cache, caches = host_with(tmp_path, monkeypatch)
    fact(host, cache, "echo s3cret", _sudo=False)
    caches.operation_end(SimpleNamespace(get_op_order=lambda: ["op"]), "op")
    assert not list((tmp_path / "facts").glob("*.json"))


def test_switched_off_nothing_is_wrapped(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_FACT_CACHE", "off")
    host = SimpleNamespace(name="mini", data={}, connector=Connector(), executing_op_hash=None)
    assert factcache.FactCaches(()).of(host) is None
    assert not hasattr(host.connector.run_shell_command, "args")


def test_another_way_runs_after_the_login_users_in_the_same_command(tmp_path, monkeypatch):
    """With a way to run the sudo batch from the login shell (access.inline_sudo's shape), the
    first batch carries it: one command for both, the login user's part reading nothing and the
    other its own input; a part that does not answer leaves its facts to be asked alone."""
    seen = []

    def inline(host, login, arguments):
        seen.append((login, arguments))
        if not arguments.get("_sudo"):
            return None
        # As sudo -S does: the first line of the input, then the batch (here: in a plain sh).
        return (lambda batch: 'read -r pw; [ "${#pw}" = 5 ] && sh -c ' + shlex.quote(batch)), "right"

    learned = {LOGIN: ["echo a", "cat; echo read=$?"], SUDO: ["echo root", "id -u"]}
    host, cache, _ = host_with(tmp_path, monkeypatch, learned)
    cache.inline = inline
    real = host.connector.run_shell_command.args[0].__self__
    assert fact(host, cache, "echo a", _sudo=False) == (True, ["a"], [])
    assert fact(host, cache, "cat; echo read=$?", _sudo=False)[1] == ["read=0"]  # nothing to read
    assert fact(host, cache, "echo root", _sudo=True) == (True, ["root"], [])
    assert fact(host, cache, "id -u", _sudo=True)[1] == [str(os.getuid())]
    assert len(real.commands) == 1 and real.commands[0][1]["_stdin"] == "right"
    assert "right" not in real.commands[0][0]  # the input is not in the command line
    assert seen == [({"_sudo": False}, json.loads(SUDO))]

    host, cache, _ = host_with(tmp_path / "refused", monkeypatch, learned)
    cache.inline = lambda host, login, arguments: ((lambda batch: "read -r pw; false"), "wrong")
    real = host.connector.run_shell_command.args[0].__self__
    assert fact(host, cache, "echo a", _sudo=False) == (True, ["a"], [])
    assert fact(host, cache, "echo root", _sudo=True) == (True, ["root"], [])  # asked on its own
    assert len(real.commands) == 2


def test_a_part_given_no_password_that_does_not_answer_leaves_the_batch_to_its_first_fact(tmp_path, monkeypatch):
    """No password known before the host is read, and sudo asks for one: the sudo part answers
    nothing, and the first fact asked through sudo sends the sudo batch (not each fact alone)."""
    learned = {LOGIN: ["echo a"], SUDO: ["echo root", "echo two"]}
    host, cache, _ = host_with(tmp_path, monkeypatch, learned)
    cache.inline = lambda host, login, arguments: ((lambda batch: "false"), "")
    real = host.connector.run_shell_command.args[0].__self__
    assert fact(host, cache, "echo a", _sudo=False) == (True, ["a"], [])
    assert "_stdin" not in real.commands[0][1]
    assert fact(host, cache, "echo root", _sudo=True) == (True, ["root"], [])
    assert fact(host, cache, "echo two", _sudo=True) == (True, ["two"], [])
    assert len(real.commands) == 2  # the first command, then the sudo batch
