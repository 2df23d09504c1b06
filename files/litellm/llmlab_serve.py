"""Start LiteLLM's proxy app under uvicorn's worker supervisor, which never loads LiteLLM itself.

Usage: llmlab_serve.py ROUTER_YAML HOST PORT WORKERS. The proxy's systemd unit runs this with the
proxy's own environment instead of `litellm --config ROUTER_YAML --num_workers WORKERS`: that
command imports the whole proxy in the supervising process (8 s of CPU on the lab's mini, and
300 MB kept for nothing) before uvicorn spawns the workers, which import it again. Here only the
workers load LiteLLM, so the proxy answers that much sooner after every start. What the workers
run is what the command would have them run: the same app, uvicorn with uvloop, the config from
CONFIG_FILE_PATH and the worker count in NUM_WORKERS (the variables LiteLLM itself reads), and
uvicorn's log lines as JSON like LiteLLM's `json_logs` makes them.
"""

import json
import logging
import multiprocessing
import os
import sys
from datetime import datetime

APP = "litellm.proxy.proxy_server:app"


class JsonFormatter(logging.Formatter):
    """uvicorn's log lines as JSON. In a worker (which loads LiteLLM anyway) LiteLLM's own JSON
    formatter; in the supervisor, which must not load LiteLLM, the same first fields."""

    def __init__(self):
        super().__init__()
        self.litellm = None
        if multiprocessing.parent_process() is not None:
            from litellm._logging import JsonFormatter as LiteLLMJsonFormatter

            self.litellm = LiteLLMJsonFormatter()

    def format(self, record):
        if self.litellm is not None:
            return self.litellm.format(record)
        return json.dumps({"message": record.getMessage(), "level": record.levelname,
                           "timestamp": datetime.fromtimestamp(record.created).isoformat(),
                           "component": record.name})


def log_config(level):
    """uvicorn's loggers on stdout through JsonFormatter, at LiteLLM's log level (LITELLM_LOG),
    as LiteLLM's CLI configures them when json_logs is on."""
    handler = {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "llmlab_serve.JsonFormatter"}},  # beside this script, on sys.path
        "handlers": {"default": handler, "access": dict(handler)},
        "loggers": {name: {"handlers": [handler_name], "level": level, "propagate": False}
                    for name, handler_name in (("uvicorn", "default"), ("uvicorn.error", "default"),
                                               ("uvicorn.access", "access"))},
    }


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: llmlab_serve.py ROUTER_YAML HOST PORT WORKERS")
    config, host, port, workers = argv[0], argv[1], int(argv[2]), int(argv[3])
    os.environ["CONFIG_FILE_PATH"] = config
    os.environ["NUM_WORKERS"] = str(workers)
    import uvicorn

    uvicorn.run(APP, host=host, port=port, workers=workers, loop="uvloop",
                log_config=log_config(os.environ.get("LITELLM_LOG", "DEBUG").upper()))


if __name__ == "__main__":
    main(sys.argv[1:])
