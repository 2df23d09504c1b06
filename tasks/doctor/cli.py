"""The doctor's command line: runs pyinfra's own command line in this process on look.py, then
prints what it read as a table (or JSON) and exits 1 when anything is off (tasks/doctor)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from tasks.doctor import table

LOOK = Path(__file__).with_name("look.py")
USAGE = """usage: python -m tasks.doctor INVENTORY [--json] [pyinfra options such as --limit HOST]

Read-only: every declared service of each host, its state, and what is off (exit 1 when anything
is, 2 when a host could not be read). --json prints the same for scripts."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    as_json = "--json" in argv  # the doctor's own option, wherever it is given; the rest are pyinfra's
    pyinfra_args = [a for a in argv if a not in ("--json", "--")]

    if not (Path.cwd() / "config.py").is_file() or Path.cwd() not in LOOK.parents:
        print("doctor: run it from the project's root folder (where deploy.py and config.py are)", file=sys.stderr)
        return 2
    from pyinfra_cli.main import main as pyinfra_main

    sys.argv = ["pyinfra", "-y", *pyinfra_args, str(LOOK.relative_to(Path.cwd()))]
    code = 0
    # pyinfra's progress goes to a file, shown only when a host could not be read (a sudo
    # password prompt goes to the terminal itself).
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            pyinfra_main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        if code:
            log.seek(0)
            sys.stderr.write(log.read())

    from tasks import run

    try:
        looked = run.current().looked
    except RuntimeError:
        looked = {}
    reports = [looked[name] for name in sorted(looked)]
    if as_json:
        print(json.dumps({"hosts": reports, "off": sum(len(rep["off"]) for rep in reports)}, indent=1))
    else:
        print(table(reports), end="")
    if code or not reports:
        print(f"doctor: not every host could be read (pyinfra exit {code}); see above", file=sys.stderr)
        return 2
    return 1 if any(rep["off"] for rep in reports) else 0
