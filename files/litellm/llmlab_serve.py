"""Start LiteLLM's proxy app under uvicorn's worker supervisor, loaded once and forked to each worker.

Usage: llmlab_serve.py ROUTER_YAML HOST PORT WORKERS. The proxy's systemd unit runs this with the
proxy's own environment instead of `litellm --config ROUTER_YAML --num_workers WORKERS`: that
command imports the whole proxy in the supervising process (8 s of CPU on the lab's mini) and
then has uvicorn spawn the workers, fresh interpreters that import it again, each. Here the
supervisor loads the app once and the workers are forked from it with everything loaded (as
gunicorn's --preload does): one import per start, not one per worker plus one, and a worker that
dies is replaced at once. Nothing the import leaves behind belongs to one process: no thread, no
connection (the workers connect to Redis as their app starts, after the fork); should a LiteLLM
version leave one, the supervisor says so in its log and spawns the workers as uvicorn does (each
loads LiteLLM itself) instead of forking them. The workers run what the command has them run for this deployment:
the same app, uvicorn with uvloop, httptools' HTTP parser (named, not left to uvicorn's
"auto", so a missing parser fails the start instead of falling back to the pure-Python one)
and no `server` header, the config from CONFIG_FILE_PATH and the
worker count in NUM_WORKERS (the variables LiteLLM itself reads), and uvicorn's log lines through
LiteLLM's JSON formatter, as its `json_logs` has them. The command's other options (keep-alive,
worker health-check timeout, concurrency limit, recycling workers) are not set by this deployment
and not carried over.
"""

import gc
import importlib.util
import json
import logging
import multiprocessing
import os
import sys
from datetime import datetime

APP = "litellm.proxy.proxy_server:app"
# LiteLLM's OpenTelemetry logger, which its key check imports on every request (to route traces)
# and which cannot load without the OpenTelemetry SDK.
OTEL_LOGGER = "litellm.integrations.otel.logger"


def _supervisor() -> bool:
    """Whether this process is uvicorn's supervisor of several workers (which loads LiteLLM but
    serves nothing); with one worker, uvicorn serves from this process itself."""
    return multiprocessing.parent_process() is None and os.environ.get("NUM_WORKERS", "1") != "1"


class JsonFormatter(logging.Formatter):
    """uvicorn's log lines as JSON. Where LiteLLM serves, LiteLLM's own JSON formatter (its fields,
    its redaction of secrets), loaded at the first line, so configuring logging stays quick. In
    the supervisor, the same first fields without LiteLLM's formatter (its lines are uvicorn's
    own, about the workers). Which of the two is decided once, as logging is configured (in each
    process, the role known by then)."""

    def __init__(self):
        super().__init__()
        self.supervisor = _supervisor()
        self.litellm = None

    def format(self, record):
        if not self.supervisor:
            if self.litellm is None:
                from litellm._logging import JsonFormatter as LiteLLMJsonFormatter

                self.litellm = LiteLLMJsonFormatter()
            return self.litellm.format(record)
        line = {
            "message": record.getMessage(),
            "level": record.levelname,
            "timestamp": datetime.fromtimestamp(record.created).isoformat(),
            "component": record.name,
        }
        if record.exc_info:
            line["stacktrace"] = self.formatException(record.exc_info)
        return json.dumps(line)


def log_config(level):
    """uvicorn's loggers on stdout through JsonFormatter, at LiteLLM's log level (LITELLM_LOG),
    as LiteLLM's CLI configures them when json_logs is on."""
    handler = {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "llmlab_serve.JsonFormatter"}},  # beside this script, on sys.path
        "handlers": {"default": handler, "access": dict(handler)},
        "loggers": {
            name: {"handlers": [handler_name], "level": level, "propagate": False}
            for name, handler_name in (
                ("uvicorn", "default"),
                ("uvicorn.error", "default"),
                ("uvicorn.access", "access"),
            )
        },
    }


def own_python(prefix: str) -> str | None:
    """The interpreter of the environment's own folder when prefix is a link to it (the unit
    names `<home>/venv`, which a deploy switches to a new folder before it restarts the proxy):
    the running proxy keeps to the folder it started from, as `bin/litellm`'s first line made it.
    None when prefix is that folder already."""
    real = os.path.realpath(prefix)
    return None if real == os.path.abspath(prefix) else os.path.join(real, "bin", "python")


def _sockets() -> set[int]:
    """The file descriptors of this process that are sockets (Linux, where the proxy runs)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.add(int(name))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return found


def fork_workers_from_loaded_app(module: str) -> str:
    """Load the app's module here, in the supervisor, and have uvicorn fork its workers from this
    process instead of spawning fresh interpreters (uvicorn names the start method in one place,
    uvicorn/_subprocess.py). Returns "" if it will, else why not: loading the module started a
    thread (a fork copies only the thread that forks) or opened a connection (every worker would
    share it), or this uvicorn names no start method there; uvicorn then spawns them as usual."""
    import threading

    import uvicorn._subprocess

    if not isinstance(getattr(uvicorn._subprocess, "spawn", None), multiprocessing.context.BaseContext):
        return "this uvicorn has no uvicorn._subprocess.spawn to fork workers with"
    before = _sockets()
    __import__(module)
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        return f"loading {module} started threads ({', '.join(threads)})"
    opened = _sockets() - before
    if opened:
        return f"loading {module} opened {len(opened)} socket(s)"
    # What the import built is never collected: the workers keep sharing its memory pages with
    # this process instead of each copying the pages a collection would touch.
    gc.freeze()
    uvicorn._subprocess.spawn = multiprocessing.get_context("fork")
    return ""


def import_fails_at_once_without_otel_sdk() -> bool:
    """Without the OpenTelemetry SDK (this deployment installs none), LiteLLM's key check tries to
    import its OpenTelemetry logger on every request and catches the failure: a failed import is
    not remembered, so each request loads the module's code again and looks for the SDK on every
    path (its cost: bench/RESULTS.md). Marking the module absent makes that import fail at once, with the same
    exception kind the check already catches. With the SDK installed nothing is changed. Returns
    whether the module was marked."""
    try:
        sdk = importlib.util.find_spec("opentelemetry.sdk")
    except (ImportError, ValueError):  # no opentelemetry package at all
        sdk = None
    if sdk is not None or OTEL_LOGGER in sys.modules:
        return False
    sys.modules[OTEL_LOGGER] = None
    return True


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: llmlab_serve.py ROUTER_YAML HOST PORT WORKERS")
    python = own_python(sys.prefix)
    if python:
        os.execv(python, [python, os.path.abspath(__file__), *argv])
    config, host, port, workers = argv[0], argv[1], int(argv[2]), int(argv[3])
    os.environ["CONFIG_FILE_PATH"] = config
    os.environ["NUM_WORKERS"] = str(workers)
    import_fails_at_once_without_otel_sdk()
    import uvicorn

    if workers > 1:
        refused = fork_workers_from_loaded_app(APP.partition(":")[0])
        if refused:
            print(f"llmlab_serve.py: {refused}: spawning the workers instead of forking them", file=sys.stderr)
    uvicorn.run(
        APP,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        server_header=False,
        log_config=log_config(os.environ.get("LITELLM_LOG", "DEBUG").upper()),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
