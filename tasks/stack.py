"""The services the stack deploys, in order, and the union of what they declare: the data keys
(with the run's own) and the ports. Enabling a service is one line in SERVICES; everything
about it is in its own module (tasks/service.py says what a service declares)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from tasks import firewall, litellm, mlx, node_exporter, redis, schema
from tasks import ovms as ovms_service
from tasks.registry import Registry
from tasks.service import Port, StackService

ROOT = Path(__file__).resolve().parent.parent

# On each host, its groups' services in this order. The studio: the firewall first, so the MLX
# servers' ports close before they open. The mini: Redis first (LiteLLM connects to it as it
# starts), then LiteLLM, whose start (seconds of imports per worker) overlaps OVMS's upload,
# unpack and model load.
SERVICES: tuple[StackService, ...] = (
    firewall.SERVICE,
    mlx.SERVICE,
    redis.SERVICE,
    litellm.SERVICE,
    ovms_service.SERVICE,
    node_exporter.SERVICE,
)


def _declared(service: StackService) -> tuple[schema.Key, ...]:
    """The service's keys, each marked with the file that declares it (for "(default)" sources)."""
    origin = Path(sys.modules[type(service).__module__].__file__).resolve().relative_to(ROOT).as_posix()
    return tuple(dataclasses.replace(key, origin=origin) for key in service.keys)


KEYS = schema.KeyTable(schema.RUN_KEYS + tuple(k for s in SERVICES for k in _declared(s)))


def services(groups) -> list[StackService]:
    """The services a host of these inventory groups runs, in deploy order."""
    return [s for s in SERVICES if s.group in groups]


def check(r: Registry) -> None:
    """Every service's checks across its data (StackService.check), on each host that runs it."""
    for name, entry in r.hosts.items():
        for service in services(entry.groups):
            service.check(r, name)


def ports(r: Registry) -> list[Port]:
    """Every socket the stack listens on, host by host and by port, for PORTS.md and the tests."""
    rows = []
    for name in sorted(r.hosts):
        rows += sorted((p for s in services(r.hosts[name].groups) for p in s.ports(r, name)), key=lambda p: p.port)
    return rows
