"""python -m bench [--runs N] [--requests N] [--skip-rebuild]: measure the stack on the lab.

Prints one markdown table: from-scratch deploys (uv time apart, pip once for comparison), the
converged re-run (wall, changes, remote commands per host, biggest costs), the acceptance suite,
the proxy's added latency (p50/p95, direct to an MLX server vs through LiteLLM, concurrency 1
and 10), its CPU per request against LiteLLM's Router alone (each c=1 run followed by the Router's
own figure, so every ratio is taken side by side), and what it costs tool calls and streamed
answers (bench/stream.py, one run). Each other figure is the median of --runs runs with min and
max. Nothing here is asserted.

It targets only the lab (`./labctl up` first); every request loop is bounded by --requests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stream  # noqa: E402
from bench.optimes import timed_deploy  # noqa: E402
from bench.proxycpu import percentile, proxy_cpu_seconds  # noqa: E402
from lab import hosts, lifecycle, paths  # noqa: E402
from lab.network import HOSTS  # noqa: E402
from lab.proc import run as run_here  # noqa: E402
from lab.run import PYINFRA, deploy_env  # noqa: E402

ENV_OPS = re.compile(r"Install uv|environment with uv|Record the .* requirements")


def deploy(*extra: str):
    run = timed_deploy(PYINFRA + list(extra), cwd=str(ROOT), env=deploy_env())
    if run.code != 0:
        sys.exit(f"bench: the deploy failed (exit {run.code}):\n{run.output[-3000:]}")
    return run


def stats(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    import pyinfra

    return (
        f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem / 1024 / 1024:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}, pyinfra {pyinfra.__version__}"
    )


# --- deploys ---------------------------------------------------------------------------------


def from_scratch(host: str | None, runs: int) -> dict[str, list[float]]:
    """Recreate host (or both), then deploy it; the time from pyinfra's start to its end, and the
    machine's speed (cpu_speed) taken right before each deploy: the runs are CPU-bound, and the
    speed tells a slow run on a slow machine from a slow deploy."""
    out = {"wall": [], "python envs": [], "speed": []}
    for _ in range(runs):
        for h in [host] if host else list(HOSTS):
            lifecycle.recreate(h)
        out["speed"].append(cpu_speed())
        run = deploy(*(["--limit", host] if host else []))
        out["wall"].append(run.wall)
        out["python envs"].append(run.seconds(lambda name: bool(ENV_OPS.search(name))))
    return out


def pip_vs_uv(registry) -> tuple[float, float]:
    """The LiteLLM environment installed once with pip and once with uv, both without a cache,
    on the (deployed) mini, in throwaway folders: the install alone (the hosts have no venv
    module: the pip one is made by uv, with pip seeded into it)."""
    from tasks import litellm

    pins = " ".join(shlex.quote(pin) for pin in litellm.python_env(registry).requirements)
    script = (
        "set -e; rm -rf /tmp/bench-pip /tmp/bench-uv; "
        "/opt/uv/bin/uv venv -q --seed --system-certs --python python3 /tmp/bench-pip; "
        "s=$(date +%s.%N); "
        f"/tmp/bench-pip/bin/pip install -q --no-cache-dir --cert /etc/ssl/certs/ca-certificates.crt {pins}; "
        'e=$(date +%s.%N); echo pip $(python3 -c "print($e-$s)"); '
        "/opt/uv/bin/uv venv -q --system-certs --python python3 /tmp/bench-uv; "
        "s=$(date +%s.%N); "
        f"/opt/uv/bin/uv pip install -q --no-cache --system-certs --python /tmp/bench-uv/bin/python {pins}; "
        'e=$(date +%s.%N); echo uv $(python3 -c "print($e-$s)"); rm -rf /tmp/bench-pip /tmp/bench-uv'
    )
    out = run_here(*hosts.ssh_args("mini"), script, timeout=1800)
    times = dict(line.split() for line in out.stdout.splitlines() if line.split()[0] in ("pip", "uv"))
    return float(times["pip"]), float(times["uv"])


def remote_commands() -> dict[str, int]:
    """Remote commands a converged run sends each host (pyinfra --debug logs each one)."""
    out = subprocess.run(PYINFRA + ["--debug"], cwd=ROOT, env=deploy_env(), capture_output=True, text=True)
    text = out.stdout + out.stderr
    return {h: len(re.findall(rf"Running command on {h}:", text)) for h in HOSTS}


def fact_floor(runs: int) -> list[float]:
    """pyinfra's own floor: start, connect to both hosts and gather one fact each."""
    cmd = [
        str(Path(sys.executable).parent / "pyinfra"),
        "-y",
        "--data",
        "_sudo=False",
        "lab/inventory.py",
        "fact",
        "server.Kernel",
    ]
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(cmd, cwd=ROOT, env=deploy_env(), capture_output=True, check=True)
        times.append(time.monotonic() - started)
    return times


