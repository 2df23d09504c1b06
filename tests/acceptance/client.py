"""How the tests call the stack: plain HTTP from the test runner, as a client would."""

import json
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
