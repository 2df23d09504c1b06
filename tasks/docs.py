"""Documents generated from the data: PORTS.md from the registry of the real inventory and the
services' ports, and the README's data key table from the declared keys (tasks/stack.py). Unit
tests fail when either is stale.

    python -m tasks.docs ports > PORTS.md
    python -m tasks.docs keys            # the table under README's "Data keys"
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks import preflight, stack
from tasks.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


def ports_markdown(registry: Registry) -> str:
    lines = [
        "# Ports and endpoints",
        "",
        "Generated from the model registry (`group_data/`) and the inventory by `python -m tasks.docs ports`;",
        "a unit test fails when this file and the data disagree.",
        "",
        "| host | port | bound to | service | serves | who may reach it |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in stack.ports(registry):
        lines.append(f"| {p.host} | {p.port} | {p.bind} | {p.unit} | {p.serves} | {p.reach} |")
    lines += ["", "| model | backend | upstream | LiteLLM reaches it at |", "| --- | --- | --- | --- |"]
    for m in registry.models.values():
        lines.append(f"| {m.name} | {m.backend} | `{m.upstream}` | {registry.api_base(m)} |")
    return "\n".join(lines) + "\n"


def real_registry() -> Registry:
    """The registry of the real inventory (inventory.py, group_data/), without secrets."""
    return preflight.build(ROOT / "inventory.py", ROOT, for_deploy=False, with_secrets=False)


if __name__ == "__main__":
    if sys.argv[1:] == ["ports"]:
        sys.stdout.write(ports_markdown(real_registry()))
    elif sys.argv[1:] == ["keys"]:
        sys.stdout.write(stack.KEYS.markdown_table())
    else:
        sys.exit("usage: python -m tasks.docs ports|keys")
