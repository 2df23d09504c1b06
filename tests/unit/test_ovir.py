"""The lab's OpenVINO IR writer (lab/ovir.py): the model it writes computes what a Llama computes.
A forward pass written here in numpy, from the checkpoint's safetensors and the published Llama
equations (RMSNorm, rotary embedding with rotate_half, grouped-query attention, SwiGLU, tied
head), is compared with the IR's logits on OpenVINO's CPU plugin, for a prompt and for tokens
fed one at a time through the IR's KV-cache states; a second sequence after a state reset
starts from nothing. Run in the export venv (which has openvino); the artifacts are built here
when the cache lacks them.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

from lab import artifacts, ovexport, paths

CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import openvino as ov
    sys.path.insert(0, sys.argv[3])
    from lab.ovir import read_safetensors

    folder, ir = sys.argv[1], sys.argv[2]
    config = json.load(open(folder + "/config.json"))
    w = read_safetensors(__import__("pathlib").Path(folder) / "model.safetensors")
    H, KV = config["num_attention_heads"], config["num_key_value_heads"]
    D = config["hidden_size"] // H
    eps, theta = config["rms_norm_eps"], config["rope_theta"]

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(t, pos):  # t: [heads, seq, D]
        inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
        ang = np.concatenate([np.outer(pos, inv)] * 2, -1)
        half = np.concatenate([-t[..., D // 2:], t[..., :D // 2]], -1)
        return t * np.cos(ang) + half * np.sin(ang)

    def reference(ids):
        x = w["model.embed_tokens.weight"][ids].astype(np.float64)
        pos = np.arange(len(ids))
        for i in range(config["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = norm(x, w[p + "input_layernorm.weight"])
            q = rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(-1, H, D).transpose(1, 0, 2), pos)
            k = rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(-1, KV, D).transpose(1, 0, 2), pos)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(-1, KV, D).transpose(1, 0, 2)
            k, v = np.repeat(k, H // KV, 0), np.repeat(v, H // KV, 0)
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(D)
            scores[:, np.triu(np.ones((len(ids), len(ids)), bool), 1)] = -np.inf
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            attended = (probs @ v).transpose(1, 0, 2).reshape(len(ids), H * D)
            x = x + attended @ w[p + "self_attn.o_proj.weight"].T
            h = norm(x, w[p + "post_attention_layernorm.weight"])
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        return norm(x, w["model.norm.weight"]) @ w["model.embed_tokens.weight"].T

    exact = {"KV_CACHE_PRECISION": "f32", "INFERENCE_PRECISION_HINT": "f32"}  # this CPU would run bf16
    model = ov.Core().compile_model(ir + "/openvino_model.xml", "CPU", exact)
    request = model.create_infer_request()

    def run(chunk, start):
        request.infer({"input_ids": np.array([chunk]), "attention_mask": np.ones((1, start + len(chunk)), np.int64),
                       "position_ids": np.arange(start, start + len(chunk))[None], "beam_idx": np.array([0], np.int32)})
        return request.get_tensor("logits").data[0].copy()

    worst = 0.0
    for ids in ([5, 17, 200, 33, 99, 101, 7, 250], [3, 3, 42]):
        request.reset_state()
        got = [run(ids[:-2], 0), run(ids[-2:-1], len(ids) - 2), run(ids[-1:], len(ids) - 1)]
        worst = max(worst, float(np.abs(np.concatenate(got) - reference(ids)).max()))
    print(json.dumps({"max_abs_diff": worst, "inputs": [i.get_any_name() for i in model.inputs],
                      "states": sorted(s.name for s in request.query_state())}))
""")


def test_written_ir_computes_the_llama_forward_pass():
    artifacts.build_artifacts()
    python = ovexport.export_venv() / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", CHECK, str(paths.TINY_MODEL), str(paths.TINY_OV), str(paths.ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["max_abs_diff"] < 1e-4, result
    assert result["inputs"] == ["input_ids", "attention_mask", "position_ids", "beam_idx"]
    layers = json.loads((paths.TINY_MODEL / "config.json").read_text())["num_hidden_layers"]
    assert result["states"] == sorted(
        f"past_key_values.{i}.{kind}present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")
    )


def test_the_writer_refuses_what_it_cannot_write(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    python = ovexport.export_venv() / "bin" / "python"
    out = subprocess.run(
        [str(python), str(paths.ROOT / "lab" / "ovir.py"), str(model), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert f"{model / 'config.json'}: model_type 'qwen2'; this export writes Llama models only" in out.stderr
    assert not (tmp_path / "out").exists()
