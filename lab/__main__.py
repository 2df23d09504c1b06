"""python -m lab {up|deploy [pyinfra args]|doctor [--json]|status|ssh HOST [CMD]|reboot HOST|recreate HOST|
capture HOST FILE|as-found [--undo]|down}

doctor: the read-only view of the lab's hosts (tasks/doctor); exit 1 when anything is off.

capture HOST FILE: recreate HOST empty, record what deploy.py reads from it into FILE (the unit
tests' recordings, tests/unit/recordings/), and deploy the lab again.

as-found: put the hand-kept stack of the real hosts in place of the toolkit's services
(lab/asfound.py); --undo takes it away (then deploy restores the lab)."""

import os
import sys
import time
from pathlib import Path

from lab import hosts, lifecycle, paths, run
from lab.network import HOSTS
from lab.proc import LabError, log


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "up":
            lifecycle.up()
        elif cmd == "deploy":
            started = time.monotonic()
            rc = run.deploy(args).returncode
            log(f"deploy finished in {time.monotonic() - started:.1f} s (exit {rc})")
            if rc == 0 and "--dry" not in args:
                mini = HOSTS["mini"]
                print(
                    f"\nThe proxy answers at http://{mini}:4000/v1 (key in {paths.SECRETS}):\n"
                    f"  curl -s http://{mini}:4000/v1/chat/completions \\\n"
                    f"    -H \"Authorization: Bearer $(sed -n 's/^LITELLM_PROXY_KEY=//p' {paths.SECRETS})\" \\\n"
                    f"    -H 'Content-Type: application/json' \\\n"
                    f'    -d \'{{"model": "jerry-chat", "max_tokens": 8, '
                    f'"messages": [{{"role": "user", "content": "hello"}}]}}\'\n'
                )
            return rc
        elif cmd == "doctor":
            return run.doctor(args).returncode
        elif cmd == "status":
            return lifecycle.status()
        elif cmd == "ssh":
            if not args or args[0] not in HOSTS:
                print(f"usage: ssh {{{'|'.join(HOSTS)}}} [command]", file=sys.stderr)
                return 2
            os.execvp("ssh", hosts.ssh_args(args[0]) + args[1:])
        elif cmd in ("reboot", "recreate"):
            if len(args) != 1 or args[0] not in HOSTS:
                print(f"usage: {cmd} {{{'|'.join(HOSTS)}}}", file=sys.stderr)
                return 2
            seconds = getattr(lifecycle, cmd)(args[0])
            log(f"{cmd} {args[0]}: ready in {seconds:.1f} s")
        elif cmd == "capture":
            if len(args) != 2 or args[0] not in HOSTS:
                print(f"usage: capture {{{'|'.join(HOSTS)}}} FILE", file=sys.stderr)
                return 2
            run.capture_fresh(args[0], Path(args[1]).resolve())
        elif cmd == "as-found":
            from lab import asfound

            asfound.undo() if args == ["--undo"] else asfound.arrange()
        elif cmd == "down":
            lifecycle.down()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


sys.exit(main(sys.argv[1:]))
