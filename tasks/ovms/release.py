"""Which OVMS release archive the proxy host gets: the asset named for its system and the pinned
version, where it is fetched from, and the sha256 it is held to (pinned in data, or recorded
once in the lock file on the control machine and held to ever after).

Choosing reads the lock file only; it runs after the host's system is read, while the deploy
plans, and downloads nothing. A digest is recorded by a command of its own, before a deploy:

    python -m tasks.ovms.release RELEASE_URL [--lock ovms.lock]

which reads the archive once on the control machine (a download, or a local file) and writes
its sha256 into the lock file; an archive already recorded is held to its first digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tasks.schema import DataError

VERSION = re.compile(r"^(\d{4})\.(\d+)(?:\.(\d+))?$")


def check_version(key: str, value) -> None:
    """The check of the ovms_version key."""
    if not VERSION.match(value):
        raise DataError(f"{key} {value!r} is not an OVMS release version (like 2025.4 or 2026.3.0)")


RELEASES_PAGE = "https://github.com/openvinotoolkit/model_server/releases"
# OVMS builds for these systems only (its bare-metal docs); the ubuntu24 build needs the C
# library of Ubuntu 24.04 (2.39), newer than Debian 12's (2.36).
SYSTEM_TAGS = {("ubuntu", "22.04"): "ubuntu22", ("ubuntu", "24.04"): "ubuntu24", ("rhel", "9"): "redhat"}
ARCHES = ("x86_64",)
# What the python_on build needs on the host: the libpython it was linked against (the release
# leaves it out; OVMS's own images install these), the system's python3 being that version,
# and Jinja2 with MarkupSafe at the versions its docs pin (in an environment of the toolkit's).
PYTHON_PACKAGES = {"ubuntu22": ["libpython3.10"], "ubuntu24": ["libpython3.12t64"], "redhat": ["python3-libs"]}
PYTHON_VERSIONS = {"ubuntu22": "3.10", "ubuntu24": "3.12", "redhat": "3.9"}
TEMPLATE_REQUIREMENTS = ("jinja2==3.1.6", "markupsafe==3.0.2")
DOWNLOAD_TIMEOUT = 60  # seconds without a byte before the control machine's download gives up


@dataclass(frozen=True)
class Release:
    version: str
    asset: str  # the archive's file name
    url: str  # where the host fetches it, or a path on the control machine (uploaded)
    sha256: str
    digest_from: str  # "ovms_archive_sha256" or the lock file's path
    system_tag: str  # ubuntu22, ubuntu24, redhat ("" when ovms_archive_url names the archive)

    @property
    def local(self) -> str | None:
        """The archive's path on the control machine when it is uploaded, not downloaded."""
        return local_path(self.url)


def local_path(url: str) -> str | None:
    if url.startswith("file://"):
        return urlsplit(url).path
    if os.path.isabs(url):
        return url
    return None


def parse_version(version: str, key: str = "ovms_version") -> tuple[int, int, int]:
    m = VERSION.match(version)
    if not m:
        raise DataError(f"{key} {version!r} is not an OVMS release version (like 2025.4 or 2026.3.0)")
    return int(m[1]), int(m[2]), int(m[3] or 0)


def system_tag(os_id: str, os_version: str, arch: str) -> str:
    """The release's name for the host's system; an error naming what was found otherwise."""
    wanted = (os_id, os_version.split(".")[0] if os_id == "rhel" else os_version)
    tag = SYSTEM_TAGS.get(wanted)
    if tag is None or arch not in ARCHES:
        found = f"{os_id} {os_version} {arch}"
        raise DataError(
            f"OVMS publishes no release for {found}: its archives are for Ubuntu 22.04, Ubuntu 24.04 and "
            f"RHEL 9 on x86_64 ({RELEASES_PAGE}); set ovms_archive_url to an archive built for this system"
        )
    return tag


def asset_name(version: str, tag: str, python: bool) -> str:
    """The archive's name, which changed twice: up to 2025.4 the python_on build was the one
    with a suffix; 2026.0 names both variants; from 2026.1 the version is in it (three parts,
    while the tag is v2026.1). 2025.4.1's own docs disagree (its release branch keeps the old
    names, the next release's docs name both variants): the newer form is taken."""
    v = parse_version(version)
    if v < (2025, 4, 1):
        return f"ovms_{tag}{'_python_on' if python else ''}.tar.gz"
    variant = f"python_{'on' if python else 'off'}"
    if v < (2026, 1, 0):
        return f"ovms_{tag}_{variant}.tar.gz"
    return f"ovms_{tag}_{'.'.join(map(str, v))}_{variant}.tar.gz"


