"""Every template rendered from the default registry, checked without any host."""

import json
import os
import re
import stat
import subprocess
import sys

import pytest
import yaml

from tasks import firewall as firewall_task
from tasks import litellm as litellm_task
from tasks import mlx as mlx_task
from tasks import node_exporter as node_exporter_task
from tasks import ovms as ovms_task
from tasks import redis as redis_task
from tasks.hostos import System
from tasks.ovms import models as ovms_models
from tasks.ovms.release import Release


def test_router_yaml_follows_the_seed(registry):
    router = yaml.safe_load(litellm_task.render_router_yaml(registry))
    names = [entry["model_name"] for entry in router["model_list"]]
    assert names == registry.model_names() == list(registry.models)
    chat = router["model_list"][0]
    assert chat == {
        "model_name": "jerry-chat",
        "litellm_params": {
            "model": "os.environ/JERRY_CHAT_MODEL",
            "api_base": "os.environ/JERRY_CHAT_API_BASE",
            "api_key": "os.environ/JERRY_CHAT_API_KEY",
            # mlx_lm.server has chat completions only: LiteLLM bridges /v1/responses and /v1/messages
            "use_chat_completions_api": True,
        },
        "model_info": {
            # an upstream's 404 (a client's unsupported request) never cools the model down
            "allowed_fails_policy": {"NotFoundErrorAllowedFails": 1000000},
            # local models are free, said as LiteLLM says it (no zero-cost search on every answer)
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
            "cache_creation_input_token_cost": 0,
            "cache_read_input_token_cost": 0,
        },
    }
    lil = next(m for m in router["model_list"] if m["model_name"] == "lil-jerry")
    assert lil["litellm_params"]["use_chat_completions_api"] is True  # OVMS 2025.4: no /v3/responses
    assert router["router_settings"]["allowed_fails"] == 2
    assert router["router_settings"]["cooldown_time"] == 15
    assert router["litellm_settings"] == {
        "json_logs": True,
        "turn_off_message_logging": True,
        "use_chat_completions_url_for_anthropic_messages": True,
    }
    assert router["general_settings"] == {
        "master_key": "os.environ/LITELLM_PROXY_KEY",
        "custom_auth": "llmlab_auth.user_api_key_auth",
    }


def test_two_deployments_of_one_name_and_its_fallbacks(data, tmp_path):
    """A second MLX server for jerry-weak: router.yaml gets two deployments named jerry-weak (LiteLLM
    balances between them), each with its own env.local names; fallbacks render as LiteLLM's; and
    LiteLLM itself accepts the result."""
    from .conftest import build

    data["llm_models"]["jerry-weak-b"] = {
        "backend": "mlx",
        "host": "studio",
        "port": 8104,
        "upstream": "mlx-community/Llama-3.2-3B-Instruct-4bit",
        "serves": "jerry-weak",
    }
    r = build(data)
    router = yaml.safe_load(litellm_task.render_router_yaml(r))
    weak = [m for m in router["model_list"] if m["model_name"] == "jerry-weak"]
    assert [m["litellm_params"]["api_base"] for m in weak] == [
        "os.environ/JERRY_WEAK_API_BASE",
        "os.environ/JERRY_WEAK_B_API_BASE",
    ]
    assert {"jerry-weak": ["lil-jerry"]} in router["router_settings"]["fallbacks"]
    assert r.model_names().count("jerry-weak") == 1 and "jerry-weak-b" not in r.model_names()
    assert 'JERRY_WEAK_B_API_BASE="http://192.0.2.72:8104/v1"' in litellm_task.render_env_local(r)
    out = check_with_litellm(r, r.secrets, tmp_path)
    assert out.returncode == 0, out.stderr


