"""Acceptance: real agent clients, unmodified, against the lab's proxy, each completing a turn
with a tool call: the official openai SDK's stream helpers, the official anthropic SDK, Tiny
Agents with the real MCP time server, Codex CLI and Claude Code; and aider in architect mode.
Every client is pinned in lab/clients.py and installed once into the lab's cache.

The command-line clients run in a network namespace of their own (lab/jail.py) where 127.0.0.1 at
the proxy's port is the proxy and nothing else is reachable: what they send goes to the lab, or
nowhere. Their update checks, telemetry and error reporting are switched off all the same.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from lab import clients, jail, paths

from .test_agent_apis import TIME_ANTHROPIC
from .test_tools import CONVERT_TOOL, TIME_TOOL

HERE = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def proxy(addresses, registry):
    """(address, port) of the proxy, where a jailed client's 127.0.0.1 leads."""
    return addresses[registry.proxy_host], registry.proxy["litellm_port"]


def _lab_command(folder: Path) -> tuple[Path, str]:
    """(a bin folder, what its command prints): the model fills a string argument with "lab", so a
    shell tool it calls runs `lab`; this one prints a nonce, which shows that the client ran it."""
    nonce = secrets.token_hex(6)
    folder.mkdir(parents=True)
    (folder / "lab").write_text(f"#!/bin/sh\necho 'the lab tool ran: {nonce}'\n")
    (folder / "lab").chmod(0o755)
    return folder, nonce


