"""Redis on the mini, from the distribution's packages, for LiteLLM's router state shared by all
its workers (cooldowns, failure counts): our own hardened unit bound to loopback with a password
from the secrets; the distribution's own Redis unit is masked so the two never compete."""

from __future__ import annotations

from pyinfra.api import deploy

from tasks import hostos, ops
from tasks.registry import REDIS_SECRET, Registry
from tasks.render import render
from tasks.service import Service, Wait, managed_services

PACKAGES = {"debian": ["redis-server"], "rhel": ["redis"]}
DISTRO_UNITS = {"debian": ["redis-server.service"], "rhel": ["redis.service"]}
SERVER = "/usr/bin/redis-server"
USER = "redis"  # the packages' own user
CONFIG = "/etc/redis-llm/redis.conf"
STATE_DIR = "/var/lib/redis-llm"


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


def python_env(r: Registry) -> None:
    return None


def packages(r: Registry, system: hostos.System) -> list[str]:
    return PACKAGES[system.family]


@deploy("Redis for LiteLLM")
def deploy_redis(r: Registry, envs: dict) -> list[Wait]:
    """envs: unused (Redis is no Python environment); the same signature as every service deploy."""
    s = r.proxy
    family = hostos.system().family
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
    started = managed_services([Service("redis-llm", render_unit(r), restart_on=[config])], "Redis")["redis-llm"]
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
