"""Generate the lab's tiny MLX model: a 2-layer Llama with random weights and a small byte-level
BPE tokenizer trained here. Nothing is downloaded; mlx_lm.server loads it like any model folder.

Only the standard library and `tokenizers` are needed, so the control machine needs no mlx: the
safetensors file is written directly (an 8-byte header length, a JSON header, raw float32s).
"""

from __future__ import annotations

import json
import random
import struct
import sys
from array import array
from pathlib import Path

HIDDEN = 64
LAYERS = 2
INTERMEDIATE = 128
HEADS = 4
KV_HEADS = 2
VOCAB = 384
SEED = 1234
CORPUS = (
    "the lab answers every request with a short reply . hello world , how are you today ? "
    "user assistant system model server proxy router upstream endpoint health ready "
    "jerry chat editor architect weak test lil tiny agents router mini studio mlx ovms litellm "
) * 20

CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "intermediate_size": INTERMEDIATE,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "rms_norm_eps": 1e-5,
    "vocab_size": VOCAB,
    "max_position_embeddings": 1024,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 0,
    "eos_token_id": 1,
}
CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def _shapes() -> dict[str, tuple[int, ...]]:
    head_dim = HIDDEN // HEADS
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (HEADS * head_dim, HIDDEN),
            p + "self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            p + "self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            p + "self_attn.o_proj.weight": (HIDDEN, HEADS * head_dim),
            p + "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
            p + "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
            p + "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
            p + "input_layernorm.weight": (HIDDEN,),
            p + "post_attention_layernorm.weight": (HIDDEN,),
        }
    return shapes


def write_safetensors(path: Path) -> None:
    rng = random.Random(SEED)
    header, blobs, offset = {}, [], 0
    for name, shape in sorted(_shapes().items()):
        count = 1
        for dim in shape:
            count *= dim
        if name.endswith("norm.weight"):
            values = array("f", [1.0] * count)
        else:
            values = array("f", (rng.gauss(0.0, 0.02) for _ in range(count)))
        if sys.byteorder != "little":
            values.byteswap()
        blob = values.tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "mlx"}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(head)))
        out.write(head)
        for blob in blobs:
            out.write(blob)


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([CORPUS], trainer=trainer)
    if tokenizer.get_vocab_size() > VOCAB:
        raise SystemExit(f"tokenizer grew to {tokenizer.get_vocab_size()} > {VOCAB} tokens")
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": 1024,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
    )


def generate(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=2))
    write_safetensors(folder / "model.safetensors")
    write_tokenizer(folder)
    return folder


if __name__ == "__main__":
    print(generate(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-model")))
