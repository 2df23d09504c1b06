"""Reading the operator's input files on the control machine: the inventory (hosts, groups, host
data), group data folders layered per host the way pyinfra layers them, and the secrets file.

Pure: no host is contacted. pyinfra's rules, from pyinfra_cli/inventory.py and api/host.py:
every module-level list in the inventory file is a group; every host is also in the group named
after the inventory file and in "all"; group data is read from ./group_data, the inventory's own
group_data/ and each --group-data path, later folders overriding earlier ones for the same
group; a host's value is the first found in --data, its host data, its groups' data, all.py.
"""

from __future__ import annotations

import getpass
import os
import runpy
import socket
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.schema import DataError


@dataclass(frozen=True)
class InventoryHost:
    name: str
    groups: tuple[str, ...]  # the inventory's groups this host is in (not "all")
    data: dict[str, Any] = field(default_factory=dict)  # host data from the inventory file


@dataclass
class Layer:
    """One group data file (or the command line): its values and where they came from."""

    where: str
    group: str  # "all", a group name, or "" for the command line (--data)
    values: dict[str, Any]


def _public_values(namespace: dict[str, Any]) -> dict[str, Any]:
    """A data file's data: what it assigns, without imports, functions and private names."""
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_") and not callable(v) and not isinstance(v, types.ModuleType)
    }


def load_inventory(path: Path) -> list[InventoryHost]:
    """The hosts an inventory file declares, with their groups and host data."""
    try:
        namespace = runpy.run_path(str(path))
    except SystemExit:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot load: {exc}") from exc
    file_group = path.name.rsplit(".", 1)[0]
    hosts: dict[str, InventoryHost] = {}
    for group, entries in _public_values(namespace).items():
        if isinstance(entries, tuple) and len(entries) == 2 and isinstance(entries[1], dict):
            entries = entries[0]  # (hosts, group data)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            name, data = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
            known = hosts.get(name)
            groups = (known.groups if known else ()) + (group,)
            hosts[name] = InventoryHost(name, groups, {**(known.data if known else {}), **data})
    return [InventoryHost(h.name, h.groups + (file_group,), h.data) for h in hosts.values()]


def group_data_folders(inventory_file: Path, cwd: Path, extra: list[Path]) -> list[Path]:
    """Where pyinfra reads group data, in its order."""
    folders = [cwd / "group_data"]
    own = inventory_file.resolve().parent
    if own != cwd.resolve():
        folders.append(own / "group_data")
    return folders + list(extra)


def load_group_data(folders: list[Path]) -> list[Layer]:
    """Every group data file in these folders (or files), in pyinfra's order."""
    layers = []
    for folder in folders:
        if folder.is_file() and folder.suffix == ".py":
            files = [folder]
        elif folder.is_dir():
            files = sorted(folder.glob("*.py"))
        else:
            continue
        for path in files:
            try:
                values = runpy.run_path(str(path))
            except Exception as exc:  # a syntax or name error in a data file
                raise DataError(f"{path}: cannot load: {exc}") from exc
            layers.append(Layer(str(path), path.stem, _public_values(values)))
    return layers


def host_values(
    host: InventoryHost, layers: list[Layer], overrides: dict[str, Any], inventory_file: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, key -> where it was set) for one host, layered as pyinfra layers them."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def apply(data: dict[str, Any], where: str) -> None:
        for key, value in data.items():
            values[key] = value
            sources[key] = where

    for layer in layers:
        if layer.group == "all":
            apply(layer.values, layer.where)
    for layer in layers:
        if layer.group in host.groups:
            apply(layer.values, layer.where)
    apply(host.data, f"{inventory_file} (host {host.name})")
    for key, value in overrides.items():
        apply({key: value}, f"command line (--data {key})")
    return values, sources


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
    (pyinfra/connectors/sshuserclient/client.py, parse_config): the host data's ssh_hostname (else
    the host name) looked up in the ssh config (host data ssh_config_file, else ~/.ssh/config),
    whose HostName, User and Port win; then host data ssh_user and ssh_port; else the local user
    and port 22."""
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
        user=found.get("user") or data.get("ssh_user") or getpass.getuser(),
        port=int(found.get("port") or data.get("ssh_port") or 22),
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
