"""Facts the toolkit's operations read, each one remote command for several paths or units.

pyinfra caches no facts between operations, so its generic facts cost one SSH round trip per
file, user or unit. These run on Linux and macOS alike (GNU and BSD stat and sha256 tools).
"""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

SHA256 = "(sha256sum {p} 2>/dev/null || shasum -a 256 {p}) | cut -d' ' -f1"
STAT = "(stat -c '%U %G %a' {p} 2>/dev/null || stat -f '%Su %Sg %Lp' {p})"


def _file_probe(p: str) -> str:
    """Shell that prints owner, group, mode and sha256 of regular file p (quoted), or nothing."""
    return f"if [ -f {p} ]; then {STAT.format(p=p)} && {SHA256.format(p=p)}; fi"


def _directory_probe(p: str) -> str:
    """Shell that prints owner, group and mode of directory p (quoted), or nothing."""
    return f"if [ -d {p} ]; then {STAT.format(p=p)}; fi"


def _stat_entry(lines: list[str]) -> dict | None:
    """What a probe printed: None (nothing) or {user, group, mode[, sha256]}."""
    if not lines:
        return None
    user, group, mode = lines[0].split()
    entry = {"user": user, "group": group, "mode": mode.lstrip("0") or "0"}
    if len(lines) > 1:
        entry["sha256"] = lines[1].strip()
    return entry


class FileState(FactBase):
    """Owner, group, mode and sha256 of one regular file; None when it does not exist."""

    def command(self, path):
        return _file_probe(shlex.quote(path))

    def process(self, output):
        return _stat_entry(output) if len(output) >= 2 else None


class TreeDigests(FactBase):
    """Relative path -> sha256 of every regular file under a directory ({} when missing)."""

    @staticmethod
    def default():
        return {}

    def command(self, path):
        p = shlex.quote(path)
        return (
            f"if [ -d {p} ]; then cd {p} && find . -type f -exec sh -c "
            '\'sha256sum "$@" 2>/dev/null || shasum -a 256 "$@"\' _ {} +; fi'
        )

    def process(self, output):
        digests = {}
        for line in output:
            digest, _, name = line.strip().partition("  ")
            if name:
                digests[name[2:] if name.startswith("./") else name] = digest
        return digests


class Account(FactBase):
    """The passwd entry of a user as a dict (home, shell, group), None when absent."""

    def command(self, user):
        u = shlex.quote(user)
        return f"getent passwd {u} && id -gn {u} || true"

    def process(self, output):
        if len(output) < 2:
            return None
        fields = output[0].split(":")
        return {"home": fields[5], "shell": fields[6], "group": output[1].strip()}


class UnitStates(FactBase):
    """{unit: (unit file state, active state)} of several systemd units, from one `systemctl
    show` ("enabled"/"disabled"/"" and "active"/"inactive"/"failed"/...)."""

    def command(self, units):
        return "systemctl show --property=Id,UnitFileState,ActiveState -- " + " ".join(shlex.quote(u) for u in units)

    def process(self, output):
        blocks: list[dict] = []
        for line in output:  # one block per unit; blank lines between them may be dropped
            key, sep, value = line.strip().partition("=")
            if not sep:
                continue
            if not blocks or key in blocks[-1]:
                blocks.append({})
            blocks[-1][key] = value
        return {b.get("Id", ""): (b.get("UnitFileState", ""), b.get("ActiveState", "")) for b in blocks}


def marked_blocks(output, mark: str) -> list[tuple[str, list[str]]]:
    """A command's output cut into blocks, each after a line `<mark> <name>`: [(name, its lines)]
    in order (a name may come again: one block each time)."""
    blocks: list[tuple[str, list[str]]] = []
    for line in output:
        line = line.rstrip("\n")
        if line.startswith(mark + " "):
            blocks.append((line[len(mark) + 1 :].strip(), []))
        elif blocks:
            blocks[-1][1].append(line)
    return blocks


def user_systemctl(user: str, uid: str) -> str:
    """Shell: systemctl for a user's own manager, reached as that user through its runtime folder
    (user and uid: shell words)."""
    return f"sudo -u {user} env XDG_RUNTIME_DIR=/run/user/{uid} systemctl --user"


