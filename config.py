"""pyinfra runs this first, before it loads the inventory or connects to any host: the preflight
builds and validates this run's one registry (tasks/preflight.py), and pyinfra's SSH connections
get TCP_NODELAY (tasks/transport.py)."""

from tasks import preflight, transport

transport.disable_nagle()  # no delayed ACK on every remote command (tasks/transport.py)
preflight.from_pyinfra_cli()
