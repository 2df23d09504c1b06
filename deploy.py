"""Which service deploy runs on which group, in order. Nothing else lives here.

    pyinfra inventory.py deploy.py          # the real mini and studio
    pyinfra lab/inventory.py deploy.py      # the local lab (python -m lab deploy)
"""

from pyinfra import host

from tasks.litellm import deploy_litellm
from tasks.mlx import deploy_mlx
from tasks.ovms import deploy_ovms

if "studio" in host.groups:
    deploy_mlx(host.name)

if "mini" in host.groups:
    # OVMS first: LiteLLM's env.local points at it, and the proxy is the last thing to restart.
    deploy_ovms()
    deploy_litellm()
