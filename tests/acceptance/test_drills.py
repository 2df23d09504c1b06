"""Fault drills, lab only: each breaks one thing on purpose, watches the stack cope, and leaves
the lab whole again. Every wait is bounded; every drill stops by itself."""

import json
import re
import shlex
import subprocess
import sys
import time

import pytest

from lab import hfhub, lifecycle
from lab import hosts as labhosts
from lab.proc import run as run_here
from tasks import runlock

from .client import RequestLoop, chat, http, wait_until
from .labdeploy import ROOT, changed_rows, lab_deploy

pytestmark = pytest.mark.lab_only

COOLDOWN_ERROR = "all_deployments_in_cooldown"


def service_state(host, unit):
    out = host.check_output(f"systemctl show -p MainPID -p NRestarts -p ActiveState {unit}")
    return dict(line.split("=", 1) for line in out.splitlines())


def server_answers(hosts, registry, addresses, model) -> bool:
    """The MLX server answers its /v1/models, asked from the proxy host (its firewall admits
    nobody else)."""
    url = f"http://{addresses[model.host]}:{model.port}/v1/models"
    return hosts[registry.proxy_host].run(f"curl -fsS -o /dev/null --max-time 2 {url}").rc == 0


def answers(proxy_url, proxy_key, model):
    status, body = chat(proxy_url, model, key=proxy_key, timeout=30)
    return status == 200 and body["choices"][0]["message"]["content"] != ""


def live(proxy_url):
    return http("GET", f"{proxy_url}/health/liveliness", timeout=2)[0] == 200


def test_drill_upstream_down_cools_down_and_recovers(hosts, registry, proxy_url, proxy_key, addresses, timings):
    """Stop one MLX server: its model fails with a clear error, the others keep answering, LiteLLM
    cools the deployment down for the seed's cooldown_time after allowed_fails, and once the
    server is back the model answers again; the proxy is never touched."""
    victim = [m for m in registry.models.values() if m.backend == "mlx" and not m.fallbacks][-1]
    unit = f"mlx-{victim.name}"
    server_host, mini = hosts[victim.host], hosts[registry.proxy_host]
    settings = registry.proxy["litellm_router_settings"]
    allowed, cooldown = settings["allowed_fails"], settings["cooldown_time"]
    healthy, _ = wait_until(lambda: answers(proxy_url, proxy_key, victim.name), 60, interval=1)
    assert healthy, f"{victim.name} does not answer before the drill"
    proxy_before = service_state(mini, "litellm")

    server_host.check_output(f"systemctl stop {unit}")
    try:
        # Each failed request counts at least one failure; past allowed_fails the deployment
        # goes into cooldown, so within allowed_fails + 2 requests LiteLLM stops trying it.
        replies = []
        for _ in range(allowed + 2):
            replies.append(chat(proxy_url, victim.name, key=proxy_key, timeout=60))
            if COOLDOWN_ERROR in str(replies[-1][1]):
                break
        cooled_at = time.monotonic()
        status, body = replies[0]
        assert status == 500 and "Connection error" in body and f"model group '{victim.name}'" in body, replies[0]
        status, body = replies[-1]
        assert status == 429 and COOLDOWN_ERROR in body, f"no cooldown after {len(replies)} requests: {replies}"
        assert re.search(rf"Try again in {cooldown}(\.0)? seconds", body), body
        # The cooldown is shared by every worker (through Redis): no worker calls the stopped
        # server again while it lasts. A worker with its own state would answer "Connection error".
        # uvicorn's worker processes share the master's listening socket
        port = registry.proxy["litellm_port"]
        workers = int(mini.check_output(f"ss -Htlnp 'sport = :{port}' | grep -o 'pid=[0-9]*' | sort -u | wc -l")) - 1
        assert workers >= 2, f"the proxy runs {workers} worker(s): nothing to share"
        keys = mini.check_output(
            'REDISCLI_AUTH="$(sed -n \'s/^requirepass "\\(.*\\)"$/\\1/p\' /etc/redis-llm/redis.conf)" '
            "redis-cli --no-auth-warning -p %s --scan --pattern '*:cooldown'",
            str(registry.proxy["redis_port"]),
        )
        assert keys.strip(), "the cooldown is not in Redis"
        later = []  # while the cooldown lasts (each refusal takes LiteLLM about 2 s)
        while time.monotonic() < cooled_at + cooldown - 4 and len(later) < 4 * workers:
            later.append(chat(proxy_url, victim.name, key=proxy_key, timeout=60))
        assert len(later) >= 2 * workers, f"only {len(later)} requests fit in the cooldown"
        assert all(status == 429 and COOLDOWN_ERROR in body for status, body in later), later

        for other in registry.model_names():
            if other != victim.name:
                assert answers(proxy_url, proxy_key, other), f"{other} stopped answering while {unit} was down"

        # While cooling down LiteLLM answers from its cooldown list without calling the server;
        # when cooldown_time has passed it calls the (still stopped) server again.
        def tries_upstream_again():
            status, body = chat(proxy_url, victim.name, key=proxy_key, timeout=60)
            return COOLDOWN_ERROR not in str(body) and (status, body)

        reply, _ = wait_until(tries_upstream_again, cooldown + 15, interval=1)
        held = time.monotonic() - cooled_at
        timings[f"drill: cooldown held (cooldown_time {cooldown} s)"] = held
        assert reply, f"still cooling down {held:.0f} s later (cooldown_time is {cooldown} s)"
        assert reply[0] == 500 and "Connection error" in reply[1], reply
        # The first cooldown reply came one failed request (a few seconds) after it began; its end
        # is seen late by up to one refusal (about 2 s each with two workers) plus one failing
        # try of the stopped server (about 3 s with its retries): 14.3-21.8 s seen for 15 s.
        assert cooldown - 6 <= held <= cooldown + 10, f"cooldown lasted about {held:.1f} s, not {cooldown} s"
    finally:
        server_host.run(f"systemctl start {unit}")

    up, _ = wait_until(lambda: server_answers(hosts, registry, addresses, victim), 60)
    assert up, f"{unit} did not come back within 60 s"
    back, waited = wait_until(lambda: answers(proxy_url, proxy_key, victim.name), cooldown + 30, interval=1)
    timings["drill: model answers again after its server is back"] = waited
    assert back, f"{victim.name} did not answer through the proxy within {cooldown + 30} s of {unit} coming back"
    proxy_after = service_state(mini, "litellm")
    assert (proxy_after["MainPID"], proxy_after["NRestarts"]) == (proxy_before["MainPID"], proxy_before["NRestarts"])


