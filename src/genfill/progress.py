"""Progress for every long command: one bar type, two renderings, one switch.

- On a terminal, the active bars share one status line redrawn in place (at most 10 times a second):
  ``train demo 45% step 1,200/2,700 1:48<2:12 loss 0.031 | ...``.
- Anywhere else (a log file, a pipe, CI, nohup), no carriage returns: a bar writes one plain timestamped line
  at most every `interval` seconds (GENFILL_PROGRESS_INTERVAL, default 10) and one when it closes, so a
  four-minute training run leaves a few dozen lines, not thousands of redraws.
- `set_quiet(True)` (the CLI's global ``--quiet``) silences every bar and every `say`.

A bar counts units (images, steps, models) towards `total`; with `budget_s` it also runs against a wall-clock
budget, and its fraction and ETA are whichever ends first (training under ``train.time_budget_s``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

_QUIET = False
_ACTIVE: list["Progress"] = []  # open bars, outermost first (they share the terminal's status line)
_TTY_MIN_REDRAW_S = 0.1


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) all progress output and `say` messages for this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET


def default_interval() -> float:
    """Seconds between plain progress lines when the stream is not a terminal."""
    try:
        return max(0.0, float(os.environ.get("GENFILL_PROGRESS_INTERVAL", "10")))
    except ValueError:
        return 10.0


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def terminal_width(stream: TextIO, fallback: int = 120) -> int:
    """The stream's terminal width; a terminal that reports 0 columns (a serial console, some CI and emulator
    ptys) means unknown, as does an error: then $COLUMNS, else `fallback`, so a line is never cut to nothing."""
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (OSError, AttributeError, ValueError):
        width = 0
    if width <= 0:
        env = os.environ.get("COLUMNS", "")
        width = int(env) if env.isdigit() and int(env) > 0 else fallback
    return width


def fmt_time(seconds: float) -> str:
    """1:05, 12:30, 1:02:03."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _clear_status(stream: TextIO) -> None:
    if _ACTIVE and any(b._drawn for b in _ACTIVE if b.stream is stream):
        stream.write("\r\033[K")
        for b in _ACTIVE:
            b._drawn = False


def say(msg: str, stream: TextIO | None = None, warning: bool = False) -> None:
    """Print a message line on stderr without tearing a terminal's status line; nothing when quiet, unless
    it is a `warning` (quiet silences progress, not problems)."""
    if _QUIET and not warning:
        return
    stream = stream or sys.stderr
    tty = _is_tty(stream)
    if tty:
        _clear_status(stream)
    stream.write(msg + "\n")
    if tty and _ACTIVE:
        _ACTIVE[-1]._draw_tty(force=True)
    stream.flush()


class Progress:
    """A progress bar over `total` units (None = unknown), optionally against a wall-clock `budget_s`.

    Use as a context manager or call `close()`; `update(n, **stats)` advances it, `stats` (floats or text)
    ride along on the line (loss, val psnr ...). Disabled bars (enabled=False or quiet) cost one check."""

    def __init__(self, total: int | None, desc: str, unit: str = "img", *, budget_s: float | None = None,
                 enabled: bool = True, stream: TextIO | None = None, interval: float | None = None,
                 initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.budget_s = total, desc, unit, budget_s
        self.enabled = enabled and not _QUIET
        self.stream = stream or sys.stderr
        self.tty = _is_tty(self.stream)
        self.interval = default_interval() if interval is None else interval
        self.n = self._n0 = initial  # a resumed run starts at its step; rates count from here
        self.stats: dict[str, object] = {}
        self.t0 = time.monotonic()
        self._last_line = self.t0  # plain mode: the first line comes one interval in (or at close)
        self._last_draw = 0.0
        self._drawn = False
        self.closed = False
        if self.enabled:
            _ACTIVE.append(self)

    # ---- numbers
    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def fraction(self) -> float | None:
        """Done fraction: by units, by budget time, or the larger of both (whichever ends the run first)."""
        parts = []
        if self.total:
            parts.append(self.n / self.total)
        if self.budget_s:
            parts.append(self.elapsed / self.budget_s)
        return min(1.0, max(parts)) if parts else None

    def eta(self) -> float | None:
        """Seconds left: the unit rate's estimate, capped by what is left of the budget."""
        left = []
        el = self.elapsed
        if self.total and self.n > self._n0:
            left.append(el / (self.n - self._n0) * (self.total - self.n))
        if self.budget_s:
            left.append(self.budget_s - el)
        return max(0.0, min(left)) if left else None

    def line(self) -> str:
        frac = self.fraction()
        count = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        bits = [self.desc]
        if frac is not None:
            bits.append(f"{100 * frac:3.0f}%")
        bits.append(f"{count} {self.unit}")
        eta = self.eta()
        if self.closed:
            bits.append(f"in {fmt_time(self.elapsed)}")
        else:
            bits.append(fmt_time(self.elapsed) + (f" elapsed, ETA {fmt_time(eta)}" if eta is not None else ""))
        if self.n > self._n0 and self.elapsed > 0:
            rate = (self.n - self._n0) / self.elapsed
            one = self.unit[:-1] if self.unit.endswith("s") else self.unit  # steps/s, but s/step
            bits.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{one}")
        for k, v in self.stats.items():
            bits.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
        return "  ".join(bits)

    # ---- output
    def update(self, n: int = 1, **stats) -> None:
        if not self.enabled or self.closed:
            return
        self.n += n
        self.stats.update(stats)
        self._emit()

    def set_stats(self, **stats) -> None:
        if self.enabled:
            self.stats.update(stats)

    def set_total(self, total: int | None) -> None:
        self.total = total

    def _emit(self) -> None:
        if self.tty:
            self._draw_tty()
            return
        now = time.monotonic()
        if self.total and self.n >= self.total:
            return  # the closing line says it
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.stream.write(f"[{_stamp()}] {self.line()}\n")
            self.stream.flush()

    def _draw_tty(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < _TTY_MIN_REDRAW_S:
            return
        self._last_draw = now
        bars = [b for b in _ACTIVE if b.stream is self.stream and b.tty]
        text = " | ".join(b.line() for b in bars)
        self.stream.write("\r\033[K" + text[: max(20, terminal_width(self.stream) - 1)])
        self.stream.flush()
        for b in bars:
            b._drawn = True

    def close(self) -> None:
        if self.closed or not self.enabled:
            self.closed = True
            return
        self.closed = True
        if self.tty:
            _clear_status(self.stream)
            self.stream.write(self.line() + "\n")
        else:
            self.stream.write(f"[{_stamp()}] {self.line()}\n")
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self.tty and _ACTIVE:
            _ACTIVE[-1]._draw_tty(force=True)
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