class UserUnitStates(FactBase):
    """{unit: [(unit file state, active state)]} of these user units, one per user whose systemd
    manager runs (its runtime folder /run/user/<uid>), asked as that user. Read as root."""

    @staticmethod
    def default():
        return {}

    def command(self, units):
        names = " ".join(shlex.quote(u) for u in units)
        return (
            'for d in /run/user/[0-9]*; do [ -S "$d/systemd/private" ] || continue; uid=${d##*/}; '
            'user=$(id -nu "$uid" 2>/dev/null) || continue; '
            f'for u in {names}; do echo "@unit $u"; '
            f"{user_systemctl(chr(34) + '$user' + chr(34), chr(34) + '$uid' + chr(34))} show -p UnitFileState "
            '-p ActiveState "$u" 2>/dev/null; done; done; true'
        )

    def process(self, output):
        found: dict[str, list] = {}
        for unit, lines in marked_blocks(output, "@unit"):
            values = dict(line.strip().partition("=")[::2] for line in lines if "=" in line)
            found.setdefault(unit, []).append((values.get("UnitFileState", ""), values.get("ActiveState", "")))
        return found


class InstalledDebianPackages(FactBase):
    """Which of these Debian packages are installed ("ii"), from one dpkg-query."""

    def command(self, packages):
        names = " ".join(shlex.quote(p) for p in packages)
        # dpkg-query prints nothing for a package it has never heard of (and exits 1).
        return f"dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {names} 2>/dev/null || true; echo '@end'"

    def process(self, output):
        installed = []
        for line in output:
            words = line.split()
            if len(words) >= 2 and words[1] == "ii":  # "@end" has one word
                installed.append(words[0])
        return installed


class InstalledRpmPackages(FactBase):
    """Which of these RPM packages are installed, from one rpm query (RHEL)."""

    def command(self, packages):
        names = " ".join(shlex.quote(p) for p in packages)
        # rpm prints "package X is not installed" for a missing one (and exits non-zero).
        return f"rpm -q --qf '%{{NAME}} installed\\n' {names} 2>/dev/null || true; echo '@end'"

    def process(self, output):
        return [line.split()[0] for line in output if line.strip().endswith(" installed") and len(line.split()) == 2]


# Run by the environment's own interpreter: each pinned distribution's installed version and how
# many of the files its RECORD lists are missing (a half-removed package shows here). Read from
# the .dist-info folders directly, with nothing imported but os and sys (importlib.metadata costs
# about 60 ms; csv and re 7 ms on the lab's mini): a RECORD row's path ends at its first comma
# unless it is quoted (a path holding a comma), the one case csv reads. Names compare as PEP 503
# normalizes them. Each path is looked up relative to site-packages' descriptor.
_DIST_PROBE = (
    "import os, sys\n"
    "site = next(p for p in sys.path if p.endswith('site-packages') and os.path.isdir(p))\n"
    "def norm(name):\n"
    "    name = name.replace('-', '_').replace('.', '_').lower()\n"
    "    while '__' in name:\n"
    "        name = name.replace('__', '_')\n"
    "    return name\n"
    "infos = {}\n"
    "for entry in os.listdir(site):\n"
    "    if entry.endswith('.dist-info'):\n"
    "        name, _, version = entry[:-10].partition('-')\n"
    "        infos[norm(name)] = (version, entry)\n"
    "fd = os.open(site, os.O_RDONLY)\n"
    "for name in sys.argv[1:]:\n"
    "    found = infos.get(norm(name))\n"
    "    if not found:\n"
    "        print('dist', name, '-', 0); continue\n"
    "    gone = 0\n"
    "    with open(os.path.join(site, found[1], 'RECORD'), newline='') as record:\n"
    "        for line in record:\n"
    "            if line.startswith('\"'):\n"
    "                import csv\n"
    "                path = next(csv.reader([line]))[0]\n"
    "            else:\n"
    "                path = line.partition(',')[0].rstrip('\\r\\n')\n"
    "            if not path:\n"
    "                continue\n"
    "            try:\n"
    "                os.stat(path, dir_fd=fd)\n"
    "            except OSError:\n"
    "                gone += 1\n"
    "    print('dist', name, found[0], gone)\n"
)


ENV_RECORD = "llmlab-requirements.txt"  # inside an environment: the pins it was built from


