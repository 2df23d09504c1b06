"""How the tests call the stack: plain HTTP from the test runner, as a client would."""

import json
import threading
import time
import urllib.error
import urllib.request


class Secret(str):
    """A secret string that pytest's reports (fixture values, assertion diffs) never show."""

    def __repr__(self) -> str:
        return "<secret>"


def http(method, url, body=None, key=None, timeout=60, headers=None):
    """(status, parsed JSON body or error text); connection failures give status 0."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return 0, str(err)


def chat(base_url, model, key=None, timeout=60, max_tokens=4):
    return http(
        "POST",
        f"{base_url}/v1/chat/completions",
        {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hello"}]},
        key=key,
        timeout=timeout,
    )


def wait_until(predicate, timeout, interval=0.5):
    """Poll predicate() until it returns a true value or timeout seconds pass; returns
    (value, seconds waited). Bounded: it always stops by itself."""
    started = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - started
        if value or elapsed >= timeout:
            return value, elapsed
        time.sleep(interval)


class RequestLoop:
    """A bounded stream of requests through the proxy, one at a time, while something happens
    (at most 3000 and 300 s, and it stops when the block ends). A request refused before it
    reaches LiteLLM (connection refused or reset: nothing was processed) is retried for up to
    `window` s, as a client may safely do; one still refused then is lost. HTTP errors are kept,
    not retried, unless their status is in `retry_status` (a retrying client's 429 and 5xx, as the
    openai SDK retries them): those are retried within the same window and counted."""

    def __init__(self, proxy_url, proxy_key, model, window: float = 30, retry_status=()):
        self.url, self.key = f"{proxy_url}/v1/chat/completions", proxy_key
        self.body = json.dumps(
            {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        self.window, self.retry_status = window, set(retry_status)
        self.refused, self.http_errors, self.answered, self.lost = [], [], [], []
        self.retried_status = []  # statuses of answers retried (retry_status)
        self.first_refused = self.last_refused = None

    def one(self):
        deadline = time.monotonic() + self.window
        while True:
            request = urllib.request.Request(
                self.url,
                data=self.body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    return self.answered.append(response.status)
            except urllib.error.HTTPError as err:
                if err.code not in self.retry_status:
                    return self.http_errors.append(err.code)
                self.retried_status.append(err.code)
                if time.monotonic() > deadline:
                    return self.lost.append(f"HTTP {err.code}")
                time.sleep(0.25)
            except (urllib.error.URLError, ConnectionError) as err:
                now = time.monotonic()
                self.first_refused = self.first_refused or now
                self.last_refused = now
                self.refused.append(type(getattr(err, "reason", err)).__name__)
                if now > deadline:
                    return self.lost.append(str(err))
                time.sleep(0.25)

    def __enter__(self):
        self.stop = threading.Event()

        def stream():
            deadline = time.monotonic() + 300
            for _ in range(3000):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                self.one()
                time.sleep(0.02)

        self.worker = threading.Thread(target=stream)
        self.worker.start()
        time.sleep(1)
        return self

    def __exit__(self, *exc):
        time.sleep(1)
        self.stop.set()
        self.worker.join(timeout=90)

    @property
    def refused_for(self) -> float:
        """Seconds from the first refused request to the last (0 when none was refused)."""
        return (self.last_refused - self.first_refused) if self.refused else 0.0