def cpu_speed() -> float:
    """This machine's speed at the moment, for comparing benches: seconds to compile the standard
    library's typing.py 200 times in one process (pure CPU, no I/O; lower is faster). The lab's
    work is CPU-bound, and a shared VM's speed drifts within the hour."""
    script = (
        "import time, typing; src = open(typing.__file__).read(); s = time.perf_counter()\n"
        "for _ in range(200): compile(src, 'typing.py', 'exec')\nprint(time.perf_counter() - s)"
    )
    return float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


# --- latency ---------------------------------------------------------------------------------


def one_request(url: str, body: bytes, key: str | None) -> float:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - started


def latencies(url: str, model: str, key: str | None, concurrency: int, requests: int) -> list[float]:
    body = json.dumps(
        {"model": model, "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "hello"}]}
    ).encode()
    for _ in range(3):  # warm up connections and caches
        one_request(url, body, key)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda _: one_request(url, body, key), range(requests)))


REMOTE_LOAD = """
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, model, concurrency, requests = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = json.dumps({"model": model, "max_tokens": 4, "temperature": 0,
                   "messages": [{"role": "user", "content": "hello"}]}).encode()
def one(_):
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started
for _ in range(3):
    one(0)
with ThreadPoolExecutor(max_workers=concurrency) as pool:
    print(json.dumps(list(pool.map(one, range(requests)))))
"""