def python_packages(tag: str, python: bool) -> list[str]:
    return list(PYTHON_PACKAGES[tag]) if python and tag else []


def read_lock(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        lock = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e}); fix it or delete the entry") from None
    if not isinstance(lock, dict) or not all(
        isinstance(v, dict) and re.match(r"^[0-9a-f]{64}$", str(v.get("sha256", ""))) for v in lock.values()
    ):
        raise DataError(f'{path}: every entry must be URL -> {{"sha256": <64 hex digits>}}')
    return lock


def write_lock(path: Path, lock: dict[str, dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def digest_of(url: str) -> str:
    """sha256 of the archive, read on the control machine (a local file, or one download)."""
    h = hashlib.sha256()
    local = local_path(url)
    with open(local, "rb") if local else urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(settings: dict, sources: dict, os_id: str, os_version: str, arch: str, cwd: Path) -> Release:
    """The archive for this host and the digest it is held to, or an error saying what to set."""
    version = settings["ovms_version"]
    parse_version(version)
    if settings["ovms_archive_url"]:
        url, tag = settings["ovms_archive_url"], ""
        asset = os.path.basename(urlsplit(url).path)
    else:
        tag = system_tag(os_id, os_version, arch)
        asset = asset_name(version, tag, settings["ovms_python"])
        base = settings["ovms_release_url"].rstrip("/")
        url = f"{base}/v{version}/{asset}"
    lock_path = Path(settings["ovms_lock_file"])
    lock_path = lock_path if lock_path.is_absolute() else cwd / lock_path
    pinned = settings["ovms_archive_sha256"]
    locked = read_lock(lock_path).get(url, {}).get("sha256")
    local = local_path(url)
    if local and not os.path.isfile(local):
        raise DataError(
            f"{sources.get('ovms_release_url', 'ovms_release_url')}: the OVMS archive {local} "
            f"does not exist on the control machine"
        )
    if pinned:
        if locked and locked != pinned:
            raise DataError(f"ovms_archive_sha256 {pinned} and {lock_path} ({locked}) disagree for {url}: remove one")
        sha, where = pinned, sources.get("ovms_archive_sha256", "ovms_archive_sha256")
    elif locked:
        sha, where = locked, str(lock_path)
    else:
        raise DataError(
            f"no sha256 for the OVMS archive {url}: set ovms_archive_sha256 (the digest GitHub shows beside "
            f"{asset} on {RELEASES_PAGE}/tag/v{version}), or record the archive's digest once: "
            f"python -m tasks.ovms.release {shlex.quote(url)} --lock {shlex.quote(str(lock_path))}"
        )
    # A local archive is hashed again where it is about to be uploaded (tasks/ovms/__init__.py), not on every run.
    return Release(version=version, asset=asset, url=url, sha256=sha, digest_from=where, system_tag=tag)


def record(url: str, lock_path: Path) -> tuple[str, bool]:
    """Record url's digest in the lock file (one read of the archive); (sha256, newly recorded).
    A digest recorded before is kept: an archive that no longer matches it is an error."""
    lock = read_lock(lock_path)
    sha = digest_of(url)
    held = lock.get(url, {}).get("sha256")
    if held and held != sha:
        raise DataError(
            f"{url}: sha256 is {sha}, not {held} (from {lock_path}): the archive changed; nothing was recorded"
        )
    if held:
        return sha, False
    lock[url] = {"sha256": sha, "asset": os.path.basename(urlsplit(url).path)}
    write_lock(lock_path, lock)
    return sha, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.ovms.release",
        description="Record the sha256 of an OVMS release archive in the lock file, once (the deploy's "
        "error names the URL).",
    )
    parser.add_argument("url", help="the archive's URL (or its path on this machine)")
    parser.add_argument("--lock", default="ovms.lock", help="the lock file (default: ovms.lock)")
    args = parser.parse_args(argv)
    try:
        sha, new = record(args.url, Path(args.lock))
    except (DataError, OSError) as exc:
        print(f"ovms release: {exc}", file=sys.stderr)
        return 1
    print(f"{'recorded' if new else 'already recorded'}: {sha}  {args.url} ({args.lock})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
