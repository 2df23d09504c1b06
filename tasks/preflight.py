"""The one registry of a pyinfra run: built and validated once, before the inventory is loaded
and before any connection, with its secrets read once; the deploy uses this same object.

pyinfra executes config.py (beside deploy.py) before it loads the inventory; config.py calls
from_pyinfra_cli(), which reads pyinfra's own parsed command line (the inventory file, --data,
--user, --port, --key, --group-data, --limit, --exclude) and loads the inventory with pyinfra's
own loader (tasks/sources.py), so the preflight sees exactly the data pyinfra will. Bad input
ends the run there with one line naming the file and the key, and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tasks import registry as reg
from tasks import run, sources, stack
from tasks.schema import DataError


def build(
    inventory_file: Path,
    cwd: Path,
    extra_group_data: list[Path] = (),
    overrides: dict[str, Any] | None = None,
    for_deploy: bool = True,
    with_secrets: bool = True,
    override_sources: dict[str, str] | None = None,
    limit=None,
) -> reg.Registry:
    """Read the inventory and group data with pyinfra's own loader, validate, and (with_secrets)
    load the secrets. for_deploy: every host the run targets (limit(inventory): pyinfra's --limit
    and --exclude, else all) must resolve. Raises DataError."""
    hosts = sources.load_inventory(inventory_file, cwd, list(extra_group_data), overrides, override_sources, limit)
    inputs = [
        reg.HostInput(h.name, h.groups, h.values, h.sources, str(h.values.get("ssh_hostname") or h.name)) for h in hosts
    ]
    registry = reg.build(inputs, stack.KEYS)
    registry.workdir = cwd
    stack.check(registry)
    if for_deploy:
        for h in [h for h in hosts if h.targeted]:
            where = h.sources.get("ssh_hostname", sources.host_data_source(inventory_file, h.name))
            sources.check_resolves(sources.ssh_destination(h.name, h.values), where)
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


def check(inventory_file: Path, cwd: Path, **options) -> reg.Registry:
    """build() for a run (options as build()'s, for_deploy always): on bad input print one line
    naming the file and key, and exit 2. The registry becomes the current pyinfra run's
    (tasks/run.py)."""
    try:
        registry = build(inventory_file, cwd, for_deploy=True, **options)
    except DataError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        print("preflight: no host was contacted", file=sys.stderr)
        sys.exit(2)
    run.begin(registry)
    return registry


def from_pyinfra_cli() -> reg.Registry | None:
    """check() with what pyinfra parsed from its command line (called from config.py): its override
    data made by pyinfra's own function (--data, --user, --port, --key), its --group-data, and its
    --limit and --exclude. A deploy reads the secrets; an ad-hoc command (`fact`, `exec`, an
    operation) needs none. Inventories given as host names instead of a file are left to pyinfra."""
    import click
    from pyinfra_cli import cli  # pyinfra is running: its CLI is imported already

    params = click.get_current_context().params
    inventory = Path(params["inventory"])
    if not inventory.is_file():
        return None
    for arg in params.get("data") or ():
        if "=" not in arg:
            print(f"preflight: command line: --data {arg}: expected KEY=VALUE", file=sys.stderr)
            sys.exit(2)
    flags = {"ssh_user": "--user", "ssh_key": "--key", "ssh_key_password": "--key-password", "ssh_port": "--port"}
    overrides = cli._set_override_data(
        params.get("data") or (),
        params.get("ssh_user"),
        params.get("ssh_key"),
        params.get("ssh_key_password"),
        params.get("ssh_port"),
        None,  # a password pyinfra prompts for later is pyinfra's
    )
    named = {k: f"command line ({flags[k]})" for k in flags if params.get(k) and k in overrides}
    extra = []
    for value in params.get("group_data") or ():
        if not Path(value).exists():
            print(f"preflight: command line: --group-data {value}: no such file or folder", file=sys.stderr)
            sys.exit(2)
        extra.append(Path(value))

    def limit(inv):
        hosts = cli._apply_inventory_limit(inv, params.get("limit"))
        hosts = cli._apply_inventory_exclude(inv, hosts, params.get("exclude"))
        return list(inv) if hosts is None else hosts

    # The deploy reads the secrets and holds the lock; another deploy file (the doctor's) neither.
    deploy = any(Path(str(op)).name == "deploy.py" for op in params.get("operations") or ())
    for flag in ("serial", "no_wait") if deploy else ():
        if params.get(flag):
            option = "--" + flag.replace("_", "-")
            print(
                f"preflight: command line: {option}: a deploy runs each operation on every host before the next "
                f"(each host's deploy lock is taken before the first and given back after the last); run it "
                f"without {option}",
                file=sys.stderr,
            )
            sys.exit(2)
    return check(
        inventory,
        Path.cwd(),
        extra_group_data=extra,
        overrides=overrides,
        override_sources=named,
        limit=limit,
        with_secrets=deploy,
    )
