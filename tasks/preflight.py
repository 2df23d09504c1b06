"""Validate the registry and secrets while pyinfra loads the inventory: before any connection,
so bad data touches no host. Inventory files call check() last."""

from __future__ import annotations

import sys
from pathlib import Path

from tasks import registry as reg


def group_data_folders(inventory_file: str) -> list[Path]:
    """The folders pyinfra reads group data from, in its order: ./group_data, then the
    inventory's own group_data/ (which overrides it)."""
    folders = [Path.cwd() / "group_data"]
    own = Path(inventory_file).resolve().parent / "group_data"
    if own.resolve() != folders[0].resolve():
        folders.append(own)
    return folders


def check(inventory_file: str, hosts: dict[str, str]) -> reg.Registry:
    """Build the registry from the group data files and load its secrets; on bad input print
    one line naming the file and key, and exit 2."""
    try:
        data, sources = reg.load_group_data(group_data_folders(inventory_file))
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
