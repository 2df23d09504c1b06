"""The one registry of a pyinfra run: built and validated once, before the inventory is loaded
and before any connection, with its secrets read once; the deploy uses this same object.

pyinfra executes config.py (beside deploy.py) before it loads the inventory; config.py calls
from_pyinfra_cli(), which reads pyinfra's own parsed command line (the inventory file, --data,
--group-data), so the preflight sees exactly the data pyinfra will. Bad input ends the run there
with one line naming the file and the key, and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tasks import registry as reg
from tasks import sources, stack
from tasks.schema import DataError

_RUN: dict[str, reg.Registry] = {}


def build(
    inventory_file: Path,
    cwd: Path,
    extra_group_data: list[Path] = (),
    overrides: dict[str, Any] | None = None,
    for_deploy: bool = True,
    with_secrets: bool = True,
) -> reg.Registry:
    """Read the inventory and group data as pyinfra will, validate, and (with_secrets) load the
    secrets. Raises DataError."""
    overrides = dict(overrides or {})
    hosts = sources.load_inventory(inventory_file)
    layers = sources.load_group_data(sources.group_data_folders(inventory_file, cwd, list(extra_group_data)))
    inputs = []
    for h in hosts:
        values, where = sources.host_values(h, layers, overrides, str(inventory_file))
        inputs.append(reg.HostInput(h.name, h.groups, values, where, str(h.data.get("ssh_hostname") or h.name)))
    registry = reg.build(inputs, stack.KEYS)
    registry.workdir = cwd
    if for_deploy:
        for h in hosts:
            sources.check_resolves(sources.ssh_destination(h.name, h.data), f"{inventory_file} (host {h.name})")
    if with_secrets:
        proxy = registry.hosts[registry.proxy_host]
        secrets_file = Path(proxy.settings["llm_secrets_file"])
        if not secrets_file.is_absolute():
            secrets_file = cwd / secrets_file
        where = proxy.sources.get("llm_secrets_file", f"{stack.KEYS.by_name['llm_secrets_file'].origin} (default)")
        where += ": llm_secrets_file"
        registry.secrets = sources.load_secrets(registry.secret_names(), secrets_file, where)
        registry.check_secret_values(where)
    return registry


def check(
    inventory_file: Path, cwd: Path, extra_group_data: list[Path] = (), overrides: dict[str, Any] | None = None
) -> reg.Registry:
    """build() for a deploy: on bad input print one line naming the file and key, and exit 2.
    The registry becomes this run's (registry())."""
    try:
        registry = build(inventory_file, cwd, extra_group_data, overrides)
    except DataError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        print("preflight: no host was contacted", file=sys.stderr)
        sys.exit(2)
    _RUN["registry"] = registry
    return registry


def from_pyinfra_cli() -> reg.Registry | None:
    """check() with what pyinfra parsed from its command line (called from config.py).
    Inventories given as host names instead of a file are left to pyinfra."""
    import click
    from pyinfra_cli.util import parse_cli_arg  # pyinfra is running: its CLI is imported already

    params = click.get_current_context().params
    inventory = Path(params["inventory"])
    if not inventory.is_file():
        return None
    overrides = {}
    for arg in params.get("data") or ():
        key, _, raw = arg.partition("=")
        overrides[key] = parse_cli_arg(raw)
    extra = []
    for value in params.get("group_data") or ():
        if not Path(value).exists():
            print(f"preflight: command line: --group-data {value}: no such file or folder", file=sys.stderr)
            sys.exit(2)
        extra.append(Path(value))
    return check(inventory, Path.cwd(), extra, overrides)


def use(registry: reg.Registry) -> None:
    """Make registry this run's (tests that run deploy.py without pyinfra's command line)."""
    _RUN["registry"] = registry


def registry() -> reg.Registry:
    """This run's registry, as the preflight built it."""
    try:
        return _RUN["registry"]
    except KeyError:
        raise RuntimeError(
            "no registry: the preflight did not run. Run pyinfra from the project's root folder, "
            "where its config.py runs the preflight: pyinfra inventory.py deploy.py"
        ) from None
