"""The lab's OVMS stand-in runs the real engine: the archive the lab builds (lab/artifacts.py) is
unpacked, its ovms/bin/ovms serves the tiny model's OpenVINO export (lab/ovexport.py) on
127.0.0.1 through a graph.pbtxt in OVMS 2025.4's text-generation form, and answers with text the
model generated and token counts its tokenizer made. Folders OVMS would refuse are refused.

The artifacts are built here when the cache lacks them (once, about a minute); `./labctl up`
builds them first in CI.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab import artifacts, hfhub, ovexport, paths

GRAPH = """# File created with: OpenVINO Model Server 2025.4.0
input_stream: "HTTP_REQUEST_PAYLOAD:input"
output_stream: "HTTP_RESPONSE_PAYLOAD:output"
node: {
  name: "LLMExecutor"
  calculator: "HttpLLMCalculator"
  input_stream: "LOOPBACK:loopback"
  input_stream: "HTTP_REQUEST_PAYLOAD:input"
  input_side_packet: "LLM_NODE_RESOURCES:llm"
  output_stream: "LOOPBACK:loopback"
  output_stream: "HTTP_RESPONSE_PAYLOAD:output"
  input_stream_info: { tag_index: 'LOOPBACK:0', back_edge: true }
  node_options: {
    [type.googleapis.com / mediapipe.LLMCalculatorOptions]: {
      max_num_seqs: 4,
      device: "CPU",
      models_path: "%(models_path)s",
      plugin_config: '{ }',
      enable_prefix_caching: false,
      cache_size: 1,%(extra)s
    }
  }
  input_stream_handler {
    input_stream_handler: "SyncSetInputStreamHandler",
    options { [mediapipe.SyncSetInputStreamHandlerOptions.ext] { sync_set { tag_index: "LOOPBACK:0" } } }
  }
}
"""
EXPORT_IR = ("openvino_model", "openvino_tokenizer", "openvino_detokenizer")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the env says


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(python, ovms/bin/ovms): the built archive unpacked, and an interpreter of the Python the
    archive's engine is for (the mini's). Without one here, the same program runs on the engine
    installed for this interpreter, in the same layout."""
    artifacts.build_artifacts()
    target = ovexport.mini_target()
    root = tmp_path_factory.mktemp("release")
    with tarfile.open(paths.OVMS_STANDIN) as tar:
        tar.extractall(root, filter="tar")
    program = root / "ovms" / "bin" / "ovms"
    python = ovexport.find_python(target.python)
    if python is None:
        local = ovexport.local_target()
        shutil.rmtree(root / "ovms" / "lib" / "python")
        (root / "ovms" / "lib" / "python").symlink_to(ovexport.engine_libs(local))
        python = ovexport.find_python(local.python)
    return python, program


