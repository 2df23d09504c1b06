"""What kind of host this is (macOS or Linux) and what follows from it (root's group)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.server import Kernel

_KERNELS: dict[str, str] = {}  # host name -> kernel name: asked once per host per run


def is_macos() -> bool:
    """Asked once per host (pyinfra caches no facts, and the kernel does not change)."""
    if host.name not in _KERNELS:
        _KERNELS[host.name] = host.get_fact(Kernel)
    return _KERNELS[host.name] == "Darwin"


def forget() -> None:
    """Drop what was learnt (tests that run several fake hosts of the same name)."""
    _KERNELS.clear()


def root_group() -> str:
    """The group root's files belong to: wheel on macOS (which has no group named root)."""
    return "wheel" if is_macos() else "root"
