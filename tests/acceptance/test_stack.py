"""Acceptance: services, sockets, files and endpoints of the deployed stack."""

import json

import pytest
import yaml

from tasks import litellm as litellm_task
from tasks import stack
from tasks.ovms import models as ovms_models

from .client import chat, http


def test_service_enabled_and_running(hosts, service_on_host):
    host_name, service = service_on_host
    host = hosts[host_name]
    unit = host.service(service)
    log = host.run(f"journalctl -u {service} --no-pager -n 30").stdout
    assert unit.is_running, f"{service} is not running on {host_name}; recent log:\n{log}"
    assert unit.is_enabled, f"{service} is not enabled on {host_name}; recent log:\n{log}"


def test_litellm_listens_on_the_lan(hosts, registry):
    port = registry.proxy["litellm_port"]
    assert hosts[registry.proxy_host].socket(f"tcp://{registry.proxy['litellm_bind_address']}:{port}").is_listening


def test_ovms_listens_on_loopback_only(hosts, registry):
    mini = hosts[registry.proxy_host]
    port = registry.proxy["ovms_rest_port"]
    assert mini.socket(f"tcp://127.0.0.1:{port}").is_listening
    listening = [s for s in mini.socket.get_listening_sockets() if s.endswith(f":{port}")]
    assert listening == [f"tcp://127.0.0.1:{port}"], listening


def test_mlx_server_listens(hosts, mlx_model, registry):
    host = hosts[mlx_model.host]
    assert host.socket(f"tcp://{registry.settings(mlx_model.host)['mlx_bind_address']}:{mlx_model.port}").is_listening


def test_nothing_else_of_ours_listens(hosts, registry):
    """Every TCP port listening on a host is sshd's or one the registry declares."""
    for name, host in hosts.items():
        declared = {p.port for p in stack.ports(registry) if p.host == name} | {22}
        ports = {int(s.rsplit(":", 1)[1]) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
        assert ports <= declared, f"{name}: undeclared listeners on {sorted(ports - declared)}"
        assert declared <= ports, f"{name}: declared but not listening: {sorted(declared - ports)}"


def test_env_local_is_private(hosts, registry):
    env = hosts[registry.proxy_host].file(f"{registry.proxy['litellm_config_dir']}/env.local")
    assert env.exists
    assert env.mode == 0o600
    assert env.user == registry.proxy["litellm_user"]


def test_router_yaml_matches_the_registry(hosts, registry):
    router = hosts[registry.proxy_host].file(f"{registry.proxy['litellm_config_dir']}/router.yaml")
    assert router.content_string == litellm_task.render_router_yaml(registry)
    names = [m["model_name"] for m in yaml.safe_load(router.content_string)["model_list"]]
    assert names == [m.model_name for m in registry.models.values()]


def test_litellm_liveness_and_readiness(proxy_url):
    status, _ = http("GET", f"{proxy_url}/health/liveliness")
    assert status == 200
    status, body = http("GET", f"{proxy_url}/health/readiness")
    assert status == 200, body


def test_models_lists_exactly_the_registry(proxy_url, proxy_key, registry):
    status, body = http("GET", f"{proxy_url}/v1/models", key=proxy_key)
    assert status == 200, body
    assert sorted(m["id"] for m in body["data"]) == sorted(registry.model_names())


def test_request_without_key_is_refused(proxy_url):
    status, _ = http("GET", f"{proxy_url}/v1/models")
    assert status == 401
    status, _ = http("POST", f"{proxy_url}/v1/chat/completions", {"model": "jerry-chat", "messages": []})
    assert status == 401


ROUTES = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "jerry-chat", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/completions", {"model": "jerry-chat", "prompt": "hi"}),
    ("POST", "/v1/embeddings", {"model": "jerry-chat", "input": "hi"}),
]


def _wrong_keys(key):
    return {
        "wrong": "sk-not-the-key",
        "one character more": key + "x",
        "one character less": key[:-1],
        "another case": key.swapcase(),
        "not sk-": "abc",
        "empty bearer": "",
    }


