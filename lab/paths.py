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
OVMS_STANDIN = CACHE / "ovms-standin.tar.gz"
OVMS_STANDIN_SHA256 = CACHE / "ovms-standin.sha256"
OVMS_STANDIN_SOURCE = CACHE / "ovms-standin.source"
LOGS = LAB_DIR / "logs"
