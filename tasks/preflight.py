"""Validate the registry and secrets while pyinfra loads the inventory: before any connection,
so bad data touches no host. Inventory files call check() last."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tasks import registry as reg


def group_data_folders(inventory_file: str) -> list[Path]:
    """The folders pyinfra reads group data from, in its order: ./group_data, then the
    inventory's own group_data/ (which overrides it)."""
    folders = [Path.cwd() / "group_data"]
    own = Path(inventory_file).resolve().parent / "group_data"
    if own.resolve() != folders[0].resolve():
        folders.append(own)
    return folders


def parse_cli_value(raw: str) -> Any:
    """A --data value as pyinfra reads it: true/false, an integer, JSON, else the string.
    (pyinfra_cli is not imported for this: importing it monkey-patches the process with gevent.)"""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def cli_overrides(argv: list[str]) -> tuple[list[Path], dict[str, Any]]:
    """What pyinfra's command line adds on top of the group data folders: each --group-data
    path (a folder or one file; later ones win) and each --data key=value (wins over all)."""
    paths: list[Path] = []
    data: dict[str, Any] = {}
    args = iter(argv[1:])
    for arg in args:
        for flag in ("--group-data", "--data"):
            if arg == flag:
                value = next(args, None)
            elif arg.startswith(flag + "="):
                value = arg[len(flag) + 1:]
            else:
                continue
            if value is None:
                raise reg.RegistryError(f"command line: {flag} needs a value")
            if flag == "--group-data":
                path = Path(value)
                if not path.exists():
                    raise reg.RegistryError(f"command line: --group-data {value}: no such file or folder")
                paths.append(path)
            else:
                key, sep, raw = value.partition("=")
                if not sep or not key:
                    raise reg.RegistryError(f"command line: --data {value}: expected key=value")
                data[key] = parse_cli_value(raw)
    return paths, data


def check(inventory_file: str, hosts: dict[str, str], argv: list[str] | None = None) -> reg.Registry:
    """Build the registry from the group data files (and pyinfra's --group-data/--data on the
    command line) and load its secrets; on bad input print one line naming the file and key,
    and exit 2."""
    try:
        extra_folders, overrides = cli_overrides(sys.argv if argv is None else argv)
        data, sources = reg.load_group_data(group_data_folders(inventory_file) + extra_folders)
        for key, value in overrides.items():
            data[key] = value
            sources[key] = f"command line (--data {key})"
        registry = reg.build(data, hosts, sources)
        reg.load_secrets(
            registry.secret_names(),
            Path(registry.settings["llm_secrets_file"]),
            sources.get("llm_secrets_file", "group data") + ": llm_secrets_file",
        )
    except reg.RegistryError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        print("preflight: no host was contacted", file=sys.stderr)
        sys.exit(2)
    return registry
