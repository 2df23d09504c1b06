"""The lab "as found" (lab/asfound.py), lab only: the hand-kept stack of the real hosts holds the
stack's ports (the operator's litellm-orch.service as a real uv project with the seed's
router.yaml, their user unit ov-server.service on :9000, their script's unit bebop-mlx.service
holding every MLX port) beside an Ollama-like service on :11434. A deploy refuses it naming each
port; adopt reads the hand-kept files over SSH; one deploy of what adopt wrote, with the units
named in llm_takeover, converges to this toolkit's stack while a stream of requests goes on; a
successor that cannot start gives the hand-kept unit back, serving. The lab is whole again after."""

import re
import shlex
import subprocess
import sys

import pytest

from lab import asfound
from lab import hosts as labhosts

from .client import RequestLoop, chat, http, wait_until
from .labdeploy import ROOT, changed_rows, lab_deploy

pytestmark = pytest.mark.lab_only

# What a retrying client retries besides a refused connection: the hand-kept proxy answers 500
# while the studio's servers switch under it (it is not this toolkit's, and has no fallback).
RETRIED = (429, 500, 502, 503)


def user_ctl(host, *args):
    uid = host.check_output(f"id -u {labhosts.OPERATOR}")
    return host.run(
        f"sudo -u {labhosts.OPERATOR} env XDG_RUNTIME_DIR=/run/user/{uid} systemctl --user {' '.join(args)}"
    ).stdout.strip()


def state(host, unit, what="ActiveState"):
    return host.check_output(f"systemctl show -p {what} --value {unit}")


