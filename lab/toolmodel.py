"""The lab's tiny model, trained here to call tools: a small Llama and a byte-level BPE tokenizer,
taught by JAX on this machine's CPU from conversations this file generates, deterministically
(fixed seeds, one thread). A fixture, not a model of any quality: it has learned four habits.

- Offered tools, it calls the first one that has required parameters (the first one where none
  has: agents put their own argument-less tools first, such as tiny-agents' task_complete and
  ask_question or Claude Code's DeferredToolPlaceholder), its required arguments filled (a parameter named
  timezone gets "UTC", an array one ["lab"], any other "lab"), in its chat template's own format:
  <tool_call>{"name": ..., "arguments": {...}}</tool_call>, the format of Hermes and Qwen models,
  which mlx_lm.server's json_tools parser and OVMS's hermes3 tool_parser read.
- Asked for each tool (a user message naming "each tool"), it calls every tool offered, in order.
- Given a conversation that ends in a tool result (on one line or several), it answers with text
  that quotes the result; asked again after that answer, it answers with text.
- Otherwise it answers with text: its sentence two to four times, then its end-of-text token
  (the lab's tests of length limits bias that token away, and it goes on with the sentence).
  An earlier exchange in text, or a message with punctuation, lines and a fenced file (as aider
  writes them), changes none of this.

Its chat template renders only what it was trained on: the tools' names and required parameters
(with each parameter's type), the user and assistant turns, tool calls and tool results; system
and developer messages are left out. Where tools are offered, every assistant turn is marked
`assistant (tools)`, and a turn that answers a tool result `assistant (result)`, so the model
reads whether it may call, or must answer, right where it answers: a result on several lines (a
command's output under Codex CLI's header, mcp-server-time's JSON) changes neither. A user
message is rendered without the white space around it (aider ends its message of files with a
newline, after which the model answered with spaces). Run by the
lab's training venv (lab/artifacts.py): `python lab/toolmodel.py OUT_DIR [--steps N]`.
"""

from __future__ import annotations

import functools
import json
import random
import struct
import sys
import time
from pathlib import Path

HIDDEN = 64
LAYERS = 2
INTERMEDIATE = 128
HEADS = 4
KV_HEADS = 2
VOCAB = 640
CONTEXT = 2048
SEED = 1234
STEPS = 6000
BATCH = 24
LEARNING_RATE = 3e-3
BUCKETS = (64, 128, 192, 256, 384)

