"""python -m bench.stream [--requests N]: what the proxy costs streamed answers and tool calls.

Measured side by side in one run, on the lab only, every loop bounded by --requests:
- LiteLLM's CPU per request for a chat offered a tool (the lab's model answers with a call),
  streamed and not, beside a plain chat's;
- streamed answers, direct to an MLX server and through the proxy: the time to the first token,
  the chunks, the proxy's CPU per chunk;
- the same at a realistic pace: a pacer (bench-only, on the studio in place of jerry-test's
  server for the measure) relays jerry-chat's server's stream at --rate tokens per second, as
  the studio's big models give, and the proxy's tokens per second are compared with direct.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxycpu import proxy_cpu_seconds  # noqa: E402
from lab import hosts, lifecycle  # noqa: E402
from lab.network import HOSTS  # noqa: E402
from lab.proc import LabError  # noqa: E402
from lab.proc import run as run_here  # noqa: E402

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_time",
            "description": "Get the current time in a timezone",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "IANA timezone name"}},
                "required": ["timezone"],
            },
        },
    }
]

# One client for both sides (run here against the proxy, on the mini against an MLX server: the
# studio's firewall admits only the mini): per request, seconds to the first chunk that carries
# content or a tool call, to the last such chunk and to the end, those chunks, and whether a call came.
CLIENT = """
import json, sys, time, urllib.request
url, key, requests, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
def one(seed):
    data = json.dumps({**body, "seed": seed}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": "Bearer " + key} if key else {})}
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    started, first, last, chunks, called = time.perf_counter(), None, 0.0, 0, False
    with urllib.request.urlopen(request, timeout=120) as response:
        if not body.get("stream"):
            choice = json.loads(response.read())["choices"][0]
            return [time.perf_counter() - started] * 3 + [1, bool(choice["message"].get("tool_calls"))]
        for line in response:
            line = line.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            choices = json.loads(line[5:]).get("choices") or [{}]
            delta = choices[0].get("delta") or {}
            if delta.get("content") or delta.get("tool_calls"):
                chunks += 1
                called = called or bool(delta.get("tool_calls"))
                last = time.perf_counter() - started
                first = first or last
    return [first or 0.0, last, time.perf_counter() - started, chunks, called]
for seed in range(2):  # warm up connections and caches, unmeasured
    one(seed)
print(json.dumps([one(seed) for seed in range(requests)]))
"""


def body(model: str, stream: bool, tools: bool, max_tokens: int) -> dict:
    words = "what time is it in Tokyo ?" if tools else "hello world , how are you today ?"
    out = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 1.0,
        "stream": stream,
        "messages": [{"role": "user", "content": words}],
    }
    return {**out, "tools": TOOLS} if tools else out


def measure(url: str, key: str, requests: int, request: dict, on_mini: bool) -> list[list]:
    """The CLIENT loop against url: here (the proxy) or on the mini (an MLX server)."""
    args = (url, key, str(requests), json.dumps(request))
    if on_mini:
        command = [*hosts.ssh_args("mini"), "python3 - " + " ".join(shlex.quote(a) for a in args)]
    else:
        command = [sys.executable, "-", *args]
    out = run_here(*command, input=CLIENT, timeout=900).stdout
    return json.loads(out.strip().splitlines()[-1])


def through_proxy(url: str, key: str, requests: int, request: dict) -> tuple[list[list], float]:
    """The loop through the proxy, and LiteLLM's CPU seconds per request over it (with the two
    warm-up requests)."""
    before = proxy_cpu_seconds()
    runs = measure(url, key, requests, request, on_mini=False)
    return runs, (proxy_cpu_seconds() - before) / (requests + 2)


def median(values) -> float:
    return statistics.median(values)


def tokens_per_second(runs: list[list]) -> tuple[float, float]:
    """Tokens per second (a content chunk of mlx_lm.server's stream is one token): from the first
    token to the last, and from the request to the end of the stream."""
    decode = [(c - 1) / (last - first) for first, last, _, c, _ in runs if c > 1 and last > first]
    whole = [c / total for _, _, total, c, _ in runs if total]
    return median(decode), median(whole)


PACER = """
import http.client, http.server, json, sys, time
listen, upstream_port, upstream_model, interval = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
class Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def log_message(self, *args):
        pass
    def do_GET(self):
        self.relay(None)
    def do_POST(self):
        self.relay(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
    def relay(self, body):
        upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
        data = None if body is None else json.dumps({**body, "model": upstream_model}).encode()
        upstream.request(self.command, self.path, body=data, headers={"Content-Type": "application/json"})
        answer = upstream.getresponse()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        if not (body or {}).get("stream"):
            payload = answer.read()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.end_headers()
        due = None
        for line in answer:
            if line.startswith(b"data:") and line.strip() != b"data: [DONE]":
                due = time.monotonic() if due is None else due + interval
                time.sleep(max(0.0, due - time.monotonic()))
            self.wfile.write(line)
            self.wfile.flush()
http.server.ThreadingHTTPServer(("0.0.0.0", listen), Relay).serve_forever()
"""


class Pacer:
    """Bench-only, on the studio: jerry-test's server stopped and, on its port, a relay to
    jerry-chat's server that lets one streamed event out every 1/rate s (a transient unit of its
    own, bounded to 15 minutes); given back on exit, jerry-test's server answering again."""

    UNIT = "bench-pacer"

    def __init__(self, registry, slot: str, source: str, rate: float):
        self.slot, self.source, self.rate = registry.models[slot], registry.models[source], rate
        self.unit = f"mlx-{self.slot.name}"

    def __enter__(self) -> Pacer:
        if self.slot.host != self.source.host:
            raise LabError(f"bench: {self.slot.name} and {self.source.name} are served on different hosts")
        script = (
            f"set -e; cat > /tmp/bench-pacer.py <<'PACER'\n{PACER}\nPACER\n"
            f"systemctl stop {self.unit}\n"
            f"systemd-run --quiet --collect --unit {self.UNIT} -p RuntimeMaxSec=900 /usr/bin/python3 "
            f"/tmp/bench-pacer.py {self.slot.port} {self.source.port} {shlex.quote(self.source.upstream)} "
            f"{1 / self.rate}\n"
            f"{self._answers(30)}"
        )
        self._root(script, "start the pacer")
        return self

    def __exit__(self, *exc) -> None:
        self._root(
            f"systemctl stop {self.UNIT} || true; rm -f /tmp/bench-pacer.py; systemctl start {self.unit}; "
            f"{self._answers(120)}",
            f"give {self.slot.name}'s server back",
        )

    def _answers(self, seconds: int) -> str:
        probe = f"curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{self.slot.port}/v1/models"
        return f"for i in $(seq {seconds * 2}); do {probe} && exit 0; sleep 0.5; done; exit 1"

    def _root(self, script: str, what: str) -> None:
        done = lifecycle.as_root(self.slot.host, script)
        if done.returncode:
            raise LabError(f"bench: could not {what} on {self.slot.host}: {done.stderr.strip()[-2000:]}")


def rows(registry, requests: int, rate: float) -> list[tuple[str, str]]:
    """The bench's rows for streaming and tool calls, each measure side by side in this run."""
    key = lifecycle.proxy_key()
    proxy = f"http://{HOSTS[registry.proxy_host]}:{registry.proxy['litellm_port']}/v1/chat/completions"
    chat = registry.models["jerry-chat"]
    direct = f"http://{HOSTS[chat.host]}:{chat.port}/v1/chat/completions"
    out: list[tuple[str, str]] = []

    cpu, called = {}, {}
    for name, stream, tools in (("plain", False, False), ("tools", False, True), ("tools, streamed", True, True)):
        runs, cpu[name] = through_proxy(proxy, key, requests, body(chat.name, stream, tools, 64))
        called[name] = sum(1 for r in runs if r[4])
    out.append(
        (
            f"LiteLLM CPU per request, {chat.name}: plain chat / offered a tool / the same streamed (ms)",
            " / ".join(f"{cpu[n] * 1000:.1f}" for n in cpu),
        )
    )
    out.append(
        (
            "  answers that were tool calls, of each loop's requests",
            " / ".join(f"{called[n]} of {requests}" for n in called),
        )
    )

    streamed = body(chat.upstream, True, False, 128)
    d = measure(direct, "", requests, streamed, on_mini=True)
    p, cpu_stream = through_proxy(proxy, key, requests, {**streamed, "model": chat.name})
    chunks = median(r[3] for r in p)
    out.append(
        (
            f"streamed, unpaced ({chat.name}): time to first token direct / through LiteLLM / added (ms)",
            f"{median(r[0] for r in d) * 1000:.1f} / {median(r[0] for r in p) * 1000:.1f} / "
            f"{(median(r[0] for r in p) - median(r[0] for r in d)) * 1000:.1f}",
        )
    )
    (dd, dw), (pd, pw) = tokens_per_second(d), tokens_per_second(p)
    out.append(
        (
            "  tokens/s first to last token, direct / through LiteLLM (ratio); request to end of stream",
            f"{dd:.0f} / {pd:.0f} ({pd / dd:.1%}); {dw:.0f} / {pw:.0f} ({pw / dw:.1%})",
        )
    )
    out.append(
        (
            "  LiteLLM CPU per streamed request / per chunk (ms), chunks per answer",
            f"{cpu_stream * 1000:.1f} / {cpu_stream / chunks * 1000:.2f}, {chunks:.0f}",
        )
    )

    slot = registry.models["jerry-test"]
    with Pacer(registry, slot.name, chat.name, rate):
        paced = f"http://{HOSTS[slot.host]}:{slot.port}/v1/chat/completions"
        d = measure(paced, "", requests, body(slot.upstream, True, False, 128), on_mini=True)
        p, cpu_paced = through_proxy(proxy, key, requests, body(slot.name, True, False, 128))
    (dd, dw), (pd, pw) = tokens_per_second(d), tokens_per_second(p)
    out.append(
        (
            f"streamed at {rate:.0f} tokens/s (pacer): tokens/s first to last token, direct / through LiteLLM "
            "(ratio); request to end of stream",
            f"{dd:.1f} / {pd:.1f} ({pd / dd:.1%}); {dw:.1f} / {pw:.1f} ({pw / dw:.1%})",
        )
    )
    out.append(
        (
            "  time added by LiteLLM before the first token / after the last, to the end of the stream (ms); "
            "its CPU per chunk (ms)",
            f"{(median(r[0] for r in p) - median(r[0] for r in d)) * 1000:.1f} / "
            f"{(median(r[2] - r[1] for r in p) - median(r[2] - r[1] for r in d)) * 1000:.1f}; "
            f"{cpu_paced / median(r[3] for r in p) * 1000:.2f}",
        )
    )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per loop (default 20)")
    parser.add_argument("--rate", type=float, default=100.0, help="the pacer's tokens per second (default 100)")
    args = parser.parse_args(argv)
    if not lifecycle.is_up():
        sys.exit("bench: the lab is not up: run `./labctl up` first")
    from tasks import preflight

    registry = preflight.build(ROOT / "lab" / "inventory.py", ROOT, for_deploy=False, with_secrets=False)
    started = time.monotonic()
    for name, value in rows(registry, args.requests, args.rate):
        print(f"| {name} | {value} |")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
