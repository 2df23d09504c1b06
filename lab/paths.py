"""The one place that knows where the lab keeps its files: everything under .lab/ (ignored by git)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = Path(os.environ.get("LLMLAB_DIR", ROOT / ".lab"))
CACHE = LAB_DIR / "cache"  # what the lab builds once and keeps: root filesystem, tiny model, stand-in
MACHINES = LAB_DIR / "machines"  # each host's root filesystem while the lab is up
STATE_DIR = LAB_DIR / "state"  # this lab's keys, secrets and state; gone with `down`
STATE_FILE = STATE_DIR / "state.json"
KEY = STATE_DIR / "id_ed25519"
KNOWN_HOSTS = STATE_DIR / "known_hosts"
SECRETS = STATE_DIR / "secrets.env"  # the proxy key (the deploy's llm_secrets_file)
SUDO_PASSWORD = STATE_DIR / "sudo-password"  # the operator's sudo password on every lab host
TINY_MODEL = CACHE / "tiny-model"
TINY_MODEL_KEY = CACHE / "tiny-model.key"  # the recipe (lab/toolmodel.py) and trainer the tiny model was made by
TRAIN_VENV = CACHE / "train-venv"  # JAX (CPU), tokenizers, Jinja2: the tiny model's trainer
OVMS_STANDIN = CACHE / "ovms-standin.tar.gz"
OVMS_STANDIN_SHA256 = CACHE / "ovms-standin.sha256"
OVMS_STANDIN_SOURCE = CACHE / "ovms-standin.source"  # the key of what the archive was packed from
OVMS_STANDIN_LIBS = CACHE / "ovms-standin-lib"  # + "-py<version>": the engine the archive bundles (ovms/lib/python)
# The stand-in archive laid out like GitHub's release downloads: v<version>/<asset for the mini's system>.
OVMS_STANDIN_RELEASES = CACHE / "ovms-standin-releases"
TINY_OV = CACHE / "tiny-ov"  # the tiny model exported to OpenVINO IR (an OVMS LLM folder less graph.pbtxt)
TINY_OV_KEY = CACHE / "tiny-ov.key"  # what TINY_OV was exported from (model files, tool pins)
OV_EXPORT_VENV = CACHE / "ov-export-venv"  # OpenVINO, openvino-tokenizers, transformers (no torch)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's, with any CA the machine was given
CLIENTS = CACHE / "clients"  # the agent clients the acceptance suite runs (lab/clients.py): venvs, npm
LOGS = LAB_DIR / "logs"
