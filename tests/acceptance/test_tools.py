"""Acceptance: tool calls through the proxy, with the official openai SDK, as agents make them.

The lab's tiny model is trained to call the first tool offered (lab/toolmodel.py). Through
LiteLLM to mlx_lm.server (whose json_tools parser reads the model's <tool_call> format): a call
comes back with finish_reason "tool_calls", an id, the function's name and JSON arguments; a
stream's first delta of each call carries its id and name, later deltas only arguments (how Tiny
Agents and the SDK's stream helpers read them); asked for each tool, the model makes parallel
calls; after the tool result, the answer is text. OVMS's tool parsing (the stand-in's hermes3)
is not served yet: lil-jerry is left out here.
"""

import json

TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_time",
        "description": "Get current time in a specific timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA timezone name"}},
            "required": ["timezone"],
        },
    },
}
CONVERT_TOOL = {
    "type": "function",
    "function": {
        "name": "convert_time",
        "description": "Convert time between timezones",
        "parameters": {
            "type": "object",
            "properties": {k: {"type": "string"} for k in ("source_timezone", "time", "target_timezone")},
            "required": ["source_timezone", "time", "target_timezone"],
        },
    },
}
RESULT = '{"timezone": "UTC", "datetime": "2026-12-01T19:45:12+00:00", "day_of_week": "Tuesday", "is_dst": false}'


def test_a_tool_call_comes_back_whole(client, mlx_name):
    reply = client.chat.completions.create(
        model=mlx_name,
        max_tokens=64,
        tools=[TIME_TOOL, CONVERT_TOOL],
        messages=[{"role": "user", "content": "What time is it in Paris right now?"}],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    assert call.id and call.type == "function"
    assert call.function.name == "get_current_time"
    assert json.loads(call.function.arguments) == {"timezone": "UTC"}


def test_a_streamed_tool_call_sends_id_and_name_first(client, mlx_name):
    stream = client.chat.completions.create(
        model=mlx_name,
        max_tokens=64,
        stream=True,
        tools=[TIME_TOOL],
        messages=[{"role": "user", "content": "what time is it?"}],
    )
    deltas = [(c.choices[0].delta, c.choices[0].finish_reason) for c in stream if c.choices]
    calls = [tc for delta, _ in deltas for tc in (delta.tool_calls or [])]
    assert calls, deltas
    first = calls[0]
    assert first.index == 0 and first.id and first.function.name == "get_current_time"
    for later in calls[1:]:  # a later delta of the same call only adds arguments
        assert later.index == 0 and not later.id and not (later.function and later.function.name)
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(arguments) == {"timezone": "UTC"}
    assert [f for _, f in deltas if f] == ["tool_calls"]


def test_parallel_calls_when_asked_for_each_tool(client, mlx_name):
    reply = client.chat.completions.create(
        model=mlx_name,
        max_tokens=128,
        tools=[TIME_TOOL, CONVERT_TOOL],
        messages=[{"role": "user", "content": "call each tool please"}],
    )
    calls = reply.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_current_time", "convert_time"], reply
    assert len({c.id for c in calls}) == 2
    assert json.loads(calls[0].function.arguments) == {"timezone": "UTC"}
    # The fixture fills the second call's arguments imperfectly (README): JSON, its keys the tool's own.
    second = json.loads(calls[1].function.arguments)
    assert second and set(second) <= {"source_timezone", "time", "target_timezone"}, second


def test_after_the_tool_result_the_answer_is_text(client, mlx_name):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_current_time", "arguments": '{"timezone": "UTC"}'},
    }
    reply = client.chat.completions.create(
        model=mlx_name,
        max_tokens=64,
        tools=[TIME_TOOL],
        messages=[
            {"role": "user", "content": "what time is it?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
        ],
    )
    choice = reply.choices[0]
    assert not choice.message.tool_calls, choice
    assert choice.finish_reason == "stop"
    assert choice.message.content.lstrip().startswith("result: {"), choice.message.content
    assert '"timezone": "UTC"' in choice.message.content
