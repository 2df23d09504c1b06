"""A stand-in for the Hugging Face Hub (the lab cannot reach huggingface.co): folders of this
machine served as model repositories over the part of the Hub's HTTP API that huggingface_hub's
snapshot_download and model_info use, so the lab's studio fetches its weights the way a Mac does,
through the hub client's own endpoint setting (HF_ENDPOINT).

    python -m lab.hfhub --bind 10.231.0.1:8780 --repo lab/tiny-llama=/path/to/folder [--rate BYTES]

`./labctl up` starts one on the lab's gateway (start(): what the studio's mlx_hf_endpoint and the
mini's ovms_hf_endpoint name), serving the lab's tiny model as `lab/tiny-llama` and its OpenVINO
export as `lab/tiny-llama-ov` (what OVMS pulls); `down` stops it (stop(), by its process id).

Served: `GET /api/models/<repo>[/revision/<rev>]` (id, sha, siblings with their sizes),
`GET /api/models/<repo>/tree/<rev>` (every file with its size and blob id), and `HEAD`/`GET
/<repo>/resolve/<rev>/<path>` with the headers the client reads (X-Repo-Commit, ETag,
Content-Length) and byte ranges (a download cut off resumes; a range past the end is 416). Weight
files (`.safetensors`, `.bin`, `.gguf`) are LFS files as on the Hub: their etag is their sha256,
and resolving one redirects, with X-Linked-Etag and X-Linked-Size, to `<cdn>/_lfs/<sha256>`
(`--cdn`, default the address asked: another host name makes it a redirect to another host, as
the Hub's to its CDN). Other files are plain git blobs (the git blob sha1); the commit id is a
digest of every path and blob. `--rate` paces each download (bytes per second), so one can be
watched, and interrupted, half way. The server records whether a request to `/_lfs/` carried an
Authorization header (`lfs_authorized`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
PORT = 8780  # on the lab's gateway address
REPO = "lab/tiny-llama"  # the lab's tiny model, as the studio's registry names it
OV_REPO = "lab/tiny-llama-ov"  # its OpenVINO export, the source lil-jerry's OVMS pulls


LFS = (".safetensors", ".bin", ".gguf")
POINTER_SIZE = 134  # an LFS pointer file's size, as the Hub reports it


class Repo:
    def __init__(self, repo_id: str, folder: Path):
        self.id = repo_id
        self.folder = folder
        self.files: dict[str, tuple[int, str, str | None]] = {}  # path -> (size, git blob sha1, sha256 if LFS)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            lfs = hashlib.sha256(data).hexdigest() if path.suffix in LFS else None
            self.files[path.relative_to(folder).as_posix()] = (len(data), blob, lfs)
        listing = "".join(f"{p} {blob}\n" for p, (_, blob, _) in self.files.items())
        self.sha = hashlib.sha1(listing.encode()).hexdigest()
        self.by_sha256 = {lfs: p for p, (_, _, lfs) in self.files.items() if lfs}

    def info(self) -> dict:
        siblings = []
        for p, (size, blob, lfs) in self.files.items():
            entry = {"rfilename": p, "size": size, "blobId": blob}
            if lfs:
                entry["lfs"] = {"sha256": lfs, "size": size, "pointerSize": POINTER_SIZE}
            siblings.append(entry)
        return {"id": self.id, "modelId": self.id, "sha": self.sha, "private": False, "siblings": siblings}

    def tree(self) -> list[dict]:
        entries = []
        for p, (size, blob, lfs) in self.files.items():
            entry = {"type": "file", "path": p, "size": size, "oid": blob}
            if lfs:
                entry["lfs"] = {"oid": lfs, "size": size, "pointerSize": POINTER_SIZE}
            entries.append(entry)
        return entries


def handler(repos: dict[str, Repo], rate: int | None, cdn: str | None):
    def split(path: str) -> tuple[Repo | None, str]:
        """The repository a path starts with (ids hold a '/'), and the rest of the path."""
        for repo_id in sorted(repos, key=len, reverse=True):
            if path == repo_id or path.startswith(repo_id + "/"):
                return repos[repo_id], path[len(repo_id) :]
        return None, ""

    class Hub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "HUB-STAND-IN/1 (lab/hfhub.py)"

        def log_message(self, format, *args):
            pass

        def _json(self, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _missing(self, what: str) -> None:
            data = json.dumps({"error": what}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Code", "RepoNotFound" if "repository" in what else "EntryNotFound")
            self.send_header("X-Error-Message", what)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._serve(body=True)

        def do_HEAD(self):
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path).lstrip("/")
            if path.startswith("api/models/"):
                repo, rest = split(path[len("api/models/") :])
                if repo is None:
                    return self._missing("repository not found")
                if rest == "" or rest.startswith("/revision/"):
                    return self._json(repo.info())
                if rest.startswith("/tree/"):
                    return self._json(repo.tree())
                return self._missing("no such API")
            if path.startswith("_lfs/"):  # the "CDN": LFS files by their sha256
                sha = path[len("_lfs/") :]
                with self.server.lock:
                    self.server.lfs_authorized.append("Authorization" in self.headers)
                found = [(r, r.by_sha256[sha]) for r in repos.values() if sha in r.by_sha256]
                if not found:
                    return self._missing("no such object")
                repo, file_path = found[0]
                return self._send(repo, file_path, repo.files[file_path][0], sha, body)
            repo, rest = split(path)
            if repo is None or not rest.startswith("/resolve/"):
                return self._missing("repository not found")
            _, _, file_path = rest[len("/resolve/") :].partition("/")
            if file_path not in repo.files:
                return self._missing(f"{file_path} is not in {repo.id}")
            size, blob, lfs = repo.files[file_path]
            if lfs:
                self.send_response(302)
                self.send_header("Location", f"{cdn or 'http://' + self.headers['Host']}/_lfs/{lfs}")
                self.send_header("X-Repo-Commit", repo.sha)
                self.send_header("X-Linked-Etag", f'"{lfs}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(repo, file_path, size, blob, body)

        def _send(self, repo: Repo, file_path: str, size: int, etag: str, body: bool) -> None:
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes=") and ranged[6:].split("-")[0].isdigit():
                start = int(ranged[6:].split("-")[0])
                if start >= size:  # nothing left to send
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            self.send_response(206 if ranged and start else 200)
            self.send_header("X-Repo-Commit", repo.sha)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(size - start))
            if ranged and start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if not body:
                return
            with open(repo.folder / file_path, "rb") as f:
                f.seek(start)
                started, sent = time.monotonic(), 0
                while chunk := f.read(CHUNK):
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    with self.server.lock:
                        self.server.sent += len(chunk)
                    if rate:
                        ahead = sent / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)

    return Hub


def serve(bind: str, repos: dict[str, Path], rate: int | None = None, cdn: str | None = None) -> ThreadingHTTPServer:
    """A server of these repositories (id -> folder) at bind (host:port; port 0 picks one); the
    caller runs serve_forever(). cdn: the base URL LFS files are redirected to (a callable of
    the server's port, for a port picked at start)."""
    host, _, port = bind.rpartition(":")
    built = {k: Repo(k, Path(v)) for k, v in repos.items()}
    server = ThreadingHTTPServer((host, int(port)), handler(built, rate, None))
    if callable(cdn):
        server.RequestHandlerClass = handler(built, rate, cdn(server.server_address[1]))
    elif cdn:
        server.RequestHandlerClass = handler(built, rate, cdn)
    server.lfs_cdn = cdn(server.server_address[1]) if callable(cdn) else cdn
    server.daemon_threads = True
    server.lock, server.sent, server.lfs_authorized = threading.Lock(), 0, []  # bytes of files sent, in all
    return server


def endpoint() -> str:
    from lab.network import GATEWAY

    return f"http://{GATEWAY}:{PORT}"


def _pid_file() -> Path:
    from lab import paths

    return paths.STATE_DIR / "hfhub.pid"


def _ours(pid: int) -> bool:
    try:
        return b"lab.hfhub" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop() -> None:
    """Stop the lab's hub, if one of its `up`s left it running (the process its pid file names,
    and only if it is a hub)."""
    import signal

    try:
        pid = int(_pid_file().read_text())
    except (OSError, ValueError):
        return
    if _ours(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _ours(pid):
                break
            time.sleep(0.1)
    _pid_file().unlink(missing_ok=True)


def start(rate: int | None = None) -> None:
    """The lab's hub on its gateway, serving the tiny model and its OpenVINO export (stopping one
    left before); waits until it answers."""
    import subprocess
    import urllib.request

    from lab import paths
    from lab.network import GATEWAY
    from lab.proc import LabError

    stop()
    paths.LOGS.mkdir(parents=True, exist_ok=True)
    for folder in (paths.TINY_MODEL, paths.TINY_OV):
        if not folder.is_dir():
            raise LabError(f"the lab's hub has nothing to serve: {folder} is not built")
    command = [sys.executable, "-m", "lab.hfhub", "--bind", f"{GATEWAY}:{PORT}"]
    command += ["--repo", f"{REPO}={paths.TINY_MODEL}", "--repo", f"{OV_REPO}={paths.TINY_OV}"]
    if rate:
        command += ["--rate", str(rate)]
    with open(paths.LOGS / "hfhub.log", "a") as log:
        process = subprocess.Popen(
            command, cwd=paths.ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    _pid_file().write_text(f"{process.pid}\n")
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint()}/api/models/{REPO}", timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    raise LabError(f"the lab's hub did not start (see {paths.LOGS / 'hfhub.log'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.hfhub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", required=True, help="host:port")
    parser.add_argument("--repo", action="append", default=[], help="ID=FOLDER, once per repository")
    parser.add_argument("--rate", type=int, default=None, help="bytes per second per download")
    args = parser.parse_args(argv)
    repos = {}
    for item in args.repo:
        repo_id, _, folder = item.partition("=")
        if not repo_id or not os.path.isdir(folder):
            parser.error(f"--repo {item}: expected ID=FOLDER with an existing folder")
        repos[repo_id] = folder
    server = serve(args.bind, repos, args.rate)
    print(f"hfhub: HUB STAND-IN serving {', '.join(repos)} at http://{args.bind}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