def mlx_answered(body, registry, model) -> bool:
    """The real mlx_lm.server marks its answers with its own fingerprint; OVMS's do not."""
    version = registry.settings(model.host)["mlx_lm_version"]
    return isinstance(body, dict) and str(body.get("system_fingerprint", "")).startswith(version)


def test_drill_upstream_down_is_answered_by_its_fallback(hosts, registry, proxy_url, proxy_key, addresses, timings):
    """Stop the MLX server of a model that has fallbacks: every request for it is still answered
    (200), by the fallback, during the outage and the cooldown; once the server is back and the
    cooldown has passed, the model's own server answers again."""
    victim = [m for m in registry.models.values() if m.backend == "mlx" and m.fallbacks][-1]
    unit = f"mlx-{victim.name}"
    server_host = hosts[victim.host]
    cooldown = registry.proxy["litellm_router_settings"]["cooldown_time"]
    status, body = chat(proxy_url, victim.model_name, key=proxy_key, timeout=30)
    assert status == 200 and mlx_answered(body, registry, victim), body

    server_host.check_output(f"systemctl stop {unit}")
    try:
        replies = [chat(proxy_url, victim.model_name, key=proxy_key, timeout=60) for _ in range(6)]
        for status, body in replies:
            assert status == 200, (status, body)
            assert not mlx_answered(body, registry, victim), body  # its server is down: the fallback answered
            assert body["choices"][0]["message"]["content"]
    finally:
        server_host.run(f"systemctl start {unit}")
    stopped = time.monotonic()
    up, _ = wait_until(lambda: server_answers(hosts, registry, addresses, victim), 60)
    assert up, f"{unit} did not come back within 60 s"

    def own_server_answers():
        status, body = chat(proxy_url, victim.model_name, key=proxy_key, timeout=30)
        assert status == 200, (status, body)  # answered throughout: by the fallback until then
        return mlx_answered(body, registry, victim)

    back, waited = wait_until(own_server_answers, cooldown + 30, interval=1)
    timings["drill: fallback until the model's own server answers again"] = time.monotonic() - stopped
    assert back, f"{victim.name}'s own server did not answer within {cooldown + 30} s of coming back"


def test_drill_redis_down_the_proxy_keeps_serving(hosts, registry, proxy_url, proxy_key, timings):
    """Stop Redis: every model still answers (what degrades: each worker keeps its own cooldowns
    and failure counts until Redis is back); start it again: the proxy uses it again, with no
    restart of the proxy."""
    mini = hosts[registry.proxy_host]
    before = service_state(mini, "litellm")
    mini.check_output("systemctl stop redis-llm")
    try:
        started = time.monotonic()
        for model in registry.model_names():
            assert answers(proxy_url, proxy_key, model), f"{model} does not answer with Redis down"
        timings["drill: every model answers with Redis down"] = time.monotonic() - started
    finally:
        mini.run("systemctl start redis-llm")
    port = registry.proxy["redis_port"]
    up, _ = wait_until(lambda: "NOAUTH" in mini.run(f"redis-cli -p {port} ping").stdout, 30)
    assert up, "Redis did not come back"
    for model in registry.model_names():
        assert answers(proxy_url, proxy_key, model), f"{model} does not answer after Redis is back"
    after = service_state(mini, "litellm")
    assert (after["MainPID"], after["NRestarts"]) == (before["MainPID"], before["NRestarts"])


def test_drill_restart_under_load_loses_no_request_a_retrying_client_keeps(
    hosts, registry, proxy_url, proxy_key, timings
):
    """A bounded stream of requests while the proxy restarts (as a deploy restarts it). While the
    port is closed, requests are refused before they reach LiteLLM (connection refused or reset:
    nothing was processed, so a client may safely retry); in-flight ones finish (uvicorn drains on
    SIGTERM). A client that retries those for up to 30 s loses none, and no request ever gets an
    HTTP error."""
    mini = hosts[registry.proxy_host]
    model = next(m for m in registry.models.values() if m.backend == "mlx" and not m.fallbacks)
    with RequestLoop(proxy_url, proxy_key, model.name) as loop:
        streaming, _ = wait_until(lambda: loop.answered, 30, interval=0.1)
        assert streaming, "the stream got no answer before the restart"
        started = time.monotonic()
        mini.check_output("systemctl restart litellm")
        back, _ = wait_until(lambda: live(proxy_url), 30, interval=0.25)
        timings["drill: proxy restart under load, until it answers"] = time.monotonic() - started
        assert back
        # The stream goes on through the new workers' first (slower) requests.
        answered_when_back = len(loop.answered)
        served_after, _ = wait_until(lambda: len(loop.answered) >= answered_when_back + 10, 30, interval=0.25)
    timings["drill: requests refused during the restart, retried"] = len(loop.refused)
    assert not loop.http_errors and not loop.lost, f"HTTP errors {loop.http_errors}, lost {loop.lost}"
    assert loop.refused, "no request met the restart: the drill proved nothing"
    assert served_after, f"{len(loop.answered) - answered_when_back} answers in 30 s after the restart"


