"""One round trip for the facts a run reads: the fact commands the previous run of the same
command asked of a host are sent together, one remote command for each way of running them (as
the login user, through sudo), and pyinfra's facts are answered from those outputs while nothing
on the host has changed.

pyinfra asks every fact with a remote command of its own, each a round trip (and through sudo,
a password check): a converged deploy asked the mini 32 questions. Which facts a deploy asks is
only known while it runs (operations ask as pyinfra executes them), so the list is learned: each
run writes down, per host, the commands its facts ran (no output, no secret; refused if one holds
a secret of the run) in the control machine's cache (`$LLMLAB_FACT_CACHE`, by default
~/.cache/llmlab/facts; `off` switches this off). A fact the list lacks is asked as before, and
learned. The answers are pyinfra's own: the same command, with the same arguments, its exit
status, standard output and error kept apart, processed by the fact as if it had run alone.

Nothing is answered from memory once the host may differ from what was read: the first command
an operation runs on the host (a change) ends it for that host for the rest of the run. The
deploy lock's commands, run between operations, change nothing a fact reads. A value read
together is read at the start of the run instead of when the fact is asked, the moment a plan
is made from anyway.

Where another way of running facts can be run from the login shell (through sudo: tasks/access.py
says when and how), its batch goes in the same remote command as the login user's, running
alongside it on the host: one round trip for every fact of a converged run. The login user's
commands read nothing (their input is /dev/null), the other way gets the command's input (sudo's
password, when one is known); a part given a password that does not answer (a refused one)
leaves its facts to be asked on their own, one given none leaves its batch to its first fact.

The hooks: `install()` wraps pyinfra's Host.get_fact (config.py calls it, as it calls
tasks.transport) so that the commands a fact runs are known as a fact's, and takes the way other
batches are run from the login shell; the first fact asked of a host wraps that host's connector
(its own instance, not the class). The run's FactCaches live in its run state (tasks/run.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from pyinfra.api.command import StringCommand
from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback
from pyinfra.connectors.util import CommandOutput, OutputLine

_MARK = "_llmlab_factcache"
FORMAT = 1
SECRET_ARGUMENTS = ("_sudo_password", "_su_password")
SEP = "@@llmlab-fact"
# How a batch of another way of running commands runs from the login shell (see install()).
Inline = Callable[[Host, dict, dict], "tuple[Callable[[str], str], str] | None"]
_inline: list[Inline] = []


def cache_dir() -> Path | None:
    """Where the learned lists live (None: switched off)."""
    value = os.environ.get("LLMLAB_FACT_CACHE", "")
    if value == "off":
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmlab" / "facts"


def _arguments_key(arguments: dict) -> str:
    """How a fact command is run (sudo or not, as whom, its environment...), without the
    passwords pyinfra passes along."""
    return json.dumps({k: v for k, v in arguments.items() if k not in SECRET_ARGUMENTS}, sort_keys=True, default=str)


def _raw(command) -> str:
    return command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)


def batch_command(commands: list[str], tag: str) -> str:
    """Shell: each command in a subshell of its own, its standard output after a marker line, then
    its exit status and its standard error, each line marked (sed runs only for a command that
    wrote any: most write none, and processes are what a batch costs). Every marker starts a
    line of its own, whether or not the output before it ended its last line (parse_batch takes
    the one line break a marker adds back off). tag: this batch's own, in every marker, so that
    no command's output can pass for one."""
    sep = f"{SEP}-{tag}"
    parts = ["e=$(mktemp) || exit 1"]
    for i, command in enumerate(commands):
        parts.append(
            f"printf '\\n{sep} {i}\\n'; ( {command}\n) 2>\"$e\"; r=$?; printf '\\n{sep}-rc %s\\n' \"$r\"; "
            f'[ ! -s "$e" ] || sed \'s/^/{sep}-err /\' "$e"'
        )
    parts.append('rm -f "$e"')
    return "; ".join(parts)


