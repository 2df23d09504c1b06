# Lab overrides for the mini: OVMS comes from the lab's STAND-IN release (the real release cannot
# be downloaded here): a folder laid out like GitHub's release downloads, holding the asset the
# deploy chooses for the mini's system, uploaded from this machine and held to its sha256. OVMS
# pulls lil-jerry from the lab's stand-in hub (lab/hfhub.py, on the gateway), its HF_ENDPOINT.
from lab import hfhub, paths

ovms_hf_endpoint = hfhub.endpoint()

ovms_release_url = str(paths.OVMS_STANDIN_RELEASES)
ovms_archive_sha256 = paths.OVMS_STANDIN_SHA256.read_text().strip() if paths.OVMS_STANDIN_SHA256.exists() else None

# The lab's mini exports its metrics (Prometheus's node exporter, on loopback): the service a
# person switches on with this one key.
node_exporter_enabled = True
