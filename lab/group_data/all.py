# Lab overrides of group_data/all.py: every MLX model is served by the lab's tiny model (fetched
# from the lab's hub, jerry-test's uploaded: lab/group_data/studio.py), and the
# proxy key comes from the lab's own (generated, ignored) secrets file. jerry-test shows a
# per-model completion length (the tiny model takes about 3 ms a token on this machine, so the
# 8192 default would take 23 s to exhaust; past about 700 tokens its repeated sentence may drift).
import runpy

from lab import hfhub, paths

_BASE = runpy.run_path(str(paths.ROOT / "group_data" / "all.py"))["llm_models"]

llm_model_overrides = {
    name: {
        "upstream": "lab/tiny-llama",
        **({"upstream": "lab/tiny-llama-upload", "max_tokens": 640} if name == "jerry-test" else {}),
    }
    for name, entry in _BASE.items()
    if entry.get("backend") == "mlx"
}
# lil-jerry: the tiny model exported to OpenVINO IR by the lab, pulled by OVMS from the lab's hub
# (lab/group_data/mini.py), as the real mini pulls its repo from Hugging Face; a small KV cache and
# few sequences (the lab's mini is a container on a 2-core machine). The tiny model calls tools in
# the Hermes/Qwen <tool_call> format: OVMS's hermes3 parser.
llm_model_overrides["lil-jerry"] = {
    "upstream": "lab-tiny-llama-ov",
    "source": hfhub.OV_REPO,
    "graph": {"cache_size": 1, "max_num_seqs": 4, "tool_parser": "hermes3"},
}
llm_secrets_file = str(paths.SECRETS)
