"""Fetch one model's weights into the Hugging Face cache (HF_HOME) with snapshot_download, and
report progress while it runs: bytes of total, rate and time left, every EVERY seconds, one line
each on standard output (the deploy shows them on the operator's terminal). The last line is
`size <bytes>` of the repository's cache folder.

A fetch cut off half way resumes where it stopped: each file's bytes go first into a partial
file beside its blob in the cache (`blobs/<etag>.llmlab-part`), fetched with a byte range from
where it ended, checked against its size (and its sha256 where the etag is one), then renamed to
the blob; snapshot_download then only links the blobs into the snapshot. (huggingface_hub since
1.x downloads each file into a file of its own process, so a download it began is begun again by
the next one.)

    python fetch.py REPO [EVERY]

Run on the host by the deploy (tasks/mlx.py) with the MLX environment's Python; the endpoint is
the hub client's own setting (HF_ENDPOINT).
"""

import fcntl
import hashlib
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url, snapshot_download
from huggingface_hub.utils import build_hf_headers

PART = ".llmlab-part"


def folder_size(path: str) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass  # a partial file renamed as it completed
    return total


def amount(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def fetch_blob(repo: str, revision: str, filename: str, blobs: str) -> None:
    """One file's blob into the cache, resumed from its partial file if an earlier fetch left one."""
    meta = get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision))
    blob = os.path.join(blobs, meta.etag)
    if os.path.exists(blob):
        return
    os.makedirs(blobs, exist_ok=True)
    part = blob + PART
    # One writer per partial file: a fetch cut off from its deploy (its SSH connection gone) may
    # still be running; the next one waits for it, then finds the blob.
    lock = open(part + ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(blob):
        return
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if meta.size is not None and have > meta.size:
        have = 0
    if meta.size is None or have < meta.size:  # else it is whole: cut off before its check
        headers = {k: v for k, v in build_hf_headers().items()}
        if urlsplit(meta.location).netloc != urlsplit(constants.ENDPOINT).netloc:
            # A redirect to another host (the Hub's CDN, a signed URL): the token stays with the Hub.
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            request = urllib.request.Request(meta.location, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as response:
                if have and response.status != 206:
                    have = 0  # the server sends it whole
                with open(part, "ab" if have else "wb", buffering=0) as f:
                    while chunk := response.read1(1 << 20):  # what has arrived: the partial file grows as it comes
                        f.write(chunk)
        except urllib.error.HTTPError as exc:
            if exc.code != 416:  # 416: nothing past what it has, which is checked below
                raise
    got = os.path.getsize(part)
    if meta.size is not None and got != meta.size:
        raise OSError(f"{filename}: {got} bytes fetched, {meta.size} expected")
    if len(meta.etag) == 64:  # an LFS file's etag is its sha256
        digest = hashlib.sha256()
        with open(part, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != meta.etag:
            os.unlink(part)
            raise OSError(f"{filename}: its sha256 is not {meta.etag}; fetched again next time")
    os.replace(part, blob)
    os.unlink(part + ".lock")  # a fetch waiting on it finds the blob


def main() -> int:
    repo, every = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    info = HfApi().model_info(repo, files_metadata=True)
    total = sum(s.size or 0 for s in info.siblings or [])
    blobs = os.path.join(os.environ["HF_HOME"], "hub", f"models--{repo.replace('/', '--')}", "blobs")
    first, started = folder_size(blobs), time.monotonic()
    failed: list[BaseException] = []
    done = threading.Event()

    def fetch():
        try:
            for sibling in info.siblings or []:
                fetch_blob(repo, info.sha, sibling.rfilename, blobs)
            snapshot_download(repo)  # links the blobs; by branch name, so that refs/main is written
        except BaseException as exc:  # reported below, the run fails
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=fetch, daemon=True).start()
    if 0 < first < total:
        print(f"{repo}: resuming with {amount(first)} of {amount(total)} already here", flush=True)
    while not done.wait(every):
        have = min(folder_size(blobs), total)
        rate = (have - first) / max(time.monotonic() - started, 1e-3)
        left = f"{duration((total - have) / rate)} left" if rate > 0 else "waiting"
        print(
            f"{repo}: {amount(have)} of {amount(total)} ({100 * have / max(total, 1):.0f}%), {amount(rate)}/s, {left}",
            flush=True,
        )
    if failed:
        print(f"{repo}: {type(failed[0]).__name__}: {failed[0]}", file=sys.stderr)
        return 1
    print(f"size {folder_size(os.path.dirname(blobs))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
