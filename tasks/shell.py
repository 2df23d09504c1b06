"""Remote commands joined: an operation's consecutive shell commands run as one remote command,
stopping at the first that fails.

pyinfra runs each command an operation yields on its own: one SSH channel each and, on a host
reached through sudo with a password, one sudo and its password check each (PAM hashing the
password: about 50 ms on the lab's Ubuntu, yescrypt). A from-scratch deploy of the mini ran 78
such commands, most of them a few in a row within one operation. Joined, an operation that runs
several commands as root pays for one. What runs, and in which order, does not change: each
command is a group of its own (`{ ...; }`, in the same shell), the next one runs only if it
succeeded, and the joined command fails with the status of the one that failed. A command
joined here must not end the shell on success (no `exit 0`), which would skip the next ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import wraps

from pyinfra.api.command import StringCommand


def _command(command) -> StringCommand:
    return command if isinstance(command, StringCommand) else StringCommand(str(command).strip())


class Joined(StringCommand):
    """Several shell commands run as one (see one()); `parts` are the commands, in order."""

    def __init__(self, parts: list[StringCommand]):
        bits: list = []
        for part in parts:
            bits += ["&&", "{", part, "\n}"] if bits else ["{", part, "\n}"]
        super().__init__(*bits, **parts[0].connector_arguments)
        self.parts = parts


def one(commands: Iterable) -> StringCommand:
    """Shell commands (strings, or StringCommands of the same connector arguments: sudo or not)
    as one, each run only if the one before it succeeded. A single command is returned as it is."""
    parts = [_command(c) for c in commands]
    return parts[0] if len(parts) == 1 else Joined(parts)


def joined(commands: Iterable) -> Iterator:
    """An operation's commands with each run of consecutive shell commands of the same connector
    arguments (sudo or not) joined into one (see one()); uploads and function commands stay
    where they were, between them."""
    run: list[StringCommand] = []
    for command in commands:
        if isinstance(command, str):
            command = _command(command)
        if isinstance(command, StringCommand) and (
            not run or command.connector_arguments == run[0].connector_arguments
        ):
            run.append(command)
            continue
        if run:
            yield one(run)
            run = []
        if isinstance(command, StringCommand):
            run.append(command)
        else:
            yield command
    if run:
        yield one(run)


def joined_commands(generator_function):
    """Decorator for an operation's function (under pyinfra's @operation()): its commands joined()."""

    @wraps(generator_function)
    def wrapper(*args, **kwargs):
        yield from joined(generator_function(*args, **kwargs))

    return wrapper