class UvEnvironment(FactBase):
    """What a uv-built environment at venv is, judged on the host, in one command: the shared uv's
    version (when uv names it: a host's environments share one uv, asked once), the sha256 of
    the requirements record it was built from, whether its interpreter and the service's entry
    point run, each pinned distribution's installed version and missing files ({name: (version
    or "-", missing files)}), and the folder venv links to ("" if no link)."""

    def command(self, uv, venv, entry_point="", dists=()):
        v, spec = shlex.quote(venv), shlex.quote(f"{venv}/{ENV_RECORD}")
        entry = shlex.quote(f"{venv}/bin/{entry_point}") if entry_point else "/bin/true"
        probe = f"{v}/bin/python -c {shlex.quote(_DIST_PROBE)} {' '.join(shlex.quote(d) for d in dists)}"
        version = f'echo "uv=$({shlex.quote(uv)} --version 2>/dev/null | cut -d" " -f2)"; ' if uv else ""
        return (
            f"{version}"
            f'echo "built_from=$([ -f {spec} ] && {SHA256.format(p=spec)})"; '
            f'echo "venv=$([ -f {v}/pyvenv.cfg ] && echo yes)"; '
            f'echo "folder=$(readlink {v} 2>/dev/null)"; '
            f"if [ -x {entry} ] && {probe} 2>/dev/null; then echo runs=yes; else echo runs=no; fi"
        )

    def process(self, output):
        values, dists = {}, {}
        for line in output:
            if line.startswith("dist "):
                _, name, version, gone = line.split()
                dists[name] = (version, int(gone))
            else:
                key, _, value = line.strip().partition("=")
                values[key] = value
        return {
            "uv": values.get("uv", ""),
            "built_from": values.get("built_from", ""),
            "venv": values.get("venv") == "yes",
            "runs": values.get("runs") == "yes",
            "dists": dists,
            "folder": values.get("folder", ""),
        }


class _PathStates(FactBase):
    """One probe per path in one command, each after an '@i' mark: [state or None], in order.
    Subclasses name the probe."""

    def command(self, paths):
        return "; ".join(f"echo '@{i}'; {self.probe(shlex.quote(path))}" for i, path in enumerate(paths))

    def process(self, output):
        sections: list[list[str]] = []
        for line in output:
            if line.startswith("@") and line[1:].strip().isdigit():
                sections.append([])
            elif sections:
                sections[-1].append(line)
        return [_stat_entry(lines) for lines in sections]


class FileStates(_PathStates):
    """FileState of several files in one command: [state or None] in the order of paths."""

    probe = staticmethod(_file_probe)


class DirectoryStates(_PathStates):
    """Owner, group and mode of several directories in one command: [state or None]."""

    probe = staticmethod(_directory_probe)


class HostFacts(FactBase):
    """What a host is, read first and without sudo, in one command: kernel, CPU architecture,
    operating system id, version and name, CPUs, memory in bytes, the login user, its home, and what
    sudo asks of it ("root": no sudo needed, "nopasswd", "password", "absent")."""

    def command(self):
        return (
            'echo "kernel=$(uname -s)"; echo "arch=$(uname -m)"; echo "user=$(id -un)"; echo "home=$HOME"; '
            'if [ -r /etc/os-release ]; then (. /etc/os-release; echo "os=$ID"; echo "version=$VERSION_ID"; '
            'echo "name=$PRETTY_NAME"); fi; '
            "if command -v sw_vers >/dev/null 2>&1; then v=$(sw_vers -productVersion); "
            'echo "os=macos"; echo "version=$v"; echo "name=macOS $v"; fi; '
            'echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu)"; '
            'echo "memory=$(sysctl -n hw.memsize 2>/dev/null || awk \'/^MemTotal:/ {print $2 "k"}\' /proc/meminfo)"; '
            'if [ "$(id -u)" = 0 ]; then echo sudo=root; '
            "elif ! command -v sudo >/dev/null 2>&1; then echo sudo=absent; "
            "elif sudo -n true 2>/dev/null; then echo sudo=nopasswd; else echo sudo=password; fi"
        )

    def process(self, output):
        values = {}
        for line in output:
            key, sep, value = line.strip().partition("=")
            if sep:
                values[key] = value.strip().strip('"')
        memory = values.get("memory") or "0"  # bytes (sysctl) or "<kB>k" (/proc/meminfo)
        values["memory"] = int(memory[:-1]) * 1024 if memory.endswith("k") else int(memory)
        values["cpus"] = int(values.get("cpus") or 1)
        return values


