"""Validation: every kind of bad input is refused with the file and the key named."""

import subprocess
import sys

import pytest

from tasks import litellm, preflight, sources, stack
from tasks.schema import DataError

from .conftest import ROOT, build, pyinfra


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
    "duplicate port on one host": (
        add_model("dup", mlx(8100)),
        "llm_models['dup'].port 8100 on studio is already taken by 'jerry-chat'",
    ),
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
    "bad external url": (
        add_model("ext", {"backend": "openai", "api_base": "ftp://x", "upstream": "m"}),
        "api_base is not an http(s) URL",
    ),
    "url without host": (
        add_model("ext", {"backend": "openai", "api_base": "http://", "upstream": "m"}),
        "api_base is not an http(s) URL",
    ),
    "external with host": (
        add_model("ext", {"backend": "openai", "api_base": "http://h/v1", "upstream": "m", "host": "mini"}),
        "host does not apply to backend openai",
    ),
    "unknown model field": (change_model("jerry-chat", gpu=True), "gpu is not a model field"),
    "entry not a mapping": (add_model("bad", ["mlx"]), "llm_models['bad'] must be a mapping"),
    "bad model name": (add_model("Jerry Chat", mlx(8120)), "model names are lower-case"),
    "env prefix clash": (add_model("jerry_chat", mlx(8121)), "share the env prefix JERRY_CHAT"),
    "bad env prefix": (change_model("jerry-chat", env_prefix="1BAD"), "env_prefix '1BAD'"),
    "bad secret name": (
        add_model("ext", {"backend": "openai", "api_base": "http://h/v1", "upstream": "m", "api_key_secret": "my key"}),
        "api_key_secret must be an environment variable name",
    ),
    "ovms off the proxy host": (change_model("lil-jerry", host="studio"), "OVMS listens on loopback"),
    "empty registry": (setting("llm_models", {}), "llm_models must be a non-empty mapping"),
    "registry not a dict": (setting("llm_models", ["jerry-chat"]), "llm_models must be a mapping, not list"),
    "override of unknown model": (
        setting("llm_model_overrides", {"nope": {}}),
        "llm_model_overrides['nope'] names no model",
    ),
    "litellm port as string": (setting("litellm_port", "4000"), "litellm_port must be an integer"),
    "ovms port equals litellm": (setting("ovms_rest_port", 4000), "ovms_rest_port equals litellm_port"),
    "bad bind address": (setting("ovms_bind_address", "localhost"), "ovms_bind_address is not an IP address"),
    "relative path": (setting("litellm_home", "opt/litellm"), "litellm_home must be an absolute path"),
    "bad user": (setting("litellm_user", "Lite LLM"), "litellm_user is not a valid user name"),
    "bad version": (setting("litellm_version", "latest!"), "litellm_version is not a version"),
    "bad sha": (setting("ovms_archive_sha256", "abc"), "ovms_archive_sha256 must be 64 lower-case hex digits"),
    "ovms version not a release": (
        setting("ovms_version", "2025.4-beta"),
        "ovms_version '2025.4-beta' is not an OVMS release version",
    ),
    "bad release url": (
        setting("ovms_release_url", "releases"),
        "ovms_release_url must be an http(s) URL or a local path",
    ),
    "ovms source neither repo nor folder": (
        change_model("lil-jerry", source="llama 3.2"),
        "llm_models['lil-jerry'].source 'llama 3.2' is neither a Hugging Face repo id",
    ),
    "ovms source folder missing": (
        change_model("lil-jerry", source="/nonexistent/model"),
        "llm_models['lil-jerry'].source '/nonexistent/model' is not a folder on the control machine",
    ),
    "ovms source folder without IR": (
        change_model("lil-jerry", source=str(ROOT / "templates")),
        "lacks openvino_model.xml, openvino_model.bin, openvino_tokenizer.xml, openvino_detokenizer.xml",
    ),
    "ovms source missing": (
        drop_model_field("lil-jerry", "source"),
        "llm_models['lil-jerry'].source is required for backend ovms",
    ),
    "source on mlx": (
        change_model("jerry-chat", source="a/b"),
        "llm_models['jerry-chat'].source does not apply to backend mlx",
    ),
    "unknown graph setting": (
        change_model("lil-jerry", graph={"devices": "CPU"}),
        "llm_models['lil-jerry'].graph.devices is not a graph setting",
    ),
    "graph setting of the wrong type": (
        change_model("lil-jerry", graph={"cache_size": "2GB"}),
        "llm_models['lil-jerry'].graph.cache_size must be an integer",
    ),
    "graph device not a device": (
        change_model("lil-jerry", graph={"device": "cpu please"}),
        "graph.device must be an OpenVINO device name",
    ),
    "host graph missing a setting": (
        setting("ovms_graph", {"device": "CPU", "cache_size": 2, "max_num_seqs": 4}),
        "ovms_graph lacks enable_prefix_caching",
    ),
    "tool parser OVMS does not have": (
        change_model("lil-jerry", graph={"tool_parser": "hermes"}),
        "llm_models['lil-jerry'].graph.tool_parser 'hermes' is not a tool parser of OVMS (known: hermes3, llama3",
    ),
    "tool parser of the wrong type": (
        change_model("lil-jerry", graph={"tool_parser": True}),
        "llm_models['lil-jerry'].graph.tool_parser must be a string",
    ),
    "tool parser without the python_on build": (
        setting("ovms_python", False),
        "llm_models['lil-jerry'].graph.tool_parser needs ovms_python: true",
    ),
    "zero max_num_seqs": (
        change_model("lil-jerry", graph={"max_num_seqs": 0}),
        "graph.max_num_seqs must be at least 1",
    ),
    "bad archive url": (
        setting("ovms_archive_url", "ovms.tar.gz"),
        "ovms_archive_url must be an http(s) URL or a local path",
    ),
    "undeclared key": (setting("mlx_lm_verison", "0.32.2"), "mlx_lm_verison is not a data key of this toolkit"),
    "state dir outside /var/lib": (
        setting("litellm_state_dir", "/srv/litellm"),
        "litellm_state_dir must be a folder directly under /var/lib",
    ),
    "missing registry": (drop_setting("llm_models"), "llm_models is missing"),
    "unknown retry name": (
        setting("litellm_router_settings", {"retry_policy": {"Timeouts": 1}}),
        "retry_policy.Timeouts is not an exception",
    ),
    "negative retries": (
        setting("litellm_router_settings", {"retry_policy": {"Timeout": -1}}),
        "retry_policy.Timeout must be a non-negative integer",
    ),
    "allowed_fails as string": (
        setting("litellm_router_settings", {"allowed_fails": "two"}),
        "allowed_fails must be a non-negative number",
    ),
    "zero timeout": (setting("litellm_start_timeout", 0), "litellm_start_timeout must be positive"),
    "negative package list age": (setting("package_lists_max_age", -1), "package_lists_max_age must be 0 or more"),
    "fallback to no model": (
        change_model("jerry-chat", fallbacks=["jerry-gone"]),
        "llm_models['jerry-chat'].fallbacks names 'jerry-gone', which is no model",
    ),
    "fallback to itself": (change_model("jerry-chat", fallbacks=["jerry-chat"]), "fallbacks names the model itself"),
    "fallbacks not a list of names": (change_model("jerry-chat", fallbacks=[1]), "fallbacks must list model names"),
    "serves no model": (
        add_model("jerry-weak-b", {**mlx(8104), "serves": "jerry-nope"}),
        "serves 'jerry-nope' is not a model of its own name",
    ),
    "fallbacks in router settings": (
        setting("litellm_router_settings", {"fallbacks": [{"jerry-chat": ["lil-jerry"]}]}),
        "litellm_router_settings.fallbacks: give each model's fallbacks in its llm_models entry",
    ),
    "zero max_tokens": (
        change_model("jerry-chat", max_tokens=0),
        "llm_models['jerry-chat'].max_tokens must be positive",
    ),
    "model source missing": (
        setting("mlx_model_sources", {"lab/tiny": "/nonexistent/tiny-model"}),
        "mlx_model_sources['lab/tiny']: '/nonexistent/tiny-model' is not an existing, non-empty folder",
    ),
    "path with a space": (setting("litellm_home", "/opt/lite llm"), "litellm_home may hold only letters"),
    "workers below 1": (setting("litellm_workers", 0), "litellm_workers must be at least 1"),
    "redis off loopback": (setting("redis_bind_address", "0.0.0.0"), "redis_bind_address must be a loopback address"),
    "redis port equals litellm": (setting("redis_port", 4000), "redis_port equals litellm_port"),
    "purging the weights of a served model": (
        setting("mlx_purge_weights", ["mlx-community/Qwen2.5-0.5B-Instruct-4bit"]),
        "mlx_purge_weights: 'mlx-community/Qwen2.5-0.5B-Instruct-4bit' holds the weights of jerry-test, which "
        "studio serves",
    ),
    "hub endpoint not a URL": (setting("mlx_hf_endpoint", "hub.local"), "mlx_hf_endpoint must be an http(s) URL"),
    "purging a served model's org": (
        setting("mlx_purge_weights", ["mlx-community"]),
        "mlx_purge_weights: 'mlx-community' holds the weights of",
    ),
    "purging a served model in other case": (
        setting("mlx_purge_weights", ["MLX-community/qwen2.5-0.5b-instruct-4bit"]),
        "holds the weights of jerry-test, which studio serves",
    ),
    "purging a dot": (setting("mlx_purge_weights", ["org/."]), "mlx_purge_weights: 'org/.' is not a model id"),
    "launchd prefix with a space": (
        setting("mlx_launchd_prefix", "lab llm"),
        "mlx_launchd_prefix must be a launchd label prefix",
    ),
    "takeover of a path": (
        setting("llm_takeover", ["/etc/systemd/system/x.service"]),
        "llm_takeover lists systemd units",
    ),
    "purging a path": (setting("mlx_purge_weights", ["../etc"]), "mlx_purge_weights: '../etc' is not a model id"),
    "max_tokens on ovms": (change_model("lil-jerry", max_tokens=100), "max_tokens does not apply to backend ovms"),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=sorted(BAD))