def test_drill_upgrade_builds_beside_the_running_proxy_and_switches_only_when_whole(
    hosts, registry, proxy_url, proxy_key, timings
):
    """A LiteLLM pin that cannot be installed: the new environment fails to build beside the
    running one, which never stops answering (not one request refused) and stays in use. Then a
    good change of pin (another release of the pinned line, one before it): built beside,
    switched to, the old one kept as previous; its downtime is the restart alone. Then back to
    the pinned version, which the previous environment still is."""
    mini = hosts[registry.proxy_host]
    venv = f"{registry.proxy['litellm_home']}/venv"
    model = next(m for m in registry.models.values() if m.backend == "mlx" and not m.fallbacks).name
    in_use = mini.check_output(f"readlink {venv}")
    folders = mini.check_output(f"ls -d {venv}-*")
    before = service_state(mini, "litellm")

    with RequestLoop(proxy_url, proxy_key, model) as loop:
        code, text, seconds = lab_deploy("--data", "litellm_version=1.999.0")
    timings["drill: upgrade to a pin that does not install"] = seconds
    assert code != 0 and "Build the litellm environment" in text and "1.999.0" in text, text[-3000:]
    assert mini.check_output(f"readlink {venv}") == in_use
    assert mini.check_output(f"ls -d {venv}-*") == folders  # the failed build left nothing behind
    assert service_state(mini, "litellm")["MainPID"] == before["MainPID"]
    assert not loop.refused and not loop.http_errors and not loop.lost and len(loop.answered) > 5

    with RequestLoop(proxy_url, proxy_key, model) as loop:
        code, text, seconds = lab_deploy("--data", "litellm_version=1.106.11")
    timings["drill: good change of pin (build beside, switch, restart)"] = seconds
    timings["drill: upgrade downtime: requests refused for (s)"] = loop.refused_for
    assert code == 0, text[-3000:]
    assert mini.check_output(f"readlink {venv}") != in_use
    assert mini.check_output(f"readlink {venv}.previous") == in_use
    assert (
        mini.check_output(f"{venv}/bin/python -c 'import importlib.metadata as m; print(m.version(\"litellm\"))'")
        == "1.106.11"
    )
    assert not loop.http_errors and not loop.lost, f"HTTP errors {loop.http_errors}, lost {loop.lost}"
    assert loop.refused, "no request met the upgrade's restart: the loop ended too early to show its downtime"

    # The old pin again: the previous environment is exactly it, so it is switched back to, unbuilt.
    code, text, seconds = lab_deploy()
    timings["drill: back to the pinned LiteLLM (the previous environment)"] = seconds
    assert code == 0, text[-3000:]
    assert mini.check_output(f"readlink {venv}") == in_use
    assert "(the previous environment, which has these pins)" in text


def test_drill_proxy_killed_comes_back_within_30s(hosts, registry, proxy_url, proxy_key, timings):
    mini = hosts[registry.proxy_host]
    before = service_state(mini, "litellm")
    mini.check_output(f"kill -9 {before['MainPID']}")
    killed = time.monotonic()

    def restarted_and_live():
        # The workers outlive their master for a moment and keep answering: wait for systemd's
        # restart (a new main process) and for that one to answer.
        now = service_state(mini, "litellm")
        return (
            int(now["NRestarts"]) > int(before["NRestarts"])
            and now["ActiveState"] == "active"
            and now["MainPID"] not in ("0", before["MainPID"])
            and live(proxy_url)
        )

    # One worker came back in 6.5-11 s; two, loading LiteLLM side by side on the lab's two cores,
    # in about 13 s.
    back, _ = wait_until(restarted_and_live, 30, interval=0.25)
    seconds = time.monotonic() - killed
    timings["drill: proxy back after kill -9"] = seconds
    log = mini.run("journalctl -u litellm --no-pager -n 20").stdout
    assert back, f"the proxy did not answer within 30 s of kill -9; recent log:\n{log}"
    after = service_state(mini, "litellm")
    assert after["MainPID"] != before["MainPID"]
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    started = time.monotonic()
    assert answers(proxy_url, proxy_key, registry.model_names()[0])
    timings["drill: first chat after kill -9"] = time.monotonic() - started


def test_drill_mini_reboot_comes_back_without_a_deploy(hosts, registry, proxy_url, proxy_key, timings):
    mini = hosts[registry.proxy_host]
    boot_id = mini.check_output("cat /proc/sys/kernel/random/boot_id")
    started = time.monotonic()
    lifecycle.reboot(registry.proxy_host)
    back, _ = wait_until(lambda: live(proxy_url), 120, interval=0.5)
    timings["drill: mini reboot until the proxy answers"] = time.monotonic() - started
    assert back, "the proxy did not answer within 120 s of the reboot"
    assert mini.check_output("cat /proc/sys/kernel/random/boot_id") != boot_id, "the host did not reboot"
    for unit in ("litellm", "ovms"):
        assert service_state(mini, unit)["ActiveState"] == "active", unit
    for model in registry.model_names():
        ok, _ = wait_until(lambda model=model: answers(proxy_url, proxy_key, model), 30, interval=1)
        assert ok, f"{model} does not answer through the proxy after the reboot"


def test_drill_bad_config_is_refused_and_the_proxy_keeps_serving(
    hosts, registry, proxy_url, proxy_key, tmp_path, timings
):
    """Data that passes the preflight but renders a router.yaml LiteLLM rejects: the deploy fails
    at LiteLLM's own validation, twice in a row, and the running proxy keeps its config."""
    mini = hosts[registry.proxy_host]
    conf = registry.proxy["litellm_config_dir"]
    bad = dict(registry.proxy["litellm_router_settings"], routing_strategy="fastest")
    (tmp_path / "mini.py").write_text(f"litellm_router_settings = {bad!r}\n")
    live_router = mini.check_output(f"sha256sum {conf}/router.yaml")
    before = service_state(mini, "litellm")

    for attempt in (1, 2):  # the second run finds the bad config already staged
        code, text, seconds = lab_deploy("--group-data", str(tmp_path))
        timings[f"drill: refused bad-config deploy #{attempt}"] = seconds
        assert code != 0, f"attempt {attempt}: the deploy accepted a bad config:\n{text[-3000:]}"
        assert "router.yaml rejected" in text and "Invalid routing_strategy" in text, text[-3000:]
        assert proxy_key not in text
        assert mini.check_output(f"sha256sum {conf}/router.yaml") == live_router
        assert service_state(mini, "litellm")["MainPID"] == before["MainPID"]
        assert answers(proxy_url, proxy_key, registry.model_names()[0])

    # The good data again: only the staged copy changes back; the proxy is not restarted.
    code, text, _ = lab_deploy()
    assert code == 0, text[-3000:]
    rows = changed_rows(text)
    assert rows and all("Stage the new" in r or "Validate the staged" in r for r in rows), rows
    assert service_state(mini, "litellm")["MainPID"] == before["MainPID"]


