"""Writes a Llama checkpoint (a Hugging Face model folder: config.json, model.safetensors, tokenizer
files) as an OVMS LLM folder in OpenVINO IR, with OpenVINO's own Python API: no torch, no optimum.

The graph is the one optimum-intel exports for LlamaForCausalLM (`optimum-cli export openvino
--task text-generation-with-past`), so OpenVINO GenAI's ContinuousBatchingPipeline turns it into
paged attention the same way: inputs input_ids, attention_mask, position_ids (i64, [batch, seq])
and beam_idx (i32, [batch]); output logits; the KV cache as states (ReadValue, a Gather by beam_idx,
Concat, Assign) named past_key_values.<layer>.<key|value>present.<layer>.<key|value>; attention
as ScaledDotProductAttention over the cache, grouped-query heads broadcast to the query heads.
The tokenizer and detokenizer come from openvino-tokenizers' converter of the Hugging Face tokenizer.

Run by the lab's export environment (lab/ovexport.py): `python lab/ovir.py MODEL_DIR OUT_DIR`.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

# What the export writes besides the IR: the files OVMS and GenAI read from the folder.
COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as float32 arrays (bf16 widened)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] not in DTYPES:
            raise SystemExit(f"{path}: tensor {name} has dtype {meta['dtype']}, which this export does not read")
        start, end = meta["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype=np.dtype(DTYPES[meta["dtype"]]).newbyteorder("<"))
        if meta["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array.reshape(meta["shape"]).astype(np.float32)
    return tensors


def _check_config(config: dict, path: Path) -> None:
    if config.get("model_type") != "llama":
        raise SystemExit(f"{path}: model_type {config.get('model_type')!r}; this export writes Llama models only")
    unsupported = {key: config[key] for key in ("rope_scaling", "attention_bias", "mlp_bias") if config.get(key)}
    if unsupported:
        raise SystemExit(f"{path}: {', '.join(sorted(unsupported))} set; this export does not write them")


def build_model(config: dict, weights: dict[str, np.ndarray]):
    """The stateful openvino.Model of a Llama checkpoint."""
    import openvino as ov
    from openvino import opset13 as op
    from openvino.op.util import Variable, VariableInfo

    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or hidden // heads
    eps = float(config.get("rms_norm_eps", 1e-6))
    theta = float(config.get("rope_theta", 10000.0))
    layers = config["num_hidden_layers"]
    f32 = np.float32

    def const(value, dtype=np.int64):
        return op.constant(np.asarray(value, dtype=dtype))

    def weight(name):
        if name not in weights:
            raise SystemExit(f"the checkpoint has no tensor {name}")
        return op.constant(weights[name].astype(f32))

    def linear(x, name):  # x @ W.T, as torch.nn.Linear
        return op.matmul(x, weight(name), transpose_a=False, transpose_b=True)

    def rms_norm(x, name):
        variance = op.reduce_mean(op.power(x, const(2.0, f32)), const([-1]), keep_dims=True)
        scale = op.divide(const(1.0, f32), op.sqrt(op.add(variance, const(eps, f32))))
        return op.multiply(op.multiply(x, scale), weight(name))

    input_ids = op.parameter([-1, -1], ov.Type.i64, name="input_ids")
    attention_mask = op.parameter([-1, -1], ov.Type.i64, name="attention_mask")
    position_ids = op.parameter([-1, -1], ov.Type.i64, name="position_ids")
    beam_idx = op.parameter([-1], ov.Type.i32, name="beam_idx")
    params = [input_ids, attention_mask, position_ids, beam_idx]
    for param in params:
        param.output(0).get_tensor().set_names({param.get_friendly_name()})

    x = op.gather(weight("model.embed_tokens.weight"), op.convert(input_ids, ov.Type.i32), const(0))
    batch = op.gather(op.shape_of(input_ids), const([0]), const(0))
    seq_len = op.gather(op.shape_of(input_ids), const(1), const(0))

    # Rotary embedding: cos and sin of position_ids times the inverse frequencies, [batch, 1, seq, dim].
    inv_freq = (1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(f32) / head_dim)).astype(f32)
    freqs = op.matmul(
        op.convert(op.unsqueeze(position_ids, const(2)), ov.Type.f32),
        const(inv_freq.reshape(1, -1), f32),
        transpose_a=False,
        transpose_b=False,
    )
    angles = op.concat([freqs, freqs], -1)
    cos = op.unsqueeze(op.cos(angles), const(1))
    sin = op.unsqueeze(op.sin(angles), const(1))
    half = head_dim // 2

    def rotate(t):  # t * cos + rotate_half(t) * sin
        first = op.slice(t, const([0]), const([half]), const([1]), const([3]))
        second = op.slice(t, const([half]), const([head_dim]), const([1]), const([3]))
        rotated = op.concat([op.multiply(second, const(-1.0, f32)), first], -1)
        return op.add(op.multiply(t, cos), op.multiply(rotated, sin))

    def widen(t):  # grouped-query heads: [batch, kv_heads, seq, dim] -> [batch, heads, seq, dim]
        dims = op.shape_of(t)
        shape = op.concat(
            [
                op.gather(dims, const([0, 1]), const(0)),
                const([heads // kv_heads]),
                op.gather(dims, const([2, 3]), const(0)),
            ],
            0,
        )
        wide = op.broadcast(op.unsqueeze(t, const(2)), shape, broadcast_spec="bidirectional")
        return op.reshape(wide, const([0, heads, -1, head_dim]), special_zero=True)

    def split_heads(t, count):  # [batch, seq, count * dim] -> [batch, count, seq, dim]
        return op.transpose(op.reshape(t, const([0, 0, count, head_dim]), special_zero=True), const([0, 2, 1, 3]))

    sinks, mask = [], None
    for i in range(layers):
        p = f"model.layers.{i}."
        h = rms_norm(x, p + "input_layernorm.weight")
        q = rotate(split_heads(linear(h, p + "self_attn.q_proj.weight"), heads))
        k = rotate(split_heads(linear(h, p + "self_attn.k_proj.weight"), kv_heads))
        v = split_heads(linear(h, p + "self_attn.v_proj.weight"), kv_heads)
        cache = []
        for kind, new in (("key", k), ("value", v)):
            name = f"past_key_values.{i}.{kind}present.{i}.{kind}"
            info = VariableInfo()
            info.data_shape = ov.PartialShape([-1, kv_heads, -1, head_dim])
            info.data_type = ov.Type.f32
            info.variable_id = name
            variable = Variable(info)
            empty = op.broadcast(const(0.0, f32), op.concat([batch, const([kv_heads, 0, head_dim])], 0))
            past = op.gather(op.read_value(empty, variable), beam_idx, const(0))
            full = op.concat([past, new], -2)
            sinks.append(op.assign(full, variable))
            cache.append((past, full))
        (past_k, full_k), (_, full_v) = cache
        if mask is None:
            # Causal over the cache, and padding from attention_mask: [batch, 1, seq, past + seq].
            past_len = op.gather(op.shape_of(past_k), const(2), const(0))
            total = op.add(past_len, seq_len)
            q_pos = op.range(past_len, total, const(1), ov.Type.i64)
            k_pos = op.range(const(0), total, const(1), ov.Type.i64)
            causal = op.less_equal(op.unsqueeze(k_pos, const(0)), op.unsqueeze(q_pos, const(1)))
            padding = op.unsqueeze(op.convert(attention_mask, ov.Type.boolean), const([1, 2]))
            allowed = op.logical_and(op.unsqueeze(causal, const([0, 1])), padding)
            mask = op.select(allowed, const(0.0, f32), const(np.finfo(f32).min, f32))
        if kv_heads != heads:
            full_k, full_v = widen(full_k), widen(full_v)
        attended = op.scaled_dot_product_attention(q, full_k, full_v, mask, const(1.0 / np.sqrt(head_dim), f32))
        merged = op.reshape(
            op.transpose(attended, const([0, 2, 1, 3])), const([0, 0, heads * head_dim]), special_zero=True
        )
        x = op.add(x, linear(merged, p + "self_attn.o_proj.weight"))
        h = rms_norm(x, p + "post_attention_layernorm.weight")
        gated = op.multiply(op.swish(linear(h, p + "mlp.gate_proj.weight")), linear(h, p + "mlp.up_proj.weight"))
        x = op.add(x, linear(gated, p + "mlp.down_proj.weight"))

    x = rms_norm(x, "model.norm.weight")
    head = "model.embed_tokens.weight" if config.get("tie_word_embeddings") else "lm_head.weight"
    logits = linear(x, head)
    logits.output(0).get_tensor().set_names({"logits"})
    result = op.result(logits)
    model = ov.Model([result], sinks, params, "llama")
    # As optimum-intel's export: a KV cache in f16 and this activation scale for f16 devices.
    model.set_rt_info("f16", ["runtime_options", "KV_CACHE_PRECISION"])
    model.set_rt_info("8.0", ["runtime_options", "ACTIVATIONS_SCALE_FACTOR"])
    return model


def export(model_dir: Path, out: Path) -> Path:
    """model_dir's checkpoint as an OVMS LLM folder in out (without graph.pbtxt)."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    _check_config(config, config_path)
    weights = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        weights |= read_safetensors(path)
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(build_model(config, weights), out / "openvino_model.xml", compress_to_fp16=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
    ov.save_model(ov_tokenizer, out / "openvino_tokenizer.xml")
    ov.save_model(ov_detokenizer, out / "openvino_detokenizer.xml")
    for name in COPIED:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out / name)
    generation = {key: config[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id") if key in config}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python lab/ovir.py MODEL_DIR OUT_DIR")
    print(export(Path(sys.argv[1]), Path(sys.argv[2])))