def test_bad_input_is_refused_naming_file_and_key(case, data):
    mutate, expected = BAD[case]
    mutate(data)
    with pytest.raises(DataError) as err:
        build(data)
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
    assert litellm.router_settings(registry) == {
        "fallbacks": [
            {name: ["lil-jerry"]} for name in ("jerry-chat", "jerry-editor", "jerry-architect", "jerry-weak")
        ],
        "allowed_fails": 2,
        "cooldown_time": 15,
        "retry_policy": {
            "TimeoutErrorRetries": 1,
            "DefaultRetries": 1,
            "RateLimitErrorRetries": 0,
            "ServiceUnavailableErrorRetries": 1,
        },
        "redis_host": "127.0.0.1",
        "redis_port": 6379,
        "redis_password": "os.environ/LITELLM_REDIS_PASSWORD",
    }


def test_tinyagents_router_is_one_data_entry(data, secrets):
    data["llm_models"]["tinyagents-router"] = {
        "backend": "openai",
        "api_base": "https://agents.example.invalid/v1",
        "upstream": "tiny-agents",
        "env_prefix": "TINYAGENTS",
        "api_key_secret": "TINYAGENTS_API_KEY",
    }
    r = build(data, secrets={**secrets, "TINYAGENTS_API_KEY": "sk-tiny"})
    env = r.env_local()
    assert env["TINYAGENTS_MODEL"] == "openai/tiny-agents"
    assert env["TINYAGENTS_API_BASE"] == "https://agents.example.invalid/v1"
    assert env["TINYAGENTS_API_KEY"] == "sk-tiny"
    assert "TINYAGENTS_API_KEY" in r.secret_names()


