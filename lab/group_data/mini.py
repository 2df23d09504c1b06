# Lab overrides of group_data/mini.py: OVMS comes from the lab's STAND-IN archive (the real
# release cannot be downloaded here), uploaded from this machine and held to its sha256.
from pathlib import Path

_CACHE = Path(__file__).resolve().parent.parent.parent / ".lab" / "cache"
_DIGEST = _CACHE / "ovms-standin.sha256"

ovms_version = "2025.4-standin"
ovms_archive_url = str(_CACHE / "ovms-standin.tar.gz")
ovms_archive_sha256 = _DIGEST.read_text().strip() if _DIGEST.exists() else None