class EffectiveUser(FactBase):
    """The user commands run as (with this run's sudo settings): "root" once escalation works."""

    def command(self):
        return "id -un"

    def process(self, output):
        return output[0].strip() if output else ""


def hub_repo_dir(hf_home: str, repo: str) -> str:
    """A repository's folder in a Hugging Face cache (HF_HOME), as huggingface_hub names it."""
    return f"{hf_home}/hub/models--{repo.replace('/', '--')}"


class HubCache(FactBase):
    """Which Hugging Face repos are complete in a hub cache (HF_HOME), and their size in bytes:
    {repo: bytes, or None when absent or partly downloaded}. A repo is complete when its
    refs/main names a snapshot that exists and no blob is still being fetched (.incomplete, or
    the deploy's own .llmlab-part)."""

    def command(self, hf_home, repos):
        parts = []
        for repo in repos:
            d = shlex.quote(hub_repo_dir(hf_home, repo))
            parts.append(
                f'if [ -f {d}/refs/main ] && [ -d {d}/snapshots/"$(cat {d}/refs/main)" ] && '
                f"! ls {d}/blobs 2>/dev/null | grep -Eq '\\.(incomplete|llmlab-part)$'; then "
                f"echo {shlex.quote(repo)} $(du -sk {d} | cut -f1); else echo {shlex.quote(repo)} -; fi"
            )
        return "; ".join(parts)

    def process(self, output):
        sizes = {}
        for line in output:
            repo, _, kb = line.strip().rpartition(" ")
            if repo:
                sizes[repo] = None if kb == "-" else int(kb) * 1024
        return sizes


class LaunchdJobs(FactBase):
    """Which launchd jobs are loaded in the system domain (`launchctl print system/<label>`):
    {label: True/False}."""

    def command(self, labels):
        return "; ".join(
            f"if launchctl print system/{shlex.quote(label)} >/dev/null 2>&1; then echo {shlex.quote(label)}=1; "
            f"else echo {shlex.quote(label)}=0; fi"
            for label in labels
        )

    def process(self, output):
        return {line.split("=")[0]: line.strip().endswith("=1") for line in output if "=" in line}


class LaunchdDisabled(FactBase):
    """The labels launchd's system domain holds disabled (`launchctl print-disabled system`:
    `"label" => disabled`, or `=> true` before macOS 13)."""

    @staticmethod
    def default():
        return set()

    def command(self):
        return "launchctl print-disabled system 2>/dev/null || true"

    def process(self, output):
        found = (re.match(r'^\s*"([^"]+)"\s*=>\s*(\w+)', line) for line in output)
        return {m.group(1) for m in found if m and m.group(2) in ("disabled", "true")}


class Answering(FactBase):
    """Which of these one-shot probes (shell commands) succeed now: a list of booleans."""

    def command(self, probes):
        return "; ".join(f"if ( {probe} ) >/dev/null 2>&1; then echo yes; else echo no; fi" for probe in probes)

    def process(self, output):
        return [line.strip() == "yes" for line in output]


class DeployLock(FactBase):
    """The deploy lock's record (tasks/runlock.py), None when no run holds the host."""

    def command(self, path):
        p = shlex.quote(path)
        return f"if [ -f {p} ]; then echo held; cat {p}; fi"

    def process(self, output):
        return "\n".join(output[1:]) if output and output[0] == "held" else None


MARKER = "Rendered by the llm-lab toolkit"  # the first lines of every unit and plist it writes


def has_marker(path: str) -> str:
    """Shell test: the file at `path` (a shell word) carries MARKER in its first three lines, read
    by the shell itself (no process)."""
    return (
        f'{{ n=0; m=1; while [ $n -lt 3 ] && {{ IFS= read -r l || [ -n "$l" ]; }}; do '
        f'case "$l" in *{shlex.quote(MARKER)}*) m=0; break;; esac; n=$((n+1)); l=; done <{path}; '
        f"[ $m = 0 ]; }} 2>/dev/null"
    )


