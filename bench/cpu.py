"""python -m bench.cpu [--requests N] [--concurrency C] [--floor]: LiteLLM's CPU time per request and the
latency it adds, alone (no deploys): the quick loop for trying one proxy setting at a time.
It targets only the lab; the request loop is bounded by --requests."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.__main__ import client_floor, latencies, latencies_from_mini  # noqa: E402
from bench.proxycpu import percentile, proxy_cpu_seconds  # noqa: E402
from lab import lifecycle  # noqa: E402
from lab.network import HOSTS  # noqa: E402
from tasks import preflight  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also the client side alone (no proxy): httpx, openai SDK, litellm, its Router",
    )
    args = parser.parse_args(argv)
    registry = preflight.build(ROOT / "lab" / "inventory.py", ROOT, for_deploy=False, with_secrets=False)
    model = next(m for m in registry.models.values() if m.backend == "mlx")
    if args.floor:
        floor = client_floor(registry, model, args.requests)
        print("no proxy, CPU per call: " + ", ".join(f"{name} {sec * 1000:.1f} ms" for name, sec in floor.items()))
    proxy = f"http://{HOSTS[registry.proxy_host]}:{registry.proxy['litellm_port']}/v1/chat/completions"
    direct = f"http://{HOSTS[model.host]}:{model.port}/v1/chat/completions"
    latencies(proxy, model.name, lifecycle.proxy_key(), args.concurrency, 40)  # warm every worker up, unmeasured
    d = latencies_from_mini(direct, model.upstream, args.concurrency, args.requests)
    before = proxy_cpu_seconds()
    p = latencies(proxy, model.name, lifecycle.proxy_key(), args.concurrency, args.requests)
    cpu_ms = (proxy_cpu_seconds() - before) / (args.requests + 3) * 1000
    added = percentile(p, 50) - percentile(d, 50)
    print(
        f"c={args.concurrency}: CPU {cpu_ms:.1f} ms/request, p50 direct {statistics.median(d) * 1000:.1f} ms, "
        f"proxy {statistics.median(p) * 1000:.1f} ms, added {added * 1000:.1f} ms"
    )
    if args.floor:
        routers = {k: v for k, v in floor.items() if "Router" in k}
        print("ratio to " + ", ".join(f"{k}: {cpu_ms / (v * 1000):.2f}x" for k, v in routers.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
