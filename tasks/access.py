"""How the deploy gets root on a host: SSH as the operator, then sudo. The sudo password comes
from the environment (LLMLAB_SUDO_PASSWORD_<HOST>, else LLMLAB_SUDO_PASSWORD) or is asked once
on the terminal; it is kept in this process only, never written to a file, a log, a command line
or pyinfra's output, --debug included (tasks/sudo.py hands it to sudo on its standard input)."""

from __future__ import annotations

import getpass
import os
import re
import sys

from pyinfra import host
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import DeployError, PyinfraError

from tasks import run, sudo
from tasks.facts import EffectiveUser
from tasks.hostos import System


def password_variables(host_name: str) -> list[str]:
    return [f"LLMLAB_SUDO_PASSWORD_{re.sub(r'[^A-Z0-9]', '_', host_name.upper())}", "LLMLAB_SUDO_PASSWORD"]


def from_environment(host_name: str) -> str | None:
    """The host's sudo password from the environment, None when it gives none."""
    for name in password_variables(host_name):
        if os.environ.get(name):
            if any(c in os.environ[name] for c in sudo.UNFIT):
                raise DeployError(f"{host_name}: {name} holds a line break or NUL; nothing was changed")
            return os.environ[name]
    return None


def inline_sudo(pyinfra_host, login: dict, arguments: dict):
    """How the facts this run reads through sudo (arguments) are read in the host's first command,
    alongside the login user's (login: a plain command's arguments; tasks/factcache.py), unless
    the host data gives sudo a password of its own. Where `sudo -n true` succeeds (the facts' own
    test of the host), sudo runs the batch asking for no password; elsewhere sudo gets the
    password from the environment (known before the host is read) on that command's input, or,
    when the environment gives none, the batch is left to the first fact asked through sudo (a
    typed password is asked once the host's login user is known)."""
    if login.get("_sudo") or not sudo.plain(login) or not sudo.handles(arguments):
        return None
    if pyinfra_host.data.get("_sudo_password"):
        return None
    try:
        password = from_environment(pyinfra_host.name)
    except DeployError:
        return None  # refused, naming its variable, where the deploy asks for it

    def wrap(batch: str) -> str:
        without = sudo.sudo_command(StringCommand(batch), arguments, password=False).get_raw_value()
        if password is None:  # sudo without a password, or (asked for later) nothing
            return f"if sudo -n true </dev/null 2>/dev/null; then {without} </dev/null; fi"
        with_password = sudo.sudo_command(StringCommand(batch), arguments).get_raw_value()
        return f"if sudo -n true </dev/null 2>/dev/null; then {without} </dev/null; else {with_password}; fi"

    return wrap, password or ""


def _password(system: System) -> str:
    found = from_environment(host.name)
    if found is not None:
        return found
    asked = run.current().passwords  # typed once per login user, for the other hosts
    if system.login in asked:
        return asked[system.login]
    if not sys.stdin.isatty():
        raise DeployError(
            f"{host.name}: sudo asks {system.login} for a password and none was given: export "
            f"{' or '.join(password_variables(host.name))}, or run from a terminal to be asked; nothing was changed"
        )
    asked[system.login] = getpass.getpass(f"sudo password for {system.login} on {host.name}: ")
    return asked[system.login]


def escalate(system: System) -> None:
    """Make every later command on this host run as root, and prove it works before any change."""
    if system.sudo == "root":
        # Logged in as root: nothing to escalate, and pyinfra's sudo upload path (copy from a
        # temporary file) must not be taken.
        host.data._sudo = False
        return
    if not host.data.get("_sudo"):
        raise DeployError(
            f"{host.name}: logs in as {system.login}, who is not root: set _sudo=True in its inventory "
            f"host data; nothing was changed"
        )
    if system.sudo == "absent":
        raise DeployError(f"{host.name}: {system.login} is not root and the host has no sudo; nothing was changed")
    if system.sudo == "password":
        # Where pyinfra keeps a password it prompted for itself (pyinfra/connectors/util.py), read
        # from there by tasks/sudo.py. Not host data: pyinfra's --debug prints every deploy's
        # arguments, host data defaults included.
        host.connector_data["prompted_sudo_password"] = _password(system)
    try:
        user = host.get_fact(EffectiveUser)
    except PyinfraError:
        user = ""
    if user != "root":
        raise DeployError(
            f"{host.name}: sudo as {system.login} did not give root (wrong password, or "
            f"{system.login} may not use sudo); nothing was changed"
        )
