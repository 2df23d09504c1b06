"""What the doctor reads from a host, each in one command: the state of the services' units or
launchd jobs, and named shell probes (versions, a server's answer, weights' sizes, free memory)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from tasks.facts import by_system, marked_blocks

# Per systemd unit: its state as systemctl shows it, the memory of every process in its cgroup
# (kB of RSS; the cgroup read where v2, or a hybrid v1 hierarchy, mounts it), its main process's
# command line, and every absolute path its file names in ExecStart, WorkingDirectory and
# EnvironmentFile (a leading '-' marks an optional one) that is gone.
_LINUX_UNITS = r"""
for u in $UNITS; do
  echo "@unit $u"
  systemctl show -p LoadState -p ActiveState -p SubState -p NRestarts -p MainPID -p UnitFileState \
    -p FragmentPath -p ControlGroup "$u.service" 2>/dev/null
  file=$(systemctl show -p FragmentPath --value "$u.service" 2>/dev/null)
  if [ -n "$file" ] && [ -f "$file" ]; then
    sed -n 's/^ExecStart=[@!+:]*//p; s/^WorkingDirectory=//p; s/^EnvironmentFile=//p' "$file" |
      tr ' ' '\n' | grep '^/' | while read -r path; do [ -e "$path" ] || echo "gone=$path"; done
  fi
  cg=$(systemctl show -p ControlGroup --value "$u.service" 2>/dev/null)
  for procs in "/sys/fs/cgroup$cg" "/sys/fs/cgroup/unified$cg" "/sys/fs/cgroup/systemd$cg"; do
    [ -n "$cg" ] && [ -f "$procs/cgroup.procs" ] || continue
    pids=$(tr '\n' ',' < "$procs/cgroup.procs")
    [ -n "$pids" ] && echo "rss=$(ps -o rss= -p "${pids%,}" | awk '{ s += $1 } END { print s + 0 }')"
    break
  done
  pid=$(systemctl show -p MainPID --value "$u.service" 2>/dev/null)
  if [ "${pid:-0}" != 0 ]; then echo "argv=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)"; fi
done
true
"""

# Per launchd job of the system domain: loaded or not, disabled or not, its state, process, runs
# and last exit code as `launchctl print` shows them, its process's memory and command line, and
# every absolute path in its plist's ProgramArguments and WorkingDirectory that is gone.
_MACOS_JOBS = r"""
disabled=$(launchctl print-disabled system 2>/dev/null)
for u in $UNITS; do
  echo "@unit $u"
  plist="/Library/LaunchDaemons/$u.plist"
  if [ -f "$plist" ]; then
    echo "FragmentPath=$plist"
    { plutil -extract ProgramArguments json -o - "$plist"; echo; plutil -extract WorkingDirectory raw -o - "$plist"; } \
      2>/dev/null | sed 's#\\/#/#g' | tr -d '[]' | tr ',' '\n' | tr -d '"' | grep '^/' |
      while read -r path; do [ -e "$path" ] || echo "gone=$path"; done
  fi
  echo "$disabled" | grep -Eq "\"$u\" => (disabled|true)" && echo "UnitFileState=disabled"
  out=$(launchctl print "system/$u" 2>/dev/null) || { echo "LoadState=not-loaded"; continue; }
  echo "LoadState=loaded"
  echo "$out" | awk -F' = ' '
    /^\tstate = / { print "SubState=" $2 } /^\tpid = / { print "MainPID=" $2 }
    /^\truns = / { print "runs=" $2 } /^\tlast exit code = / { print "LastExit=" $2 }'
  pid=$(echo "$out" | awk -F' = ' '/^\tpid = / { print $2 }')
  if [ -n "$pid" ]; then
    echo "rss=$(ps -o rss= -p "$pid" | tr -d ' ')"
    echo "argv=$(ps -o command= -p "$pid")"
  fi
done
true
"""


def units_command(units, macos: bool | None = None) -> str:
    """The shell of ServiceStates."""
    return by_system(f"UNITS={shlex.quote(' '.join(units))}\n", _MACOS_JOBS, _LINUX_UNITS, macos)


class ServiceStates(FactBase):
    """The state of these systemd units (names without .service) or launchd jobs (labels): {name:
    {LoadState, ActiveState, SubState, NRestarts, MainPID, UnitFileState, FragmentPath, rss (kB),
    argv, gone: [paths]}}, the fields each system has. Read as root."""

    @staticmethod
    def default():
        return {}

    def command(self, units):
        return units_command(units)

    def process(self, output):
        states: dict[str, dict] = {}
        for name, lines in marked_blocks(output, "@unit"):
            current = states.setdefault(name, {"gone": []})
            for line in lines:
                key, sep, value = line.partition("=")
                if not sep:
                    continue
                if key == "gone":
                    current["gone"].append(value)
                else:
                    current[key] = value.strip()
        return states


class Probes(FactBase):
    """Named shell commands run on the host, their output each: {name: text} ("" when one printed
    nothing or failed)."""

    @staticmethod
    def default():
        return {}

    def command(self, probes):
        each = (f"echo {shlex.quote('@probe ' + name)}; ( {command} ) 2>/dev/null" for name, command in probes)
        return "\n".join([*each, "true"])  # one probe that fails is its own empty answer, not the host's

    def process(self, output):
        return {name: "\n".join(lines).strip() for name, lines in marked_blocks(output, "@probe")}
