"""Which service deploy runs on which group, in order. Nothing else lives here.

    pyinfra inventory.py deploy.py          # the real mini and studio
    pyinfra lab/inventory.py deploy.py      # the local lab (python -m lab deploy)

Every service deploy has the same shape: deploy_<service>(registry, envs) -> [waits].
"""

from pyinfra import host

from tasks import access, hostos, litellm, mlx, ovms, preflight, pyenv, redis, service
from tasks.registry import MLX_GROUP, PROXY_GROUP

r = preflight.registry()  # built and validated by config.py before any connection
roles = [role for role in (PROXY_GROUP, MLX_GROUP) if role in host.groups]

# Before any change: what the host is (refused if unsupported), then root through sudo.
access.escalate(hostos.check(roles))

deploys = []
if MLX_GROUP in roles:  # studio
    deploys.append((mlx.python_env(r), mlx.deploy_mlx))
if PROXY_GROUP in roles:  # mini
    # Redis and OVMS first: LiteLLM's config points at both, and the proxy restarts last.
    deploys += [(None, redis.deploy_redis), (None, ovms.deploy_ovms), (litellm.python_env(r), litellm.deploy_litellm)]

# First, on every host at once: the pinned uv and each service's Python environment, the slow
# part of a rebuild. Called from this one line, they are the same pyinfra operations on every
# host, so pyinfra runs them side by side instead of one host after the other.
envs = pyenv.python_environments(r.settings(host.name)["uv_version"], [e for e, _ in deploys if e])

waits = [wait for _, deploy_service in deploys for wait in deploy_service(r, envs)]

# Last, on every host at once: wait until each service this run (re)started answers.
service.wait_for(waits)
