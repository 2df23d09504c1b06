"""What the lab makes for the deploy instead of downloading it: the tiny model (trained here to call
tools, lab/toolmodel.py), its OpenVINO IR and the OVMS stand-in archive (with the real OpenVINO
GenAI engine), built once into the cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import time
from pathlib import Path

from lab import ovexport, paths, toolmodel, toolvenv
from lab.proc import log

ARCHIVE_FORMAT = "standin-archive/2"  # bump when the packing below changes
TRAINER = paths.ROOT / "lab" / "toolmodel.py"


def build_artifacts() -> None:
    """The tiny model, its OpenVINO export and the OVMS stand-in archive, made here, never
    downloaded (packages come from the package index)."""
    train_tiny_model()
    ovexport.export_tiny_model()
    build_standin_archive()


def model_key() -> str:
    """What the tiny model is made from: its recipe (lab/toolmodel.py) and the trainer's venv."""
    return toolvenv.digest(
        "tiny-model/2", TRAINER.read_bytes(), toolvenv.key(paths.TRAIN_VENV.name, toolmodel.TRAIN_PINS)
    )


def train_tiny_model() -> Path:
    """paths.TINY_MODEL, trained anew only when its recipe or the trainer's pins change (the
    OpenVINO export follows, keyed on the model's files)."""
    key, key_file = model_key(), paths.TINY_MODEL_KEY
    if (paths.TINY_MODEL / "model.safetensors").exists() and key_file.exists() and key_file.read_text() == key:
        return paths.TINY_MODEL
    venv = toolvenv.ensure(paths.TRAIN_VENV, toolmodel.TRAIN_PINS, "the tiny model's trainer (JAX, CPU)")
    tmp = paths.TINY_MODEL.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"training the tiny model into {paths.TINY_MODEL} (once; a few minutes)")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    seconds = toolvenv.run_step(
        [str(venv / "bin" / "python"), str(TRAINER), str(tmp)], "tiny-model-train", env=env, cwd="/"
    )
    key_file.unlink(missing_ok=True)
    toolvenv.swap_in(tmp, paths.TINY_MODEL)
    key_file.write_text(key)
    log(f"trained the tiny model in {seconds:.0f} s")
    return paths.TINY_MODEL


def standin_key(source: Path, libs_key: str) -> str:
    return hashlib.sha256(b"\0".join([ARCHIVE_FORMAT.encode(), source.read_bytes(), libs_key.encode()])).hexdigest()


def release_assets(target: ovexport.Target) -> list[str]:
    """The names OVMS 2025.4 gives its archive for the target's system (python_on and off; the
    stand-in is the same program in both)."""
    if not target.release_tag:
        return []
    return [f"ovms_{target.release_tag}.tar.gz", f"ovms_{target.release_tag}_python_on.tar.gz"]


def build_standin_archive(target: ovexport.Target | None = None) -> Path:
    """paths.OVMS_STANDIN for the mini's system: the release's layout (ovms/bin/ovms, ovms/lib/,
    ovms/lib/python with the engine for the mini's python3), packed only when the stand-in
    program, the engine pins or the target change; also laid out as a release download in
    paths.OVMS_STANDIN_RELEASES (v<version>/<asset>). Fixed mtimes, owners, modes and order, and
    a gzip header without time or name, keep the archive (and so its digest,
    paths.OVMS_STANDIN_SHA256) the same for the same inputs."""
    target = target or ovexport.mini_target()
    source = paths.ROOT / "lab" / "ovms_standin" / "ovms"
    libs = ovexport.engine_libs(target)
    stamp = standin_key(source, ovexport.libs_key(target))
    stamp_file = paths.OVMS_STANDIN_SOURCE
    if not paths.OVMS_STANDIN.exists() or not stamp_file.exists() or stamp_file.read_text() != stamp:
        paths.CACHE.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        tmp = paths.OVMS_STANDIN.with_name(paths.OVMS_STANDIN.name + ".tmp")
        note = (
            "Lab stand-in for the OVMS release: not OpenVINO Model Server. bin/ovms is a Python program;\n"
            "lib/python holds the real engine it runs, installed from the package index:\n"
            + json.dumps(ovexport.versions(target), indent=2)
            + "\n"
        ).encode()
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for name in ("ovms", "ovms/bin", "ovms/lib"):
                _add(tar, name, 0o755, None)
            _add(tar, "ovms/bin/ovms", 0o755, source.read_bytes())
            _add(tar, "ovms/STANDIN.txt", 0o644, note)
            _add_tree(tar, libs, "ovms/lib/python")
        os.replace(tmp, paths.OVMS_STANDIN)
        stamp_file.write_text(stamp)
        log(
            f"packed the OVMS stand-in archive {paths.OVMS_STANDIN} "
            f"({paths.OVMS_STANDIN.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - started:.1f} s)"
        )
    paths.OVMS_STANDIN_SHA256.write_text(_sha256(paths.OVMS_STANDIN) + "\n")
    _lay_out_release(target)
    return paths.OVMS_STANDIN


def _lay_out_release(target: ovexport.Target) -> None:
    """<releases>/v<version>/<asset>: hard links to the archive, anew each time (a re-packed
    archive is a new file)."""
    shutil.rmtree(paths.OVMS_STANDIN_RELEASES, ignore_errors=True)
    folder = paths.OVMS_STANDIN_RELEASES / f"v{ovexport.OVMS_RELEASE}"
    folder.mkdir(parents=True)
    for asset in release_assets(target):
        os.link(paths.OVMS_STANDIN, folder / asset)


def _add(
    tar: tarfile.TarFile, name: str, mode: int, data: bytes | None, fileobj=None, size: int = 0, link: str | None = None
) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    info.mode = mode
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif data is None and fileobj is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data) if data is not None else size
        tar.addfile(info, io.BytesIO(data) if data is not None else fileobj)


def _add_tree(tar: tarfile.TarFile, root: Path, prefix: str) -> None:
    """root's contents under prefix, sorted, with normalized modes (0755 for folders and
    executables, 0644 otherwise); the build's own key file stays out."""
    _add(tar, prefix, 0o755, None)
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = Path(folder).relative_to(root)
        for name in sorted(dirs) + sorted(files):
            path = Path(folder) / name
            if rel == Path(".") and name == ".lab-key":
                continue
            arcname = f"{prefix}/{(rel / name).as_posix()}" if rel != Path(".") else f"{prefix}/{name}"
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                _add(tar, arcname, 0o777, None, link=os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                _add(tar, arcname, 0o755, None)
            else:
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(path, "rb") as handle:
                    _add(tar, arcname, mode, None, fileobj=handle, size=st.st_size)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
