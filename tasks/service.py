"""What a service of the stack is: the one protocol every service implements, defined here.

A service is one module (or package) under tasks/ and its own folder under templates/ for what it
renders or uploads. The module defines a subclass of StackService and one instance of it,
`SERVICE`; tasks/stack.py lists the instances (one line enables a service). A service declares:

- `name` (what messages and the ports table call it) and `group`, the inventory group whose
  hosts run it;
- `keys`: every data key it reads (tasks/schema.py's Key: name, type, default, meaning, check);
  the schema the preflight checks against and the README's key table are the union;
- `ports(r, host)`: every socket it listens on, on one host (Port); the port table, PORTS.md,
  the firewall tests and the acceptance tests are the union, and before any change the deploy
  refuses a host where one is held by a unit that is not the service's (tasks/owners.py);
- `version_command(r, host)`: a shell command printing the version of what it runs, for the
  doctor's view (tasks/doctor); by default the pins its Python environment was built from;
- `status_command(r, host)`: a shell command printing, per unit of its ports, a line
  `<unit> TAB ok|off TAB <what it serves now>` (its model loaded, answering) for the doctor;
- `check(r, host)`: what one key's own check cannot see (a key against the models or another
  key), run by the preflight before any host is contacted; a DataError names the file and key.

A deploy (deploy.py) runs each service of a host's groups through three stages, in tasks/stack.py's
order, each stage for every service before the next:

1. `packages(r, system)`: the distribution's packages it needs; all services' are installed by
   one operation (one package-list refresh);
2. `python_env(r)`: the Python environment it runs from (pyenv.PythonEnv) or None; all hosts'
   environments are built side by side;
3. `deploy(r, envs)`: its users, files, units and (re)starts, as pyinfra operations, given every
   environment built (name -> pyenv.Built). It returns what to wait for (units.Wait): the run
   ends by waiting, on every host at once, until every service it (re)started answers.

Every stage reads the registry (tasks/registry.py) and the host's settings; none may change a
host while it is called (pyinfra's first pass): changes are the operations it declares, and
restarts follow their results (units.managed_services), never facts read before the run.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass

from tasks.hostos import System
from tasks.pyenv import Built, PythonEnv, record_path
from tasks.registry import Registry
from tasks.schema import Key
from tasks.units import Wait, answers_http


@dataclass(frozen=True)
class Port:
    """A socket a service listens on."""

    host: str
    port: int
    bind: str  # the address it is bound to
    unit: str  # the systemd unit (launchd job) that holds it
    serves: str  # what it serves, in words
    reach: str  # who may reach it
    owners: tuple[str, ...] = ()  # the units and launchd labels that may hold it (default: unit.service)
    # Name prefixes of the units (jobs) its service retires before it starts (tasks/units.py retire):
    # one of those the toolkit wrote may hold the port now.
    retires: tuple[str, ...] = ()

    def held_by_own(self, unit: str) -> bool:
        """Whether a listener in this systemd unit (or launchd job) is the toolkit's own for it."""
        return unit in (self.owners or (f"{self.unit}.service",))


def answers_line(unit: str, url: str, what: str) -> str:
    """Shell for status_command: `unit ok what` when url answers 200 within 3 s, else `unit off`."""
    ok, off = (shlex.quote(f"{unit}\t{state}\t{text}") for state, text in (("ok", what), ("off", f"{what}: no answer")))
    line = "printf '%s\\n'"
    return f"if {answers_http(url, 3)}; then {line} {ok}; else {line} {off}; fi"


def host_port(address: str, port: int) -> str:
    """address:port as URLs and listen options write it (an IPv6 address in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def local_url(bind: str, port: int, path: str) -> str:
    """Where a service bound to `bind` is asked from its own host."""
    address = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    return f"http://{host_port(address, port)}{path}"


class StackService(ABC):
    """One service of the stack (see the module's docstring for the contract)."""

    name: str
    group: str
    keys: tuple[Key, ...] = ()

    def ports(self, r: Registry, host: str) -> list[Port]:
        """The sockets it listens on, on this host (none by default)."""
        return []

    def version_command(self, r: Registry, host: str) -> str:
        """Shell printing the version of what it runs on this host: by default the pins its live
        Python environment was built from ("" when it has none)."""
        env = self.python_env(r)
        return f"cat {shlex.quote(record_path(env.venv))}" if env else ""

    def status_command(self, r: Registry, host: str) -> str:
        """Shell printing `<unit>\t<ok|off>\t<text>` per unit: what it serves now ("": nothing to ask)."""
        return ""

    def check(self, r: Registry, host: str) -> None:
        """Checks of its data across keys and models, before any host is contacted (none by default)."""
        return None

    def packages(self, r: Registry, system: System) -> list[str]:
        """Stage 1: the distribution's packages this host needs for it (none by default)."""
        return []

    def python_env(self, r: Registry) -> PythonEnv | None:
        """Stage 2: the Python environment it runs from on this host, or None (the default)."""
        return None

    @abstractmethod
    def deploy(self, r: Registry, envs: dict[str, Built]) -> list[Wait]:
        """Stage 3: its operations on this host; what to wait for once every service's are declared."""