def test_env_local_holds_exactly_the_names_router_yaml_uses(registry, secrets):
    router_text = litellm_task.render_router_yaml(registry)
    referenced = set(re.findall(r"os\.environ/([A-Z0-9_]+)", router_text))
    env_text = litellm_task.render_env_local(registry)
    defined = [line.split("=", 1)[0] for line in env_text.splitlines() if line and not line.startswith("#")]
    assert len(defined) == len(set(defined))
    assert set(defined) == referenced
    assert 'JERRY_CHAT_MODEL="openai/halley-ai/gpt-oss-120b-MLX-6bit-gs64"' in env_text
    assert 'LIL_JERRY_API_BASE="http://127.0.0.1:9000/v3"' in env_text


LINUX_STUDIO = System("debian", "12", "Debian 12", "x86_64", "Linux", 8 << 30, 2, "chris", "/home/chris", "password")
TRICKY = ['sk-te$t #1 "q" \\x\'z', "plain", "'quoted'", "a\\", "$HOME ${X} `id` %n", " spaced ", "=eq=", "#hash"]


@pytest.mark.parametrize("value", TRICKY)
def test_env_local_values_read_back_exactly(value, registry, tmp_path):
    """Every value is read back as given: by a POSIX shell (systemd's EnvironmentFile= follows
    the same quoting; the lab checks systemd itself) and by the deploy's config checker."""
    import importlib.util

    registry.secrets["LITELLM_PROXY_KEY"] = value
    env_file = tmp_path / "env.local"
    env_file.write_text(litellm_task.render_env_local(registry))
    out = subprocess.run(
        ["sh", "-c", f'set -a; . {env_file}; printf %s "$LITELLM_PROXY_KEY"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == value
    spec = importlib.util.spec_from_file_location("check_config", litellm_task.CHECK_SCRIPT)
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    assert checker.read_env(env_file)["LITELLM_PROXY_KEY"] == value


def test_a_line_break_cannot_reach_env_local():
    with pytest.raises(ValueError):
        litellm_task.systemd_quote("a\nb")


def check_with_litellm(registry, secrets, folder, *options):
    """Run the deploy's own checker (LiteLLM judging the rendered pair) on this machine."""
    (folder / "router.yaml").write_text(litellm_task.render_router_yaml(registry))
    (folder / "env.local").write_text(litellm_task.render_env_local(registry))
    (folder / litellm_task.AUTH_MODULE.name).write_text(litellm_task.AUTH_MODULE.read_text())
    return subprocess.run(
        [
            sys.executable,
            str(litellm_task.CHECK_SCRIPT),
            *options,
            str(folder / "router.yaml"),
            str(folder / "env.local"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **litellm_task.OFFLINE_ENV},
    )


def test_litellm_accepts_the_rendered_config(registry, secrets, tmp_path):
    out = check_with_litellm(registry, secrets, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "accepted" in out.stdout


def test_the_checker_loads_the_proxy_first_when_asked(registry, secrets, tmp_path):
    """What the deploy asks of an environment it has just built: the proxy's module loads in the
    checker's own process (its bytecode written there), then the config is judged."""
    out = check_with_litellm(registry, secrets, tmp_path, "--import", litellm_task.PROXY_MODULE)
    assert out.returncode == 0, out.stderr
    assert "accepted" in out.stdout


def test_the_checker_fails_when_the_proxy_does_not_load(registry, secrets, tmp_path):
    out = check_with_litellm(registry, secrets, tmp_path, "--import", "litellm.proxy.no_such_module")
    assert out.returncode == 1
    assert "the new LiteLLM environment cannot import litellm.proxy.no_such_module" in out.stderr, out.stderr


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda r: r.proxy["litellm_router_settings"].update(routing_strategy="fastest"), "Invalid routing_strategy"),
        (lambda r: r.proxy["litellm_router_settings"].update(no_such_setting=1), "unexpected keyword argument"),
        (lambda r: r.proxy["litellm_settings"].update(no_such_flag=True), "litellm_settings.no_such_flag"),
    ],
    ids=["routing-strategy", "unknown-router-setting", "unknown-litellm-setting"],
)
def test_litellm_rejects_a_bad_config(registry, secrets, tmp_path, change, complaint):
    change(registry)
    out = check_with_litellm(registry, secrets, tmp_path)
    assert out.returncode == 1
    assert "router.yaml rejected" in out.stderr and complaint in out.stderr, out.stderr
    assert secrets["LITELLM_PROXY_KEY"] not in out.stdout + out.stderr


UBUNTU24_RELEASE = Release(
    version="2025.4",
    asset="ovms_ubuntu24_python_on.tar.gz",
    url="https://example.invalid/x",
    sha256="ab" * 32,
    digest_from="ovms_archive_sha256",
    system_tag="ubuntu24",
)


def _units(registry):
    units = {
        "litellm.service": litellm_task.render_unit(registry, cpus=2),
        "ovms.service": ovms_task.render_unit(registry, UBUNTU24_RELEASE),
        "redis-llm.service": redis_task.render_unit(registry),
        "node-exporter-llm.service": node_exporter_task.render_unit(registry),
        "llm-firewall.service": firewall_task.render_unit(registry, "studio"),
    }
    for m in registry.served_by("studio", "mlx"):
        units[f"{mlx_task.unit_name(m)}.service"] = mlx_task.render_unit(registry, m, LINUX_STUDIO)
    return units


def test_units_pass_systemd_analyze_verify(registry, tmp_path):
    import shutil

    root = tmp_path / "root"
    # verify resolves the units' dependencies (sysinit.target, ...) inside --root.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name, text in _units(registry).items():
        (unit_dir / name).write_text(text)
        # verify checks that ExecStart exists: give it an executable at that path.
        exe = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
        path = root / exe.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    out = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            f"--root={root}",
            *(f"/etc/systemd/system/{n}" for n in _units(registry)),
        ],
        capture_output=True,
        text=True,
    )
    problems = [line for line in out.stderr.splitlines() if "/etc/systemd/system/" in line or "Failed" in line]
    assert out.returncode == 0 and not problems, out.stderr