# Every TCP listener, or those on $PORTS (empty: all), one line each: port, address, process id,
# user, command, unit (the systemd unit of its cgroup, or its launchd label) and whether that
# unit's file carries MARKER. Linux reads /proc as root (no ss needed); hexadecimal is decoded by
# hand (mawk and gawk read "0x.." strings differently).
_LINUX_LISTENERS = r"""
sockets=$(awk -v want=" $PORTS " '
  function hex(s,  i, n) { n = 0; s = toupper(s)
    for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789ABCDEF", substr(s, i, 1)) - 1
    return n }
  function v4(h) {
    return hex(substr(h, 7, 2)) "." hex(substr(h, 5, 2)) "." hex(substr(h, 3, 2)) "." hex(substr(h, 1, 2)) }
  function addr(h,  i, out) {
    if (length(h) == 8) return v4(h)
    if (h == "00000000000000000000000000000000") return "::"
    if (h == "00000000000000000000000001000000") return "::1"
    if (substr(h, 1, 24) == "0000000000000000FFFF0000") return "::ffff:" v4(substr(h, 25, 8))
    out = ""
    for (i = 0; i < 4; i++)
      out = out (i ? ":" : "") substr(h, i * 8 + 7, 2) substr(h, i * 8 + 5, 2) ":" \
        substr(h, i * 8 + 3, 2) substr(h, i * 8 + 1, 2)
    return out }
  FNR > 1 && $4 == "0A" {
    n = split($2, a, ":"); port = hex(a[n])
    if (want == "  " || index(want, " " port " ")) print port, addr(toupper(a[1])), $10
  }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
[ -n "$sockets" ] || exit 0
found=$(find /proc/[0-9]*/fd -lname 'socket:*' -printf '%p %l\n' 2>/dev/null | awk -v sockets="$sockets" '
  BEGIN { n = split(sockets, l, "\n")
          for (i = 1; i <= n; i++) { split(l[i], f, " "); at[f[3]] = f[1] " " f[2] } }
  { inode = $2; gsub(/[^0-9]/, "", inode); split($1, p, "/")
    if (inode in at && !(inode in seen)) { seen[inode] = 1; print at[inode], p[3] } }' | sort -u -k1,1n -k2,2)
[ -n "$found" ] || exit 0
cgroup_of() {
  cgroup=; { while IFS= read -r c; do case "$c" in 0::*) cgroup=${c#0::};; esac; done <"/proc/$1/cgroup"; } 2>/dev/null
}
units=
while read -r port address pid; do
  cgroup_of "$pid"
  case "$cgroup" in /system.slice/*.service) units="$units ${cgroup##*/}";; esac
done <<EOF
$found
EOF
# One systemctl for every unit's file: its Id= and FragmentPath= lines, one unit after another.
fragments=
[ -z "$units" ] || fragments=$(systemctl show -p Id,FragmentPath -- $units 2>/dev/null)
while read -r port address pid; do
  user=$(stat -c %U "/proc/$pid" 2>/dev/null)
  comm=; { IFS= read -r comm <"/proc/$pid/comm"; } 2>/dev/null
  cgroup_of "$pid"
  ours=no
  case "$cgroup" in /system.slice/*.service)
    id=; file=
    while IFS= read -r f; do
      case "$f" in Id=*) id=${f#Id=};; FragmentPath=*) [ "$id" = "${cgroup##*/}" ] && file=${f#FragmentPath=};; esac
    done <<EOF
$fragments
EOF
    [ -n "$file" ] && has_marker "$file" && ours=yes;;
  esac
  printf 'port=%s\taddress=%s\tpid=%s\tuser=%s\tcommand=%s\tunit=%s\tours=%s\n' \
    "$port" "$address" "$pid" "$user" "$comm" "$cgroup" "$ours"
done <<EOF
$found
EOF
"""