def parse_batch(lines: list[str], count: int, tag: str) -> dict[int, tuple[int, list[str], list[str]]]:
    """batch_command's output: member -> (exit status, stdout lines, stderr lines), the lines as
    pyinfra reads them from a command of its own; a member whose output is not whole is left out."""
    sep = f"{SEP}-{tag}"
    found: dict[int, tuple[int, list[str], list[str]]] = {}
    current, out, err = None, [], []
    for line in lines:
        if line.startswith(f"{sep} ") and line[len(sep) + 1 :].isdigit():
            current, out, err = int(line[len(sep) + 1 :]), [], []
        elif current is None:
            continue
        elif line.startswith(f"{sep}-rc ") and current not in found:
            if out and out[-1] == "":
                out.pop()  # the line break the marker added
            found[current] = (int(line[len(sep) + 4 :]), out, err)
        elif current in found:
            if line.startswith(f"{sep}-err "):
                err.append(line[len(sep) + 5 :])
        else:
            out.append(line)
    return {i: v for i, v in found.items() if i < count}


class HostCache:
    """One host's learned fact commands, their answers read together, and what this run asked."""

    def __init__(self, host: Host, path: Path | None, secrets: tuple[str, ...], inline: Inline | None = None):
        self.host, self.path, self.secrets, self.inline = host, path, secrets, inline
        self.learned = self._load()  # arguments key -> [raw command, ...]
        self.answers: dict[tuple[str, str], tuple[int, list[str], list[str]]] = {}
        self.batched: set[str] = set()
        self.asked: dict[str, list[str]] = {}
        self.valid = True
        self.in_fact = 0
        self.depth = 0
        self.round_trips = 0
        self.served = 0

    def _load(self) -> dict[str, list[str]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if data.get("format") != FORMAT or not isinstance(data.get("commands"), dict):
            return {}
        return {k: [c for c in v if isinstance(c, str)] for k, v in data["commands"].items() if isinstance(v, list)}

    def save(self) -> None:
        """Write what this run asked, for the next run (only when it differs)."""
        if self.path is None or self.asked == self.learned:
            return
        text = json.dumps({"format": FORMAT, "host": self.host.name, "commands": self.asked}, indent=1, sort_keys=True)
        if any(s and s in text for s in self.secrets):
            return  # a fact command holding a secret of the run is never written down
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)

    def run(self, real, command, print_output=False, print_input=False, **arguments):
        """The host connector's run_shell_command, answering a fact's command from the batch."""
        if self.depth:  # pyinfra's own commands inside one (its sudo askpass file): as they are
            return real(command, print_output=print_output, print_input=print_input, **arguments)
        if not self.in_fact:
            if self.host.executing_op_hash is not None:
                self.valid = False  # an operation runs a command: the host may differ from now on
            return self._real(real, command, print_output, print_input, arguments)
        raw, key = _raw(command), _arguments_key(arguments)
        asked = self.asked.setdefault(key, [])
        if raw not in asked:
            asked.append(raw)
        if self.valid and key not in self.batched and raw in self.learned.get(key, []):
            self._batch(real, key, print_output, print_input, arguments)
        answer = self.answers.get((key, raw)) if self.valid else None
        if answer is None:
            return self._real(real, command, print_output, print_input, arguments)
        self.served += 1
        code, out, err = answer
        codes = arguments.get("_success_exit_codes") or [0]
        lines = [OutputLine("stdout", line) for line in out] + [OutputLine("stderr", line) for line in err]
        return code in codes, CommandOutput(lines)

    def _real(self, real, command, print_output, print_input, arguments):
        self.depth += 1
        self.round_trips += 1
        try:
            return real(command, print_output=print_output, print_input=print_input, **arguments)
        finally:
            self.depth -= 1

    def _inlined(self, key: str, arguments: dict) -> tuple[str, list[str], str, str, str] | None:
        """Another learned way's batch that can run alongside this one's in its command (the first
        batch, run as the login user): (its key, commands, tag, its command line, its input)."""
        if self.inline is None or self.batched:
            return None
        for other, commands in self.learned.items():
            if other == key or not commands:
                continue
            way = self.inline(self.host, arguments, json.loads(other))
            if way is not None:
                wrap, stdin = way
                tag = secrets.token_hex(6)
                return other, commands, tag, wrap(batch_command(commands, tag)), stdin
        return None

    def _batch(self, real, key: str, print_output, print_input, arguments) -> None:
        """Every learned command run as this one is, in one remote command (with another way's
        alongside, when that can be run from here: _inlined)."""
        inlined = self._inlined(key, arguments)
        self.batched.add(key)
        commands = self.learned[key]
        batch = dict(arguments)
        batch.pop("_success_exit_codes", None)
        tag = secrets.token_hex(6)
        command = batch_command(commands, tag)
        if inlined is not None:
            other, other_commands, other_tag, line, stdin = inlined
            # Batched even if its part does not answer when it was given a password: its facts
            # are then asked alone, and a refused password is not tried a third time by another
            # batch. A part given none that does not answer leaves the batch to its first fact.
            self.batched.add(other)
            # The other way's batch runs alongside, from the command's input (saved as fd 3: a
            # command put in the background reads /dev/null), into a file read out after both.
            command = (
                f'llmlab_t=$(mktemp) || exit 1; exec 3<&0; {{ {line}\n}} <&3 >"$llmlab_t" 2>/dev/null & '
                f'{{ {command}\n}} </dev/null 3<&-; wait; cat "$llmlab_t"; rm -f "$llmlab_t"; true'
            )
            if stdin:
                batch["_stdin"] = stdin
        ok, output = self._real(real, StringCommand(command), False, False, batch)
        if not ok:
            return  # each fact is then asked on its own, as pyinfra would
        for i, answer in parse_batch(output.stdout_lines, len(commands), tag).items():
            self.answers[(key, commands[i])] = answer
        if inlined is not None:
            answered = parse_batch(output.stdout_lines, len(other_commands), other_tag)
            for i, answer in answered.items():
                self.answers[(other, other_commands[i])] = answer
            if not answered and not stdin:
                self.batched.discard(other)