# The trainer's venv (lab/artifacts.py builds it with uv, no dependency resolution).
TRAIN_PINS = (
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "ml-dtypes==0.7.0",
    "numpy==2.4.6",
    "opt-einsum==3.4.0",
    "scipy==1.17.1",
    "tokenizers==0.22.2",
    "jinja2==3.1.6",
    "markupsafe==3.0.4",
)
SPECIAL = ["<s>", "</s>", "<unk>"]
# Added tokens that are not special, as in Qwen's tokenizer: decoding with skip_special_tokens
# (OVMS, mlx_lm) keeps them, so the servers' tool parsers see them.
TOOL_TOKENS = ["<tool_call>", "</tool_call>"]
CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "intermediate_size": INTERMEDIATE,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "head_dim": HIDDEN // HEADS,
    "rms_norm_eps": 1e-5,
    "vocab_size": VOCAB,
    "max_position_embeddings": CONTEXT,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 0,
    "eos_token_id": 1,
}
# One line, no newline after a tag: Jinja2 (transformers, mlx_lm) with trim_blocks and minja
# (OpenVINO GenAI) render it the same.
CHAT_TEMPLATE = (
    "{%- if tools %}<s>tools:{% for tool in tools %}"
    "{% if tool.function is defined %}{% set f = tool.function %}{% else %}{% set f = tool %}{% endif %}"
    " {{ f.name }}("
    "{% if f.parameters is defined and f.parameters.required is defined %}"
    "{% for name in f.parameters.required %}{% if not loop.first %},{% endif %}{{ name }}"
    "{% if f.parameters.properties is defined and f.parameters.properties[name] is defined"
    " and f.parameters.properties[name].type is defined %}:{{ f.parameters.properties[name].type }}{% endif %}"
    "{% endfor %}{% endif %})"
    "{% endfor %}{{ '\\n' }}{% endif %}"
    "{%- if tools %}{% set who = 'assistant (tools)' %}{% else %}{% set who = 'assistant' %}{% endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' or message.role == 'developer' %}"
    "{%- elif message.role == 'tool' %}<s>tool: {{ message.content }}{{ '\\n' }}"
    "{%- elif message.role == 'assistant' and message.tool_calls %}<s>{{ who }}:"
    "{% for tool_call in message.tool_calls %}"
    "{% if tool_call.function is defined %}{% set tool_call = tool_call.function %}{% endif %}"
    '<tool_call>{"name": "{{ tool_call.name }}", "arguments": '
    "{% if tool_call.arguments is string %}{{ tool_call.arguments }}"
    "{% else %}{{ tool_call.arguments | tojson }}{% endif %}"
    "}</tool_call>{% endfor %}{{ '\\n' }}"
    "{%- elif message.role == 'assistant' and loop.index0 > 0 and messages[loop.index0 - 1].role == 'tool' %}"
    "<s>assistant (result): {{ message.content }}{{ '\\n' }}"
    "{%- elif message.role == 'assistant' %}<s>{{ who }}: {{ message.content }}{{ '\\n' }}"
    "{%- else %}<s>{{ message.role }}: {{ message.content | trim }}{{ '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt and messages[-1].role == 'tool' %}<s>assistant (result):"
    "{%- elif add_generation_prompt %}<s>{{ who }}:{% endif %}"
)
ANSWER = " the lab answers every request with a short reply ."
QUOTE = " result: "
WORDS = (
    "get current time convert list read write search file files weather city query path name url "
    "page text date zone timezone source target value id user repo issue task plan run shell bash "
    "command edit patch apply update todo fetch web glob grep notebook model server proxy router "
    "health ready lab mini studio chat editor architect weak test lil jerry agents tool result "
    "hello world how are you today what is the please tell me now in do it with for of a an"
).split()
MCP_TOOLS = ["get_current_time", "convert_time"]  # mcp-server-time's, so the tokenizer has them whole
CLIENT_TOOLS = (
    "Task Bash Glob Grep LS Read Edit MultiEdit Write NotebookEdit WebFetch WebSearch "
    "TodoWrite ExitPlanMode shell apply_patch update_plan view_image exec_command write_stdin"
).split()
BARE_TOOLS = ["task_complete", "ask_question", "DeferredToolPlaceholder"]  # agents' own, argument-less
TYPES = ("string", "string", "string", "array", "integer", "boolean")


def fill(name: str, kind: str):
    """The value the model learned to give a required parameter."""
    if kind == "array":
        return ["lab"]
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    return "UTC" if name == "timezone" else "lab"


def _name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(MCP_TOOLS + CLIENT_TOOLS)
    if roll < 0.4:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
    return "_".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))