def test_drill_a_broken_environment_is_rebuilt_by_one_deploy(hosts, registry, proxy_url, proxy_key, timings):
    """The environment is judged by what is on the host, not by its record: half of a package's
    folder removed and the entry point deleted, by hand, are repaired by the next deploy, which
    rebuilds the environment and restarts the proxy, which answers; the deploy after that changes
    nothing."""
    mini = hosts[registry.proxy_host]
    venv = f"{registry.proxy['litellm_home']}/venv"
    before = service_state(mini, "litellm")
    auth = f"{venv}/lib/python3*/site-packages/litellm/proxy/auth"
    mini.check_output(f"rm -rf {auth} && rm -f {venv}/bin/litellm")
    code, text, seconds = lab_deploy()
    timings["drill: deploy repairing a broken environment"] = seconds
    assert code == 0, text[-3000:]
    # pyinfra shows one name for an operation that runs on both hosts (here the studio's or the
    # mini's environment build, whichever it picks), so the repair is read on the host itself.
    assert any("environment with uv" in row for row in changed_rows(text)), changed_rows(text)
    assert mini.file(f"{venv}/bin/litellm").exists
    assert mini.run(f"ls -d {auth}").rc == 0, "the package folder was not restored"
    assert service_state(mini, "litellm")["MainPID"] != before["MainPID"], "the proxy was not restarted"
    ok, _ = wait_until(lambda: answers(proxy_url, proxy_key, registry.model_names()[0]), 60, interval=1)
    assert ok, "the proxy does not answer after the repair"
    code, text, _ = lab_deploy()
    assert code == 0 and not changed_rows(text), changed_rows(text)


def interrupted_deploy(marker: str, after: float) -> str:
    """A deploy interrupted as Ctrl-C would: SIGINT to its whole process group, `after` seconds
    after it announced the operation named by `marker`. Returns what it printed."""
    import os
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "deploy"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    else:
        raise AssertionError(f"the deploy ended before {marker!r}:\n" + "".join(seen[-50:]))
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    # `python -m lab deploy` runs pyinfra as its child, which may outlive it by a moment while it
    # handles the interrupt; the run after must find the interrupted one gone, as an operator
    # whose Ctrl-C has returned to the prompt would.
    def group_gone():
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    gone, _ = wait_until(group_gone, 30, interval=0.1)
    assert gone, "the interrupted deploy's processes did not end within 30 s"
    return "".join(seen)


def rerun_converges(timings, what: str) -> None:
    """Right after an interruption: one deploy brings everything up, the next changes nothing."""
    code, text, seconds = lab_deploy()
    timings[f"drill: deploy right after {what}"] = seconds
    assert code == 0, text[-3000:]
    assert "another deploy holds this host" not in text  # the dead run's lock was taken over
    code, text, _ = lab_deploy()
    assert code == 0 and not changed_rows(text), changed_rows(text)


def test_drill_a_weights_fetch_shows_its_progress_and_resumes_after_it_was_cut_off(hosts, registry, timings):
    """The studio's hub cache emptied and the lab's hub paced (about 12 s for the tiny model):
    the deploy's fetch prints progress lines (bytes of total, rate, time left) on the terminal;
    cut off half way (the deploy interrupted and its fetch killed on the host, as a dropped
    connection would), the next deploy resumes from what was fetched and the servers answer."""
    hub_models = [m for m in registry.models.values() if m.backend == "mlx" and m.upstream == hfhub.REPO]
    studio = hosts[hub_models[0].host]
    cache = f"{registry.settings(hub_models[0].host)['mlx_home']}/hf/hub/models--{hfhub.REPO.replace('/', '--')}"
    studio.check_output(f"rm -rf {cache}")
    hfhub.start(rate=40_000)
    try:
        text = interrupted_deploy(f"[studio] {hfhub.REPO}: ", after=0)
        progress = [line for line in text.splitlines() if line.startswith(f"[studio] {hfhub.REPO}: ")]
        assert progress and re.search(r"kB of 495\.\d kB \(\d+%\), [\d.]+ kB/s, \d+ s left", progress[0]), progress
        # The fetch on the host outlives the deploy cut off from it; end it, as a dropped line would.
        pids = studio.run("pgrep -f 'llmlab-part' -u mlx").stdout.split()
        for pid in pids:
            studio.run(f"kill -9 {pid}")
        assert studio.run(f"ls {cache}/blobs/ | grep -q 'llmlab-part$'").rc == 0, "nothing was half fetched"
        code, text, seconds = lab_deploy()
        timings["drill: deploy resuming a cut-off weights fetch"] = seconds
        assert code == 0, text[-3000:]
        assert re.search(rf"\[studio\] {re.escape(hfhub.REPO)}: resuming with [\d.]+ kB of 495\.\d kB", text), text[
            -3000:
        ]
        assert f"fetched {hfhub.REPO} (" in text
    finally:
        hfhub.start()
    assert studio.run(f"ls {cache}/blobs/ | grep -Eq 'llmlab-part|incomplete'").rc != 0
    code, text, _ = lab_deploy()
    assert code == 0 and not changed_rows(text), changed_rows(text)