def test_ovms_config_lists_every_ovms_model(registry):
    import json

    config = json.loads(ovms_models.render_config(registry))
    # model_config_list: OVMS's docs call mediapipe_config_list deprecated.
    assert config == {
        "model_config_list": [
            {"config": {"name": "llama-3-2-3b-instruct", "base_path": "/var/lib/ovms/models/llama-3-2-3b-instruct"}}
        ]
    }


def test_ovms_graph_is_the_text_generation_graph_with_the_data_settings(data):
    from .conftest import build

    data["llm_model_overrides"] = {"lil-jerry": {"graph": {"max_num_seqs": 3}}}
    data["ovms_graph"] = {"device": "GPU.1", "cache_size": 5, "max_num_seqs": 16, "enable_prefix_caching": False}
    registry = build(data)
    m = registry.models["lil-jerry"]
    graph = ovms_models.render_graph(registry, m)
    assert 'calculator: "HttpLLMCalculator"' in graph and "LLMCalculatorOptions" in graph
    assert "max_num_seqs: 3," in graph  # the model's own setting over the host's
    assert 'device: "GPU.1",' in graph and "cache_size: 5," in graph and "enable_prefix_caching: false," in graph
    assert 'models_path: "./hub/EmbeddedLLM/Llama-3.2-3B-Instruct-int4-sym-ov",' in graph
    assert "tool_parser" not in graph and "enable_tool_guided_generation" not in graph  # the override has none


def test_ovms_graph_names_the_models_tool_parser(registry, data):
    from .conftest import build

    graph = ovms_models.render_graph(registry, registry.models["lil-jerry"])
    assert 'tool_parser: "llama3",' in graph and "enable_tool_guided_generation" not in graph
    data["llm_model_overrides"] = {
        "lil-jerry": {"graph": {"tool_parser": "hermes3", "enable_tool_guided_generation": True}}
    }
    r = build(data)
    graph = ovms_models.render_graph(r, r.models["lil-jerry"])
    assert 'tool_parser: "hermes3",' in graph and "enable_tool_guided_generation: true," in graph