# macOS: a listener's launchd job is the one whose process it is or descends from (a job's script
# that starts servers in the background); plist: the file launchd loaded that job from.
_MACOS_LISTENERS = r"""
jobs=$(launchctl list 2>/dev/null)
tree=$(ps -axo pid=,ppid= 2>/dev/null)
lsof -nP -iTCP -sTCP:LISTEN -FpcLn 2>/dev/null | awk -v want=" $PORTS " -v jobs="$jobs" -v tree="$tree" '
  BEGIN { n = split(jobs, j, "\n"); for (i = 1; i <= n; i++) { split(j[i], f, "\t"); label[f[1]] = f[3] }
          n = split(tree, t, "\n"); for (i = 1; i <= n; i++) { split(t[i], f, " "); parent[f[1]] = f[2] } }
  function job(pid,  hops) {
    for (hops = 0; hops < 16 && pid > 1; hops++) { if (label[pid] != "") return label[pid]; pid = parent[pid] }
    return "" }
  /^p/ { pid = substr($0, 2) } /^c/ { comm = substr($0, 2) } /^L/ { user = substr($0, 2) }
  /^n/ { name = substr($0, 2); port = name; sub(/.*:/, "", port)
         address = substr(name, 1, length(name) - length(port) - 1)
         gsub(/[\[\]]/, "", address); if (address == "*") address = "0.0.0.0"
         if ((want == "  " || index(want, " " port " ")) && !((port, address) in seen)) {
           seen[port, address] = 1
           printf "port=%s\taddress=%s\tpid=%s\tuser=%s\tcommand=%s\tunit=%s\n",
             port, address, pid, user, comm, job(pid) } }' |
while IFS= read -r line; do
  unit=${line##*unit=}; ours=no; plist=
  if [ -n "$unit" ]; then
    plist=$(launchctl print "system/$unit" 2>/dev/null | sed -n 's/^[[:space:]]*path = //p' | head -n 1)
    has_marker "${plist:-/Library/LaunchDaemons/$unit.plist}" && ours=yes
  fi
  printf '%s\tours=%s\tplist=%s\n' "$line" "$ours" "$plist"
done
"""


def by_system(head: str, mac: str, linux: str, macos: bool | None = None) -> str:
    """head, then the macOS or the Linux script: chosen on the host (macos None), or one of them
    (True/False: the tests run each branch here)."""
    if macos is not None:
        return head + (mac if macos else linux).strip()
    return head + f'if [ "$(uname -s)" = Darwin ]; then {mac.strip()}\nelse {linux.strip()}\nfi'


def listeners_command(ports=(), macos: bool | None = None) -> str:
    """The shell of Listeners."""
    listed = shlex.quote(" ".join(str(int(p)) for p in ports))
    head = f"PORTS={listed}; has_marker() {{ {has_marker(chr(34) + '$1' + chr(34))}; }}\n"
    return by_system(head, _MACOS_LISTENERS, _LINUX_LISTENERS, macos)


class Listeners(FactBase):
    """Every TCP listener of the host, or those on the given ports: [{port, address, pid, user,
    command, unit, cgroup, ours, plist}] by port and address (unit: the systemd unit of its
    cgroup, or its launchd label; ours: its unit file or plist carries the toolkit's MARKER;
    plist: where launchd loaded its job from, on macOS). Read as root, in one command: from /proc
    on Linux, with lsof, ps and launchctl on macOS."""

    @staticmethod
    def default():
        return []

    def command(self, ports=()):
        return listeners_command(ports)

    def process(self, output):
        found = []
        for line in output:
            fields = dict(part.split("=", 1) for part in line.strip().split("\t") if "=" in part)
            if fields.get("port", "").isdigit():
                unit = fields.get("unit", "")
                found.append(
                    {
                        "port": int(fields["port"]),
                        "address": fields.get("address", ""),
                        "pid": int(fields.get("pid") or 0),
                        "user": fields.get("user", ""),
                        "command": fields.get("command", ""),
                        "unit": unit.rsplit("/", 1)[-1] if unit else "",
                        "cgroup": unit,
                        "ours": fields.get("ours") == "yes",
                        "plist": fields.get("plist", ""),
                    }
                )
        return sorted(found, key=lambda f: (f["port"], f["address"]))


class PortHolders(Listeners):
    """Which process listens on each of these TCP ports: {port: {pid, user, command, unit, cgroup,
    ours, plist}} for the ports held (the first listener of each, as Listeners reads them)."""

    @staticmethod
    def default():
        return {}

    def command(self, ports):
        return listeners_command(ports)

    def process(self, output):
        held = {}
        for found in super().process(output):
            held.setdefault(found.pop("port"), {k: v for k, v in found.items() if k != "address"})
        return held


class RenderedFiles(FactBase):
    """The names of the files in a folder matching a shell pattern whose first lines carry the
    toolkit's MARKER: the units and plists it wrote, and no one else's."""

    @staticmethod
    def default():
        return []

    def command(self, folder, pattern):
        f, test = shlex.quote(folder), has_marker('"$p"')
        return f'cd {f} 2>/dev/null || exit 0; for p in {pattern}; do [ -f "$p" ] && {test} && echo "$p"; done; true'

    def process(self, output):
        return sorted(line.strip() for line in output if line.strip())