def _base_env(home: Path, bin_dir: Path | None = None) -> dict[str, str]:
    """What a jailed client gets: a home of its own, no proxy settings, the system's CA bundle."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": (f"{bin_dir}:" if bin_dir else "") + "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "SSL_CERT_FILE": paths.CA_BUNDLE,
    }


def _run(argv: list[str], proxy: tuple[str, int], env: dict[str, str], cwd: Path, timeout: float = 180) -> str:
    """A client's run in its jail: it must end by itself, with exit code 0, having reached the
    proxy; its output, without terminal colours."""
    run = jail.run(argv, proxy, env, cwd, timeout=timeout)
    out = ANSI.sub("", run.output)
    assert run.returncode == 0 and not run.timed_out, out[-3000:]
    assert run.connections >= 1, out[-3000:]  # through the proxy
    return out


# --- the SDKs ------------------------------------------------------------------------------------


def test_openai_sdk_stream_helpers_assemble_a_tool_call(client, tool_model):
    """chat.completions.stream: the SDK's own accumulation of the deltas into a whole call."""
    with client.chat.completions.stream(
        model=tool_model,
        max_tokens=64,
        tools=[TIME_TOOL, CONVERT_TOOL],
        messages=[{"role": "user", "content": "What time is it?"}],
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events, events
    [call] = final.choices[0].message.tool_calls
    assert call.id and call.function.name == "get_current_time"
    assert json.loads(call.function.arguments) == {"timezone": "UTC"}


def test_anthropic_sdk_messages_with_tools(proxy_url, proxy_key, tool_model):
    import anthropic

    sdk = anthropic.Anthropic(base_url=proxy_url, api_key=str(proxy_key), max_retries=0, timeout=60)
    tool = TIME_ANTHROPIC
    ask = [{"role": "user", "content": "What time is it?"}]
    reply = sdk.messages.create(model=tool_model, max_tokens=64, tools=[tool], messages=ask)
    assert reply.stop_reason == "tool_use", reply
    [use] = [b for b in reply.content if b.type == "tool_use"]
    assert use.name == "get_current_time" and use.input == {"timezone": "UTC"} and use.id
    # The tool's result, then text; and the same call streamed, put together by the SDK.
    result = {"type": "tool_result", "tool_use_id": use.id, "content": '{"datetime": "2026-12-01T12:00:00+00:00"}'}
    answer = sdk.messages.create(
        model=tool_model,
        max_tokens=64,
        tools=[tool],
        messages=[*ask, {"role": "assistant", "content": reply.content}, {"role": "user", "content": [result]}],
    )
    assert [b.type for b in answer.content] == ["text"] and "result:" in answer.content[0].text, answer
    with sdk.messages.stream(model=tool_model, max_tokens=64, tools=[tool], messages=ask) as stream:
        final = stream.get_final_message()
    [use] = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_current_time" and use.input == {"timezone": "UTC"}


# --- Tiny Agents with the MCP time server --------------------------------------------------------


def test_tiny_agents_calls_the_mcp_time_server_through_the_proxy(tmp_path, proxy, proxy_key, tool_model):
    """`tiny-agents run` with an agent.json at the proxy and the real mcp-server-time as its stdio
    server: the model's call reaches the server (its answer carries this machine's clock), the
    result goes back to the model, and the agent prints the model's answer to it (the fixture's
    answer to a tool result opens with "result:"; the server's JSON comes indented on several
    lines, which the fixture does not quote)."""
    agent = tmp_path / "agent"
    agent.mkdir()
    server = clients.python_client("mcp-server-time") / "mcp-server-time"
    (agent / "agent.json").write_text(
        json.dumps(
            {
                "model": tool_model,
                "endpointUrl": f"http://127.0.0.1:{proxy[1]}/v1",
                "apiKey": str(proxy_key),
                "servers": [{"type": "stdio", "command": str(server), "args": ["--local-timezone", "UTC"]}],
            }
        )
    )
    (agent / "agent.json").chmod(0o600)
    env = _base_env(tmp_path / "home") | {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf")}
    started = datetime.datetime.now(datetime.UTC)
    out = _run(
        [
            sys.executable,
            str(HERE / "drive_tiny_agents.py"),
            "120",
            "What time is it in UTC?",
            "--",
            str(clients.python_client("tiny-agents") / "tiny-agents"),
            "run",
            str(agent),
        ],
        proxy,
        env,
        tmp_path,
    )
    assert "get_current_time" in out and "Tool[get_current_time]" in out, out[-3000:]
    # The tool's result as mcp-server-time gives it: this machine's time, now.
    stamps = re.findall(r'"datetime": "([0-9T:.+-]+)"', out)
    assert stamps, out[-3000:]
    seen = datetime.datetime.fromisoformat(stamps[0])
    assert abs((seen - started).total_seconds()) < 300, (seen, started)
    # The agent's answer after the call: the model's answer to the result.
    assert "result" in out.split("Tool[get_current_time]", 1)[1].split(stamps[0], 1)[1], out[-3000:]


# --- Codex CLI and Claude Code ---------------------------------------------------------------------
# Both are configured lean, as for any small local model: the lab's fixture has a context of 2,048
# tokens, and by default Codex sends about 40 kB (a 17,000-character base prompt, skills, eight
# tools) and Claude Code 13.7 kB (a 7,200-character system prompt, its own reminders).

INSTRUCTIONS = "You are a terse coding agent. Use a tool when needed, then answer briefly."


def _codex_home(home: Path, model: str, port: int) -> Path:
    """CODEX_HOME with a model provider at the jailed proxy and every outside call switched off."""
    home.mkdir(parents=True)
    (home / "instructions.md").write_text(INSTRUCTIONS + "\n")
    (home / "config.toml").write_text(
        f"""model = "{model}"
model_provider = "lab"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false
web_search = "disabled"
hide_agent_reasoning = true
model_reasoning_summary = "none"
project_doc_max_bytes = 0
model_instructions_file = "{home / "instructions.md"}"
include_environment_context = false
include_permissions_instructions = false
include_apps_instructions = false
include_collaboration_mode_instructions = false
allow_login_shell = false
cli_auth_credentials_store = "file"
suppress_unstable_features_warning = true

[model_providers.lab]
name = "llm-lab proxy"
base_url = "http://127.0.0.1:{port}/v1"
env_key = "LAB_PROXY_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 60000

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
log_user_prompt = false

[history]
persistence = "none"

[skills.bundled]
enabled = false

[agents]
enabled = false

[tools.experimental_request_user_input]
enabled = false

[features]
plugins = false
apps = false
goals = false
image_generation = false
shell_snapshot = false
tool_suggest = false
view_image = false
"""
    )
    return home


def test_codex_exec_completes_a_turn_with_a_tool_call(tmp_path, proxy, proxy_key, tool_model):
    """`codex exec` through the Responses API: the model calls Codex's exec_command, Codex runs it
    (in its read-only sandbox; its transcript shows the command's output) and sends the output
    back, and the model's answer quotes it."""
    home = _codex_home(tmp_path / "codex-home", tool_model, proxy[1])
    work = tmp_path / "work"
    work.mkdir()
    bin_dir, nonce = _lab_command(tmp_path / "bin")
    env = _base_env(tmp_path / "home", bin_dir) | {"CODEX_HOME": str(home), "LAB_PROXY_KEY": str(proxy_key)}
    codex = clients.npm_client("codex")
    # Codex reports a command's output under a header whose chunk id and wall time change from
    # call to call, and the lab's fixture model, which never saw such a header, answers it in text
    # most of the time but not always (it may call the command again until Codex ends the turn):
    # a second run, and only one, is allowed for that; both are printed when both fail.
    outs = []
    for _ in range(2):
        out = _run(
            [str(codex), "exec", "--skip-git-repo-check", "--strict-config", "what time is it"], proxy, env, work
        )
        assert f"the lab tool ran: {nonce}" in out, out[-3000:]  # Codex ran the model's call
        outs.append(out)
        if "result:" in out.split(nonce)[-1]:  # the answer after the command's output
            break
    else:
        raise AssertionError("\n----- second run -----\n".join(o[-2000:] for o in outs))


CLAUDE_SWITCHES = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_UPDATES": "1",
    "DISABLE_GROWTHBOOK": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_FEATURE_FLAGS": "1",
    "CLAUDE_CODE_ENABLE_TELEMETRY": "0",
    "DISABLE_INSTALLATION_CHECKS": "1",
    "CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL": "1",
    "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "DISABLE_COST_WARNINGS": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}


def test_claude_code_completes_a_turn_with_a_tool_call(tmp_path, proxy, proxy_key, tool_model):
    """`claude -p` through the Messages API with its Bash tool alone (its first default tool spawns
    sub-agents): the model calls Bash, Claude Code runs it and sends the result back (its
    stream-json output shows both), and the model's answer quotes it."""
    home = tmp_path / "home"
    bin_dir, nonce = _lab_command(tmp_path / "bin")
    env = (
        _base_env(home, bin_dir)
        | CLAUDE_SWITCHES
        | {
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{proxy[1]}",
            "ANTHROPIC_API_KEY": str(proxy_key),
            # Its default of 32,000 does not fit the fixture's 2,048 (OVMS refuses it with a 400).
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "512",
        }
        | {
            name: tool_model
            for name in (
                "ANTHROPIC_MODEL",
                "ANTHROPIC_SMALL_FAST_MODEL",
                "ANTHROPIC_DEFAULT_HAIKU_MODEL",
                "ANTHROPIC_DEFAULT_SONNET_MODEL",
                "ANTHROPIC_DEFAULT_OPUS_MODEL",
                "CLAUDE_CODE_SUBAGENT_MODEL",
            )
        }
    )
    work = tmp_path / "work"
    work.mkdir()
    out = _run(
        [
            str(clients.npm_client("claude")),
            "-p",
            "what time is it",
            "--bare",
            "--tools",
            "Bash",
            "--allowedTools",
            "Bash",
            "--permission-mode",
            "dontAsk",
            "--max-turns",
            "3",
            "--system-prompt",
            INSTRUCTIONS,
            "--output-format",
            "stream-json",
            "--verbose",
        ],
        proxy,
        env,
        work,
    )
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    blocks = [
        block
        for event in events
        if event.get("type") in ("assistant", "user")
        for block in event["message"]["content"]
        if isinstance(block, dict)
    ]
    uses = [b for b in blocks if b.get("type") == "tool_use"]
    results = [b for b in blocks if b.get("type") == "tool_result"]
    assert [u["name"] for u in uses] == ["Bash"] and uses[0]["input"]["command"] == "lab", uses
    assert results and nonce in json.dumps(results[0]["content"]), results  # Claude Code ran it
    [final] = [e for e in events if e.get("type") == "result"]
    assert final["subtype"] == "success" and "result:" in final["result"], final


# --- aider in architect mode -----------------------------------------------------------------------

AIDER_ROLES = {"architect": "jerry-architect", "editor": "jerry-editor", "weak": "jerry-weak"}


def test_aider_architect_mode_uses_its_three_models(tmp_path, proxy, proxy_key, registry):
    """aider --architect with jerry-architect, jerry-editor and jerry-weak, as the seed's names
    mean: the architect answers, its answer goes to the editor, and /commit has the weak model
    write the commit message of a change in the repository. The fixture writes no edit blocks, so
    the editor changes no file (aider ends cleanly all the same)."""
    missing = [name for name in AIDER_ROLES.values() if name not in registry.models]
    assert not missing, f"the registry lacks aider's models: {missing}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hello.py").write_text('print("Hello, world!")\n')
    git = ["git", "-C", str(repo), "-c", "user.email=lab@example.invalid", "-c", "user.name=lab"]
    for args in (["init", "-q"], ["add", "hello.py"], ["commit", "-qm", "init"]):
        subprocess.run([*git[:3], *args] if args[0] == "init" else [*git, *args], check=True)
    # The client's own settings: no price-map download (the models' metadata is given), a bounded
    # answer length for the fixture (which never stops by itself), no update check, no analytics.
    metadata = {
        f"openai/{name}": {
            "max_input_tokens": 2048,
            "max_output_tokens": 128,
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
            "litellm_provider": "openai",
            "mode": "chat",
        }
        for name in AIDER_ROLES.values()
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    settings = "".join(
        f"- name: openai/{name}\n  extra_params:\n    max_tokens: 128\n" for name in AIDER_ROLES.values()
    )
    (tmp_path / "settings.yml").write_text(settings)
    env = _base_env(tmp_path / "home") | {
        "OPENAI_API_BASE": f"http://127.0.0.1:{proxy[1]}/v1",
        "OPENAI_API_KEY": str(proxy_key),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "GIT_AUTHOR_NAME": "lab",
        "GIT_AUTHOR_EMAIL": "lab@example.invalid",
        "GIT_COMMITTER_NAME": "lab",
        "GIT_COMMITTER_EMAIL": "lab@example.invalid",
    }
    history = tmp_path / "llm-history.txt"
    aider = [
        str(clients.python_client("aider") / "aider"),
        "--architect",
        "--model",
        f"openai/{AIDER_ROLES['architect']}",
        "--editor-model",
        f"openai/{AIDER_ROLES['editor']}",
        "--weak-model",
        f"openai/{AIDER_ROLES['weak']}",
        "--editor-edit-format",
        "editor-diff",
        "--model-metadata-file",
        str(tmp_path / "metadata.json"),
        "--model-settings-file",
        str(tmp_path / "settings.yml"),
        "--llm-history-file",
        str(history),
        "--yes-always",
        "--no-check-update",
        "--analytics-disable",
        "--no-show-model-warnings",
        "--no-show-release-notes",
        "--map-tokens",
        "0",
        "--no-auto-lint",
        "--no-auto-test",
        "--no-suggest-shell-commands",
        "--no-detect-urls",
        "--no-fancy-input",
        "--no-pretty",
        "--no-gitignore",
    ]
    out = _run([*aider, "--message", "Make hello.py greet Jerry.", "hello.py"], proxy, env, repo, timeout=300)
    # A change of the person's own, committed by aider with a message the weak model wrote.
    (repo / "hello.py").write_text('print("Hello, Jerry!")\n')
    _run([*aider, "--message", "/commit"], proxy, env, repo, timeout=300)
    log = subprocess.run([*git, "log", "--format=%s"], capture_output=True, text=True, check=True).stdout
    assert len(log.splitlines()) == 2, log  # init, and aider's commit
    # Which model aider gives each role, as it announces them; then each role's prompt in the
    # exchanges it logged, each with an answer, and the weak model's answer as the commit message.
    for role, name in (("Main", "architect"), ("Editor", "editor"), ("Weak", "weak")):
        assert f"{role} model: openai/{AIDER_ROLES[name]}" in out, out[-3000:]
    exchanges = history.read_text().split("TO LLM ")[1:]
    prompts = {
        "architect": "Act as an expert architect engineer",
        "editor": "Act as an expert software developer who edits source code",
    }
    for role, prompt in prompts.items():
        answered = [e for e in exchanges if prompt in e and "LLM RESPONSE" in e]
        assert answered, f"aider never asked its {role} model: {[e[:200] for e in exchanges]}"
    # The weak model's exchange is not in that history; its answer is the commit's subject
    # (aider writes "(no commit message provided)" when the weak model gives none).
    subject = log.splitlines()[0]
    assert subject.strip() and subject != "(no commit message provided)", subject
