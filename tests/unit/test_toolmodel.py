"""The lab's tiny model's recipe (lab/toolmodel.py): its training is deterministic (the same
recipe gives the same bytes), its conversations teach the habits docs/lab.md states, and its chat
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


# A plain answer: the sentence two to four times, then the end-of-text token.
PLAIN_ANSWERS = {toolmodel.ANSWER * n + "</s>" for n in (2, 3, 4)}


def test_conversations_teach_the_documented_habits():
    rng = random.Random(7)
    seen = set()
    for _ in range(2000):
        messages, tools, answer = toolmodel.conversation(rng)
        if messages[-1]["role"] == "tool":
            seen.add("quote")
            assert answer == toolmodel.QUOTE + messages[-1]["content"] + "</s>"
        elif messages[-1]["role"] == "assistant":
            seen.add("asked again")
            assert answer in PLAIN_ANSWERS
        elif tools:
            calls = [
                json.loads(c.removeprefix("<tool_call>"))
                for c in answer.removesuffix("</s>").split("</tool_call>")
                if c
            ]
            each = messages[-1]["content"].startswith("call each tool ")
            offered = tools if each else [toolmodel.target(tools)]
            seen.add("each" if each else "first")
            if not each and offered[0] is not tools[0]:
                seen.add("skips argument-less tools")
            assert [c["name"] for c in calls] == [t["function"]["name"] for t in offered]
            for call, tool in zip(calls, offered):
                required = tool["function"]["parameters"].get("required", [])
                assert list(call["arguments"]) == required
                if "timezone" in required:
                    assert call["arguments"]["timezone"] == "UTC"
        else:
            seen.add("chat")
            assert answer in PLAIN_ANSWERS
            if "```" in messages[-1]["content"]:
                seen.add("a fenced file")
    assert seen == {"quote", "each", "first", "skips argument-less tools", "chat", "a fenced file", "asked again"}


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
        '<s>assistant (tools):<tool_call>{"name": "get_current_time", "arguments": {"timezone": "UTC"}}</tool_call>\n'
        "<s>tool: 12:00\n<s>assistant (result):"
    )
    # The answer to a result is marked as such in the history too.
    answered = [*messages, {"role": "assistant", "content": "12:00"}, {"role": "user", "content": "again"}]
    assert toolmodel.render(answered, [tool]).endswith(
        "<s>tool: 12:00\n<s>assistant (result): 12:00\n<s>user: again\n<s>assistant (tools):"
    )
    # Without tools the assistant's turns say so: whether to call is read right where it answers.
    chat = [{"role": "developer", "content": "be terse"}, {"role": "user", "content": "hi"}]
    assert toolmodel.render([*chat, {"role": "assistant", "content": "ok"}, *chat[1:]], None) == (
        "<s>user: hi\n<s>assistant: ok\n<s>user: hi\n<s>assistant:"
    )
    # aider ends its message of files with a newline: a user message renders without it
    assert toolmodel.render([{"role": "user", "content": "hello.py\n```\nx\n```\n"}], None) == (
        "<s>user: hello.py\n```\nx\n```\n<s>assistant:"
    )
    # mlx_lm.server picks its json_tools parser from these two markers in the template
    assert "<tool_call>" in toolmodel.CHAT_TEMPLATE and "tool_call.name" in toolmodel.CHAT_TEMPLATE
