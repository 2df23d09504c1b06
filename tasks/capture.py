"""Captures the facts a deploy reads from one host into a file: the recordings the unit tests run
deploy.py against (tests/unit/recorded.py), taken from a real host instead of written by hand.

    python -m tasks.capture --out mini.json inventory.py --limit mini

It runs pyinfra's own command line in this process, as `pyinfra <arguments> deploy.py --dry`:
a dry run, which reads the host and changes nothing (its plan is tested to be the real run's),
while every fact the deploy asks for is written down with its arguments and its value. The
secrets the run read and the sudo password are never written: a value holding one is refused.
Run it against the lab (python -m lab capture) or, as the operator, against a real host.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

FORMAT = 1


def _plain(value):
    """A fact's value or argument as JSON holds it (tuples become lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.capture",
        description="Record the facts deploy.py reads from one host (a dry run) into a JSON file.",
    )
    parser.add_argument("--out", required=True, type=Path, help="the recording to write")
    parser.add_argument("pyinfra_args", nargs=argparse.REMAINDER, help="pyinfra's arguments: INVENTORY [options]")
    args = parser.parse_args(argv)
    pyinfra_args = [a for a in args.pyinfra_args if a != "--"]
    if not pyinfra_args:
        parser.error("give pyinfra's arguments: the inventory, and --limit HOST")

    from pyinfra.api.host import Host
    from pyinfra_cli.main import main as pyinfra_main

    asked: dict[str, dict[tuple, dict]] = {}
    real_get_fact = Host.get_fact

    def get_fact(self, fact_cls, *fact_args, **kwargs):
        value = real_get_fact(self, fact_cls, *fact_args, **kwargs)
        named = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        key = (fact_cls.__name__, json.dumps(_plain(named), sort_keys=True))
        asked.setdefault(self.name, {}).setdefault(
            key, {"fact": fact_cls.__name__, "args": _plain(named), "value": _plain(copy.deepcopy(value))}
        )
        return value

    Host.get_fact = get_fact
    sys.argv = ["pyinfra", *pyinfra_args, "deploy.py", "--dry"]
    code = 0
    try:
        pyinfra_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        Host.get_fact = real_get_fact
    if code:
        print(f"capture: pyinfra's dry run failed (exit {code}); nothing was written", file=sys.stderr)
        return code
    if len(asked) != 1:
        print(f"capture: the dry run read {sorted(asked) or 'no host'}: name one host with --limit", file=sys.stderr)
        return 2
    [(host_name, facts)] = asked.items()
    text = json.dumps({"format": FORMAT, "host": host_name, "facts": list(facts.values())}, indent=1, sort_keys=True)
    for secret in _secrets():
        if secret and secret in text:
            print("capture: a fact's value holds a secret of this run; nothing was written", file=sys.stderr)
            return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"capture: {len(facts)} facts of {host_name} written to {args.out}")
    return 0


def _secrets() -> list[str]:
    """The values this run must never write: its secrets and the sudo passwords it was given."""
    from tasks import run

    values = [v for k, v in os.environ.items() if k.startswith("LLMLAB_SUDO_PASSWORD")]
    try:
        this_run = run.current()
    except RuntimeError:
        return values
    return values + list((this_run.registry.secrets or {}).values()) + list(this_run.passwords.values())


if __name__ == "__main__":
    sys.exit(main())
