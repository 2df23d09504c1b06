"""Validation: every kind of bad input is refused with the file and the key named."""

import pytest

from tasks import preflight
from tasks import registry as reg

from .conftest import HOSTS, ROOT


def mlx(port, upstream="m/x", host="studio"):
    return {"backend": "mlx", "host": host, "port": port, "upstream": upstream}


def change_model(name, **fields):
    def apply(data):
        data["llm_models"][name].update(fields)
    return apply


def drop_model_field(name, field):
    def apply(data):
        del data["llm_models"][name][field]
    return apply


def add_model(name, entry):
    def apply(data):
        data["llm_models"][name] = entry
    return apply


def setting(key, value):
    def apply(data):
        data[key] = value
    return apply


def drop_setting(key):
    def apply(data):
        del data[key]
    return apply


BAD = {
    "duplicate port on one host": (add_model("dup", mlx(8100)), "llm_models['dup'].port 8100 on studio is already taken by 'jerry-chat'"),
    "port clashes with litellm": (add_model("p4000", mlx(4000)), "clashes with litellm_port"),
    "port clashes with ovms": (add_model("p9000", mlx(9000)), "clashes with ovms_rest_port"),
    "port out of range": (change_model("jerry-chat", port=70000), "out of range"),
    "port zero": (change_model("jerry-chat", port=0), "out of range"),
    "privileged port": (change_model("jerry-chat", port=80), "privileged"),
    "port as string": (change_model("jerry-chat", port="8100"), "llm_models['jerry-chat'].port must be an integer"),
    "port as bool": (change_model("jerry-chat", port=True), "llm_models['jerry-chat'].port must be an integer"),
    "unknown backend": (change_model("jerry-chat", backend="vllm"), "backend is 'vllm'"),
    "unknown host": (change_model("jerry-chat", host="laptop"), "host 'laptop' is not in the inventory"),
    "empty upstream": (change_model("jerry-chat", upstream=""), "upstream must be a non-empty model id"),
    "blank upstream": (change_model("jerry-chat", upstream="  "), "upstream must be a non-empty model id"),
    "upstream with space": (change_model("jerry-chat", upstream="a b"), "must not contain white space"),
    "missing upstream": (drop_model_field("jerry-chat", "upstream"), "upstream is required"),
    "missing port for mlx": (drop_model_field("jerry-chat", "port"), "port is required for backend mlx"),
    "port on ovms": (change_model("lil-jerry", port=9001), "port does not apply to backend ovms"),
    "bad external url": (add_model("ext", {"backend": "openai", "api_base": "ftp://x", "upstream": "m"}), "api_base is not an http(s) URL"),
    "url without host": (add_model("ext", {"backend": "openai", "api_base": "http://", "upstream": "m"}), "api_base is not an http(s) URL"),
    "external with host": (add_model("ext", {"backend": "openai", "api_base": "http://h/v1", "upstream": "m", "host": "mini"}), "host does not apply to backend openai"),
    "unknown model field": (change_model("jerry-chat", gpu=True), "gpu is not a model field"),
    "entry not a mapping": (add_model("bad", ["mlx"]), "llm_models['bad'] must be a mapping"),
    "bad model name": (add_model("Jerry Chat", mlx(8120)), "model names are lower-case"),
    "env prefix clash": (add_model("jerry_chat", mlx(8121)), "share the env prefix JERRY_CHAT"),
    "bad env prefix": (change_model("jerry-chat", env_prefix="1BAD"), "env_prefix '1BAD'"),
    "bad secret name": (add_model("ext", {"backend": "openai", "api_base": "http://h/v1", "upstream": "m", "api_key_secret": "my key"}), "api_key_secret must be an environment variable name"),
    "ovms off the proxy host": (change_model("lil-jerry", host="studio"), "OVMS listens on loopback"),
    "empty registry": (setting("llm_models", {}), "llm_models must be a non-empty mapping"),
    "registry not a dict": (setting("llm_models", ["jerry-chat"]), "llm_models must be a non-empty mapping"),
    "override of unknown model": (setting("llm_model_overrides", {"nope": {}}), "llm_model_overrides['nope'] names no model"),
    "litellm port as string": (setting("litellm_port", "4000"), "litellm_port must be an integer"),
    "ovms port equals litellm": (setting("ovms_rest_port", 4000), "ovms_rest_port equals litellm_port"),
    "bad bind address": (setting("ovms_bind_address", "localhost"), "ovms_bind_address is not an IP address"),
    "relative path": (setting("litellm_home", "opt/litellm"), "litellm_home must be an absolute path"),
    "bad user": (setting("litellm_user", "Lite LLM"), "litellm_user is not a valid user name"),
    "bad version": (setting("litellm_version", "latest!"), "litellm_version is not a version"),
    "bad sha": (setting("ovms_archive_sha256", "abc"), "ovms_archive_sha256 must be 64 lower-case hex digits"),
    "missing sha": (setting("ovms_archive_sha256", None), "ovms_archive_sha256 is not set"),
    "bad archive url": (setting("ovms_archive_url", "ovms.tar.gz"), "ovms_archive_url must be an http(s) URL or a local path"),
    "missing setting": (drop_setting("mlx_lm_version"), "mlx_lm_version is missing"),
    "unknown retry name": (setting("litellm_router_settings", {"retry_policy": {"Timeouts": 1}}), "retry_policy.Timeouts is not an exception"),
    "negative retries": (setting("litellm_router_settings", {"retry_policy": {"Timeout": -1}}), "retry_policy.Timeout must be a non-negative integer"),
    "allowed_fails as string": (setting("litellm_router_settings", {"allowed_fails": "two"}), "allowed_fails must be a non-negative number"),
    "zero timeout": (setting("litellm_start_timeout", 0), "litellm_start_timeout must be positive"),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=sorted(BAD))
