"""`python -m dynamax_bench.launch <snakemake arguments>`: Snakemake, with a last line that tells an
interrupted run from a failed one (the Makefile's run targets go through it).

Why: SIGTERM (a scheduler's time limit, `kill`, a closed session) ends Snakemake's main process at
once: its jobs run on without it, the working directory stays locked, and nothing says what
happened; where the jobs get the signal too, Snakemake reports them as failed jobs. Its text
cannot change, so this launcher runs it as a child in its own process group and turns SIGTERM
(and SIGINT) into the SIGINT Snakemake handles: it stops its jobs, removes their incomplete
outputs and unlocks the directory. The launcher then prints one line saying the run was
interrupted and how to resume, and exits 128 + the signal's number.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

STOPPING = (signal.SIGTERM, signal.SIGINT)


def interrupted_line(signum: int) -> str:
    name = signal.Signals(signum).name
    return (f"dynamax-bench: run interrupted by {name}, not failed: Snakemake stopped its jobs and removed their "
            "incomplete outputs; rerun the same command to go on from the finished jobs")


def run(args: list[str]) -> int:
    """Snakemake with `args`; the exit status, or 128 + the signal that interrupted it."""
    received: list[int] = []
    child = subprocess.Popen([sys.executable, "-m", "snakemake", *args], start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if child.poll() is None:  # as Ctrl-C in a terminal: Snakemake and its local jobs get SIGINT
            os.killpg(child.pid, signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in STOPPING}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        print(interrupted_line(received[0]), file=sys.stderr, flush=True)
        return 128 + received[0]
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
