"""testinfra hosts reached as the operator, with every check run through sudo: the password goes
to `sudo -S` on the command's standard input (never on a command line, so never in a report)."""

from __future__ import annotations

import subprocess

import testinfra.host
from testinfra.backend.ssh import SshBackend


class SudoPasswordSshBackend(SshBackend):
    """testinfra's SSH backend; each command runs as `sudo -k -S -p '' /bin/sh -c <command>`,
    fed the password on stdin (-k: always ask, so the password line is always consumed)."""

    def __init__(self, hostspec: str, sudo_password: str, **kwargs):
        super().__init__(hostspec, **kwargs)
        self._sudo_password = sudo_password

    def get_sudo_command(self, command: str, sudo_user):
        return self.quote("sudo -k -S -p '' /bin/sh -c %s", command)

    def run_local(self, command: str, *args: str):
        command = self.quote(command, *args)
        cmd = self.encode(command)
        p = subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = p.communicate(input=(self._sudo_password + "\n").encode())
        return self.result(p.returncode, cmd, stdout, stderr)


def sudo_host(hostspec: str, sudo_password: str, **kwargs) -> testinfra.host.Host:
    """hostspec: [user@]host[:port], as testinfra's ssh:// specs without the scheme."""
    return testinfra.host.Host(SudoPasswordSshBackend(hostspec, sudo_password, sudo=True, **kwargs))