def test_request_with_a_wrong_or_malformed_key_gets_401(proxy_url, proxy_key):
    for method, route, body in ROUTES:
        for what, wrong in _wrong_keys(proxy_key).items():
            status, text = http(method, f"{proxy_url}{route}", body, headers={"Authorization": f"Bearer {wrong}"})
            assert status == 401, (route, what, status, text)
            error = json.loads(text)["error"]  # OpenAI's shape: {"error": {"message", "type", ...}}
            assert error["message"] and error["type"] and str(error["code"]) == "401", (route, what, error)
            assert proxy_key not in text


def test_official_openai_client_sees_authentication_error(proxy_url, proxy_key):
    import openai

    wrong = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="sk-not-the-key", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="jerry-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    right = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=str(proxy_key), max_retries=0, timeout=30)
    assert {m.id for m in right.models.list()} >= {"jerry-chat"}


def test_the_proxy_key_reaches_litellm_exactly(hosts, registry, proxy_key):
    """env.local's quoting, read back by systemd: the running proxy's own environment holds the
    key byte for byte (the lab's key carries a space, $, #, both quotes and a backslash).
    Compared by digest, so a failure prints no secret."""
    import hashlib

    mini = hosts[registry.proxy_host]
    digest = mini.check_output(
        "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value litellm)/environ "
        "| sed -n 's/^LITELLM_PROXY_KEY=//p' | tr -d '\\n' | sha256sum | cut -d' ' -f1"
    )
    assert digest == hashlib.sha256(str(proxy_key).encode()).hexdigest()
    assert any(c in str(proxy_key) for c in "$#\"'\\ ")


def test_chat_completion_through_the_proxy(proxy_url, proxy_key, model_name, registry):
    status, body = chat(proxy_url, model_name, key=proxy_key)
    assert status == 200, body
    choice = body["choices"][0]
    assert body["model"] == model_name
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0
    if registry.models[model_name].backend == "mlx":
        # the real mlx_lm.server marks its answers with its own fingerprint
        assert body.get("system_fingerprint", "").startswith(
            registry.settings(registry.models[model_name].host)["mlx_lm_version"]
        )


def test_a_client_that_names_no_length_is_not_cut_at_512(proxy_url, proxy_key, registry):
    """Coding clients (aider) send no max_tokens: the server's default completion length applies,
    mlx_lm's own 512 no longer. The tiny model's end-of-text token is biased away so the length,
    not the model, ends the answer."""
    from lab.toolmodel import CONFIG
    from tasks import mlx as mlx_task

    model = next(m for m in registry.models.values() if m.backend == "mlx" and m.max_tokens)
    expected = mlx_task.max_tokens(registry, model)
    status, body = http(
        "POST",
        f"{proxy_url}/v1/chat/completions",
        {
            "model": model.name,
            "logit_bias": {str(CONFIG["eos_token_id"]): -100},
            "messages": [{"role": "user", "content": "write a long answer"}],
        },
        key=proxy_key,
        timeout=120,
    )
    assert status == 200, body
    assert body["usage"]["completion_tokens"] == expected > 512, body["usage"]
    assert body["choices"][0]["finish_reason"] == "length"


