"""How the sudo password reaches sudo on an SSH host: on sudo's standard input (`sudo -S`), never
in a command line or a file.

pyinfra's own way writes a helper script to the host's /tmp before the first sudo'd command and
removes it at the end (two more remote commands per host), and runs every sudo'd command as
`env SUDO_ASKPASS=... PYINFRA_SUDO_PASSWORD=<password> sudo -A ...`: for that moment the
password is in the command line of the login shell and of `env` on the host, where any local
user can read it. Here the command is `sudo -H -S -k -p '' [-u user] sh -c 'exec </dev/null; ...'`
and the password is the command's input: sudo reads that one line (byte by byte, leaving the
rest) and the command itself reads nothing (its input is /dev/null, as under pyinfra, where it is
closed at once). The password is sent only where sudo asks for one (tasks/access.py: where
`sudo -n true` fails, the check the host's facts make).

`install()` wraps pyinfra's SSHConnector.run_shell_command (config.py calls it, as it calls
tasks.transport) and refuses pyinfra's askpass helper: a sudo'd command with a password that
this cannot run (one with input of its own, a pty, su or doas, a login shell, no shell) stops
the run with an error naming why, instead of putting the password in a command line. The
password is where pyinfra keeps one it asked for (tasks/access.py puts it there).
"""

from __future__ import annotations

import functools

import pyinfra.connectors.util as connector_util
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors.ssh import SSHConnector

_MARK = "_llmlab_sudo_stdin"
# Arguments that mean another way of running the command than this module's.
OTHER_WAYS = ("_stdin", "_get_pty", "_su_user", "_doas", "_dzdo", "_use_sudo_login")
UNFIT = ("\n", "\r", "\0")  # sudo ends a password at a line break: the rest would be another try


def plain(arguments: dict) -> bool:
    """Whether a command run with these arguments is a plain one (no input of its own, no pty, no
    su or doas, no login shell, a shell to run it): the kind this module runs through sudo."""
    return not any(arguments.get(name) for name in OTHER_WAYS) and arguments.get("_shell_executable", "sh") is not None


def handles(arguments: dict) -> bool:
    """Whether a command run with these arguments goes through sudo the way of this module."""
    return bool(arguments.get("_sudo")) and plain(arguments)


def checked(password: str, where: str) -> str:
    """The password, refused (naming where it came from) when sudo cannot read it as one line."""
    if any(c in password for c in UNFIT):
        raise PyinfraError(f"{where}: the sudo password holds a line break or NUL; nothing was changed")
    return password


def password_for(connector, arguments: dict) -> str | None:
    """The password sudo gets for this command (pyinfra's choice: the command's own, else the
    one kept for the host), or None when it goes through sudo without one, or not at all."""
    if not arguments.get("_sudo"):
        return None
    password = arguments.get("_sudo_password") or connector.host.connector_data.get("prompted_sudo_password")
    if not password:
        return None
    if not plain(arguments):
        shown = ", ".join(n for n in OTHER_WAYS if arguments.get(n)) or "_shell_executable=None"
        raise PyinfraError(
            f"{connector.host.name}: a command run through sudo with {shown} cannot get the sudo password on "
            "its input, and pyinfra's own way puts it in a command line on the host; nothing was run"
        )
    return checked(password, connector.host.name)


def sudo_command(command, arguments: dict, password: bool = True) -> StringCommand:
    """The command as sudo runs it: pyinfra's own shape (sudo's options, then the shell with the
    command's directory and environment), with the command's input closed; sudo reads the password
    from its input (-S), or asks for none (-n) when password is False."""
    inner = connector_util.make_unix_command(
        command,
        _env=arguments.get("_env"),
        _chdir=arguments.get("_chdir"),
        _shell_executable=None,
    )
    bits: list = ["sudo", "-H", "-S", "-k", "-p", "''"] if password else ["sudo", "-H", "-n"]
    if arguments.get("_preserve_sudo_env"):
        bits.append("-E")
    if arguments.get("_sudo_user"):
        bits.extend(("-u", QuoteString(arguments["_sudo_user"])))
    shell = arguments.get("_shell_executable") or "sh"
    bits.extend([shell, "-c", QuoteString(StringCommand("exec </dev/null;", inner))])
    return StringCommand(*bits)


def _no_askpass(host, *args, **kwargs):
    raise PyinfraError(
        f"{host.name}: pyinfra's sudo askpass helper would put the sudo password in a command line on the "
        "host (tasks/sudo.py hands it on standard input to plain commands only); nothing was run"
    )


def install() -> None:
    """Make pyinfra's SSH connector hand the sudo password on standard input, and refuse
    pyinfra's askpass helper. Safe to call more than once."""
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
            if k not in ("_env", "_chdir", "_preserve_sudo_env", "_sudo_user", "_sudo_password")
        }
        rest.update(_sudo=False, _shell_executable=None, _stdin=password)
        return run(self, sudo_command(command, arguments), print_output=print_output, print_input=print_input, **rest)

    setattr(run_shell_command, _MARK, True)
    SSHConnector.run_shell_command = run_shell_command
    connector_util._ensure_sudo_askpass_set_for_host = _no_askpass