def _ir_folder(folder: Path, without: tuple[str, ...] = ()) -> None:
    folder.mkdir(parents=True)
    for item in paths.TINY_OV.iterdir():
        if not any(item.name.startswith(prefix + ".") for prefix in without):
            (folder / item.name).symlink_to(item)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A model repository like the deploy's: tiny/graph.pbtxt with the export in tiny/model, the
    same model with the hermes3 tool parser (tools/), and folders OVMS refuses: no graph.pbtxt, no
    tokenizer IR, no detokenizer IR."""
    root = tmp_path_factory.mktemp("models")
    (root / "tiny").mkdir()
    (root / "tiny" / "model").symlink_to(paths.TINY_OV)
    (root / "tiny" / "graph.pbtxt").write_text(GRAPH % {"models_path": "./model", "extra": ""})
    (root / "tools").mkdir()
    (root / "tools" / "model").symlink_to(paths.TINY_OV)
    (root / "tools" / "graph.pbtxt").write_text(
        GRAPH % {"models_path": "./model", "extra": '\n      tool_parser: "hermes3",'}
    )
    _ir_folder(root / "nograph")
    for name, missing in (("notokenizer", "openvino_tokenizer"), ("nodetokenizer", "openvino_detokenizer")):
        _ir_folder(root / name, without=(missing,))
        (root / name / "graph.pbtxt").write_text(GRAPH % {"models_path": "./", "extra": ""})
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jinja_path(tmp_path_factory):
    """A folder with Jinja2 and MarkupSafe alone, as the deploy puts them on OVMS's PYTHONPATH for
    the python_on build."""
    import jinja2
    import markupsafe

    folder = tmp_path_factory.mktemp("template-env")
    for module in (jinja2, markupsafe):
        (folder / module.__name__).symlink_to(Path(module.__file__).parent)
    return folder


class Server:
    """The stand-in on 127.0.0.1, its interpreter without site-packages (-S): Jinja2 is found only on
    python_path, as with the deploy's PYTHONPATH (python_on), or not at all (python_off)."""

    def __init__(self, release, config: dict, folder: Path, python_path: Path | None = None):
        python, program = release
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config_path = folder / "config.json"
        config_path.write_text(json.dumps(config))
        self.log_path = folder / "ovms.log"
        self.log_file = open(self.log_path, "w")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                python,
                "-S",
                str(program),
                "--config_path",
                str(config_path),
                "--rest_port",
                str(self.port),
                "--rest_bind_address",
                "127.0.0.1",
                "--port",
                "0",
                "--log_level",
                "INFO",
            ],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", **({"PYTHONPATH": str(python_path)} if python_path else {})},
        )
        while "Server ready" not in self.log() and "not ready" not in self.log():
            if self.proc.poll() is not None or time.monotonic() - started > 120:
                self.stop()
                pytest.fail(f"the stand-in did not come up (exit {self.proc.returncode}):\n{self.log()}")
            time.sleep(0.1)
        self.load_seconds = time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> tuple[int, dict, str]:
        return self.request("GET", path)

    def post(self, path: str, body: dict) -> tuple[int, dict, str]:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, str]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with NO_PROXY.open(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


@pytest.fixture(scope="module")
def server(release, models, jinja_path, tmp_path_factory):
    config = {
        "model_config_list": [
            {"config": {"name": name, "base_path": str(models / name)}}
            for name in ("tiny", "tools", "nograph", "notokenizer", "nodetokenizer")
        ]
    }
    srv = Server(release, config, tmp_path_factory.mktemp("server"), jinja_path)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    import httpx
    import openai  # in .venv: litellm[proxy] brings it

    return openai.OpenAI(
        base_url=f"{server.base}/v3",
        api_key="unused",
        max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=60),
    )


# --- the program -------------------------------------------------------------------------------