def latencies_from_mini(url: str, model: str, concurrency: int, requests: int) -> list[float]:
    """The same bounded request loop, run on the mini: the studio's firewall admits the MLX ports
    only from there, which is also the path LiteLLM's own requests take."""
    out = run_here(
        *hosts.ssh_args("mini"),
        "python3 - " + " ".join(shlex.quote(a) for a in (url, model, str(concurrency), str(requests))),
        input=REMOTE_LOAD,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


TOKENS = """
import json, sys, time, urllib.request
url, model, key, requests = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = []
for i in range(requests + 1):  # the first warms up
    body = json.dumps({"model": model, "max_tokens": 128, "temperature": 1.0, "seed": i,
                       "messages": [{"role": "user", "content": "hello world , how are you today ?"}]}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": "Bearer " + key} if key else {})}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        tokens = json.loads(response.read())["usage"]["completion_tokens"]
    if i:
        runs.append([time.perf_counter() - started, tokens])
print(json.dumps(runs))
"""


def tokens_per_second(url: str, model: str, key: str, requests: int, on_mini: bool) -> float:
    """Completion tokens per second of one request at a time (128 tokens asked, sampled), run on
    the mini (OVMS listens on its loopback) or here (through the proxy, like any client)."""
    args = (url, model, key, str(requests))
    if on_mini:
        out = run_here(
            *hosts.ssh_args("mini"), "python3 - " + " ".join(shlex.quote(a) for a in args), input=TOKENS, timeout=600
        ).stdout
    else:
        out = run_here(sys.executable, "-", *args, input=TOKENS, timeout=600).stdout
    runs = json.loads(out.strip().splitlines()[-1])
    return sum(t for _, t in runs) / sum(s for s, _ in runs)


FLOOR = """
import asyncio, json, os, sys, time
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
base, upstream, model, calls, name, config = sys.argv[1:7]
calls = int(calls)
messages = [{"role": "user", "content": "hello"}]
async def cpu(call):
    for _ in range(10):  # warm up connections, caches and lazy imports
        await call()
    started = time.process_time()  # every thread of this process (LiteLLM logs on a thread pool)
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls
async def main():
    import httpx, openai, litellm
    client = httpx.AsyncClient(timeout=60)
    body = {"model": upstream, "messages": messages, "max_tokens": 4}
    async def raw():
        (await client.post(base + "/chat/completions", json=body)).json()
    sdk = openai.AsyncOpenAI(base_url=base, api_key="none", max_retries=0)
    async def via_sdk():
        await sdk.chat.completions.create(**body)
    async def via_litellm():
        await litellm.acompletion(model=model, api_base=base, api_key="none", messages=messages, max_tokens=4)
    params = {"model": model, "api_base": base, "api_key": "none"}
    router = litellm.Router(model_list=[{"model_name": "m", "litellm_params": params}])
    async def via_router():
        await router.acompletion(model="m", messages=messages, max_tokens=4)
    # The Router the proxy makes: every deployment, its model_info and router_settings (Redis
    # too) as router.yaml gives them, its references read from env.local (sourced by the caller),
    # the proxy's litellm_settings that change a call.
    import yaml
    def resolved(v):
        if isinstance(v, str) and v.startswith("os.environ/"):
            return os.environ[v.split("/", 1)[1]]
        if isinstance(v, dict):
            return {k: resolved(x) for k, x in v.items()}
        return [resolved(x) for x in v] if isinstance(v, list) else v
    with open(config) as f:
        deployed = resolved(yaml.safe_load(f))
    litellm.turn_off_message_logging = bool(deployed.get("litellm_settings", {}).get("turn_off_message_logging"))
    as_proxy = litellm.Router(
        model_list=[
            {k: m[k] for k in ("model_name", "litellm_params", "model_info") if k in m} for m in deployed["model_list"]
        ],
        **deployed.get("router_settings", {}),
    )
    async def via_proxys_router():
        await as_proxy.acompletion(model=name, messages=messages, max_tokens=4)
    clients = (("httpx", raw), ("openai SDK", via_sdk), ("litellm.acompletion", via_litellm),
               ("litellm Router", via_router), ("litellm Router as the proxy's", via_proxys_router))
    for _, call in clients:  # everything loaded and warm before the first is measured
        await call()
    print(json.dumps({name: await cpu(call) for name, call in clients}))
asyncio.run(main())
"""


def client_floor(registry, model, calls: int) -> dict[str, float]:
    """CPU seconds per call of the client side alone, in the proxy's own environment on the mini,
    straight to the MLX server (no proxy, no HTTP serving): httpx, the openai SDK, litellm's
    acompletion, a bare Router and the Router the proxy makes from the deployed router.yaml (as
    root, with its env.local). What LiteLLM costs a request before the proxy adds anything. The
    proxy's Router shares the live proxy's Redis, as the proxy's workers do: a failing call here
    counts toward the live deployments' cooldowns."""
    home, config_dir = registry.proxy["litellm_home"], registry.proxy["litellm_config_dir"]
    base = f"http://{HOSTS[model.host]}:{model.port}/v1"
    args = (base, model.upstream, model.litellm_model, str(calls), model.name, f"{config_dir}/router.yaml")
    script = (
        f"s=$(mktemp); cat >\"$s\" <<'LLMLAB_FLOOR'\n{FLOOR}\nLLMLAB_FLOOR\n"
        f"cd /tmp && set -a && . {shlex.quote(config_dir)}/env.local && set +a && "
        f'{shlex.quote(home)}/venv/bin/python "$s" {" ".join(shlex.quote(a) for a in args)}; '
        'rc=$?; rm -f "$s"; exit $rc'
    )
    done = lifecycle.as_root("mini", script, timeout=600)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"bench: the client floor failed on the mini (exit {done.returncode}): {_masked(done.stderr)}")
    return json.loads(lines[-1])