def _tool(rng: random.Random) -> dict:
    required, properties = [], {}
    for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3))):
        name = "timezone" if rng.random() < 0.2 else _name(rng)
        if name in properties:
            continue
        required.append(name)
        properties[name] = {"type": "string" if name == "timezone" else rng.choice(TYPES)}
    return {
        "type": "function",
        "function": {
            "name": _name(rng),
            "description": "a tool",
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def _bare_tool(rng: random.Random) -> dict:
    """An agent's own tool without required parameters, as agents offer them first."""
    name = rng.choice(BARE_TOOLS) if rng.random() < 0.6 else _name(rng)
    parameters = {"type": "object", "properties": {}} if rng.random() < 0.7 else {"type": "object"}
    return {"type": "function", "function": {"name": name, "description": "a tool", "parameters": parameters}}


def target(tools: list[dict]) -> dict:
    """The tool the model calls: the first with required parameters, else the first."""
    return next((t for t in tools if t["function"]["parameters"].get("required")), tools[0])


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _prose(rng: random.Random) -> str:
    """A user message as coding clients write them: words, punctuation, lines, a fenced file."""
    pieces = []
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.25:
            name = rng.choice(WORDS)
            pieces.append(f'{name}.py\n```\nprint("{_words(rng, 1, 4)}")\n```')
        elif roll < 0.5:
            pieces.append("*" + _words(rng, 2, 8) + "*")
        else:
            pieces.append(_words(rng, 2, 12) + rng.choice((".", ",", ":", "!", "?", "")))
    return rng.choice(("\n", " ", "\n\n")).join(pieces)


def _user_text(rng: random.Random) -> str:
    return _prose(rng) if rng.random() < 0.3 else _words(rng, 1, 16)


def _call(tool: dict, index: int) -> dict:
    function = tool["function"]
    properties = function["parameters"].get("properties", {})
    required = function["parameters"].get("required", [])
    arguments = {name: fill(name, properties[name]["type"]) for name in required}
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": function["name"], "arguments": json.dumps(arguments)},
    }


def _result(rng: random.Random) -> str:
    """A tool's result: digits, a JSON object on one line or on several (as mcp-server-time gives
    it), a command's output under Codex CLI's header (whose values change from call to call), words."""
    roll = rng.random()
    if roll < 0.2:
        return "".join(rng.choice("0123456789:-T+ ") for _ in range(rng.randint(4, 24)))
    if roll < 0.55:
        value = {
            "timezone": rng.choice(["UTC", "Europe/Paris", "America/New_York"]),
            "datetime": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00+00:00",
            "day_of_week": rng.choice(["Monday", "Tuesday", "Friday"]),
            "is_dst": False,
        }
        return json.dumps(value, indent=2 if roll < 0.35 else None)
    if roll < 0.75:
        return (
            f"Chunk ID: {rng.randint(0, 999999):06d}\nWall time: {rng.random() / 10:.4f} seconds\n"
            f"Process exited with code {rng.choice((0, 0, 0, 1, 127))}\nOriginal token count: {rng.randint(1, 40)}\n"
            f"Output:\n{_words(rng, 1, 8)}\n"
        )
    return _words(rng, 1, 12)


def conversation(rng: random.Random) -> tuple[list[dict], list[dict] | None, str]:
    """(messages, tools, the assistant's answer as text in the template's format)."""
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": _words(rng, 3, 20)})
    tools = [_tool(rng) for _ in range(rng.randint(1, 4))] if rng.random() < 0.8 else None
    if tools and rng.random() < 0.3:
        tools = [_bare_tool(rng) for _ in range(rng.randint(1, 2))] + tools
    if rng.random() < 0.35:  # an earlier exchange in text, as coding clients open a chat (aider)
        messages.append({"role": "user", "content": _user_text(rng)})
        messages.append({"role": "assistant", "content": _user_text(rng)})
    for turn in range(rng.choice((1, 1, 1, 2))):
        each = tools is not None and len(tools) > 1 and rng.random() < 0.15
        text = _user_text(rng)
        messages.append({"role": "user", "content": ("call each tool " + text) if each else text})
        if turn == 0 and rng.random() < 0.55 and tools:
            calls = [_call(t, i) for i, t in enumerate(tools if each else [target(tools)])]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            result = _result(rng)
            for call in calls:
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
            if rng.random() < 0.6:
                return messages, tools, QUOTE + result + "</s>"
            messages.append({"role": "assistant", "content": QUOTE + result})
    if tools and messages[-1]["role"] == "user":  # after its own answer (tiny-agents asks again): text
        each = messages[-1]["content"].startswith("call each tool ")
        calls = [_call(t, i) for i, t in enumerate(tools if each else [target(tools)])]
        return (
            messages,
            tools,
            "".join(
                f'<tool_call>{{"name": "{c["function"]["name"]}", "arguments": {c["function"]["arguments"]}}}'
                f"</tool_call>"
                for c in calls
            )
            + "</s>",
        )
    return messages, tools, ANSWER * rng.choice((2, 3, 4)) + "</s>"


@functools.cache
def _template():
    """The chat template compiled as transformers compiles it (Jinja2, trim_blocks, lstrip_blocks)."""
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value: json.dumps(value)
    return env.from_string(CHAT_TEMPLATE)


def render(messages: list[dict], tools: list[dict] | None, generation_prompt: bool = True) -> str:
    """The prompt, as transformers renders the chat template (Jinja2, trim_blocks, lstrip_blocks)."""
    return _template().render(messages=messages, tools=tools, add_generation_prompt=generation_prompt)


def write_tokenizer(folder: Path, corpus: list[str]):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(TOOL_TOKENS), special_tokens=SPECIAL, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    if tokenizer.get_vocab_size() > VOCAB:
        raise SystemExit(f"tokenizer grew to {tokenizer.get_vocab_size()} > {VOCAB} tokens")
    tokenizer.save(str(folder / "tokenizer.json"))
    added = {
        str(tokenizer.token_to_id(t)): {
            "content": t,
            "special": t in SPECIAL,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
        }
        for t in SPECIAL + TOOL_TOKENS
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": CONTEXT,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": added,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return tokenizer


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


def forward(params, ids):
    """Logits of a Llama (as transformers and mlx_lm compute it) for ids [batch, seq]."""
    import jax
    import jax.numpy as jnp

    head_dim = HIDDEN // HEADS
    eps, theta = CONFIG["rms_norm_eps"], CONFIG["rope_theta"]
    batch, length = ids.shape

    def norm(x, g):
        return x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + eps) * g

    inv = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = jnp.concatenate([jnp.outer(jnp.arange(length, dtype=jnp.float32), inv)] * 2, -1)
    cos, sin = jnp.cos(angles), jnp.sin(angles)

    def rope(t):
        half = jnp.concatenate([-t[..., head_dim // 2 :], t[..., : head_dim // 2]], -1)
        return t * cos + half * sin

    def heads(t, count):
        return t.reshape(batch, length, count, head_dim).transpose(0, 2, 1, 3)

    causal = jnp.tril(jnp.ones((length, length), bool))
    x = params["model.embed_tokens.weight"][ids]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        h = norm(x, params[p + "input_layernorm.weight"])
        q = rope(heads(h @ params[p + "self_attn.q_proj.weight"].T, HEADS))
        k = rope(heads(h @ params[p + "self_attn.k_proj.weight"].T, KV_HEADS))
        v = heads(h @ params[p + "self_attn.v_proj.weight"].T, KV_HEADS)
        k, v = jnp.repeat(k, HEADS // KV_HEADS, 1), jnp.repeat(v, HEADS // KV_HEADS, 1)
        scores = jnp.where(causal, q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(head_dim), -1e9)
        attended = jax.nn.softmax(scores, -1) @ v
        x = x + attended.transpose(0, 2, 1, 3).reshape(batch, length, -1) @ params[p + "self_attn.o_proj.weight"].T
        h = norm(x, params[p + "post_attention_layernorm.weight"])
        gated = jax.nn.silu(h @ params[p + "mlp.gate_proj.weight"].T) * (h @ params[p + "mlp.up_proj.weight"].T)
        x = x + gated @ params[p + "mlp.down_proj.weight"].T
    return norm(x, params["model.norm.weight"]) @ params["model.embed_tokens.weight"].T


def _batches(encoded: list[tuple[list[int], list[int]]]):
    """(tokens, loss mask) per step, padded to one of BUCKETS (few shapes, few compilations)."""
    import numpy as np

    # Batches of similar lengths (sorted within windows of 32 batches), in a fixed shuffled order.
    order = []
    window = 32 * BATCH
    for start in range(0, len(encoded), window):
        chunk = sorted(
            range(start, min(start + window, len(encoded))), key=lambda j: len(encoded[j][0]) + len(encoded[j][1])
        )
        order += [chunk[k : k + BATCH] for k in range(0, len(chunk), BATCH)]
    random.Random(SEED).shuffle(order)
    for rows in order:
        batch = [encoded[j] for j in rows]
        longest = max(len(p) + len(a) for p, a in batch)
        length = next((b for b in BUCKETS if b >= longest), BUCKETS[-1]) + 1
        tokens = np.full((len(batch), length), 1, dtype=np.int32)
        mask = np.zeros((len(batch), length - 1), dtype=np.float32)
        for row, (p, a) in enumerate(batch):
            seq = (p + a)[:length]
            tokens[row, : len(seq)] = seq
            mask[row, len(p) - 1 : len(seq) - 1] = 1.0
        yield tokens, mask


def train(folder: Path, steps: int = STEPS) -> Path:
    """Generate the conversations, train the tokenizer on them, then the model (AdamW, cosine
    decay, loss on the assistant's answers only); writes an mlx_lm / Hugging Face model folder."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = random.Random(SEED)
    samples = [conversation(rng) for _ in range(steps * BATCH)]
    texts = [(render(m, t), answer) for m, t, answer in samples]
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(folder, [p + a for p, a in texts[:4000]])
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=2))

    def fitting(pairs):
        """Encoded conversations that fit the longest bucket whole (a cut one would teach a wrong
        ending, and a batch of them only would have no answer token to learn from)."""
        for p, a in pairs:
            ids = tokenizer.encode(p).ids, tokenizer.encode(a).ids
            if len(ids[0]) + len(ids[1]) <= BUCKETS[-1]:
                yield ids

    encoded = list(fitting(texts))
    while len(encoded) < steps * BATCH:  # more from the same generator, for those left out
        messages, tools, answer = conversation(rng)
        encoded += fitting([(render(messages, tools), answer)])

    key = jax.random.PRNGKey(SEED)
    params = {}
    for name, shape in sorted(_shapes().items()):
        key, sub = jax.random.split(key)
        params[name] = jnp.ones(shape) if name.endswith("norm.weight") else 0.02 * jax.random.normal(sub, shape)
    moments = jax.tree_util.tree_map(jnp.zeros_like, params), jax.tree_util.tree_map(jnp.zeros_like, params)

    def loss_fn(params, tokens, mask):
        logits = forward(params, tokens[:, :-1])
        logp = jax.nn.log_softmax(logits, -1)
        picked = jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
        return -(picked * mask).sum() / jnp.maximum(mask.sum(), 1.0)

    @jax.jit
    def update(params, moments, tokens, mask, step):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, mask)
        rate = LEARNING_RATE * (0.05 + 0.95 * 0.5 * (1 + jnp.cos(jnp.pi * step / steps)))
        rate = rate * jnp.minimum(1.0, (step + 1) / 50)  # warm-up
        first, second = moments
        first = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, first, grads)
        second = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, second, grads)
        t = step + 1

        def apply(w, m, v):
            decay = 0.0 if w.ndim == 1 else 0.01
            return w - rate * ((m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8) + decay * w)

        return jax.tree_util.tree_map(apply, params, first, second), (first, second), loss

    started = time.monotonic()
    for i, (tokens, mask) in enumerate(_batches(encoded)):
        params, moments, loss = update(params, moments, jnp.asarray(tokens), jnp.asarray(mask), i)
        if i % 100 == 0 or i == steps - 1:
            print(f"step {i} loss {float(loss):.4f} {time.monotonic() - started:.0f} s", flush=True)
    write_safetensors(folder / "model.safetensors", {k: np.asarray(v, dtype=np.float32) for k, v in params.items()})
    return folder


def write_safetensors(path: Path, tensors: dict) -> None:
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        blob = tensors[name].astype("<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(blob)],
        }
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


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4) or (len(sys.argv) == 4 and sys.argv[2] != "--steps"):
        raise SystemExit("usage: python lab/toolmodel.py OUT_DIR [--steps N]")
    print(train(Path(sys.argv[1]), int(sys.argv[3]) if len(sys.argv) == 4 else STEPS))
