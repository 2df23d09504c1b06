"""Adopting the hand-kept configuration (tasks/adopt.py): the seed's router.yaml and env.local with
all six models become the registry, whose router.yaml is equivalent to the input; what cannot be
mapped is named; input not in the seed's shape is refused naming the file and key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tasks import adopt
from tasks.schema import DataError

from .conftest import ROOT

SEED = Path(__file__).parent / "seed"
HOSTS = {
    "mini": (("mini",), "192.168.1.71", {"ovms_rest_port": 9000}),
    "studio": (("studio",), "192.168.1.72", {}),
}
INVENTORY_ENV = {"LLMLAB_MINI_HOST": "192.0.2.71", "LLMLAB_STUDIO_HOST": "192.0.2.72"}


def seed_files():
    return (SEED / "router.yaml").read_text(), (SEED / "env.local").read_text()


def test_the_seeds_six_models_are_adopted_and_render_an_equivalent_router_yaml(tmp_path, monkeypatch, capsys):
    for name, value in INVENTORY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "all.py"
    code = adopt.main(
        [str(SEED / "router.yaml"), str(SEED / "env.local"), "--out", str(out), "--secrets", str(tmp_path / "s.env")]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "6 models written" in printed.out and "router.yaml equivalent" in printed.out
    data: dict = {}
    exec(out.read_text(), data)
    models = data["llm_models"]
    assert list(models) == ["jerry-chat", "jerry-editor", "jerry-architect", "jerry-weak", "jerry-test", "lil-jerry"]
    assert {n: (m["backend"], m["host"], m.get("port")) for n, m in models.items()} == {
        "jerry-chat": ("mlx", "studio", 8100),
        "jerry-editor": ("mlx", "studio", 8101),
        "jerry-architect": ("mlx", "studio", 8102),
        "jerry-weak": ("mlx", "studio", 8103),
        "jerry-test": ("mlx", "studio", 8109),
        "lil-jerry": ("ovms", "mini", None),
    }
    assert models["jerry-chat"]["upstream"] == "halley-ai/gpt-oss-120b-MLX-6bit-gs64"
    assert models["lil-jerry"]["upstream"] == "llama-3-2-3b-instruct"
    # What router.yaml does not hold comes from the current data for the same model.
    assert models["lil-jerry"]["source"] == "EmbeddedLLM/Llama-3.2-3B-Instruct-int4-sym-ov"
    assert data["litellm_router_settings"] == {
        "allowed_fails": 2,
        "cooldown_time": 15,
        "retry_policy": {"Timeout": 1, "APIConnectionError": 1, "RateLimitError": 0, "ServiceUnavailableError": 1},
    }
    assert data["litellm_settings"]["json_logs"] is True
    assert not (tmp_path / "s.env").exists()  # the local servers' placeholder keys are no secrets
    # The round trip, again, on the file as written.
    assert adopt.round_trip(out, ROOT / "inventory.py", *seed_files()) == []


def test_a_changed_registry_is_not_equivalent(tmp_path, monkeypatch):
    for name, value in INVENTORY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    adopted = adopt.adopt(
        *seed_files(), "router.yaml", "env.local", HOSTS, {"lil-jerry": {"backend": "ovms", "source": "a/b"}}
    )
    adopted.models["jerry-test"]["port"] = 8108
    out = tmp_path / "all.py"
    out.write_text(adopt.render_data(adopted, "test"))
    assert [d.split(":")[0] for d in adopt.round_trip(out, ROOT / "inventory.py", *seed_files())] == ["models"]


def test_an_external_upstream_keeps_its_key_as_a_secret_and_the_rest_is_named():
    router = """
model_list:
  - model_name: cloud
    litellm_params:
      model: os.environ/CLOUD_LLM_MODEL
      api_base: os.environ/CLOUD_LLM_API_BASE
      api_key: os.environ/CLOUD_LLM_API_KEY
      rpm: 10
  - model_name: jerry-chat
    litellm_params: {model: openai/a/b, api_base: "http://192.168.1.72:8100/v1", api_key: sk-not-checked}
    model_info: {id: x}
  - model_name: jerry-chat
    litellm_params: {model: openai/a/b, api_base: "http://192.168.1.72:8104/v1"}
router_settings:
  fallbacks: [{jerry-chat: [cloud]}]
  routing_strategy: latency-based-routing