def test_drill_rebuild_studio_from_nothing_interrupted_during_the_environment_build(hosts, registry, timings):
    """Destroy the studio, boot it empty, deploy, and interrupt that deploy while the MLX
    environment is being installed (the remote installer is left running, orphaned). The deploy
    run at once converges, and the acceptance checks pass again."""
    studio = next(m.host for m in registry.models.values() if m.backend == "mlx")
    timings["drill: recreate the studio host (boot)"] = lifecycle.recreate(studio)
    empty = run_here(*labhosts.ssh_args(studio), "ls /etc/systemd/system | grep -c '^mlx-' ; ls /opt", check=False)
    assert empty.stdout.split()[0] == "0" and "uv" not in empty.stdout, empty.stdout

    interrupted_deploy("Build the mlx environment", after=3)
    lock = run_here(*labhosts.ssh_args(studio), f"cat {runlock.LOCK}", check=False).stdout
    assert '"run"' in lock, "the interrupted run left no lock: the drill interrupted nothing"
    rerun_converges(timings, "an interrupted environment build")
    assert run_here(*labhosts.ssh_args(studio), f"test -e {runlock.LOCK}", check=False).returncode != 0
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/acceptance/test_stack.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_drill_rebuild_mini_interrupted_during_an_upload(hosts, registry, proxy_url, proxy_key, timings):
    """The mini from nothing, its deploy interrupted while the OVMS archive is being uploaded:
    the deploy run at once converges and every model answers through the proxy."""
    mini = registry.proxy_host
    timings["drill: recreate the mini host (boot)"] = lifecycle.recreate(mini)
    interrupted_deploy("Upload the OVMS archive", after=0.2)
    rerun_converges(timings, "an interrupted upload")
    for name in registry.model_names():
        assert answers(proxy_url, proxy_key, name), name