@pytest.fixture(scope="module")
def as_found(registry, hosts, proxy_url, proxy_key, tmp_path_factory):
    """The hand-kept stack in place, and the data adopt wrote from it (a --group-data folder,
    with llm_takeover naming the hand-kept units); afterwards the hand-kept stack goes and a plain
    deploy makes the lab whole again."""
    data = tmp_path_factory.mktemp("adopted")
    asfound.arrange()
    try:
        ssh = labhosts.ssh_args(registry.proxy_host)
        out = subprocess.run(
            [
                *(sys.executable, "-m", "tasks.adopt", "--from", ssh[-1], "--ssh", shlex.join(ssh[:-1])),
                *("--path", f"{asfound.PROJECT}/config", "--inventory", "lab/inventory.py"),
                *("--out", str(data / "all.py"), "--secrets", str(data / "secrets.env")),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{len(registry.models)} models written" in out.stdout and "router.yaml equivalent" in out.stdout
        for host, units in asfound.HAND_KEPT.items():
            (data / f"{host}.py").write_text(f"llm_takeover = {units!r}\n")
        yield data
    finally:
        asfound.undo()
        code, text, _ = lab_deploy()
        assert code == 0, text[-3000:]
        for model in registry.model_names():
            assert chat(proxy_url, model, key=proxy_key, timeout=60)[0] == 200, model


def neighbour(mini):
    return state(mini, asfound.NEIGHBOUR[0], "MainPID"), mini.run(
        f"curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{asfound.NEIGHBOUR[1]}/"
    ).rc


def test_drill_the_hand_kept_stack_as_found_is_adopted_and_taken_over_by_one_deploy(
    as_found, hosts, registry, proxy_url, proxy_key, timings
):
    """A plain deploy is refused in seconds naming both of the mini's held ports, nothing changed;
    then one deploy of the adopted data stops and disables the three hand-kept units (files kept)
    right before their successors start, and every model answers through the toolkit's proxy,
    which enforces its key. A retrying client's stream through :4000 loses nothing; the
    Ollama-like service keeps its process and answers; the next deploy changes nothing."""
    mini, studio = hosts[registry.proxy_host], hosts["studio"]
    before = neighbour(mini)
    hand_kept_pid = state(mini, "litellm-orch.service", "MainPID")
    code, text, seconds = lab_deploy()
    timings["as found: a plain deploy refused"] = seconds
    assert code != 0, text[-3000:]
    for port, unit in ((4000, "systemd unit litellm-orch.service"), (9000, "user unit ov-server.service")):
        assert f"port {port}, declared for" in text and unit in text, text[-3000:]
    for port in (4000, 9000):
        line = next(entry for entry in text.splitlines() if f"port {port}, declared for" in entry)
        assert line.endswith("(or name its unit in llm_takeover); nothing was changed"), line
    assert state(mini, "litellm-orch.service", "MainPID") == hand_kept_pid  # nothing changed

    model = "jerry-test"
    with RequestLoop(proxy_url, proxy_key, model, window=60, retry_status=RETRIED) as loop:
        streaming, _ = wait_until(lambda: loop.answered, 30, interval=0.1)
        assert streaming, "the hand-kept proxy did not answer the stream"
        code, text, seconds = lab_deploy("--group-data", str(as_found))
        answered = len(loop.answered)
        wait_until(lambda: len(loop.answered) >= answered + 5, 30, interval=0.25)
    timings["as found: the deploy that takes the hand-kept stack over"] = seconds
    timings["as found: requests refused during the switch, retried"] = len(loop.refused)
    timings["as found: 5xx answers during the switch, retried"] = len(loop.retried_status)
    assert code == 0, text[-3000:]
    rows = changed_rows(text)
    for hand_kept in ("bebop-mlx.service", "litellm-orch.service", "ov-server.service (chris's user unit)"):
        assert any(f"Stop and disable {hand_kept}, replaced by" in row for row in rows), rows
    for host, unit in ((mini, "litellm-orch.service"), (studio, "bebop-mlx.service")):
        assert state(host, unit) in ("inactive", "failed") and state(host, unit, "UnitFileState") == "disabled"
        assert host.file(f"/etc/systemd/system/{unit}").exists
    assert user_ctl(mini, "is-active", "ov-server.service") in ("inactive", "failed")
    assert user_ctl(mini, "is-enabled", "ov-server.service") == "disabled"
    assert mini.file(f"{asfound.HOME}/.config/systemd/user/ov-server.service").exists
    assert not loop.lost and not loop.http_errors, f"lost {loop.lost}, HTTP errors {loop.http_errors}"
    assert loop.refused or loop.retried_status, "no request met the switch: the drill proved nothing"
    for name in registry.model_names():
        status, body = chat(proxy_url, name, key=proxy_key, timeout=60)
        assert status == 200 and body["choices"][0]["message"]["content"], (name, status, body)
    assert http("GET", f"{proxy_url}/v1/models", timeout=10)[0] == 401  # the key is enforced now
    assert neighbour(mini) == before and before[1] == 0
    code, text, _ = lab_deploy("--group-data", str(as_found))
    assert code == 0 and not changed_rows(text), changed_rows(text)


def test_drill_a_successor_that_cannot_start_gives_the_hand_kept_proxy_back(
    as_found, hosts, registry, proxy_url, proxy_key, tmp_path, timings
):
    """As found again, with the proxy's start wait 1 s (LiteLLM cannot answer in that): the
    deploy takes the hand-kept units over, the proxy fails its wait, and litellm-orch.service is
    started again and serves :4000 (without a key, as the seed's); the run fails saying so. The
    other successors answered and stay. The stream loses nothing a retrying client keeps."""
    mini = hosts[registry.proxy_host]
    asfound.arrange()
    before = neighbour(mini)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("all.py", "studio.py"):
        (data / name).write_text((as_found / name).read_text())
    (data / "mini.py").write_text((as_found / "mini.py").read_text() + "litellm_start_timeout = 1\n")
    model = "jerry-test"
    with RequestLoop(proxy_url, proxy_key, model, window=60, retry_status=RETRIED) as loop:
        streaming, _ = wait_until(lambda: loop.answered, 30, interval=0.1)
        assert streaming, "the hand-kept proxy did not answer the stream"
        code, text, _ = lab_deploy("--group-data", str(data))
        answered = len(loop.answered)
        wait_until(lambda: len(loop.answered) >= answered + 5, 60, interval=0.25)
    timings["as found, failing successor: requests refused, retried"] = len(loop.refused)
    assert code != 0, text[-3000:]
    assert "the hand-kept litellm-orch.service started again" in text, text[-3000:]
    assert state(mini, "litellm-orch.service") == "active"
    assert state(mini, "litellm.service") in ("inactive", "failed")
    assert state(mini, "litellm.service", "UnitFileState") == "disabled"  # a boot does not start both
    holder = re.search(r"pid=(\d+),", mini.check_output("ss -Htlnp 'sport = :4000'"))
    assert holder and "/litellm-orch.service" in mini.check_output(f"cat /proc/{holder.group(1)}/cgroup")
    status, body = chat(proxy_url, model, key=None, timeout=60)  # the seed's proxy checks no key
    assert status == 200, body
    assert not loop.lost and not loop.http_errors, f"lost {loop.lost}, HTTP errors {loop.http_errors}"
    assert state(mini, "ovms.service") == "active" and state(hosts["studio"], f"mlx-{model}.service") == "active"
    assert neighbour(mini) == before