def test_mlx_servers_use_the_real_flags(registry):
    m = registry.models["jerry-test"]
    argv = mlx_task.server_argv(registry, m)
    assert argv[0].endswith("/venv/bin/mlx_lm.server")
    assert argv[1:] == ["--model", m.upstream, "--host", "0.0.0.0", "--port", "8109", "--max-tokens", "8192"]


def test_a_model_overrides_the_completion_length(data):
    from .conftest import build

    data["llm_models"]["jerry-test"]["max_tokens"] = 2048
    r = build(data)
    assert mlx_task.server_argv(r, r.models["jerry-test"])[-2:] == ["--max-tokens", "2048"]
    assert mlx_task.server_argv(r, r.models["jerry-chat"])[-2:] == ["--max-tokens", "8192"]


def test_firewall_admits_only_the_proxy_host_and_listed_clients(data):
    from .conftest import build

    data["mlx_allowed_clients"] = ["192.0.2.50", "2001:db8::/64"]
    r = build(data)
    rules = firewall_task.render_nft(r, "studio")
    ports = ", ".join(str(m.port) for m in sorted(r.served_by("studio", "mlx"), key=lambda m: m.port))
    assert f"ip saddr {{ 192.0.2.71/32, 192.0.2.50/32 }} tcp dport {{ {ports} }} accept" in rules
    assert f"ip6 saddr {{ 2001:db8::/64 }} tcp dport {{ {ports} }} accept" in rules
    assert f"tcp dport {{ {ports} }} reject with tcp reset" in rules
    assert rules.index("accept\n    ip6") < rules.index("reject")
    pf = firewall_task.render_pf(r, "studio")
    assert "table <llmlab_mlx_clients> const { 192.0.2.71, 192.0.2.50, 2001:db8::/64 }" in pf
    assert f"block return in quick proto tcp from ! <llmlab_mlx_clients> to any port {{ {ports} }}" in pf
    assert pf.index(f"pass in quick on lo0 proto tcp to any port {{ {ports} }}") < pf.index("block return")


def _launcher_line(monkeypatch, capsys, worker: bool, workers: int = 2, exc: bool = False) -> dict:
    """One uvicorn log line through the proxy launcher's log config, as the supervisor (worker=False)
    or a worker writes it."""
    import logging.config
    import multiprocessing

    monkeypatch.syspath_prepend(str(litellm_task.LAUNCHER.parent))
    import llmlab_serve

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM's import stays offline
    monkeypatch.setenv("NUM_WORKERS", str(workers))
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object() if worker else None)
    logging.config.dictConfig(llmlab_serve.log_config("INFO"))
    try:
        log = logging.getLogger("uvicorn.error")
        if exc:
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                log.exception("Exception in ASGI application")
        else:
            log.info("Started parent process [%d]", 42)
        lines = capsys.readouterr().out.splitlines()
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
    line = json.loads("\n".join(lines))
    assert line["level"] == ("ERROR" if exc else "INFO")
    return line


def test_the_proxy_launchers_supervisor_logs_uvicorns_fields_as_json(monkeypatch, capsys):
    line = _launcher_line(monkeypatch, capsys, worker=False)
    assert line["message"] == "Started parent process [42]" and line["component"] == "uvicorn.error"
    assert "logger" not in line  # not LiteLLM's formatter
    failed = _launcher_line(monkeypatch, capsys, worker=False, exc=True)
    assert "RuntimeError: boom" in failed["stacktrace"]