def test_a_redis_password_redis_conf_cannot_carry_is_refused(registry):
    registry.secrets["LITELLM_REDIS_PASSWORD"] = 'a b"c'
    with pytest.raises(
        DataError,
        match="group_data/all.py: secret LITELLM_REDIS_PASSWORD holds characters redis.conf cannot carry: ' ', '\"'",
    ):
        registry.check_secret_values("group_data/all.py")


def test_missing_secret_is_named(tmp_path, monkeypatch, registry):
    monkeypatch.delenv("LITELLM_PROXY_KEY", raising=False)
    with pytest.raises(DataError, match="secret LITELLM_PROXY_KEY is not set"):
        sources.load_secrets(registry.secret_names(), tmp_path / "none.env", "group_data/all.py")


def test_secret_from_file(tmp_path, monkeypatch, registry):
    monkeypatch.delenv("LITELLM_PROXY_KEY", raising=False)
    path = tmp_path / "secrets.env"
    monkeypatch.delenv("LITELLM_REDIS_PASSWORD", raising=False)
    path.write_text("# lab\nLITELLM_PROXY_KEY=sk-from-file\nLITELLM_REDIS_PASSWORD='quoted whole'\n")
    assert sources.load_secrets(registry.secret_names(), path, "x") == {
        "LITELLM_PROXY_KEY": "sk-from-file",
        "LITELLM_REDIS_PASSWORD": "quoted whole",
    }