def test_mlx_server_answers_the_proxy_host(hosts, registry, addresses, mlx_model):
    """From the proxy host (the one its firewall admits), the server answers its own API."""
    mini = hosts[registry.proxy_host]
    url = f"http://{addresses[mlx_model.host]}:{mlx_model.port}"
    # mlx_lm.server's /v1/models lists its hub cache (empty here: the lab's model is a folder)
    assert mini.check_output(f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 {url}/v1/models") == "200"
    body = {"model": mlx_model.upstream, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    reply = json.loads(
        mini.check_output(
            f"curl -fsS --max-time 30 -H 'Content-Type: application/json' -d %s {url}/v1/chat/completions",
            json.dumps(body),
        )
    )
    assert reply["usage"]["completion_tokens"] > 0


def test_mlx_ports_refuse_everyone_but_the_proxy_host(addresses, mlx_model):
    """The proxy is the only door: this machine (on the lab's bridge, like any LAN client) is
    refused by the studio's firewall, while the server itself listens on all addresses."""
    import socket

    with pytest.raises(OSError) as refused:
        socket.create_connection((addresses[mlx_model.host], mlx_model.port), timeout=5).close()
    assert isinstance(refused.value, ConnectionRefusedError), refused.value


def test_ovms_answers_its_own_endpoints(hosts, registry):
    mini = hosts[registry.proxy_host]
    port = registry.proxy["ovms_rest_port"]
    assert (
        mini.run(f"curl -fsS -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/v2/health/ready").stdout == "200"
    )
    models = json.loads(mini.check_output(f"curl -fsS http://127.0.0.1:{port}/v3/models"))
    served = {m.upstream for m in registry.models.values() if m.backend == "ovms"}
    assert {m["id"] for m in models["data"]} == served


def test_unit_is_hardened(hosts, registry, hardened_unit):
    unit = hardened_unit
    out = hosts[registry.proxy_host].run(f"systemd-analyze security --no-pager {unit} | tail -1")
    score = float(out.stdout.split(f"Overall exposure level for {unit}:")[1].split()[0])
    assert score <= 4.0, out.stdout


def test_redis_is_loopback_only_and_wants_its_password(hosts, registry):
    mini = hosts[registry.proxy_host]
    port = registry.proxy["redis_port"]
    listening = [s for s in mini.socket.get_listening_sockets() if s.endswith(f":{port}")]
    assert listening == [f"tcp://127.0.0.1:{port}"], listening
    assert "NOAUTH" in mini.run(f"redis-cli -p {port} ping").stdout
    wrong = mini.run(f"redis-cli -p {port} --no-auth-warning -a wrong-password ping")
    assert "WRONGPASS" in wrong.stderr and "PONG" not in wrong.stdout
    assert mini.run("systemctl is-enabled redis-server").stdout.strip() == "masked"  # the distribution's own


def _proxy_processes(mini) -> tuple[str, list[str]]:
    """The proxy's supervisor (its unit's main process) and the processes it started."""
    pid = mini.check_output("systemctl show -p MainPID --value litellm")
    return pid, mini.check_output(f"pgrep -P {pid}").split()


def test_the_proxy_runs_from_its_environments_own_folder(hosts, registry):
    """The unit names <home>/venv, a link an upgrade switches before it restarts the proxy: the
    supervisor and every worker run from the folder the link named when they started."""
    mini = hosts[registry.proxy_host]
    home = registry.proxy["litellm_home"]
    folder = mini.check_output(f"readlink {home}/venv")
    pid, children = _proxy_processes(mini)
    programs = mini.check_output(
        f"for p in {pid} {' '.join(children)}; do tr '\\0' '\\n' < /proc/$p/cmdline | head -n 1; done"
    ).split()
    assert folder.startswith(f"{home}/venv-") and len(programs) >= 3, (folder, programs)
    assert set(programs) == {f"{folder}/bin/python"}, programs


def test_every_proxy_worker_parses_http_with_httptools(hosts, registry):
    """The launcher names httptools' parser: each worker has its compiled module mapped (the
    supervisor's children but multiprocessing's resource tracker, there when workers are spawned)."""
    mini = hosts[registry.proxy_host]
    workers = [
        w
        for w in _proxy_processes(mini)[1]
        if "resource_tracker" not in mini.check_output(f"tr '\\0' ' ' < /proc/{w}/cmdline")
    ]
    mapped = {w: mini.run(f"grep -c 'httptools/parser/parser' /proc/{w}/maps").stdout.strip() for w in workers}
    assert workers and all(n not in ("", "0") for n in mapped.values()), mapped


def test_proxy_runs_a_worker_per_cpu(hosts, registry):
    from tasks import litellm as litellm_task

    mini = hosts[registry.proxy_host]
    cpus = int(mini.check_output("getconf _NPROCESSORS_ONLN"))
    port = registry.proxy["litellm_port"]
    pids = int(mini.check_output(f"ss -Htlnp 'sport = :{port}' | grep -o 'pid=[0-9]*' | sort -u | wc -l"))
    assert pids - 1 == litellm_task.workers(registry, cpus) == cpus


def _ovms_models(registry):
    return [m for m in registry.models.values() if m.backend == "ovms"]


def test_ovms_models_are_ready_and_served_from_their_graph(hosts, registry):
    """Each OVMS model is listed in model_config_list, its folder holds the deploy's graph.pbtxt
    and the files it names (a pulled one: under hub/<org>/<name>, with the source it was pulled
    from recorded), and OVMS reports the model itself ready (not only the server)."""
    mini = hosts[registry.proxy_host]
    s = registry.proxy
    port = s["ovms_rest_port"]
    config = json.loads(mini.file(f"{s['ovms_config_dir']}/config.json").content_string)
    assert "mediapipe_config_list" not in config
    for m in _ovms_models(registry):
        folder = f"{s['ovms_models_dir']}/{m.upstream}"
        assert {"config": {"name": m.upstream, "base_path": folder}} in config["model_config_list"]
        graph = mini.file(f"{folder}/graph.pbtxt").content_string
        assert 'calculator: "HttpLLMCalculator"' in graph and f'device: "{m.graph["device"]}"' in graph
        files = f"{folder}/{ovms_models.models_path(m).removeprefix('./')}"
        assert f'models_path: "{ovms_models.models_path(m)}"' in graph
        for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
            assert mini.file(f"{files}/{name}").exists, f"{files}/{name}"
        if not m.source_is_folder:
            marker = f"{folder}/{ovms_models.SOURCE_MARKER}"
            assert mini.file(marker).content_string == m.source + "\n"
        code = mini.run(
            f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/v2/models/{m.upstream}/ready"
        )
        assert code.stdout == "200"


def test_lil_jerry_generates_for_real_through_the_proxy(registry, proxy_url, proxy_key):
    """Through LiteLLM with the official client: two different prompts are generated by the
    engine, with usage counted by its tokenizer. Both are sampled with the same seed, so the
    sampler's draws are the same: replies that differ come from the prompts (the lab's tiny
    model answers a chat with its sentence, a tool result by quoting it)."""
    import openai

    client = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=str(proxy_key), max_retries=0, timeout=60)
    replies = []
    call = {"id": "c1", "type": "function", "function": {"name": "get_current_time", "arguments": "{}"}}
    conversations = (
        [{"role": "user", "content": "hello world"}],
        [
            {"role": "user", "content": "the lab answers every request with a short reply . how are you today ?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
        ],
    )
    tools = [
        {
            "type": "function",
            "function": {"name": "get_current_time", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    for messages in conversations:
        reply = client.chat.completions.create(
            model="lil-jerry",
            max_tokens=12,
            temperature=1.0,
            seed=7,
            messages=messages,
            **({"tools": tools} if messages[-1]["role"] == "tool" else {}),
        )
        replies.append(reply)
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage.completion_tokens > 0
    assert replies[1].usage.prompt_tokens > replies[0].usage.prompt_tokens > 0
    assert replies[0].choices[0].message.content != replies[1].choices[0].message.content


def test_lil_jerry_streams_through_the_proxy(registry, proxy_url, proxy_key):
    import openai

    client = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=str(proxy_key), max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model="lil-jerry",
        max_tokens=16,
        stream=True,
        messages=[{"role": "user", "content": "hello world , how are you today ?"}],
    )
    chunks = list(stream)
    text = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(text) >= 3, chunks  # token by token, not one block
    assert finish and finish[-1] in ("stop", "length")


def test_the_node_exporter_serves_the_hosts_metrics_where_the_data_says(hosts, registry, real):
    """Switched on (the lab's data always does): our unit serves the mini's own metrics on the
    declared address only, not as root; the distribution's unit is masked. Switched off (real
    hosts may leave it so): our unit is not there."""
    s = registry.proxy
    mini = hosts[registry.proxy_host]
    if not s["node_exporter_enabled"]:
        assert real, "the lab's data switches the node exporter on (lab/group_data/mini.py); here it is off"
        assert not mini.file("/etc/systemd/system/node-exporter-llm.service").exists
        return
    port = s["node_exporter_port"]
    metrics = mini.check_output(f"curl -fsS --max-time 5 http://{s['node_exporter_bind_address']}:{port}/metrics")
    available = [line for line in metrics.splitlines() if line.startswith("node_memory_MemAvailable_bytes ")]
    assert available and float(available[0].split()[1]) > 0, metrics[:2000]
    listening = [x for x in mini.socket.get_listening_sockets() if x.endswith(f":{port}")]
    assert listening == [f"tcp://{s['node_exporter_bind_address']}:{port}"], listening
    pid = mini.check_output("systemctl show -p MainPID --value node-exporter-llm")
    assert mini.check_output(f"stat -c %u /proc/{pid}") != "0"
    assert mini.check_output("systemctl is-enabled prometheus-node-exporter || true") == "masked"