def test_bad_input_is_refused_naming_file_and_key(case, data, sources):
    mutate, expected = BAD[case]
    mutate(data)
    with pytest.raises(reg.RegistryError) as err:
        reg.build(data, HOSTS, sources)
    message = str(err.value)
    assert expected in message
    assert "group_data/" in message, f"no file named in: {message}"


def test_at_least_twenty_bad_inputs():
    assert len(BAD) >= 20


def test_default_registry_is_the_seed(registry):
    assert sorted(registry.models) == sorted(
        ["jerry-chat", "jerry-editor", "jerry-architect", "jerry-weak", "jerry-test", "lil-jerry"]
    )
    chat = registry.models["jerry-chat"]
    assert chat.litellm_model == "openai/halley-ai/gpt-oss-120b-MLX-6bit-gs64"
    assert registry.api_base(chat) == "http://192.0.2.72:8100/v1"
    lil = registry.models["lil-jerry"]
    assert lil.litellm_model == "openai/llama-3-2-3b-instruct"
    assert registry.api_base(lil) == "http://127.0.0.1:9000/v3"  # OVMS's OpenAI path, not /v1


def test_seed_retry_names_become_litellm_fields(registry):
    assert registry.router_settings() == {
        "allowed_fails": 2,
        "cooldown_time": 15,
        "retry_policy": {
            "TimeoutErrorRetries": 1,
            "DefaultRetries": 1,
            "RateLimitErrorRetries": 0,
            "ServiceUnavailableErrorRetries": 1,
        },
    }


def test_tinyagents_router_is_one_data_entry(data, sources, secrets, monkeypatch):
    data["llm_models"]["tinyagents-router"] = {
        "backend": "openai",
        "api_base": "https://agents.example.invalid/v1",
        "upstream": "tiny-agents",
        "env_prefix": "TINYAGENTS",
        "api_key_secret": "TINYAGENTS_API_KEY",
    }
    r = reg.build(data, HOSTS, sources)
    env = r.env_local({**secrets, "TINYAGENTS_API_KEY": "sk-tiny"})
    assert env["TINYAGENTS_MODEL"] == "openai/tiny-agents"
    assert env["TINYAGENTS_API_BASE"] == "https://agents.example.invalid/v1"
    assert env["TINYAGENTS_API_KEY"] == "sk-tiny"
    assert "TINYAGENTS_API_KEY" in r.secret_names()


def test_missing_secret_is_named(tmp_path, monkeypatch, registry):
    monkeypatch.delenv("LITELLM_PROXY_KEY", raising=False)
    with pytest.raises(reg.RegistryError, match="secret LITELLM_PROXY_KEY is not set"):
        reg.load_secrets(registry.secret_names(), tmp_path / "none.env", "group_data/all.py")


def test_secret_from_file(tmp_path, monkeypatch, registry):
    monkeypatch.delenv("LITELLM_PROXY_KEY", raising=False)
    path = tmp_path / "secrets.env"
    path.write_text("# lab\nLITELLM_PROXY_KEY=sk-from-file\n")
    assert reg.load_secrets(registry.secret_names(), path, "x") == {"LITELLM_PROXY_KEY": "sk-from-file"}