@pytest.mark.parametrize("worker, workers", [(True, 2), (False, 1)], ids=["a-worker", "one-worker-serving-itself"])
def test_the_proxy_launcher_logs_through_litellms_formatter_where_litellm_serves(monkeypatch, capsys, worker, workers):
    line = _launcher_line(monkeypatch, capsys, worker=worker, workers=workers)
    assert line["message"] == "Started parent process [42]"
    assert "logger" in line  # a field only LiteLLM's own JSON formatter adds
    failed = _launcher_line(monkeypatch, capsys, worker=worker, workers=workers, exc=True)
    assert "boom" in json.dumps(failed)


def test_the_proxy_launcher_runs_from_the_environments_own_folder(monkeypatch, tmp_path):
    """The unit names <home>/venv, a link a deploy switches before it restarts the proxy: the
    launcher runs on from the folder the link named when it started."""
    monkeypatch.syspath_prepend(str(litellm_task.LAUNCHER.parent))
    import llmlab_serve

    real = tmp_path / "venv-20261125000000p1-abcdef12"
    real.mkdir()
    (tmp_path / "venv").symlink_to(real.name)
    assert llmlab_serve.own_python(str(tmp_path / "venv")) == str(real / "bin" / "python")
    assert llmlab_serve.own_python(str(real)) is None


def _fork_with(monkeypatch, tmp_path, module_text: str):
    """fork_workers_from_loaded_app on a new module of module_text; returns the module as loaded
    and uvicorn's start method after (None if refused: the reason is in the module's `refused`)."""
    import importlib

    import uvicorn._subprocess

    monkeypatch.syspath_prepend(str(litellm_task.LAUNCHER.parent))
    monkeypatch.syspath_prepend(str(tmp_path))
    import llmlab_serve

    name = f"app_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(module_text)
    monkeypatch.setattr(uvicorn._subprocess, "spawn", uvicorn._subprocess.spawn)  # put back afterwards
    monkeypatch.setattr(llmlab_serve.gc, "freeze", lambda: None)  # not the test process's own objects
    refused = llmlab_serve.fork_workers_from_loaded_app(name)
    module = importlib.import_module(name)
    module.refused = refused
    return module, None if refused else uvicorn._subprocess.spawn.get_start_method()


def test_the_proxy_launcher_forks_workers_from_the_app_it_loaded(monkeypatch, tmp_path):
    module, method = _fork_with(monkeypatch, tmp_path, "import time\nloaded_at = time.monotonic()\n")
    assert method == "fork" and module.loaded_at  # loaded here, before any worker exists


def test_the_proxy_launcher_refuses_to_fork_from_an_app_that_started_a_thread(monkeypatch, tmp_path):
    import uvicorn._subprocess

    module, method = _fork_with(
        monkeypatch,
        tmp_path,
        "import threading\nstop = threading.Event()\n"
        "thread = threading.Thread(target=stop.wait, name='poller')\nthread.start()\n",
    )
    module.stop.set()
    module.thread.join()
    assert method is None and module.refused.endswith("started threads (poller)")
    assert uvicorn._subprocess.spawn.get_start_method() == "spawn"  # left as uvicorn has it


def test_the_proxy_launcher_refuses_to_fork_from_an_app_that_holds_a_connection(monkeypatch, tmp_path):
    import uvicorn._subprocess

    module, method = _fork_with(monkeypatch, tmp_path, "import socket\nkept = socket.socket()\n")
    module.kept.close()
    assert method is None and module.refused.endswith("opened 1 socket(s)")
    assert uvicorn._subprocess.spawn.get_start_method() == "spawn"  # uvicorn spawns them as usual


