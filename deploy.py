"""Which services run on which host, in order (tasks/stack.py), through the stages every service
has (tasks/service.py). Nothing else lives here.

    pyinfra inventory.py deploy.py          # the real mini and studio
    pyinfra lab/inventory.py deploy.py      # the local lab (python -m lab deploy)
"""

from pyinfra import host

from tasks import access, hostos, ops, owners, pyenv, run, stack, units
from tasks.registry import MLX_GROUP, PROXY_GROUP

this_run = run.current()  # begun by config.py's preflight, before any connection
r = this_run.registry
roles = [role for role in (PROXY_GROUP, MLX_GROUP) if role in host.groups]

# Before any change: what the host is (refused if unsupported), root through sudo, and the host
# for this run alone (refused, naming the other run, while one holds it; taken before the first
# operation, given back after the last: tasks/runlock.py).
system = this_run.systems[host.name] = hostos.check(roles)
access.escalate(system)
this_run.locks.plan(r.settings(host.name)["llm_break_lock"])

# Before any change, too: every port its services declare is free or held by their own units.
services = stack.services(host.groups)
owners.check(r, services)

# Stage 1, the distribution's packages of every service at once: one package-list refresh, not one each.
ops.system_packages(
    name="Install the system packages the services need",
    max_age_hours=r.settings(host.name)["package_lists_max_age"],
    packages=list(dict.fromkeys(pyenv.packages(system) + [p for s in services for p in s.packages(r, system)])),
)

# Stage 2, on every host at once: the pinned uv and each service's Python environment, the slow
# part of a rebuild. Called from this one line, they are the same pyinfra operations on every
# host, so pyinfra runs them side by side instead of one host after the other.
envs = pyenv.python_environments(
    r.settings(host.name)["uv_version"], [e for e in (s.python_env(r) for s in services) if e]
)

# Stage 3, each service's own operations.
waits = [wait for s in services for wait in s.deploy(r, envs)]

# Last, on every host at once: wait until each service this run (re)started answers.
units.wait_for(waits)
