"""Drives `tiny-agents run` through one prompt and out, as a person at its prompt would: it has no
one-shot mode (and on a closed stdin it sends empty turns without end), so the prompt is typed at
its first `» `, and once the answer is done (its next `» `) Ctrl+C is pressed twice, which ends it
with exit code 0. Bounded: killed after the timeout, or past 200 kB of output.

    python drive_tiny_agents.py TIMEOUT PROMPT -- tiny-agents run AGENT_DIR
"""

import os
import select
import signal
import subprocess
import sys
import time

PROMPT_MARK = "» ".encode()
LIMIT = 200_000


def main(argv: list[str]) -> int:
    timeout, prompt, command = float(argv[0]), argv[1], argv[argv.index("--") + 1 :]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, sent, deadline = b"", False, time.monotonic() + timeout

    def read(seconds: float, until: bytes | None = None) -> None:
        nonlocal output
        end = min(deadline, time.monotonic() + seconds)
        while time.monotonic() < end and len(output) < LIMIT:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    return
                output += data
                if until is not None and until in output:
                    return

    while time.monotonic() < deadline and len(output) < LIMIT and proc.poll() is None:
        read(0.2)
        prompts = output.count(PROMPT_MARK)
        if not sent and prompts >= 1:
            proc.stdin.write(prompt.encode() + b"\n")
            proc.stdin.flush()
            sent = True
        elif sent and prompts >= 2:
            break
    finished = sent and output.count(PROMPT_MARK) >= 2
    # Ctrl+C twice, stdin still open: the first stops the turn, the second ends the program.
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        read(5, b"Press Ctrl+C again")
        proc.send_signal(signal.SIGINT)
        read(10)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    sys.stdout.write(output.decode(errors="replace"))
    sys.stdout.write(f"\n[driver: {'answered' if finished else 'not answered'}, exit {proc.returncode}]\n")
    return proc.returncode if finished else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