def _file_for(folder: Path, host: Host) -> Path:
    """The host's list: by its name, where it is reached, and the run's files (inventory and
    deploy, or the doctor's), so another command's or another host's list is never used."""
    files = " ".join(sorted(os.path.basename(a) for a in sys.argv[1:] if a.endswith(".py")))
    where = [host.name, str(host.data.get("ssh_hostname") or host.name), str(host.data.get("ssh_user") or "")]
    where += [str(host.data.get("ssh_port") or ""), files]
    digest = hashlib.sha256("\0".join(where).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in host.name)
    return folder / f"{safe}-{digest}.json"


class FactCaches(BaseStateCallback):
    """A run's HostCaches, by host name; each list is written when the run's last operation has
    ended (a run that fails or stops before keeps the previous list)."""

    def __init__(self, secrets: tuple[str, ...]):
        self.secrets = secrets
        self.hosts: dict[str, HostCache | None] = {}
        self._order: list | None = None

    def of(self, host: Host) -> HostCache | None:
        """The host's cache (made, and its connector wrapped, when first asked); None when
        switched off."""
        if host.name not in self.hosts:
            folder = cache_dir()
            if folder is None:
                self.hosts[host.name] = None
            else:
                cache = HostCache(host, _file_for(folder, host), self.secrets, _inline[0] if _inline else None)
                real = host.connector.run_shell_command
                host.connector.run_shell_command = functools.partial(cache.run, real)
                self.hosts[host.name] = cache
                if self not in host.state.callback_handlers:
                    host.state.add_callback_handler(self)
        return self.hosts[host.name]

    def operation_end(self, state, op_hash):
        if self._order is None:
            self._order = state.get_op_order()
        if self._order and op_hash == self._order[-1]:
            for cache in self.hosts.values():
                if cache is not None:
                    cache.save()

    def summary(self) -> str:
        """Per host: remote commands run, and fact answers served from a batch."""
        return "; ".join(
            f"{name}: {c.round_trips} remote commands, {c.served} facts answered from a batch"
            for name, c in sorted(self.hosts.items())
            if c is not None
        )


def install(caches_of: Callable[[object], FactCaches | None], inline: Inline | None = None) -> None:
    """Wrap pyinfra's Host.get_fact so that the commands a fact runs are known as a fact's;
    caches_of(pyinfra's State) gives the run's FactCaches (None outside a run of the toolkit).
    inline(host, arguments of the first batch, arguments of another learned way) gives how that
    way's batch runs alongside the first: (a function of the batch's shell giving the command
    line, its input), or None where it cannot. Safe to call more than once."""
    _inline[:] = [inline] if inline is not None else []
    get_fact = Host.get_fact
    if getattr(get_fact, _MARK, False):
        return

    @functools.wraps(get_fact)
    def get_fact_answered(self, *args, **kwargs):
        caches = caches_of(self.state) if self.connector is not None else None
        cache = caches.of(self) if caches is not None else None
        if cache is None:
            return get_fact(self, *args, **kwargs)
        cache.in_fact += 1
        try:
            return get_fact(self, *args, **kwargs)
        finally:
            cache.in_fact -= 1

    setattr(get_fact_answered, _MARK, True)
    Host.get_fact = get_fact_answered
