"""What each host is (operating system, version, CPU architecture, login user), read once before
any change, and whether the toolkit supports it for the role it plays; a host it does not
support is refused with one line naming what was found and what is supported."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from tasks.facts import HostFacts

# What each role runs on, as (os id, versions, architectures). The mini's list is what the
# official OVMS builds target (Ubuntu 22.04 and 24.04, RHEL 9.6, x86_64) plus the lab's Debian 12;
# the studio is a Mac on Apple silicon, or Linux in the lab.
SUPPORTED = {
    "mini": (
        ("ubuntu", ("22.04", "24.04"), ("x86_64",)),
        ("rhel", ("9.6",), ("x86_64",)),
        ("debian", ("12",), ("x86_64", "aarch64")),
    ),
    "studio": (
        ("macos", ("14", "15", "26"), ("arm64",)),
        ("debian", ("12",), ("x86_64", "aarch64")),
        ("ubuntu", ("22.04", "24.04"), ("x86_64", "aarch64")),
    ),
}


@dataclass(frozen=True)
class System:
    os: str  # os-release ID, or "macos"
    version: str
    name: str
    arch: str
    kernel: str
    memory: int  # bytes
    cpus: int
    login: str  # the user SSH logs in as
    home: str  # its home folder
    sudo: str  # "root", "nopasswd", "password", "absent"

    @property
    def macos(self) -> bool:
        return self.os == "macos"

    @property
    def family(self) -> str:
        """How packages are managed: "debian" (Debian, Ubuntu), "rhel", "macos"."""
        return {"ubuntu": "debian", "debian": "debian"}.get(self.os, self.os)

    def supported_for(self, role: str) -> bool:
        for os_id, versions, arches in SUPPORTED[role]:
            if (
                self.os == os_id
                and self.arch in arches
                and (self.version in versions or self.version.split(".")[0] in versions)
            ):
                return True
        return False


def describe(role: str) -> str:
    return ", ".join(
        f"{'macOS' if os_id == 'macos' else os_id.capitalize() if os_id != 'rhel' else 'RHEL'} "
        f"{'/'.join(versions)} ({'/'.join(arches)})"
        for os_id, versions, arches in SUPPORTED[role]
    )


def check(roles: list[str]) -> System:
    """Read this host (without sudo) and refuse it, before any change, unless every role it plays
    is supported on it. Returns what it is."""
    facts = host.get_fact(HostFacts, _sudo=False)
    if facts.get("os") != "macos" and facts.get("kernel") == "Darwin":
        facts["os"] = "macos"
    system = System(
        os=facts.get("os", "unknown"),
        version=facts.get("version", ""),
        name=facts.get("name") or facts.get("os", "?"),
        arch=facts.get("arch", "?"),
        kernel=facts.get("kernel", "?"),
        memory=facts["memory"],
        cpus=facts["cpus"],
        login=facts.get("user", "?"),
        home=facts.get("home", ""),
        sudo=facts.get("sudo", "absent"),
    )
    for role in roles:
        if not system.supported_for(role):
            raise DeployError(
                f"{host.name}: {system.name} on {system.arch} is not supported for the {role} "
                f"(supported: {describe(role)}); nothing was changed"
            )
    return system
