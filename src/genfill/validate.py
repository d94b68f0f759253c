"""Numbers from any source checked in one place: the CLI, YAML configs, `--set`, HTTP forms, exported configs.

A number a user gives is finite, inside its range, and an integer where one is needed that fits the 64-bit
integers torch and numpy take (a seed of 2**64 would otherwise be a traceback deep in torch). Errors name
the key and show the value shortened (`show`), so a hostile value never prints a megabyte. Nested values
(mask keywords, model keywords) are walked by `check_tree` with a bound on depth and size. A leaf module.
"""

from __future__ import annotations

import argparse
import math
import reprlib
from typing import Any, Callable

from genfill.errors import GenfillError

INT64_MAX = 2**63 - 1
SEED_MAX = INT64_MAX  # torch.manual_seed and numpy's default_rng take 0 .. 2**63 - 1
MAX_DEPTH = 32  # nesting of a config value (a list of lists ...): real configs use 3
MAX_NODES = 100_000  # values inside one config value, counted as if every YAML alias were expanded

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3
_repr.maxlong = 40


def show(value: Any) -> str:
    """A short repr for error messages: long strings, deep or long lists and huge integers are elided."""
    return _repr.repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range(low: float | None, high: float | None, low_open: bool = False) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}" if isinstance(low, float) else f">= {low}")
    if high is not None:
        parts.append(f"<= {high:g}" if isinstance(high, float) else f"<= {high}")
    return " and ".join(parts)


def integer(key: str, value: Any, low: int | None = None, high: int | None = INT64_MAX) -> int:
    """`value` as an int in [low, high] (default: any 64-bit integer); bools and floats are refused."""
    hi = INT64_MAX if high is None else min(high, INT64_MAX)
    lo = -INT64_MAX - 1 if low is None else low
    if not _is_int(value) or not lo <= value <= hi:
        rule = _range(low, hi)
        raise GenfillError(f"{key}: must be an integer {rule}, got {show(value)}")
    return value


def number(key: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """`value` as a finite float in [low, high] ((low, high] with `low_open`); NaN and infinities refused."""
    ok = _is_number(value) and (not isinstance(value, int) or abs(value) <= 2**1023)
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        rule = _range(low, high, low_open)
        raise GenfillError(f"{key}: must be a finite number{' ' + rule if rule else ''}, got {show(value)}")
    return float(value)


def seed(key: str, value: Any, margin: int = 0) -> int:
    """A random seed: an integer in [0, SEED_MAX - margin] (`margin`: how many seeds past it are derived)."""
    return integer(key, value, 0, SEED_MAX - margin)


def check_tree(key: str, value: Any) -> Any:
    """Walk a nested value (lists, dicts, scalars): every float finite, every int a 64-bit one, at most
    MAX_DEPTH deep and MAX_NODES values (shared sub-lists counted each time they appear). Returns `value`."""
    budget = [MAX_NODES]
    # The walk keeps its own stack (no recursion), so a hostile depth is refused, not a RecursionError.
    stack: list[tuple[str, Any, int]] = [(key, value, 0)]
    while stack:
        where, v, depth = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            raise GenfillError(f"{key}: holds more than {MAX_NODES:,} values")
        if depth > MAX_DEPTH:
            raise GenfillError(f"{key}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(v, float):
            number(where, v)
        elif _is_int(v):
            integer(where, v)
        elif isinstance(v, dict):
            stack.extend((_child(where, k), x, depth + 1) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{where}[{i}]", x, depth + 1) for i, x in enumerate(v))
    return value


def _child(where: str, key: Any) -> str:
    """`where.key` for a plain name, else `where[<short repr>]` (a key may hold a newline or a megabyte)."""
    return f"{where}.{key}" if isinstance(key, str) and key.isidentifier() else f"{where}[{show(key)}]"


# ---------------------------------------------------------------- argparse types


def _bound_message(value: float, low: float | None, high: float | None, low_open: bool = False) -> str | None:
    if low is not None and (value <= low if low_open else value < low):
        return f"must be {'more than' if low_open else 'at least'} {low:g}" if isinstance(low, float) else \
            f"must be at least {low}"
    if high is not None and value > high:
        return f"must be at most {high:g}" if isinstance(high, float) else f"must be at most {high}"
    return None


def arg_int(low: int | None = None, high: int | None = INT64_MAX) -> Callable[[str], int]:
    """An argparse `type=`: a decimal integer in [low, high]; out of range is a usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {show(text)}") from None
        why = _bound_message(value, low, high)
        if why:
            raise argparse.ArgumentTypeError(f"{why}, got {show(text)}")
        return value

    parse.__name__ = "integer"
    return parse


def arg_float(low: float | None = None, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """An argparse `type=`: a finite number in [low, high] ((low, high] with `low_open`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {show(text)}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {show(text)}")
        why = _bound_message(value, low, high, low_open)
        if why:
            raise argparse.ArgumentTypeError(f"{why}, got {show(text)}")
        return value

    parse.__name__ = "number"
    return parse
