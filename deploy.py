"""Which service deploy runs on which group, in order. Nothing else lives here.

    pyinfra inventory.py deploy.py          # the real mini and studio
    pyinfra lab/inventory.py deploy.py      # the local lab (python -m lab deploy)

Every service deploy has the same shape: deploy_<service>(registry, envs) -> [waits].
"""

from pyinfra import host

from tasks import access, firewall, hostos, litellm, mlx, ops, ovms, preflight, pyenv, redis, runlock, service
from tasks.registry import MLX_GROUP, PROXY_GROUP

r = preflight.registry()  # built and validated by config.py before any connection
roles = [role for role in (PROXY_GROUP, MLX_GROUP) if role in host.groups]

# Before any change: what the host is (refused if unsupported), root through sudo, and the host
# for this run alone (refused, naming the other run, while one holds it).
system = hostos.check(roles)
access.escalate(system)
runlock.take(r.settings(host.name)["llm_break_lock"])

# Each service module: packages(r, system), python_env(r), deploy_<service>(r, envs) -> [waits].
services = []
if MLX_GROUP in roles:  # studio; the firewall first: the servers' ports close before they open
    services += [(firewall, firewall.deploy_firewall), (mlx, mlx.deploy_mlx)]
if PROXY_GROUP in roles:  # mini; Redis first (LiteLLM connects to it as it starts), then LiteLLM,
    # whose start (seconds of imports per worker) overlaps OVMS's upload, unpack and model load
    services += [(redis, redis.deploy_redis), (litellm, litellm.deploy_litellm), (ovms, ovms.deploy_ovms)]

# The distribution's packages of every service at once: one package-list refresh, not one each.
ops.system_packages(
    name="Install the system packages the services need",
    max_age_hours=r.settings(host.name)["package_lists_max_age"],
    packages=list(dict.fromkeys(pyenv.packages(system) + [p for m, _ in services for p in m.packages(r, system)])),
)

# On every host at once: the pinned uv and each service's Python environment, the slow part of
# a rebuild. Called from this one line, they are the same pyinfra operations on every host, so
# pyinfra runs them side by side instead of one host after the other.
envs = pyenv.python_environments(
    r.settings(host.name)["uv_version"], [e for e in (m.python_env(r) for m, _ in services) if e]
)

waits = [wait for _, deploy_service in services for wait in deploy_service(r, envs)]

# Last, on every host at once: wait until each service this run (re)started answers.
service.wait_for(waits)