general_settings:
  master_key: os.environ/LITELLM_MASTER
  database_url: postgres://x
"""
    env = "CLOUD_LLM_MODEL=openai/gpt-x\nCLOUD_LLM_API_BASE=https://api.example.com/v1\nCLOUD_LLM_API_KEY='sk-cloud'\n"
    env += "export LITELLM_MASTER=sk-master-1234\n"
    adopted = adopt.adopt(router, env, "r.yaml", "e.env", HOSTS, {})
    assert adopted.models["cloud"] == {
        "backend": "openai",
        "api_base": "https://api.example.com/v1",
        "upstream": "gpt-x",
        "api_key_secret": "CLOUD_LLM_API_KEY",
        "env_prefix": "CLOUD_LLM",
    }
    assert adopted.models["jerry-chat"] == {
        "backend": "mlx",
        "host": "studio",
        "port": 8100,
        "upstream": "a/b",
        "fallbacks": ["cloud"],
    }
    assert adopted.models["jerry-chat-2"] == {
        "backend": "mlx",
        "host": "studio",
        "port": 8104,
        "upstream": "a/b",
        "serves": "jerry-chat",
    }
    assert adopted.secrets == {"CLOUD_LLM_API_KEY": "sk-cloud", "LITELLM_PROXY_KEY": "sk-master-1234"}
    assert adopted.notes == [
        "cloud: litellm_params.rpm not carried over",
        "jerry-chat: api_key not carried over (mlx servers of the stack need none)",
        "jerry-chat: model_info not carried over (the toolkit renders its own)",
        "router_settings.routing_strategy not carried over",
        "general_settings.database_url not carried over",
    ]


@pytest.mark.parametrize(
    "router, env, complaint",
    [
        ("router_settings: {}\n", "", "r.yaml: model_list: expected a list of models"),
        ("model_list: [{litellm_params: {model: openai/x}}]\n", "", "r.yaml: model_list[0]: no model_name"),
        (
            "model_list: [{model_name: m, litellm_params: {model: os.environ/M_MODEL, api_base: http://h:1/v1}}]\n",
            "",
            "r.yaml: model_list[0] (m): litellm_params.model: os.environ/M_MODEL is not set in env.local",
        ),
        (
            "model_list: [{model_name: m, litellm_params: {model: ollama/llama3, api_base: http://h:1}}]\n",
            "",
            "r.yaml: model_list[0] (m): litellm_params.model 'ollama/llama3': only OpenAI-compatible",
        ),
        (
            "model_list: [{model_name: m, litellm_params: {model: openai/x}}]\n",
            "",
            "litellm_params.api_base is missing",
        ),
        (
            "model_list: [{model_name: m, litellm_params: {model: openai/x, api_base: x}}]\n",
            "",
            "is not an http(s) URL",
        ),
        ("model_list: []\n", "JUST TEXT\n", "r.yaml: model_list: expected a list"),
        (
            "model_list: [{model_name: m, litellm_params: {model: openai/x, api_base: 'http://h/'}}]\n",
            "a b\n",
            "e.env: line 1: not NAME=value",
        ),
    ],
)
def test_input_not_in_the_seeds_shape_is_refused_naming_the_file_and_key(router, env, complaint):
    with pytest.raises(DataError) as err:
        adopt.adopt(router, env, "r.yaml", "e.env", HOSTS, {})
    assert complaint in str(err.value)


def test_secrets_go_to_the_untracked_file_only_never_printed(tmp_path, capsys):
    path = tmp_path / "secrets.env"
    path.write_text("LITELLM_PROXY_KEY=kept\n")
    adopt._write_secrets(path, {"LITELLM_PROXY_KEY": "replaced?", "CLOUD_LLM_API_KEY": "sk-cloud-secret"})
    assert adopt.parse_env(path.read_text(), "s") == {
        "LITELLM_PROXY_KEY": "kept",
        "CLOUD_LLM_API_KEY": "sk-cloud-secret",
    }
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "sk-cloud-secret" not in capsys.readouterr().out


def test_an_existing_output_is_not_replaced_without_force(tmp_path, capsys):
    out = tmp_path / "all.py"
    out.write_text("# mine\n")
    assert adopt.main([str(SEED / "router.yaml"), str(SEED / "env.local"), "--out", str(out)]) == 2
    assert "exists: give another --out, or --force" in capsys.readouterr().err
    assert out.read_text() == "# mine\n"
