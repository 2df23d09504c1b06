"""How the sudo password reaches sudo on an SSH host: on sudo's standard input (`sudo -S`), never
in a command line or a file.

pyinfra's own way writes a helper script to the host's /tmp before the first sudo'd command and
removes it at the end (two more remote commands per host), and runs every sudo'd command as
`env SUDO_ASKPASS=... PYINFRA_SUDO_PASSWORD=<password> sudo -A ...`: for that moment the
password is in the command line of the login shell and of `env` on the host, where any local
user can read it. Here the command is `sudo -H -S -k -p '' [-u user] sh -c 'exec </dev/null; ...'`
and the password is the command's input: sudo reads that one line (byte by byte, leaving the
rest) and the command itself reads nothing (its input is /dev/null, as under pyinfra, where it is
closed at once), so a password sudo did not need is read by no one.

`install()` wraps pyinfra's SSHConnector.run_shell_command (config.py calls it, as it calls
tasks.transport). A command whose sudo this cannot stand for (one with input of its own, a pty,
su or doas, no shell) goes through pyinfra's own path unchanged. The password is where pyinfra
keeps one it asked for (tasks/access.py puts it there).
"""

from __future__ import annotations

import functools

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.util import make_unix_command

_MARK = "_llmlab_sudo_stdin"
# Arguments that mean another way of running the command than this module's.
OTHER_WAYS = ("_stdin", "_get_pty", "_su_user", "_doas", "_dzdo")


def handles(arguments: dict) -> bool:
    """Whether a command run with these arguments goes through sudo the way of this module."""
    if not arguments.get("_sudo") or any(arguments.get(name) for name in OTHER_WAYS):
        return False
    return arguments.get("_shell_executable", "sh") is not None


def password_for(connector, arguments: dict) -> str | None:
    """The password sudo gets for this command (pyinfra's choice: the command's own, else the
    one kept for the host), or None when this module leaves the command to pyinfra."""
    if not handles(arguments):
        return None
    password = arguments.get("_sudo_password") or connector.host.connector_data.get("prompted_sudo_password")
    if not password or "\n" in password:
        return None
    return password


def sudo_command(command, arguments: dict) -> StringCommand:
    """The command as sudo -S runs it: pyinfra's own shape (sudo's options, then the shell with
    the command's directory and environment), with the command's input closed."""
    inner = make_unix_command(
        command,
        _env=arguments.get("_env"),
        _chdir=arguments.get("_chdir"),
        _shell_executable=None,
    )
    bits: list = ["sudo", "-H", "-S", "-k", "-p", "''"]
    if arguments.get("_use_sudo_login"):
        bits.append("-i")
    if arguments.get("_preserve_sudo_env"):
        bits.append("-E")
    if arguments.get("_sudo_user"):
        bits.extend(("-u", QuoteString(arguments["_sudo_user"])))
    shell = arguments.get("_shell_executable") or "sh"
    bits.extend([shell, "-c", QuoteString(StringCommand("exec </dev/null;", inner))])
    return StringCommand(*bits)


def install() -> None:
    """Make pyinfra's SSH connector hand the sudo password on standard input. Safe to call more
    than once."""
    run = SSHConnector.run_shell_command
    if getattr(run, _MARK, False):
        return

    @functools.wraps(run)
    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        password = password_for(self, arguments)
        if password is None:
            return run(self, command, print_output=print_output, print_input=print_input, **arguments)
        rest = {
            k: v
            for k, v in arguments.items()
            if k not in ("_env", "_chdir", "_use_sudo_login", "_preserve_sudo_env", "_sudo_user", "_sudo_password")
        }
        rest.update(_sudo=False, _shell_executable=None, _stdin=password)
        return run(self, sudo_command(command, arguments), print_output=print_output, print_input=print_input, **rest)

    setattr(run_shell_command, _MARK, True)
    SSHConnector.run_shell_command = run_shell_command
