"""Reading the operator's input files on the control machine: the inventory and group data, as
pyinfra's own loader reads them (each value with the file that set it), and the secrets file.

No host is contacted. The values are pyinfra's by construction: make_inventory() of pyinfra's
CLI builds the inventory (host data, inline group data, group data files of ./group_data, the
inventory's own group_data/ and each --group-data path), and each host's value of a key is the
one its HostData gives (--data and --user/--port, then host data, then its groups' data in the
order of host.groups, the last group winning, then "all"). What this module adds is only where
each value was set, for the error messages.
"""

from __future__ import annotations

import ast
import functools
import getpass
import os
import pickle
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.schema import DataError


@dataclass(frozen=True)
class LoadedHost:
    name: str
    groups: tuple[str, ...]  # host.groups as pyinfra has them (not "all")
    values: dict[str, Any]  # host.data as pyinfra layers it
    sources: dict[str, str]  # key -> where the value was set
    targeted: bool = True  # in the run's --limit (and not --exclude)


@functools.cache
def _bound_names(path: str) -> frozenset[str]:
    """The names a data file binds at module level (what pyinfra keeps of it, imports aside)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    except (OSError, SyntaxError):
        return frozenset()
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
                continue
            for child in ast.iter_child_nodes(node):  # the bodies of if, for, with, try
                if isinstance(child, ast.stmt):
                    visit([child])
                elif isinstance(child, ast.excepthandler):
                    visit(child.body)

    visit(tree.body)
    return frozenset(names)


def group_data_paths(inventory_file: Path, cwd: Path, extra: list[Path]) -> list[Path]:
    """Where pyinfra's make_inventory() reads group data, in its order (later ones win)."""
    folders = [cwd / "group_data"]
    own = str(inventory_file.resolve().parent)
    if own != str(cwd):
        folders.append(Path(own) / "group_data")
    return folders + list(extra)


def host_data_source(inventory_file: Path, name: str) -> str:
    """How an error names a host's own data in the inventory file."""
    return f"{inventory_file} (host {name})"


def _group_file(paths: list[Path], group: str, key: str) -> str | None:
    """The group data file that set key for group (the last one pyinfra read that binds it)."""
    for path in reversed(paths):
        candidate = path if path.is_file() else path / f"{group}.py"
        if candidate.is_file() and candidate.stem == group and key in _bound_names(str(candidate)):
            return str(candidate)
    return None


def _load_error(exc: BaseException) -> DataError:
    """A data file that cannot be loaded, named (pyinfra's loader wraps what user code raises
    with the file it ran)."""
    inner = getattr(exc, "exception", exc)
    where = getattr(inner, "filename", None) if isinstance(inner, SyntaxError) else getattr(exc, "filename", None)
    return DataError(f"{where or 'inventory'}: cannot load: {inner}")


def load_inventory(
    inventory_file: Path,
    cwd: Path,
    extra_group_data: list[Path] = (),
    overrides: dict[str, Any] | None = None,
    override_sources: dict[str, str] | None = None,
    limit=None,
) -> list[LoadedHost]:
    """The hosts of an inventory file as `pyinfra INVENTORY ...` run in cwd with these --group-data
    paths and override data loads them. limit(inventory) -> the hosts the run targets (pyinfra's
    --limit and --exclude; only inside pyinfra's command line).

    Inside pyinfra's command line its loader runs here. Elsewhere (the tests, the bench,
    tasks.docs) it runs in a child process: importing pyinfra's CLI monkey-patches the whole
    process for gevent, which is pyinfra's to do in its own process, not in theirs."""
    args = (
        Path(inventory_file),
        Path(cwd),
        [Path(p) for p in extra_group_data],
        dict(overrides or {}),
        dict(override_sources or {}),
    )
    if "pyinfra_cli" in sys.modules:
        return _load(*args, limit=limit)
    if limit is not None:
        raise ValueError("a limit is pyinfra's command line's: load_inventory() runs there")
    child = subprocess.run(
        [sys.executable, "-c", "from tasks import sources; sources._child()"],
        input=pickle.dumps(args),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        timeout=120,
    )
    if child.returncode != 0:
        raise RuntimeError(f"pyinfra's inventory loader failed: {child.stderr.decode(errors='replace')[-2000:]}")
    kind, result = pickle.loads(child.stdout)
    if kind == "error":
        raise DataError(result)
    return result


