"""pyinfra runs this first, before it loads the inventory or connects to any host: two of pyinfra's
per-operation planning costs are made cheap (tasks/planning.py), the preflight builds and
validates this run's one registry (tasks/preflight.py), pyinfra's SSH connections get
TCP_NODELAY (tasks/transport.py) and hand the sudo password on standard input (tasks/sudo.py),
and a host's facts are read together (tasks/factcache.py)."""

from tasks import planning  # first: before any fact class is defined

planning.install()  # pyinfra's per-operation planning costs, same results (tasks/planning.py)

from tasks import access, factcache, preflight, run, sudo, transport  # noqa: E402

transport.disable_nagle()  # no delayed ACK on every remote command (tasks/transport.py)
sudo.install()  # the sudo password on sudo's standard input, not in a command line (tasks/sudo.py)
# The facts of a host read in one command, those read through sudo included (tasks/factcache.py)
factcache.install(run.fact_caches, inline=access.inline_sudo)
preflight.from_pyinfra_cli()
