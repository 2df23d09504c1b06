"""One pyinfra run's own state, from its preflight to its last operation: the registry, what the
deploy learns on each host (its system), the sudo passwords typed at the prompt, the deploy
locks it holds, the facts it read together, and what the doctor read.

It is attached to pyinfra's State for that run (the State exists when pyinfra executes config.py,
where the preflight begins the run), so it lives and ends with the run: a second run in the same
process (the unit tests run many) starts with nothing of the first.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api.state import State
from pyinfra.context import ctx_state

from tasks.factcache import FactCaches
from tasks.hostos import System
from tasks.registry import Registry
from tasks.runlock import Locks


@dataclass(eq=False)
class Run:
    registry: Registry
    systems: dict[str, System] = field(default_factory=dict)  # host name -> what hostos.check read
    passwords: dict[str, str] = field(default_factory=dict)  # login user -> password typed for it
    locks: Locks = field(default_factory=Locks)
    looked: dict[str, dict] = field(default_factory=dict)  # host name -> what the doctor read (tasks/doctor)
    # host name -> {a service's unit: the hand-kept units it takes over} (tasks/owners.py, llm_takeover)
    takeovers: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    refusals: dict[str, list[str]] = field(default_factory=dict)  # host name -> why refused (tasks/owners.py)
    facts: FactCaches | None = None  # the facts read together, host by host (tasks/factcache.py)

    def __post_init__(self):
        if self.facts is None:
            secrets = self.registry.secrets.values() if self.registry is not None else ()
            self.facts = FactCaches(tuple(v for v in secrets if v))


_RUNS: weakref.WeakKeyDictionary[State, Run] = weakref.WeakKeyDictionary()  # pyinfra's State -> its run


def begin(registry: Registry, state: State | None = None) -> Run:
    """Make a run of registry for pyinfra's current State (or state): the preflight's last step."""
    state = state or _state()
    _RUNS[state] = Run(registry)
    return _RUNS[state]


def current() -> Run:
    """The run of pyinfra's current State."""
    try:
        return _RUNS[_state()]
    except KeyError:
        raise RuntimeError(
            "no registry: the preflight did not run. Run pyinfra from the project's root folder, "
            "where its config.py runs the preflight: pyinfra inventory.py deploy.py"
        ) from None


def fact_caches(state) -> FactCaches | None:
    """The FactCaches of the run of pyinfra's State state (None: no run of the toolkit)."""
    this_run = _RUNS.get(state)
    return this_run.facts if this_run is not None else None


def _state() -> State:
    if not ctx_state.isset():
        raise RuntimeError("no pyinfra run: the toolkit's run state needs pyinfra's State")
    return ctx_state.get()


def system() -> System:
    """This host's System, as hostos.check() read it for this run."""
    return current().systems[host.name]


def is_macos() -> bool:
    return system().macos


def root_group() -> str:
    """The group root's files belong to: wheel on macOS (which has no group named root)."""
    return "wheel" if is_macos() else "root"