def _child() -> None:
    """load_inventory() in a process of its own: its arguments pickled on stdin, ("hosts", the
    hosts) or ("error", a DataError's message) pickled on stdout."""
    import pyinfra_cli  # noqa: F401  (pyinfra's gevent patch, first, as in pyinfra's own process)

    args = pickle.loads(sys.stdin.buffer.read())
    try:
        result = ("hosts", _load(*args))
    except DataError as exc:
        result = ("error", str(exc))
    sys.stdout.buffer.write(pickle.dumps(result))


def _load(inventory_file, cwd, extra_group_data, overrides, override_sources, limit=None) -> list[LoadedHost]:
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    override_sources = {k: override_sources.get(k, f"command line (--data {k})") for k in overrides}
    paths = group_data_paths(inventory_file, cwd, extra_group_data)
    load = functools.partial(
        make_inventory, str(inventory_file), overrides, str(cwd), [str(p) for p in extra_group_data]
    )
    try:
        if ctx_state.isset():
            inventory = load()
        else:  # a process of its own: pyinfra's loader reads the state's current file name
            with ctx_state.use(State()):
                inventory = load()
    except Exception as exc:  # a syntax or name error in the inventory or a data file
        raise _load_error(exc) from None

    def where(h, key: str) -> str:
        if key in overrides:
            return override_sources[key]
        if key in inventory.get_host_data(h.name):
            return host_data_source(inventory_file, h.name)
        for group in [*reversed(h.groups), "all"]:
            data = inventory.get_data() if group == "all" else inventory.get_group_data(group)
            if key in data:
                return _group_file(paths, group, key) or f"{inventory_file} (group {group})"
        return str(inventory_file)

    targets = {h.name for h in (limit(inventory) if limit else inventory)}
    hosts = []
    for h in inventory:
        values = h.data.dict()
        sources = {key: where(h, key) for key in values}
        hosts.append(LoadedHost(h.name, tuple(h.groups), values, sources, h.name in targets))
    return hosts


def load_secrets(names: list[str], secrets_file: Path, source: str) -> dict[str, str]:
    """Secrets from the operator's environment first, then the untracked secrets file (NAME=value,
    the value as written, or wrapped whole in one pair of quotes)."""
    from_file: dict[str, str] = {}
    if secrets_file.is_file():
        for number, line in enumerate(secrets_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise DataError(f"{secrets_file}:{number}: expected NAME=value")
            name, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]  # one pair of quotes around the whole value; inner ones are kept
            from_file[name.strip()] = value
    secrets = {}
    for name in names:
        value = os.environ.get(name) or from_file.get(name)
        if not value:
            raise DataError(f"{source}: secret {name} is not set: export it or add it to {secrets_file}")
        if "\n" in value or "\r" in value:
            raise DataError(f"{source}: secret {name} holds a line break")
        secrets[name] = value
    return secrets


@dataclass(frozen=True)
class SshDestination:
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...]


def ssh_destination(name: str, data: dict[str, Any]) -> SshDestination:
    """Where SSH goes for a host and as whom, resolved as pyinfra's SSH connector resolves it
    (pyinfra/connectors/sshuserclient/client.py, parse_config, then connect): the host data's
    ssh_hostname (else the host name) looked up in the ssh config (host data ssh_config_file, else
    ~/.ssh/config), whose HostName, User, Port and IdentityFile apply; then the host data's
    ssh_user, ssh_port and ssh_key (--user, --port and --key among them) win over the config's;
    else the local user and port 22."""
    import paramiko

    alias = str(data.get("ssh_hostname") or name)
    config_file = Path(os.path.expanduser(data.get("ssh_config_file") or "~/.ssh/config"))
    found: dict[str, Any] = {}
    if config_file.is_file():
        config = paramiko.SSHConfig()
        with open(config_file, encoding="utf-8") as handle:
            config.parse(handle)
        found = config.lookup(alias)
    keys = [data["ssh_key"]] if data.get("ssh_key") else list(found.get("identityfile", []))
    return SshDestination(
        hostname=found.get("hostname", alias),
        user=data.get("ssh_user") or found.get("user") or getpass.getuser(),
        port=int(data.get("ssh_port") or found.get("port") or 22),
        identity_files=tuple(os.path.expanduser(k) for k in keys),
    )


def check_resolves(destination: SshDestination, where: str) -> None:
    """An SSH destination whose name has no address is refused before anything connects."""
    try:
        socket.getaddrinfo(destination.hostname, destination.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DataError(
            f"{where}: SSH goes to {destination.hostname!r}, which resolves to no address ({exc.strerror or exc}): "
            f"add a Host entry with its HostName to ~/.ssh/config, or set ssh_hostname"
        ) from None
