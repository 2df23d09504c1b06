# Lab overrides for the mini: OVMS comes from the lab's STAND-IN archive (the real release cannot
# be downloaded here), uploaded from this machine and held to its sha256.
from lab import paths

ovms_version = "2025.4-standin"
ovms_archive_url = str(paths.OVMS_STANDIN)
ovms_archive_sha256 = paths.OVMS_STANDIN_SHA256.read_text().strip() if paths.OVMS_STANDIN_SHA256.exists() else None