def test_drill_ovms_archive_digest_recorded_once_and_held(hosts, registry, proxy_url, proxy_key, tmp_path, timings):
    """No digest in the data: the deploy stops before any change, naming what to set or the
    command that records it (planning downloads nothing); that command records the archive's
    digest in the lock file once; an archive that changes afterwards is refused before any change,
    and OVMS keeps serving lil-jerry throughout."""
    import shutil

    from lab import paths

    mini = hosts[registry.proxy_host]
    asset = "ovms_ubuntu24_python_on.tar.gz"  # what the deploy chooses for the lab's mini (Ubuntu 24.04)
    releases = tmp_path / "releases"
    (releases / f"v{registry.proxy['ovms_version']}").mkdir(parents=True)
    archive = releases / f"v{registry.proxy['ovms_version']}" / asset
    shutil.copy(paths.OVMS_STANDIN_RELEASES / f"v{registry.proxy['ovms_version']}" / asset, archive)
    lock = tmp_path / "ovms.lock"
    data = tmp_path / "data"
    data.mkdir()
    (data / "mini.py").write_text(
        f"ovms_release_url = {str(releases)!r}\novms_archive_sha256 = None\novms_lock_file = {str(lock)!r}\n"
    )
    before = service_state(mini, "ovms")

    for dry in (("--dry",), ()):
        code, text, seconds = lab_deploy("--group-data", str(data), *dry)
        timings["drill: OVMS archive without a digest"] = seconds
        assert code != 0 and f"no sha256 for the OVMS archive {archive}" in text, text[-3000:]
        command = f"python -m tasks.ovms.release {archive} --lock {lock}"
        assert command in text and not lock.exists()

    record = subprocess.run(
        [sys.executable, "-m", "tasks.ovms.release", str(archive), "--lock", str(lock)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert record.returncode == 0, record.stderr
    recorded = json.loads(lock.read_text())[str(archive)]["sha256"]
    assert recorded == paths.OVMS_STANDIN_SHA256.read_text().strip()
    code, text, seconds = lab_deploy("--group-data", str(data))
    timings["drill: OVMS deploy with the recorded digest"] = seconds
    assert code == 0, text[-3000:]
    assert service_state(mini, "ovms")["MainPID"] == before["MainPID"]  # the same archive: nothing to do

    # The archive no longer matches the digest held for it (as if the file published under that
    # name had changed): refused before any change, the lock kept.
    wrong = "0" * 64
    lock.write_text(json.dumps({str(archive): {"sha256": wrong, "asset": asset}}))
    code, text, seconds = lab_deploy("--group-data", str(data))
    timings["drill: OVMS archive not matching its digest refused"] = seconds
    assert code != 0 and f"sha256 is not {wrong} (from {lock})" in text, text[-3000:]
    assert "the archive changed; nothing was touched" in text
    assert json.loads(lock.read_text())[str(archive)]["sha256"] == wrong
    assert service_state(mini, "ovms")["MainPID"] == before["MainPID"]
    assert answers(proxy_url, proxy_key, "lil-jerry")


def test_drill_ovms_pulls_again_from_the_hub_and_takes_an_uploaded_folder(
    hosts, registry, proxy_url, proxy_key, tmp_path, timings
):
    """lil-jerry is pulled by OVMS from the lab's hub (its HF_ENDPOINT). With its record of what
    was pulled gone, the deploy pulls it again, into a fresh folder swapped in, the pull's own
    progress on the operator's terminal, and restarts OVMS; the same model uploaded from a folder
    instead (the other way in) is served from model/; back to the hub, the deploy pulls nothing
    (the pulled files were kept) and serves them again. lil-jerry answers after each."""
    import runpy

    from lab import paths
    from tasks.ovms import models as ovms_models

    mini = hosts[registry.proxy_host]
    m = registry.models["lil-jerry"]
    assert m.source == hfhub.OV_REPO
    folder = ovms_models.model_dir(registry, m)
    graph = f"{folder}/graph.pbtxt"
    mini.check_output(f"rm {folder}/{ovms_models.SOURCE_MARKER}")
    before = service_state(mini, "ovms")
    code, text, seconds = lab_deploy()
    timings["drill: OVMS pulls lil-jerry again from the hub"] = seconds
    assert code == 0, text[-3000:]
    assert re.search(r"STAND-IN pull: [\d.]+ MiB of [\d.]+ MiB \(100%\)", text), text[-3000:]
    assert re.search(rf"pulled {re.escape(m.source)} in \d+ s", text), text[-3000:]
    assert mini.file(f"{folder}/{ovms_models.SOURCE_MARKER}").content_string == m.source + "\n"
    assert not mini.file(f"{folder}/hub.tmp").exists
    assert service_state(mini, "ovms")["MainPID"] != before["MainPID"]
    assert answers(proxy_url, proxy_key, "lil-jerry")

    data = tmp_path / "data"
    data.mkdir()
    overrides = runpy.run_path(str(ROOT / "lab" / "group_data" / "all.py"))["llm_model_overrides"]
    overrides["lil-jerry"] = {**overrides["lil-jerry"], "source": str(paths.TINY_OV)}
    (data / "all.py").write_text(f"llm_model_overrides = {overrides!r}\n")
    code, text, seconds = lab_deploy("--group-data", str(data))
    timings["drill: OVMS model uploaded from a folder instead"] = seconds
    assert code == 0, text[-3000:]
    assert 'models_path: "./model"' in mini.file(graph).content_string
    assert mini.file(f"{folder}/model/openvino_model.xml").exists and "STAND-IN pull" not in text
    assert answers(proxy_url, proxy_key, "lil-jerry")

    code, text, seconds = lab_deploy()
    timings["drill: OVMS model back to the hub, nothing pulled"] = seconds
    assert code == 0, text[-3000:]
    assert f'models_path: "./hub/{m.source}"' in mini.file(graph).content_string
    assert "STAND-IN pull" not in text and not any("Pull model" in row for row in changed_rows(text))
    assert answers(proxy_url, proxy_key, "lil-jerry")


def test_drill_a_deploy_is_refused_while_another_holds_the_host(hosts, registry):
    """A live run holds the mini (here: this test process, written into the lock as a deploy
    would): a second deploy refuses before any change with one line naming the holder; once
    the lock is gone, deploys go on."""
    import shlex

    mini = hosts[registry.proxy_host]
    holder = json.dumps({**runlock.RUN, "run": "drill", "command": "pyinfra inventory.py deploy.py"}, sort_keys=True)
    before = service_state(mini, "litellm")
    mini.check_output(f"printf '%s\\n' {shlex.quote(holder)} > {runlock.LOCK}")
    try:
        code, text, _ = lab_deploy()
        assert code != 0, text[-3000:]
        line = next(entry for entry in text.splitlines() if "another deploy holds this host" in entry)
        assert (
            f"{runlock.RUN['user']}@{runlock.RUN['control']} pid {runlock.RUN['pid']} (pyinfra inventory.py deploy.py)"
            in line
        )
        assert "--data llm_break_lock=true" in line
        assert service_state(mini, "litellm")["MainPID"] == before["MainPID"]
    finally:
        mini.run(f"rm -f {runlock.LOCK}")
    code, text, _ = lab_deploy()
    assert code == 0 and not changed_rows(text), text[-3000:]


def test_drill_a_declared_port_held_by_a_hand_kept_server_is_refused(hosts, registry, proxy_url, proxy_key, timings):
    """The operator's own server, started by a unit of theirs as themselves, holds an MLX port the
    registry declares (its own server stopped): the deploy stops before any change with one line
    naming the host, port, process, user and unit, instead of starting a server that cannot bind
    and waiting for it. The hand-kept server keeps running; once it is gone, a deploy converges."""
    victim = [m for m in registry.models.values() if m.backend == "mlx" and not m.fallbacks][-1]
    unit, studio = f"mlx-{victim.name}", hosts[victim.host]
    studio.check_output(f"systemctl stop {unit}")
    studio.check_output(
        f"systemd-run --unit=handkept-mlx --uid={labhosts.OPERATOR} --property=Restart=no "
        f"python3 -m http.server {victim.port} --bind 0.0.0.0"
    )
    try:
        listening, _ = wait_until(lambda: studio.socket(f"tcp://0.0.0.0:{victim.port}").is_listening, 30)
        assert listening, "the hand-kept server did not start"
        code, text, seconds = lab_deploy()
        timings["drill: deploy refused, a declared port held by another"] = seconds
        assert code != 0, text[-3000:]
        line = next(entry for entry in text.splitlines() if f"port {victim.port}, declared for {unit}" in entry)
        assert f"{victim.host}: port {victim.port}, declared for {unit} ({victim.model_name}), is held by " in line
        assert f"user {labhosts.OPERATOR}, systemd unit handkept-mlx.service)" in line
        assert "which this toolkit does not run" in line and "nothing was changed" in line
        assert "did not answer within" not in text  # refused, not waited for
        assert service_state(studio, unit)["ActiveState"] == "inactive"  # nothing was started
        assert service_state(studio, "handkept-mlx")["ActiveState"] == "active"  # nor stopped
    finally:
        studio.run("systemctl stop handkept-mlx")
    code, text, _ = lab_deploy()
    assert code == 0, text[-3000:]
    assert any("Enable and run the services of the MLX servers" in row for row in changed_rows(text)), text[-3000:]
    assert answers(proxy_url, proxy_key, victim.name)


HAND_KEPT = """[Unit]
Description=The operator's own MLX server (hand-kept)
[Service]
{user}ExecStart=/usr/bin/python3 -m http.server {port} --bind 0.0.0.0
[Install]
WantedBy={target}
"""


NEVER_ANSWERS = "/etc/systemd/system/{unit}.service.d/zz-test-never-answers.conf"


class HandKeptUnit:
    """The operator's own unit serving a port: a system unit (its file in /etc/systemd/system, run
    as the operator) or the operator's user unit (~/.config/systemd/user, its manager lingering)."""

    def __init__(self, host, kind: str, port: int):
        self.host, self.kind = host, kind
        self.uid = host.check_output(f"id -u {labhosts.OPERATOR}") if kind == "user" else ""
        self.name = "handkept-mlx.service"
        if kind == "system":
            self.file = f"/etc/systemd/system/{self.name}"
            self.text = HAND_KEPT.format(user=f"User={labhosts.OPERATOR}\n", port=port, target="multi-user.target")
        else:
            self.file = f"/home/{labhosts.OPERATOR}/.config/systemd/user/{self.name}"
            self.text = HAND_KEPT.format(user="", port=port, target="default.target")

    def systemctl(self, *args: str) -> str:
        if self.kind == "system":
            return self.host.run(f"systemctl {' '.join(args)}").stdout.strip()
        runtime = f"XDG_RUNTIME_DIR=/run/user/{self.uid}"
        return self.host.run(
            f"sudo -u {labhosts.OPERATOR} env {runtime} systemctl --user {' '.join(args)}"
        ).stdout.strip()

    def start(self) -> None:
        if self.kind == "user":
            self.host.check_output(f"loginctl enable-linger {labhosts.OPERATOR}")
            wait_until(lambda: self.host.file(f"/run/user/{self.uid}/systemd/private").exists, 30)
            self.host.check_output(f"sudo -u {labhosts.OPERATOR} mkdir -p {self.file.rsplit('/', 1)[0]}")
        owner = "root" if self.kind == "system" else labhosts.OPERATOR
        self.host.check_output(f"printf %s {shlex.quote(self.text)} | sudo -u {owner} tee {self.file} >/dev/null")
        self.systemctl("daemon-reload")
        self.systemctl("enable", "--now", self.name)

    def stop(self) -> None:
        self.systemctl("disable", "--now", self.name)
        self.host.run(f"rm -f {self.file}")
        self.systemctl("daemon-reload")
        if self.kind == "user":
            self.host.run(f"loginctl disable-linger {labhosts.OPERATOR}")


@pytest.mark.parametrize("kind, successor", [("system", "answers"), ("user", "answers"), ("system", "does not answer")])
def test_drill_a_hand_kept_server_named_for_takeover_gives_way_to_its_successor(
    hosts, registry, proxy_url, proxy_key, tmp_path, kind, successor
):
    """The operator's own unit (a system unit run as the operator, or the operator's user unit)
    serves jerry-test's port; the data names it in llm_takeover. The deploy stops and disables it
    right before jerry-test's server starts (its file kept) and the model answers; the next deploy
    changes nothing. When the successor cannot answer (a drop-in of the test's own runs a process
    that never listens in its place; its start_timeout 2 s), the hand-kept server is started
    again, serving, and the run fails saying so."""
    victim = registry.models["jerry-test"]
    unit, studio = f"mlx-{victim.name}", hosts[victim.host]
    data = tmp_path / "data"
    data.mkdir()
    (data / "studio.py").write_text('llm_takeover = ["handkept-mlx.service"]\n')
    if successor == "does not answer":
        (data / "all.py").write_text(
            "import runpy\n"
            f"llm_model_overrides = runpy.run_path({str(ROOT / 'lab' / 'group_data' / 'all.py')!r})"
            "['llm_model_overrides']\n"
            f"llm_model_overrides[{victim.name!r}] = {{**llm_model_overrides[{victim.name!r}], 'start_timeout': 2}}\n"
        )
        # Not a bound the server might just meet on a fast day: in its place runs a process that
        # never listens. The drop-in is the test's, not the toolkit's; the deploy leaves it alone.
        studio.check_output(f"mkdir -p {NEVER_ANSWERS.rsplit('/', 1)[0].format(unit=unit)}")
        studio.check_output(
            f"printf '[Service]\\nExecStart=\\nExecStart=/bin/sleep infinity\\n' > {NEVER_ANSWERS.format(unit=unit)}"
        )
        studio.check_output("systemctl daemon-reload")
    hand_kept = HandKeptUnit(studio, kind, victim.port)
    studio.check_output(f"systemctl stop {unit}")
    hand_kept.start()
    try:
        listening, _ = wait_until(lambda: studio.socket(f"tcp://0.0.0.0:{victim.port}").is_listening, 30)
        assert listening, "the hand-kept server did not start"
        code, text, _ = lab_deploy("--group-data", str(data))
        if successor == "answers":
            assert code == 0, text[-3000:]
            stopped = "Stop and disable handkept-mlx.service"
            assert any(stopped in row and "replaced by the MLX servers" in row for row in changed_rows(text)), text
            assert hand_kept.systemctl("is-active", hand_kept.name) == "inactive"
            assert hand_kept.systemctl("is-enabled", hand_kept.name) == "disabled"
            assert studio.file(hand_kept.file).exists  # its file is kept
            assert answers(proxy_url, proxy_key, victim.name)
            code, text, _ = lab_deploy("--group-data", str(data))
            assert code == 0 and not changed_rows(text), changed_rows(text)
        else:
            assert code != 0, text[-3000:]
            assert "the hand-kept handkept-mlx.service started again" in text, text[-3000:]
            assert hand_kept.systemctl("is-active", hand_kept.name) == "active"
            assert service_state(studio, unit)["ActiveState"] == "inactive"
            serving = f"curl -fsS -o /dev/null http://127.0.0.1:{victim.port}/"
            back, _ = wait_until(lambda: studio.run(serving).rc == 0, 30)
            assert back, "the hand-kept server does not serve again"
    finally:
        hand_kept.stop()
        if successor == "does not answer":
            studio.run(f"rm -rf {NEVER_ANSWERS.rsplit('/', 1)[0].format(unit=unit)} && systemctl daemon-reload")
    code, text, _ = lab_deploy()
    assert code == 0, text[-3000:]
    assert answers(proxy_url, proxy_key, victim.name)


def test_drill_models_that_leave_the_registry_take_their_servers_with_them(
    hosts, registry, proxy_url, proxy_key, tmp_path
):
    """jerry-test and lil-jerry (the only OVMS model) taken out of the data, and the node exporter
    switched off: the dry run plans the retirement of jerry-test's MLX server, of OVMS and of the
    exporter; the deploy stops them and removes their
    units, their ports have no listener (the MLX port leaves the firewall's rules), the proxy no
    longer offers them, their weights stay; put back, the next deploy serves them again."""
    from .test_idempotence import detected_changes

    victim, ov = registry.models["jerry-test"], registry.models["lil-jerry"]
    unit, studio, mini = f"mlx-{victim.name}", hosts[victim.host], hosts[ov.host]
    gone = (victim.name, ov.name)
    data = tmp_path / "data"
    data.mkdir()
    (data / "all.py").write_text(
        "import runpy\n"
        f"_base = runpy.run_path({str(ROOT / 'group_data' / 'all.py')!r})['llm_models']\n"
        f"_lab = runpy.run_path({str(ROOT / 'lab' / 'group_data' / 'all.py')!r})['llm_model_overrides']\n"
        f"llm_models = {{k: {{**v, 'fallbacks': [f for f in v.get('fallbacks', []) if f not in {gone!r}]}}\n"
        f"              for k, v in _base.items() if k not in {gone!r}}}\n"
        f"llm_model_overrides = {{k: v for k, v in _lab.items() if k not in {gone!r}}}\n"
    )
    weights = studio.check_output("ls /opt/mlx/models")
    ov_files = mini.check_output(f"ls {registry.proxy['ovms_models_dir']}")
    # and the node exporter switched off, in the same deploys: a service that leaves goes the same way
    switched_off = ("--data", "node_exporter_enabled=False")
    code, text, _ = lab_deploy("--group-data", str(data), *switched_off, "--dry")
    assert code == 0, text[-3000:]
    retiring = [
        f"MLX model servers | Stop and remove the MLX servers that left the registry: {unit}.service",
        "OpenVINO Model Server | Stop and remove OVMS that left the registry: ovms.service",
        "Prometheus node exporter | Stop and remove the node exporter that left the registry: "
        "node-exporter-llm.service",
    ]
    assert set(retiring) <= set(detected_changes(text)), detected_changes(text)
    try:
        code, text, _ = lab_deploy("--group-data", str(data), *switched_off)
        assert code == 0, text[-3000:]
        for row in retiring:
            assert any(row in changed for changed in changed_rows(text)), changed_rows(text)
        for host, name, port in (
            (studio, unit, victim.port),
            (mini, "ovms", registry.proxy["ovms_rest_port"]),
            (mini, "node-exporter-llm", registry.proxy["node_exporter_port"]),
        ):
            assert not host.file(f"/etc/systemd/system/{name}.service").exists
            assert service_state(host, name)["ActiveState"] == "inactive"
            assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
            assert not host.socket(f"tcp://127.0.0.1:{port}").is_listening
        assert str(victim.port) not in studio.file("/etc/llm-firewall/mlx.nft").content_string
        assert studio.check_output("ls /opt/mlx/models") == weights  # the weights are kept
        assert mini.check_output(f"ls {registry.proxy['ovms_models_dir']}") == ov_files
        status, body = http("GET", f"{proxy_url}/v1/models", key=proxy_key)
        assert status == 200 and not set(gone) & {m["id"] for m in body["data"]}, body
        others = [m for m in registry.models.values() if m.backend == "mlx" and m.name != victim.name]
        assert all(service_state(studio, f"mlx-{m.name}")["ActiveState"] == "active" for m in others)
        assert answers(proxy_url, proxy_key, others[0].name)
    finally:
        code, text, _ = lab_deploy()
    assert code == 0, text[-3000:]
    assert studio.service(f"{unit}.service").is_running and mini.service("ovms.service").is_running
    assert mini.service("node-exporter-llm.service").is_running
    assert answers(proxy_url, proxy_key, victim.name) and answers(proxy_url, proxy_key, ov.name)


def test_drill_an_mlx_upgrade_that_cannot_start_is_rolled_back(
    hosts, registry, proxy_url, proxy_key, tmp_path, timings
):
    """mlx-lm 0.22.0 installs, but its server has no --max-tokens and exits at once: the deploy
    builds it beside, switches, waits, and when the server does not answer puts the previous
    environment back, restarts every MLX server, and fails with one line naming the version and
    the log. Every model answers again; the next deploy with the good pins changes nothing."""
    studio = next(m.host for m in registry.models.values() if m.backend == "mlx")
    host = hosts[studio]
    venv = f"{registry.settings(studio)['mlx_home']}/venv"
    in_use = host.check_output(f"readlink {venv}")
    data = tmp_path / "data"
    data.mkdir()
    # The lab's overrides, with a short start wait for every MLX model (the real ones wait minutes).
    (data / "all.py").write_text(
        "import runpy\nfrom lab import paths\n"
        "_lab = runpy.run_path(str(paths.ROOT / 'lab' / 'group_data' / 'all.py'))['llm_model_overrides']\n"
        "_base = runpy.run_path(str(paths.ROOT / 'group_data' / 'all.py'))['llm_models']\n"
        "llm_model_overrides = {n: {**o, 'start_timeout': 20} if _base[n]['backend'] == 'mlx' else o "
        "for n, o in _lab.items()}\n"
    )

    code, text, seconds = lab_deploy("--group-data", str(data), "--data", "mlx_lm_version=0.22.0")
    timings["drill: MLX upgrade that cannot start, rolled back"] = seconds
    assert code != 0, text[-3000:]
    line = next((entry for entry in text.splitlines() if "did not answer within 20 s" in entry), None)
    assert line, text[-3000:]
    assert "mlx-lm 0.22.0" in line and "(log: journalctl -u mlx-" in line, line
    assert line.rstrip().endswith("rolled back to the previous environment, which answers"), line
    assert host.check_output(f"readlink {venv}") == in_use
    for m in (m for m in registry.models.values() if m.backend == "mlx"):
        ok, _ = wait_until(lambda m=m: answers(proxy_url, proxy_key, m.name), 60, interval=1)
        assert ok, f"{m.name} does not answer after the rollback"

    code, text, _ = lab_deploy()
    assert code == 0 and not changed_rows(text), changed_rows(text) or text[-3000:]
