"""Progress (genfill.progress): a run-level training bar with an ETA, plain timestamped lines at an interval
when the stream is not a terminal (no carriage returns), redraws on a terminal, and --quiet silences it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from genfill import progress
from genfill.progress import Progress, fmt_time
from tests.conftest import tiny_raw

LINE = re.compile(r"^\[(\d\d):(\d\d):(\d\d)\] (.*)$")


def test_the_cli_gives_the_quiet_setting_back(tmp_path):
    from genfill.cli import main

    assert main(["--quiet", "eval", "-c", str(tmp_path / "nope")]) == 2
    assert not progress.is_quiet()  # an in-process `genfill --quiet ...` does not silence later bars


def test_plain_lines_are_timestamped_and_spaced_by_the_interval():
    out = io.StringIO()
    t0 = time.monotonic()
    with Progress(400, "work", "img", stream=out, interval=0.2) as bar:
        for _ in range(400):
            time.sleep(0.002)
            bar.update(1, loss=0.5)
    took = time.monotonic() - t0
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and all(LINE.match(line) for line in lines)
    assert 1 <= len(lines) <= took / 0.2 + 2  # the periodic lines plus the closing one
    assert "400/400 img" in lines[-1] and " in 0:0" in lines[-1] and "loss 0.5" in lines[-1]


def test_budget_bar_reports_the_run_fraction_and_eta():
    bar = Progress(None, "train", "steps", budget_s=100.0, stream=io.StringIO(), interval=1e9)
    bar.t0 -= 25  # 25 s into a 100 s budget
    bar.update(10)
    assert 0.24 < bar.fraction() < 0.3 and 70 < bar.eta() <= 75
    assert "25%" in bar.line() and "ETA 1:1" in bar.line()
    # with both a step count and a budget, whichever ends first sets the ETA
    both = Progress(1000, "train", "steps", budget_s=100.0, stream=io.StringIO(), interval=1e9)
    both.t0 -= 10
    both.update(500)
    assert both.fraction() == 0.5 and 9 < both.eta() < 11
    bar.close(), both.close()
    assert fmt_time(3725) == "1:02:05"


def test_a_terminal_gets_redraws_and_quiet_gets_nothing():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with Progress(3, "work", stream=tty) as bar:
        bar.update(1)
    assert "\r" in tty.getvalue()
    progress.set_quiet(True)
    try:
        quiet = io.StringIO()
        with Progress(3, "work", stream=quiet, interval=0) as bar:
            bar.update(3)
        progress.say("hello", quiet)
        assert quiet.getvalue() == ""
    finally:
        progress.set_quiet(False)


def test_a_terminal_that_reports_zero_columns_gets_whole_lines(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

        def fileno(self):
            return 0

    monkeypatch.setattr(os, "get_terminal_size", lambda fd=0: os.terminal_size((0, 0)))
    monkeypatch.delenv("COLUMNS", raising=False)
    tty = Tty()
    with Progress(1000, "a long description of the work", "img", stream=tty) as bar:
        bar.update(1, loss=0.25)
    drawn = tty.getvalue().split("\r\033[K")[-1]
    assert "a long description of the work" in drawn and "1/1,000" in drawn and "loss 0.25" in drawn
    monkeypatch.setenv("COLUMNS", "30")  # the shell's own word, when it has one
    assert progress.terminal_width(tty) == 30


def test_a_logged_command_writes_no_carriage_returns_and_few_progress_lines(tmp_path, cache_root):
    """`genfill train` (a run-level bar) with stdout and stderr redirected to a file, as under nohup or CI."""
    raw = tiny_raw(tmp_path / "runs", cache_root)
    raw["train"].update(max_steps=None, epochs=1000, time_budget_s=6, log_every=5, val_images=8)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    log = tmp_path / "train.log"
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "GENFILL_PROGRESS_INTERVAL": "2", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "genfill.cli", "train", "-c", str(cfg)], stdout=f, stderr=f,
                            env=env, timeout=300).returncode
    text = log.read_text()
    assert rc == 0, text
    assert "\r" not in text and "\x1b" not in text
    bars = [m for m in map(LINE.match, text.splitlines()) if m and m.group(4).startswith("train tiny")]
    assert bars and "ETA" in bars[0].group(4) and "steps" in bars[0].group(4), text
    secs = [int(h) * 3600 + int(mi) * 60 + int(s) for h, mi, s, _ in (m.groups() for m in bars)]
    periodic = secs[:-1]  # the last line is the bar's closing line
    assert all(b - a >= 1 for a, b in zip(periodic, periodic[1:])), text  # spaced by the 2 s interval
    assert len(bars) <= (secs[-1] - secs[0]) / 2 + 2, text
