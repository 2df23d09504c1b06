"""What the lab makes for the deploy instead of downloading it: the tiny MLX model and the OVMS
stand-in archive, built once into the cache."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile

from lab import paths
from lab.proc import log
from lab.tinymodel import generate


def build_artifacts() -> None:
    """The tiny model and the OVMS stand-in archive, made here, never downloaded."""
    if not (paths.TINY_MODEL / "model.safetensors").exists():
        tmp = paths.TINY_MODEL.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        generate(tmp)
        tmp.rename(paths.TINY_MODEL)
        log(f"generated the tiny model in {paths.TINY_MODEL}")
    source = paths.ROOT / "lab" / "ovms_standin" / "ovms"
    digest_file = paths.OVMS_STANDIN_SHA256
    stamp = hashlib.sha256(source.read_bytes()).hexdigest()
    stamp_file = paths.OVMS_STANDIN_SOURCE
    if not paths.OVMS_STANDIN.exists() or not stamp_file.exists() or stamp_file.read_text() != stamp:
        paths.CACHE.mkdir(parents=True, exist_ok=True)
        # The real release's layout: ovms/bin/ovms and ovms/lib/. Fixed mtimes and owners keep
        # the archive (and so its digest) the same for the same stand-in source.
        with tarfile.open(paths.OVMS_STANDIN, "w:gz", format=tarfile.GNU_FORMAT) as tar:
            for name, mode, data in (
                ("ovms", 0o755, None),
                ("ovms/bin", 0o755, None),
                ("ovms/lib", 0o755, None),
                ("ovms/bin/ovms", 0o755, source.read_bytes()),
                ("ovms/STANDIN.txt", 0o644, b"Lab stand-in for the OVMS release: not OpenVINO Model Server.\n"),
            ):
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
                info.mode = mode
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        stamp_file.write_text(stamp)
        log(f"packed the OVMS stand-in archive {paths.OVMS_STANDIN}")
    digest_file.write_text(hashlib.sha256(paths.OVMS_STANDIN.read_bytes()).hexdigest() + "\n")
