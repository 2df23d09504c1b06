"""Acceptance: the Responses API (Codex CLI, the openai SDK's responses) and Anthropic's Messages
API (Claude Code) through the proxy, for every model: LiteLLM answers both from the upstreams'
chat completions (router.yaml's use_chat_completions_api for chat-only backends), text for every
model, function tools and streaming for one model of each backend kind (MLX, and OVMS with its
graph's tool parser). And a client's refused requests stay that client's: they never cool a model
down.
"""

import json
import urllib.request

from .client import chat, http
from .test_tools import TIME_TOOL

TIME_FUNCTION = {"type": "function", **{k: TIME_TOOL["function"][k] for k in ("name", "description", "parameters")}}
TIME_ANTHROPIC = {
    "name": "get_current_time",
    "description": TIME_TOOL["function"]["description"],
    "input_schema": TIME_TOOL["function"]["parameters"],
}


def test_responses_answers_text_for_every_model(client, model_name):
    response = client.responses.create(model=model_name, input="hello", max_output_tokens=16)
    assert response.status in ("completed", "incomplete"), response
    assert response.output_text.strip(), response


def test_responses_calls_a_function_tool(client, tool_model):
    response = client.responses.create(
        model=tool_model, input="What time is it in Paris?", tools=[TIME_FUNCTION], max_output_tokens=64
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_current_time"], response.output
    assert json.loads(calls[0].arguments) == {"timezone": "UTC"}
    assert calls[0].call_id


def test_responses_streams_text(client, tool_model):
    events = list(client.responses.create(model=tool_model, input="hello", max_output_tokens=12, stream=True))
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds, kinds
    assert kinds[-1] in ("response.completed", "response.incomplete"), kinds  # incomplete: max_output_tokens
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip()


def _messages(proxy_url, key, body, stream=False):
    headers = {"x-api-key": str(key), "anthropic-version": "2023-06-01"}
    if not stream:
        return http("POST", f"{proxy_url}/v1/messages", body, headers=headers, timeout=60)
    request = urllib.request.Request(f"{proxy_url}/v1/messages", data=json.dumps({**body, "stream": True}).encode())
    for name, value in {**headers, "Content-Type": "application/json"}.items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=60) as response:
        lines = response.read().decode().splitlines()
    return [json.loads(line[5:]) for line in lines if line.startswith("data:")]


def test_messages_answers_text_for_every_model(proxy_url, proxy_key, model_name):
    body = {"model": model_name, "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]}
    status, reply = _messages(proxy_url, proxy_key, body)
    assert status == 200, reply
    assert reply["type"] == "message" and reply["role"] == "assistant"
    assert reply["content"][0]["type"] == "text" and reply["content"][0]["text"].strip(), reply


def test_messages_calls_a_tool(proxy_url, proxy_key, tool_model):
    body = {
        "model": tool_model,
        "max_tokens": 64,
        "tools": [TIME_ANTHROPIC],
        "messages": [{"role": "user", "content": "what time is it?"}],
    }
    status, reply = _messages(proxy_url, proxy_key, body)
    assert status == 200, reply
    uses = [block for block in reply["content"] if block["type"] == "tool_use"]
    assert [(u["name"], u["input"]) for u in uses] == [("get_current_time", {"timezone": "UTC"})], reply
    assert uses[0]["id"] and reply["stop_reason"] == "tool_use"


def test_messages_streams_a_tool_use(proxy_url, proxy_key, tool_model):
    body = {
        "model": tool_model,
        "max_tokens": 64,
        "tools": [TIME_ANTHROPIC],
        "messages": [{"role": "user", "content": "what time is it?"}],
    }
    events = _messages(proxy_url, proxy_key, body, stream=True)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    uses = [b for b in starts if b["type"] == "tool_use"]
    assert [u["name"] for u in uses] == ["get_current_time"], starts
    partial = "".join(e["delta"].get("partial_json", "") for e in events if e["type"] == "content_block_delta")
    assert json.loads(partial) == {"timezone": "UTC"}


def test_drill_a_clients_refused_requests_do_not_cool_the_model_down(proxy_url, proxy_key, registry):
    """Three requests that the upstream refuses (an image content part, which mlx_lm.server
    answers with 404) are answered to that client with a 4xx; the next client's chat is then
    served by the same deployment, not refused with 429 for the cooldown."""
    model = next(m for m in registry.models.values() if m.backend == "mlx" and not m.fallbacks)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    statuses = []
    for _ in range(3):
        status, body = http(
            "POST",
            f"{proxy_url}/v1/chat/completions",
            {"model": model.name, "max_tokens": 4, "messages": [{"role": "user", "content": [image]}]},
            key=proxy_key,
        )
        statuses.append(status)
    assert all(400 <= s < 500 and s != 429 for s in statuses), statuses
    status, body = chat(proxy_url, model.name, key=proxy_key)
    assert status == 200, body
