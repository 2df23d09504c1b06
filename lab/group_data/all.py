# Lab overrides of group_data/all.py: every MLX model is served by the lab's tiny model, and the
# proxy key comes from the lab's own (generated, ignored) secrets file. jerry-test shows a
# per-model completion length (the tiny model takes about 3 ms a token on this machine, so the
# 8192 default would take 23 s to exhaust).
import runpy

from lab import paths

_BASE = runpy.run_path(str(paths.ROOT / "group_data" / "all.py"))["llm_models"]

llm_model_overrides = {
    name: {"upstream": "lab/tiny-llama", **({"max_tokens": 1024} if name == "jerry-test" else {})}
    for name, entry in _BASE.items()
    if entry.get("backend") == "mlx"
}
llm_secrets_file = str(paths.SECRETS)
