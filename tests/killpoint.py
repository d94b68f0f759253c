"""Run a genfill command in this process with one kill point installed, for the kill -9 tests (test_faults,
test_io); the library itself has no test hooks, so the points are monkeypatched in here.

KILLPOINT=POINT:NAME:SECONDS sleeps at the (KILLPOINT_SKIP + 1)-th time the command passes POINT with NAME,
after writing the file KILLPOINT_MARKER, so the test's kill lands exactly there. Points:
- write: NAME is the target's file name; inside genfill.io's atomic write, the temp file whole and synced,
  the target not yet replaced;
- step: NAME is the step number (counted from the process's first step: a fresh run), before that step;
- metrics: NAME is the row's step; halfway through writing its line of metrics.jsonl.

Usage: python tests/killpoint.py -m genfill.cli ARGS...  |  python tests/killpoint.py -c CODE
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from pathlib import Path


def install() -> None:
    point, name, seconds = os.environ["KILLPOINT"].split(":")
    skip = int(os.environ.get("KILLPOINT_SKIP", "0"))
    hits = [0]

    def pause() -> None:
        hits[0] += 1
        if hits[0] <= skip:
            return
        marker = os.environ.get("KILLPOINT_MARKER")
        if marker:
            Path(marker).write_text(f"{point} {name}\n")
        time.sleep(float(seconds))

    if point == "write":  # genfill.io's atomic write ends in os.replace(temp, target)
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name == name:
                pause()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace
    elif point == "step":
        import genfill.train as train

        real_step, steps = train.train_step, [0]

        def train_step(*args, **kwargs):
            steps[0] += 1
            if str(steps[0]) == name:
                pause()
            return real_step(*args, **kwargs)

        train.train_step = train_step
    elif point == "metrics":
        import genfill.train as train

        real_log = train.write_log

        def write_log(log, row: dict) -> None:
            if str(row["step"]) != name:
                return real_log(log, row)
            line = json.dumps(row) + "\n"
            log.write(line[: len(line) // 2])  # the kill lands here, between the halves of a line
            log.flush()
            pause()
            log.write(line[len(line) // 2 :])
            log.flush()

        train.write_log = write_log
    else:
        raise SystemExit(f"killpoint: unknown point {point!r}")


if __name__ == "__main__":
    install()
    how, rest = sys.argv[1], sys.argv[2:]
    if how == "-m":
        sys.argv = [rest[0], *rest[1:]]
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
    elif how == "-c":
        sys.argv = ["-c", *rest[1:]]
        exec(compile(rest[0], "<killpoint -c>", "exec"), {"__name__": "__main__"})
    else:
        raise SystemExit(__doc__)