def _masked(text: str) -> str:
    """The end of an error from the mini with the lab's secrets and the sudo password masked, as
    they are and as env.local writes them (it may be quoted)."""
    from tasks.litellm import systemd_quote

    try:
        values = [lifecycle.sudo_password()]
        values += [line.split("=", 1)[1] for line in paths.SECRETS.read_text().splitlines() if "=" in line]
    except Exception:  # no secrets to read: show nothing of the error
        return "(not shown: the lab's secrets could not be read to mask them)"
    for value in filter(None, values):
        quoted = systemd_quote(value)
        for form in sorted({value, quoted, quoted[1:-1]}, key=len, reverse=True):
            text = text.replace(form, "***")
    return text[-2000:]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--requests", type=int, default=60, help="requests per latency run (default 60)")
    parser.add_argument("--skip-rebuild", action="store_true", help="skip the from-scratch deploys")
    args = parser.parse_args(argv)
    if not lifecycle.is_up():
        sys.exit("bench: the lab is not up: run `./labctl up` first")
    from tasks import preflight

    registry = preflight.build(ROOT / "lab" / "inventory.py", ROOT, with_secrets=False)
    rows: list[tuple[str, str]] = []
    print(f"bench: {machine()}", flush=True)
    speed = [cpu_speed()]

    if not args.skip_rebuild:
        for host in ("mini", "studio", None):
            label = host or "both hosts"
            print(f"bench: from-scratch deploy of {label} x{args.runs}", flush=True)
            result = from_scratch(host, args.runs)
            wall = stats(result["wall"])
            each = ", ".join(f"{w:.1f} s at speed {v:.2f}" for w, v in zip(result["wall"], result["speed"]))
            rows.append((f"from-scratch deploy, {label} (s, after boot)", wall))
            rows.append(("  of which uv + Python environments (s)", stats(result["python envs"])))
            rows.append(("  each run, with the machine's speed right before it", each))
            print(f"bench: {wall} s; each run: {each}", flush=True)
        print("bench: LiteLLM's environment with pip and with uv, no cache", flush=True)
        pip, uv = pip_vs_uv(registry)
        rows.append(("LiteLLM environment, pip vs uv, no cache (s, once)", f"pip {pip:.1f} / uv {uv:.1f}"))

    deploy()  # converge first
    print(f"bench: converged re-runs x{args.runs}", flush=True)
    runs = [deploy() for _ in range(args.runs)]
    rows.append(("converged re-run, both hosts (s)", stats([r.wall for r in runs])))
    rows.append(("  changes", ", ".join(str(r.changed) for r in runs)))
    per_op: dict[str, list[float]] = {}
    for r in runs:
        for name, seconds in r.ops:
            per_op.setdefault(name, []).append(seconds)
    costly = sorted(per_op.items(), key=lambda kv: -statistics.median(kv[1]))[:3]
    rows.append(("  costliest operations (s)", "; ".join(f"{n} {statistics.median(v):.2f}" for n, v in costly)))
    floor = fact_floor(args.runs)
    rows.append(("  floor: pyinfra start + connect + 1 fact per host (s)", stats(floor)))
    commands = remote_commands()
    rows.append(("  remote commands per host, converged", ", ".join(f"{h} {n}" for h, n in commands.items())))

    print(f"bench: acceptance suite x{args.runs}", flush=True)
    accept = []
    for _ in range(args.runs):
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/acceptance/test_stack.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        accept.append(time.monotonic() - started)
        if out.returncode != 0:
            sys.exit(f"bench: the acceptance suite failed:\n{out.stdout[-3000:]}")
    rows.append(("acceptance suite, tests/acceptance/test_stack.py (s)", stats(accept)))

    model = next(m for m in registry.models.values() if m.backend == "mlx")
    direct = f"http://{HOSTS[model.host]}:{model.port}/v1/chat/completions"
    proxy = f"http://{HOSTS[registry.proxy_host]}:{registry.proxy['litellm_port']}/v1/chat/completions"
    key = lifecycle.proxy_key()
    floors: list[dict[str, float]] = []
    for concurrency in (1, 10):
        print(f"bench: latency at concurrency {concurrency}, {args.requests} requests x{args.runs}", flush=True)
        if concurrency == 1:
            print("bench: each c=1 run followed by the client side alone (no proxy), CPU per call", flush=True)
        figures = {
            "direct": {"p50": [], "p95": []},
            "proxy": {"p50": [], "p95": []},
            "overhead": {"p50": [], "p95": []},
        }
        cpu = []
        for _ in range(args.runs):
            d = latencies_from_mini(direct, model.upstream, concurrency, args.requests)
            before = proxy_cpu_seconds()
            p = latencies(proxy, model.name, key, concurrency, args.requests)
            cpu.append((proxy_cpu_seconds() - before) / (args.requests + 3))  # + the warm-up requests
            if concurrency == 1:  # the client side alone right after, so each ratio is taken side by side
                floors.append(client_floor(registry, model, args.requests))
            for q in (50, 95):
                figures["direct"][f"p{q}"].append(percentile(d, q))
                figures["proxy"][f"p{q}"].append(percentile(p, q))
                figures["overhead"][f"p{q}"].append(percentile(p, q) - percentile(d, q))
        for kind in ("direct", "proxy", "overhead"):
            what = {
                "direct": f"direct to mlx_lm.server ({model.name})",
                "proxy": "through LiteLLM",
                "overhead": "LiteLLM overhead (proxy - direct)",
            }[kind]
            rows.append(
                (f"c={concurrency} {what}, p50 / p95 (ms)", f"{ms(figures[kind]['p50'])} / {ms(figures[kind]['p95'])}")
            )
        rows.append((f"c={concurrency} LiteLLM CPU time per request (ms)", ms(cpu)))
        if concurrency == 1:
            rows.append(
                (
                    "c=1 CPU per call with no proxy, on the mini, each right after a c=1 run: httpx / openai "
                    "SDK / litellm.acompletion / litellm Router / the Router as the proxy makes it (ms)",
                    " / ".join(ms([f[name] for f in floors]) for name in floors[0]),
                )
            )
            for router in ("litellm Router", "litellm Router as the proxy's"):
                ratios = [c / f[router] for c, f in zip(cpu, floors)]
                rows.append((f"c=1 LiteLLM CPU per request / {router}, run by run (x)", stats(ratios)))

    print(f"bench: tool calls and streamed answers, {args.requests // 3} requests a loop, once", flush=True)
    rows.extend((f"{name} (one run)", value) for name, value in stream.rows(registry, args.requests // 3, 100.0))

    for m in (m for m in registry.models.values() if m.backend == "ovms"):
        print(f"bench: {m.name} tokens per second x{args.runs}", flush=True)
        ovms = f"http://127.0.0.1:{registry.proxy['ovms_rest_port']}/v3/chat/completions"
        direct = [tokens_per_second(ovms, m.upstream, "", 5, on_mini=True) for _ in range(args.runs)]
        through = [tokens_per_second(proxy, m.name, key, 5, on_mini=False) for _ in range(args.runs)]
        rows.append((f"{m.name} (OVMS) completion tokens/s, direct on the mini", stats(direct)))
        rows.append((f"{m.name} (OVMS) completion tokens/s, through LiteLLM", stats(through)))

    speed.append(cpu_speed())
    rows.insert(
        0,
        (
            "machine speed: typing.py compiled 200 times, at the start / the end (s, lower is faster)",
            " / ".join(f"{v:.2f}" for v in speed),
        ),
    )
    print()
    print(f"Machine: {machine()}  ")
    print(f"Each figure: median (min-max) of {args.runs} runs.\n")
    print("| measure | value |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name.replace('|', '/')} | {value.replace('|', '/')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