def test_bad_data_file_is_named(tmp_path):
    folder = tmp_path / "group_data"
    folder.mkdir()
    (folder / "all.py").write_text("llm_models = {\n")
    with pytest.raises(reg.RegistryError, match="all.py: cannot load"):
        reg.load_group_data([folder])


def test_ports_document_matches_the_data():
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "tasks.registry", "ports"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}, check=True,
    ).stdout
    assert (ROOT / "PORTS.md").read_text() == out, "PORTS.md is stale: python -m tasks.registry ports > PORTS.md"


def test_preflight_refuses_before_connecting(tmp_path):
    """pyinfra with bad data exits 2 naming the key, before it connects to anything."""
    import os
    import shutil
    import subprocess
    import sys

    work = tmp_path / "work"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".lab", ".venv", ".git", "__pycache__"))
    text = (work / "group_data" / "all.py").read_text().replace('"port": 8101', '"port": 8100')
    (work / "group_data" / "all.py").write_text(text)
    mini = (work / "group_data" / "mini.py").read_text()
    (work / "group_data" / "mini.py").write_text(mini.replace("ovms_archive_sha256 = None", f"ovms_archive_sha256 = '{'ab' * 32}'"))
    pyinfra = os.path.join(os.path.dirname(sys.executable), "pyinfra")
    out = subprocess.run(
        [pyinfra, "-y", "inventory.py", "deploy.py"], cwd=work, capture_output=True, text=True,
        env={**os.environ, "LLMLAB_MINI_HOST": "192.0.2.71", "LITELLM_PROXY_KEY": "sk-x"}, timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "group_data/all.py: llm_models['jerry-editor'].port 8100 on studio is already taken" in out.stderr
    assert "Connecting" not in out.stdout + out.stderr


def test_command_line_overrides_are_read_like_pyinfra(tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    one = tmp_path / "mini.py"
    one.write_text("litellm_port = 4001\n")
    paths, data = preflight.cli_overrides(
        ["pyinfra", "-y", "--group-data", str(extra), f"--group-data={one}", "--data", "litellm_port=4002",
         "--data=litellm_settings={\"json_logs\": false}", "inventory.py", "deploy.py"]
    )
    assert paths == [extra, one]
    assert data == {"litellm_port": 4002, "litellm_settings": {"json_logs": False}}
    folders_data, sources = reg.load_group_data([ROOT / "group_data", one])
    assert folders_data["litellm_port"] == 4001 and sources["litellm_port"] == str(one)


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--group-data", "/nonexistent/extra", "inventory.py"], "command line: --group-data /nonexistent/extra: no such file or folder"),
        (["--data", "litellm_port", "inventory.py"], "command line: --data litellm_port: expected key=value"),
        (["inventory.py", "deploy.py", "--data"], "command line: --data needs a value"),
    ],
)
def test_bad_command_line_overrides(argv, complaint):
    with pytest.raises(reg.RegistryError) as err:
        preflight.cli_overrides(["pyinfra", *argv])
    assert str(err.value) == complaint


def test_preflight_names_a_command_line_override(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LITELLM_PROXY_KEY", "sk-x")
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_:
        preflight.check(str(ROOT / "inventory.py"), HOSTS, ["pyinfra", "--data", "litellm_port=abc", "inventory.py", "deploy.py"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "preflight: command line (--data litellm_port): litellm_port must be an integer, not str" in err


def test_preflight_sees_pyinfra_group_data_option(tmp_path):
    """pyinfra's --group-data reaches the preflight: a bad value in an extra folder stops the
    run before any connection, naming the extra file."""
    import os
    import subprocess
    import sys

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mini.py").write_text("litellm_port = 70000\n")
    pyinfra = os.path.join(os.path.dirname(sys.executable), "pyinfra")
    out = subprocess.run(
        [pyinfra, "-y", "--group-data", str(extra), "--data", f"ovms_archive_sha256={'ab' * 32}",
         "inventory.py", "deploy.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "LLMLAB_MINI_HOST": "192.0.2.71", "LLMLAB_STUDIO_HOST": "192.0.2.72",
             "LITELLM_PROXY_KEY": "sk-x"},
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"preflight: {extra / 'mini.py'}: litellm_port is out of range (1-65535): 70000" in out.stderr
    assert "Connecting" not in out.stdout + out.stderr
