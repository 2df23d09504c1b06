"""Which service deploy runs on which group, in order. Nothing else lives here.

    pyinfra inventory.py deploy.py          # the real mini and studio
    pyinfra lab/inventory.py deploy.py      # the local lab (python -m lab deploy)
"""

from pyinfra import host

from tasks import common, litellm, mlx, ovms

serves_mlx = "studio" in host.groups
runs_proxy = "mini" in host.groups

# First, on every host at once: the pinned uv and each service's Python environment, the slow
# part of a rebuild. Called from this one line, they are the same pyinfra operations on every
# host, so pyinfra runs them side by side instead of one host after the other.
envs = common.python_environments(
    [env for env in (serves_mlx and mlx.python_env(host.name), runs_proxy and litellm.python_env()) if env]
)

if serves_mlx:
    mlx.deploy_mlx(host.name, envs.get("MLX"))

if runs_proxy:
    # OVMS first: LiteLLM's env.local points at it, and the proxy is the last thing to restart.
    ovms.deploy_ovms()
    litellm.deploy_litellm(envs["LiteLLM"])

# Last, on every host at once: wait until each service this run (re)started answers.
common.wait_for_services()
