"""Redis on the mini, from the distribution's packages, for LiteLLM's router state shared by all
its workers (cooldowns, failure counts): our own hardened unit bound to loopback with a password
from the secrets; the distribution's own Redis unit is masked so the two never compete."""

from __future__ import annotations

import re
from typing import Any

from pyinfra.api import deploy

from tasks import hostos, ops, run
from tasks.registry import PROXY_GROUP, REDIS_SECRET, Registry
from tasks.render import render
from tasks.schema import DataError, Key, loopback, port, positive
from tasks.service import Port, StackService
from tasks.units import Unit, Wait, managed_services

PACKAGES = {"debian": ["redis-server"], "rhel": ["redis"]}
DISTRO_UNITS = {"debian": ["redis-server.service"], "rhel": ["redis.service"]}
SERVER = "/usr/bin/redis-server"
USER = "redis"  # the packages' own user
CONFIG = "/etc/redis-llm/redis.conf"
STATE_DIR = "/var/lib/redis-llm"


def _size(key: str, value: Any) -> None:
    if not re.match(r"^[1-9][0-9]*(b|kb|mb|gb)?$", value.lower()):
        raise DataError(f"{key} must be a Redis size such as 64mb: {value!r}")


KEYS = (
    Key("redis_port", int, 6379, "Redis's port (on the proxy host)", port),
    Key("redis_bind_address", str, "127.0.0.1", "Redis's address: loopback only", loopback),
    Key("redis_maxmemory", str, "64mb", "Redis's memory cap (the state is small; least recently used keys go)", _size),
    Key("redis_start_timeout", int, 30, "seconds the deploy waits for Redis after a restart", positive),
)


def render_config(r: Registry) -> str:
    s = r.proxy
    return render(
        "redis/redis.conf.j2",
        bind=s["redis_bind_address"],
        port=s["redis_port"],
        password=r.secrets[REDIS_SECRET],
        state_dir=STATE_DIR,
        maxmemory=s["redis_maxmemory"],
    )


def render_unit(r: Registry) -> str:
    s = r.proxy
    return render(
        "redis/redis-llm.service.j2",
        bind=s["redis_bind_address"],
        port=s["redis_port"],
        user=USER,
        server=SERVER,
        config=CONFIG,
        state_dir=STATE_DIR,
    )


class Redis(StackService):
    name = "redis-llm"
    group = PROXY_GROUP
    keys = KEYS

    def version_command(self, r: Registry, host: str) -> str:
        return f"{SERVER} --version | sed -n 's/.* v=\\([^ ]*\\).*/redis \\1/p'"

    def ports(self, r: Registry, host: str) -> list[Port]:
        s = r.settings(host)
        return [
            Port(
                host,
                s["redis_port"],
                s["redis_bind_address"],
                "redis-llm",
                "LiteLLM's router state",
                "this host, with its password",
                # and the distribution's own unit, started by its package and masked by this deploy
                ("redis-llm.service", *(u for units in DISTRO_UNITS.values() for u in units)),
            )
        ]

    def packages(self, r: Registry, system: hostos.System) -> list[str]:
        return PACKAGES[system.family]

    def deploy(self, r: Registry, envs: dict) -> list[Wait]:
        return deploy_redis(r)


@deploy("Redis for LiteLLM")
def deploy_redis(r: Registry) -> list[Wait]:
    s = r.proxy
    family = run.system().family
    ops.units_masked(name="Stop and mask the distribution's own Redis unit", units=DISTRO_UNITS[family])
    ops.directories(name="Create /etc/redis-llm", paths=[("/etc/redis-llm", USER, "750")], public=True)
    config = ops.text_file(
        name=f"Render {CONFIG} (password not shown)",
        dest=CONFIG,
        content=render_config(r),
        group=USER,
        mode="640",
        secret=True,
    )
    started = managed_services([Unit("redis-llm", render_unit(r), restart_on=[config])], "Redis")["redis-llm"]
    port = s["redis_port"]
    # Any answer proves it is up: without the password Redis answers NOAUTH, and the password
    # stays out of every command line.
    return [
        Wait(
            f"redis-cli -h {s['redis_bind_address']} -p {port} ping 2>&1 | grep -q -e PONG -e NOAUTH",
            s["redis_start_timeout"],
            "Redis",
            started,
        )
    ]


SERVICE = Redis()
