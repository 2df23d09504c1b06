"""The lab's tiny model's recipe (lab/toolmodel.py): its training is deterministic (the same
recipe gives the same bytes), its conversations teach the habits the README states, and its chat
template renders what the servers' tool parsers expect. The trained model itself is tested
through the stack (tests/acceptance)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess

from lab import paths, toolmodel, toolvenv


def _train(out, steps):
    venv = toolvenv.ensure(paths.TRAIN_VENV, toolmodel.TRAIN_PINS, "the tiny model's trainer (JAX, CPU)")
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(paths.ROOT / "lab" / "toolmodel.py"), str(out), "--steps", str(steps)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_training_is_deterministic(tmp_path):
    first, second = _train(tmp_path / "a", 3), _train(tmp_path / "b", 3)
    assert first == second
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(first)
    config = json.loads((tmp_path / "a" / "tokenizer_config.json").read_text())
    decoders = {entry["content"]: entry["special"] for entry in config["added_tokens_decoder"].values()}
    # the tool-call markers are added tokens that are not special: decoding keeps them
    assert decoders == {"<s>": True, "</s>": True, "<unk>": True, "<tool_call>": False, "</tool_call>": False}


def test_conversations_teach_the_documented_habits():
    rng = random.Random(7)
    seen = set()
    for _ in range(2000):
        messages, tools, answer = toolmodel.conversation(rng)
        if messages[-1]["role"] == "tool":
            seen.add("quote")
            assert answer == toolmodel.QUOTE + messages[-1]["content"] + "</s>"
        elif tools:
            calls = [
                json.loads(c.removeprefix("<tool_call>"))
                for c in answer.removesuffix("</s>").split("</tool_call>")
                if c
            ]
            each = messages[-1]["content"].startswith("call each tool ")
            offered = tools if each else tools[:1]
            seen.add("each" if each else "first")
            assert [c["name"] for c in calls] == [t["function"]["name"] for t in offered]
            for call, tool in zip(calls, offered):
                required = tool["function"]["parameters"]["required"]
                assert list(call["arguments"]) == required
                if "timezone" in required:
                    assert call["arguments"]["timezone"] == "UTC"
        else:
            seen.add("chat")
            assert "</s>" not in answer and answer.startswith(toolmodel.ANSWER)
    assert seen == {"quote", "each", "first", "chat"}


def test_the_template_renders_tools_calls_and_results_and_leaves_system_out():
    tool = {
        "type": "function",
        "function": {
            "name": "get_current_time",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
        },
    }
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_current_time", "arguments": '{"timezone": "UTC"}'},
    }
    messages = [
        {"role": "system", "content": "a long system prompt"},
        {"role": "user", "content": "what time is it?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
    ]
    assert toolmodel.render(messages, [tool]) == (
        "<s>tools: get_current_time(timezone:string)\n<s>user: what time is it?\n"
        '<s>assistant:<tool_call>{"name": "get_current_time", "arguments": {"timezone": "UTC"}}</tool_call>\n'
        "<s>tool: 12:00\n<s>assistant:"
    )
    # mlx_lm.server picks its json_tools parser from these two markers in the template
    assert "<tool_call>" in toolmodel.CHAT_TEMPLATE and "tool_call.name" in toolmodel.CHAT_TEMPLATE
