# Lab overrides of group_data/all.py: every MLX model is served by the lab's tiny model, and the
# proxy key comes from the lab's own (generated, ignored) secrets file.
import runpy
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent.parent
_BASE = runpy.run_path(str(_ROOT / "group_data" / "all.py"))["llm_models"]

llm_model_overrides = {
    name: {"upstream": "lab/tiny-llama"}
    for name, entry in _BASE.items()
    if entry.get("backend") == "mlx"
}
llm_secrets_file = str(_ROOT / ".lab" / "state" / "secrets.env")
