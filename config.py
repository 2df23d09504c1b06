"""pyinfra runs this first, before it loads the inventory or connects to any host: the preflight
builds and validates this run's one registry (tasks/preflight.py), pyinfra's SSH connections
get TCP_NODELAY (tasks/transport.py), and a host's facts are read together (tasks/factcache.py)."""

from tasks import factcache, preflight, run, transport

transport.disable_nagle()  # no delayed ACK on every remote command (tasks/transport.py)
factcache.install(run.fact_caches)  # the facts of a host read in one command (tasks/factcache.py)
preflight.from_pyinfra_cli()