def test_the_proxy_launcher_spawns_the_workers_saying_why_when_it_cannot_fork_them(monkeypatch, capsys):
    import uvicorn

    monkeypatch.syspath_prepend(str(litellm_task.LAUNCHER.parent))
    import llmlab_serve

    ran = {}
    monkeypatch.setattr(llmlab_serve, "own_python", lambda prefix: None)
    monkeypatch.setattr(
        llmlab_serve, "fork_workers_from_loaded_app", lambda module: f"loading {module} started threads (x)"
    )
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: ran.update(app=app, **kwargs))
    monkeypatch.setattr(llmlab_serve.os, "environ", dict(llmlab_serve.os.environ))
    monkeypatch.setattr(llmlab_serve, "import_fails_at_once_without_otel_sdk", lambda: False)
    llmlab_serve.main(["/etc/litellm/router.yaml", "127.0.0.1", "4000", "2"])
    assert ran["app"] == llmlab_serve.APP and ran["workers"] == 2  # still served, by spawned workers
    assert ran["loop"] == "uvloop" and ran["http"] == "httptools"  # named: no silent fallback to h11
    assert (
        "llmlab_serve.py: loading litellm.proxy.proxy_server started threads (x): spawning the workers "
        "instead of forking them"
    ) in capsys.readouterr().err


def _otel_marked(monkeypatch, sdk_present: bool):
    """import_fails_at_once_without_otel_sdk with the SDK found or not; sys.modules put back after."""
    import importlib.util

    monkeypatch.syspath_prepend(str(litellm_task.LAUNCHER.parent))
    import llmlab_serve

    monkeypatch.setitem(sys.modules, llmlab_serve.OTEL_LOGGER, None)  # as it was, after the test
    del sys.modules[llmlab_serve.OTEL_LOGGER]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        llmlab_serve.importlib.util,
        "find_spec",
        lambda name, *a: (real("json") if sdk_present else None) if name == "opentelemetry.sdk" else real(name, *a),
    )
    return llmlab_serve, llmlab_serve.import_fails_at_once_without_otel_sdk()


def test_without_the_otel_sdk_litellms_per_request_otel_import_fails_at_once_as_it_always_failed(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    launcher, marked = _otel_marked(monkeypatch, sdk_present=False)
    assert marked and sys.modules[launcher.OTEL_LOGGER] is None
    with pytest.raises(ModuleNotFoundError):  # what LiteLLM's key check catches (an Exception)
        __import__(launcher.OTEL_LOGGER, fromlist=["fan_out_provider"])
    from litellm.proxy._types import UserAPIKeyAuth
    from litellm.proxy.auth.user_api_key_auth import _seed_request_destinations

    assert _seed_request_destinations(UserAPIKeyAuth(api_key="sk-x"), None) is None  # the check goes on


def test_with_the_otel_sdk_the_launcher_leaves_litellms_otel_logger_alone(monkeypatch):
    launcher, marked = _otel_marked(monkeypatch, sdk_present=True)
    assert not marked and launcher.OTEL_LOGGER not in sys.modules


def test_the_proxy_launcher_wants_its_four_arguments():
    result = subprocess.run(
        [sys.executable, str(litellm_task.LAUNCHER), "/etc/litellm/router.yaml"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "usage: llmlab_serve.py ROUTER_YAML HOST PORT WORKERS" in result.stderr


def test_a_template_cache_that_cannot_be_read_or_written_only_means_a_compile(tmp_path):
    from jinja2 import DictLoader, Environment

    from tasks.render import _BytecodeCache

    cache = _BytecodeCache(str(tmp_path / "cache"))  # a folder that is not there
    env = Environment(loader=DictLoader({"t": "{{ x }}!"}), bytecode_cache=cache)
    assert env.get_template("t").render(x="hi") == "hi!"
    (tmp_path / "cache").mkdir()
    for _ in range(2):  # written, then read back by a new environment
        fresh = Environment(loader=DictLoader({"t": "{{ x }}!"}), bytecode_cache=cache)
        assert fresh.get_template("t").render(x="again") == "again!"
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.name.startswith("__llmlab_")  # named for this Jinja and these options
    cached.write_bytes(cached.read_bytes()[:20])  # cut short: compiled again
    fresh = Environment(loader=DictLoader({"t": "{{ x }}!"}), bytecode_cache=cache)
    assert fresh.get_template("t").render(x="cut") == "cut!"