def test_version_says_stand_in_and_names_the_real_engine(release):
    python, program = release
    out = subprocess.run([python, str(program), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "STAND-IN" in out.stdout
    assert f"OpenVINO backend {ovexport.OPENVINO}" in out.stdout
    assert f"OpenVINO GenAI backend {ovexport.OPENVINO_GENAI}" in out.stdout


def _pull(release, repository, endpoint, source=hfhub.OV_REPO, env=None, timeout=120):
    python, program = release
    command = [python, str(program), "--pull", "--source_model", source, "--model_repository_path", str(repository)]
    command += ["--task", "text_generation", "--target_device", "CPU"]
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": endpoint, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def hub():
    """The lab's hub stand-in on 127.0.0.1 serving the OpenVINO export as lab/tiny-llama-ov, its
    downloads paced so that the whole export takes about 12 s."""
    total = sum(f.stat().st_size for f in paths.TINY_OV.rglob("*") if f.is_file())
    server = hfhub.serve("127.0.0.1:0", {hfhub.OV_REPO: paths.TINY_OV}, rate=max(total // 12, 1))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()


def test_pull_downloads_the_repository_from_hf_endpoint_with_progress(release, hub, tmp_path):
    """Pull mode puts every file of the repository in <repository>/<org>/<name>, byte for byte, says
    how far it is at least every 10 s and at the end, and sends HF_TOKEN to the endpoint but never
    to the host an LFS file redirects to."""
    endpoint, server = hub
    started = time.monotonic()
    out = _pull(release, tmp_path, endpoint, env={"HF_TOKEN": "hf_lab_token"})
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    pulled = tmp_path / hfhub.OV_REPO
    want = sorted(f.relative_to(paths.TINY_OV) for f in paths.TINY_OV.rglob("*") if f.is_file())
    assert sorted(f.relative_to(pulled) for f in pulled.rglob("*") if f.is_file()) == want
    assert all((pulled / f).read_bytes() == (paths.TINY_OV / f).read_bytes() for f in want)
    progress = [line for line in out.stdout.splitlines() if line.startswith("STAND-IN pull: ")]
    assert len(progress) >= 1 + int(took // 10) and "(100%)" in progress[-1], (took, out.stdout)
    assert f"downloaded to: {pulled}" in out.stderr
    assert server.lfs_authorized and not any(server.lfs_authorized)  # weights were redirected, without the token


def test_pull_of_a_repository_the_hub_lacks_fails_naming_it(release, hub, tmp_path):
    endpoint, _ = hub
    out = _pull(release, tmp_path, endpoint, source="OpenVINO/Qwen3-8B-int4-ov", timeout=60)
    assert out.returncode == 1
    assert f"Downloading OpenVINO/Qwen3-8B-int4-ov from {endpoint} failed" in out.stderr
    assert "404" in out.stderr
    assert not any(f.is_file() for f in tmp_path.rglob("*"))


def test_pull_keeps_a_folder_already_there(release, hub, tmp_path):
    endpoint, server = hub
    (tmp_path / hfhub.OV_REPO).mkdir(parents=True)
    (tmp_path / hfhub.OV_REPO / "mine").write_text("kept")
    out = _pull(release, tmp_path, endpoint, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Skipping download" in out.stderr and server.sent == 0
    assert [f.name for f in (tmp_path / hfhub.OV_REPO).iterdir()] == ["mine"]


def test_the_archive_has_the_release_layout_and_no_graph_in_the_export():
    names = set(tarfile.open(paths.OVMS_STANDIN).getnames())
    assert {
        "ovms/bin/ovms",
        "ovms/lib/python/openvino/__init__.py",
        "ovms/lib/python/openvino_genai/__init__.py",
        "ovms/lib/python/openvino_tokenizers/__init__.py",
    } <= names
    # openvino_telemetry would send a usage event to Google Analytics at every `import openvino`.
    assert not [n for n in names if "openvino_telemetry" in n]
    exported = {p.name for p in paths.TINY_OV.iterdir()}
    assert {f"{ir}.{ext}" for ir in EXPORT_IR for ext in ("xml", "bin")} <= exported
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= exported
    assert "graph.pbtxt" not in exported


# --- serving -----------------------------------------------------------------------------------


def test_models_lists_only_the_loaded_graph(server):
    status, headers, body = server.get("/v3/models")
    assert status == 200
    assert "STAND-IN" in headers["Server"]
    listed = json.loads(body)
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["tiny", "tools"]


def test_chat_completion_is_generated_and_counted(server, client):
    # ignore_eos (an OVMS extension): exactly max_tokens, whatever the random model says.
    reply = client.chat.completions.create(
        model="tiny",
        max_tokens=7,
        extra_body={"ignore_eos": True},
        messages=[{"role": "user", "content": "hello world"}],
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 7
    # The prompt is the model's chat template applied and tokenized: counted independently here.
    import jinja2
    from tokenizers import Tokenizer

    from lab.toolmodel import CHAT_TEMPLATE as template

    prompt = jinja2.Template(template).render(
        messages=[{"role": "user", "content": "hello world"}], add_generation_prompt=True
    )
    tokenizer = Tokenizer.from_file(str(paths.TINY_OV / "tokenizer.json"))
    assert reply.usage.prompt_tokens == len(tokenizer.encode(prompt, add_special_tokens=False).ids) > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 7


def test_different_prompts_are_different_work(server, client):
    short = client.chat.completions.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    long = client.chat.completions.create(
        model="tiny",
        max_tokens=4,
        messages=[{"role": "user", "content": "the lab answers every request with a short reply"}],
    )
    assert short.usage.prompt_tokens != long.usage.prompt_tokens
    # Greedy text depends on the prompt: offered a tool, the model calls it.
    offered = [{"role": "user", "content": "what time is it?"}]
    plain = client.chat.completions.create(model="tiny", max_tokens=24, messages=offered)
    tool = {"type": "function", "function": {"name": "get_current_time", "parameters": TIME_PARAMETERS}}
    called = client.chat.completions.create(model="tiny", max_tokens=24, messages=offered, tools=[tool])
    assert plain.choices[0].message.content and called.choices[0].message.content
    assert plain.choices[0].message.content != called.choices[0].message.content
    # The same request again gives the same text (greedy): generated, not random filler.
    first = client.completions.create(model="tiny", max_tokens=6, prompt="hello world")
    again = client.completions.create(model="tiny", max_tokens=6, prompt="hello world")
    assert first.object == "text_completion" and first.choices[0].text
    assert again.choices[0].text == first.choices[0].text
    # Sampling with a seed is honoured too: different prompts, different text (the tiny model
    # answers a chat with its sentence, a tool result by quoting it).
    sampled = [
        client.chat.completions.create(model="tiny", max_tokens=8, temperature=1.0, seed=11, messages=m, **kw)
        .choices[0]
        .message.content
        for m, kw in (
            ([{"role": "user", "content": "hello world"}], {}),
            ([{"role": "user", "content": "hello world"}, {"role": "tool", "content": "12:00"}], {"tools": [tool]}),
        )
    ]
    assert sampled[0] != sampled[1]


def test_streaming_sends_tokens_as_they_come_then_finish_usage_done(server, client):
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
            messages=[{"role": "user", "content": "hello world"}],
        )
    )
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 3
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finished] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens > 0
    # On the wire: `data: {json}` events, the finish before the usage, then [DONE].
    status, headers, body = server.post(
        "/v3/completions",
        {"model": "tiny", "max_tokens": 5, "stream": True, "ignore_eos": True, "prompt": "hello world"},
    )
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][len("data: ") :])
    assert last["object"] == "text_completion.chunk" and last["choices"][0]["finish_reason"] == "length"
    assert "".join(json.loads(e[6:])["choices"][0]["text"] for e in events[:-1])


def test_unknown_model_is_a_404_with_ovms_text(server):
    status, _, body = server.post(
        "/v3/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 404
    assert json.loads(body) == {"error": "Mediapipe graph definition with requested name is not found"}


def test_folders_ovms_refuses_are_refused_and_the_server_is_not_ready(server, models):
    log = server.log()
    assert f"No version found for model in path: {models / 'nograph'}" in log
    for name, missing in (("notokenizer", "openvino_tokenizer.xml"), ("nodetokenizer", "openvino_detokenizer.xml")):
        assert (
            f"Error during llm node initialization for models_path: {models / name} exception: "
            f"STAND-IN check: {missing} not found"
        ) in log
        assert f"Failed to process LLM node graph {name}" in log
    status, _, body = server.get("/v1/config")
    config = json.loads(body)
    assert config["tiny"]["model_version_status"][0]["state"] == "AVAILABLE"
    assert config["nograph"]["model_version_status"] == []
    assert config["notokenizer"]["model_version_status"][0]["status"]["error_code"] == "FAILED_PRECONDITION"
    assert server.get("/v2/health/live")[0] == 200
    assert server.get("/v2/health/ready")[0] != 200
    assert server.get("/v2/models/tiny/ready")[0] == 200
    assert server.get("/v2/models/notokenizer/ready")[0] == 404
    status, _, body = server.post(
        "/v3/chat/completions", {"model": "notokenizer", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 500 and json.loads(body) == {"error": "Mediapipe is not loaded yet"}


def test_ready_when_every_servable_loaded(release, models, tmp_path):
    srv = Server(
        release, {"model_config_list": [{"config": {"name": "tiny", "base_path": str(models / "tiny")}}]}, tmp_path
    )
    try:
        assert srv.get("/v2/health/ready")[0] == 200
        assert "STAND-IN" in srv.log() and "ContinuousBatchingPipeline on CPU" in srv.log()
    finally:
        srv.stop()


# --- tools (graph tool_parser hermes3, the python_on build's Jinja2 template) --------------------

TIME_PARAMETERS = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_time",
        "description": "Get the current time in a timezone",
        "parameters": TIME_PARAMETERS,
    },
}
CONVERT_TOOL = {  # a name the model learned (it copies unknown names only approximately)
    "type": "function",
    "function": {
        "name": "convert_time",
        "parameters": {
            "type": "object",
            "properties": {"time": {"type": "string"}, "target_timezone": {"type": "string"}},
            "required": ["time", "target_timezone"],
        },
    },
}
ASK = [{"role": "user", "content": "what time is it?"}]


def _chat(server, **body) -> tuple[int, dict]:
    status, _, text = server.post("/v3/chat/completions", {"max_tokens": 48, "messages": ASK, **body})
    return status, json.loads(text)


def test_a_tool_call_is_parsed_as_ovms_hermes3_does(server):
    status, reply = _chat(server, model="tools", tools=[TIME_TOOL])
    assert status == 200, reply
    message, finish = reply["choices"][0]["message"], reply["choices"][0]["finish_reason"]
    assert finish == "stop"  # OVMS 2025.4 says "stop" with tool calls (2026.1 says "tool_calls")
    assert message["content"] == ""  # the text before the first <tool_call>
    [call] = message["tool_calls"]
    assert call["type"] == "function" and len(call["id"]) == 9 and call["id"].isalnum()
    assert call["function"]["name"] == "get_current_time"
    assert json.loads(call["function"]["arguments"]) == {"timezone": "UTC"}
    assert call["function"]["arguments"] == '{"timezone":"UTC"}'  # re-serialized compactly
    # Without the parser in the graph the same generation comes back as text.
    status, plain = _chat(server, model="tiny", tools=[TIME_TOOL])
    assert status == 200 and plain["choices"][0]["message"]["tool_calls"] == []
    assert plain["choices"][0]["message"]["content"].startswith('<tool_call>{"name": "get_current_time"')
    assert plain["usage"]["prompt_tokens"] == reply["usage"]["prompt_tokens"]


def test_tool_calls_stream_name_first_then_arguments(server):
    status, _, body = server.post(
        "/v3/chat/completions",
        {"model": "tools", "max_tokens": 48, "stream": True, "messages": ASK, "tools": [TIME_TOOL]},
    )
    assert status == 200
    events = [json.loads(e[6:]) for e in body.split("\n\n") if e and e != "data: [DONE]"]
    deltas = [e["choices"][0]["delta"] for e in events]
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    first, later = calls[0], calls[1:]
    assert set(first) == {"id", "type", "index", "function"} and first["function"] == {"name": "get_current_time"}
    assert later and all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in later)
    assert json.loads("".join(c["function"]["arguments"] for c in later)) == {"timezone": "UTC"}
    assert not any(d.get("content") for d in deltas)  # no <tool_call> text leaks as content
    assert [e["choices"][0]["finish_reason"] for e in events][-1] == "stop"


def test_tool_choice_as_ovms_reads_it(server):
    both = [TIME_TOOL, CONVERT_TOOL]
    status, auto = _chat(server, model="tools", tools=both, tool_choice="auto")
    assert status == 200 and auto["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_current_time"
    # A named function: only that tool reaches the template, so the model calls it.
    named = {"type": "function", "function": {"name": "convert_time"}}
    status, reply = _chat(server, model="tools", tools=both, tool_choice=named)
    assert status == 200 and [c["function"]["name"] for c in reply["choices"][0]["message"]["tool_calls"]] == [
        "convert_time"
    ]
    # none: the tools are dropped; the prompt is the one without tools.
    status, none = _chat(server, model="tools", tools=both, tool_choice="none")
    status_plain, plain = _chat(server, model="tools")
    assert status == status_plain == 200
    assert none["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"] < auto["usage"]["prompt_tokens"]
    assert none["choices"][0]["message"]["tool_calls"] == []
    status, required = _chat(server, model="tools", tools=both, tool_choice="required")
    assert status == 200 and required["choices"][0]["message"]["tool_calls"]
    status, bad = _chat(server, model="tools", tools=both, tool_choice="always")
    assert status == 400 and bad == {"error": "tool_choice should be either 'none' or 'auto' or 'required'"}


def test_the_tool_result_turn_is_rendered_and_answered_with_text(server):
    call = {"id": "abc123def", "type": "function", "function": {"name": "get_current_time", "arguments": "{}"}}
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "abc123def", "content": "12:00 UTC"},
    ]
    status, reply = _chat(server, model="tools", tools=[TIME_TOOL], messages=messages)
    assert status == 200, reply
    message = reply["choices"][0]["message"]
    assert message["tool_calls"] == [] and message["content"].startswith(" result:")


def test_without_jinja2_the_tools_never_reach_the_template(release, models, tmp_path):
    """python_off: the engine's own template renders roles and text; the request's tools are not in
    the prompt (so the model makes no call)."""
    srv = Server(
        release, {"model_config_list": [{"config": {"name": "tools", "base_path": str(models / "tools")}}]}, tmp_path
    )
    try:
        assert "no Jinja2: python_off" in srv.log()
        status, with_tools = _chat(srv, model="tools", tools=[TIME_TOOL])
        status_plain, plain = _chat(srv, model="tools")
        assert status == status_plain == 200
        assert with_tools["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]
        assert with_tools["choices"][0]["message"]["tool_calls"] == []
    finally:
        srv.stop()