@pytest.mark.parametrize("text", ["llm_models = {\n", "llm_models = undefined_name\n"], ids=["syntax", "name"])
def test_bad_data_file_is_named(tmp_path, text):
    folder = tmp_path / "group_data"
    folder.mkdir()
    (folder / "all.py").write_text(text)
    (tmp_path / "inventory.py").write_text("mini = ['mini']\n")
    with pytest.raises(DataError, match=f"^{folder / 'all.py'}: cannot load"):
        sources.load_inventory(tmp_path / "inventory.py", tmp_path)


def test_ports_document_matches_the_data():
    out = subprocess.run(
        [sys.executable, "-m", "tasks.docs", "ports"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (ROOT / "PORTS.md").read_text() == out, "PORTS.md is stale: python -m tasks.docs ports > PORTS.md"


def test_readme_data_keys_are_the_schema():
    assert stack.KEYS.markdown_table() in (ROOT / "README.md").read_text(), (
        "README's Data keys table is stale: python -m tasks.docs keys"
    )


def test_preflight_refuses_before_connecting(tmp_path):
    """pyinfra with bad data exits 2 naming the key, before it loads the inventory."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".lab", ".venv", ".git", "__pycache__"))
    text = (work / "group_data" / "all.py").read_text().replace('"port": 8101', '"port": 8100')
    (work / "group_data" / "all.py").write_text(text)
    (work / "group_data" / "mini.py").write_text(f"ovms_archive_sha256 = '{'ab' * 32}'\n")
    out = pyinfra("inventory.py", "deploy.py", cwd=work)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "group_data/all.py: llm_models['jerry-editor'].port 8100 on studio is already taken" in out.stderr
    assert "Loading inventory" not in out.stdout + out.stderr and "Connecting" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "args, complaint",
    [
        (
            ["--group-data", "/nonexistent/extra"],
            "preflight: command line: --group-data /nonexistent/extra: no such file or folder",
        ),
        (
            ["--data", "litellm_port=abc"],
            "preflight: command line (--data litellm_port): litellm_port must be an integer, not str",
        ),
        (
            ["--data", "litellm_prot=4001"],
            "preflight: command line (--data litellm_prot): litellm_prot is not a data key of this toolkit",
        ),
    ],
)
def test_bad_command_line_is_refused_before_the_inventory(args, complaint):
    out = pyinfra(*args, "--data", f"ovms_archive_sha256={'ab' * 32}", "inventory.py", "deploy.py")
    assert out.returncode == 2, out.stdout + out.stderr
    assert complaint in out.stderr
    assert "Loading inventory" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "group_file, text, complaint",
    [
        ("mini.py", "litellm_port = 70000\n", "litellm_port is out of range (1-65535): 70000"),
        ("studio.py", "mlx_max_token = 4096\n", "mlx_max_token is not a data key of this toolkit"),
    ],
    ids=["bad-value", "undeclared-key"],
)
def test_preflight_sees_pyinfra_group_data_option(tmp_path, group_file, text, complaint):
    """pyinfra's --group-data reaches the preflight: a bad value or an undeclared key in an extra
    folder stops the run before the inventory is loaded, naming the extra file and the key."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / group_file).write_text(text)
    out = pyinfra("--group-data", str(extra), "--data", f"ovms_archive_sha256={'ab' * 32}", "inventory.py", "deploy.py")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"preflight: {extra / group_file}: {complaint}" in out.stderr


def test_shared_key_in_a_group_file_is_refused(data):
    with pytest.raises(DataError, match="group_data/studio.py: llm_models is shared by every host"):
        build(data, where={"llm_models": str(ROOT / "group_data" / "studio.py")})


def test_mlx_model_on_a_host_outside_the_studio_group(data):
    data["llm_models"]["jerry-chat"]["host"] = "mini"
    with pytest.raises(
        DataError, match="llm_models\\['jerry-chat'\\].host 'mini' is not in the inventory group 'studio'"
    ):
        build(data)


LAYERING_PROBE = """
import json, sys
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory
ctx_state.set(State())
inv = make_inventory(sys.argv[1], cwd=sys.argv[2], override_data={"mlx_max_tokens": 7},
                     group_data_directories=[sys.argv[3]])
keys = ["litellm_port", "mlx_max_tokens", "mlx_start_timeout", "ovms_rest_port", "litellm_start_timeout"]
print(json.dumps({h.name: {k: h.data.get(k) for k in keys} for h in inv}))
"""


def test_per_host_layering_is_pyinfras(tmp_path):
    """The preflight layers group data per host exactly as pyinfra does (pyinfra's own inventory
    loader run on the same files): a group file beats all.py of a later folder, host data beats
    group data, --data beats everything, and each host keeps its own values."""
    import json

    cwd, inv_dir, extra = tmp_path / "cwd", tmp_path / "inv", tmp_path / "extra"
    for folder in (cwd / "group_data", inv_dir / "group_data", extra):
        folder.mkdir(parents=True)
    (cwd / "group_data" / "all.py").write_text((ROOT / "group_data" / "all.py").read_text() + "litellm_port = 4100\n")
    (cwd / "group_data" / "mini.py").write_text("litellm_port = 4200\novms_rest_port = 9100\n")
    (inv_dir / "group_data" / "all.py").write_text("litellm_port = 4300\nmlx_start_timeout = 300\n")
    (extra / "studio.py").write_text("mlx_start_timeout = 600\nmlx_max_tokens = 2048\n")
    inventory = inv_dir / "inventory.py"
    inventory.write_text(
        "mini = [('mini', {'litellm_start_timeout': 30, 'llm_address': '192.0.2.71'})]\n"
        "studio = [('studio', {'llm_address': '192.0.2.72'})]\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", LAYERING_PROBE, str(inventory), str(cwd), str(extra)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    pyinfra_says = json.loads(out.stdout.strip().splitlines()[-1])
    r = preflight.build(inventory, cwd, [extra], {"mlx_max_tokens": 7}, for_deploy=False, with_secrets=False)
    for host, values in pyinfra_says.items():
        for key, value in values.items():
            if value is not None:
                assert r.settings(host)[key] == value, (host, key)
    assert r.settings("mini")["litellm_port"] == 4200 and r.settings("studio")["litellm_port"] == 4300
    assert r.settings("mini")["litellm_start_timeout"] == 30 and r.settings("studio")["litellm_start_timeout"] == 120
    assert r.settings("studio")["mlx_max_tokens"] == 7


def test_one_registry_per_run(monkeypatch):
    """The registry deploy.py uses is the object the preflight built (and read secrets for) once."""
    calls = []
    real = sources.load_secrets
    monkeypatch.setattr(sources, "load_secrets", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setenv("LITELLM_PROXY_KEY", "sk-x")
    monkeypatch.setenv("LITELLM_REDIS_PASSWORD", "redis-x")
    monkeypatch.setenv("LLMLAB_MINI_HOST", "192.0.2.71")
    monkeypatch.setenv("LLMLAB_STUDIO_HOST", "192.0.2.72")
    from pyinfra.api import State
    from pyinfra.context import ctx_state

    from tasks import run

    with ctx_state.use(State()):  # as pyinfra runs config.py: its State made, no inventory yet
        built = preflight.check(ROOT / "inventory.py", ROOT, overrides={"ovms_archive_sha256": "ab" * 32})
        assert run.current().registry is built
    assert len(calls) == 1


def test_defaults_are_copied_per_registry(data):
    """A registry's settings never share objects with the schema's defaults or another host."""
    first, second = build(data), build(data)
    first.proxy["litellm_router_settings"]["cooldown_time"] = 99
    assert second.proxy["litellm_router_settings"]["cooldown_time"] == 15
    assert first.settings("studio")["litellm_router_settings"]["cooldown_time"] == 15


def test_a_host_address_must_be_an_ip_address(data):
    from tasks import registry as reg

    def host(name, address):
        return reg.HostInput(
            name,
            (name,),
            {**data, "llm_address": address},
            {**{k: "group_data/all.py" for k in data}, "llm_address": f"inventory.py (host {name})"},
        )

    with pytest.raises(
        DataError, match=r"inventory.py \(host studio\): llm_address is not an IP address: 'studio.lan'"
    ):
        reg.build([host("mini", "192.0.2.71"), host("studio", "studio.lan")], stack.KEYS)
    no_address = reg.HostInput(
        "studio", ("studio",), dict(data), {k: "group_data/all.py" for k in data}, ssh_target="studio"
    )
    with pytest.raises(DataError, match="host studio: set llm_address to the IP address"):
        reg.build([host("mini", "192.0.2.71"), no_address], stack.KEYS)
