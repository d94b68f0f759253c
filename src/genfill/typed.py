"""The strict loader: plain mappings (read from YAML) -> dataclass trees, and back.

It imports only `genfill.errors` and `genfill.validate` (leaves), so configs, model registries and evaluation
documents can all use it without importing each other. Every key must be a field and every value of the
field's type; errors name the key (``train.lr: expected a number, got 'fast'``). Only where YAML is ambiguous
does a value convert (an int for a float field, "1e-3" for a float). Every number is finite and every
integer a 64-bit one, nested values included (`genfill.validate`).

`load_yaml` is the one YAML reader (config files, `--set` values, mask keywords): bounded in size, depth and
alias expansion, so a "billion laughs" document is refused in milliseconds instead of eating the memory.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from genfill.errors import GenfillError
from genfill.validate import MAX_DEPTH, MAX_NODES, check_tree, integer, number, show


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only where YAML is ambiguous (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except GenfillError as exc:
                errors.append(str(exc))
        if len(errors) == 1:  # one real alternative (`X | None`): its own message says what is wrong
            raise GenfillError(errors[0])
        raise GenfillError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {show(value)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=key)
    if tp is Any:
        return check_tree(key, value)
    if origin is dict:
        if not isinstance(value, dict):
            raise GenfillError(f"{key}: expected a mapping, got {show(value)}")
        return dict(check_tree(key, value))
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise GenfillError(f"{key}: expected a list, got {show(value)}")
        if len(value) > MAX_NODES:
            raise GenfillError(f"{key}: a list of {len(value):,} items is too long")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise GenfillError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise GenfillError(f"{key}: expected true or false, got {show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return integer(key, value)  # one that fits 64 bits: torch and numpy take nothing larger
        raise GenfillError(f"{key}: expected an integer, got {show(value)}")
    if tp is float:
        if isinstance(value, str) and len(value) < 64:  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return number(key, value)  # NaN or inf would train a NaN loss part and report success
        raise GenfillError(f"{key}: expected a number, got {show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise GenfillError(f"{key}: expected a string, got {show(value)}")
    raise GenfillError(f"{key}: unsupported config type {tp}")  # pragma: no cover - a genfill bug


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; every key must be a field, every value of the field's type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GenfillError(f"{prefix or 'config'}: expected a mapping, got {show(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise GenfillError(f"{prefix or 'config'}: keys must be names, got {show(bad[0])}")
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise GenfillError(
            f"unknown config key {where}{show(unknown[0])[1:-1]} (valid keys: {', '.join(sorted(names))})"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def renamed(data: Any, names: dict[str, str], prefix: str = "") -> Any:
    """`data` (a mapping) with keys renamed since configs were written (`names`: old -> new) under their new
    names, so an old config or checkpoint keeps its meaning; the old and the new name together are an error.
    Anything else is returned as it is (from_dict reports it)."""
    if not isinstance(data, dict) or not any(old in data for old in names):
        return data
    where = f"{prefix}." if prefix else ""
    out = dict(data)
    for old, new in names.items():
        if old in out:
            if new in out:
                raise GenfillError(f"{where}{old} is the old name of {where}{new}: set only {where}{new}")
            out[new] = out.pop(old)
    return out


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists of YAML- and checkpoint-safe values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


class YAMLSyntaxError(GenfillError):
    """The text is not YAML at all (`--set` then takes it as a plain string); bounds and tags are plain
    GenfillErrors."""


MAX_YAML_BYTES = 1_000_000  # a config file or value; the shipped configs are under 2 KB


def load_yaml(text: str | bytes, where: str) -> Any:
    """Parse one YAML document with PyYAML's safe loader, bounded: at most MAX_YAML_BYTES, nested at most
    MAX_DEPTH deep and MAX_NODES values counted as if every alias were expanded (aliases are not expanded to
    count them, so a billion-laughs document is refused in milliseconds), no recursive aliases. Tags that
    name Python objects are refused by the safe loader. Every failure is one GenfillError naming `where`."""
    if isinstance(text, bytes):
        if len(text) > MAX_YAML_BYTES:
            raise GenfillError(f"{where}: {len(text):,} bytes is over the limit of {MAX_YAML_BYTES:,} for YAML")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GenfillError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    if len(text) > MAX_YAML_BYTES:
        raise GenfillError(f"{where}: {len(text):,} characters is over the limit of {MAX_YAML_BYTES:,} for YAML")
    # Pass 0, the characters: PyYAML's pure-Python scanner is quadratic in flow nesting ("[[[[..."), so a deep
    # one is refused before any parser sees it (a bracket inside a quoted string counts too: harmless).
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise GenfillError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        elif ch in "]}":
            depth = max(0, depth - 1)
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when there: the same rules, faster
    try:
        # Pass 1, the event stream (the parser is iterative): depth, before anything recurses on it.
        depth = events = 0
        for event in yaml.parse(text, Loader=loader_class):
            events += 1
            if events > 2 * MAX_NODES:  # a value and its end, at most: more is over budget before aliases
                raise GenfillError(f"{where}: holds more than {MAX_NODES:,} values")
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise GenfillError(f"{where}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
        # Pass 2, the node graph (aliases are shared nodes): its expanded size and depth, then the values.
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node, where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        at = f" at line {mark.line + 1}" if mark else ""
        kind = GenfillError if isinstance(exc, yaml.constructor.ConstructorError) else YAMLSyntaxError
        raise kind(f"{where}: not valid YAML{at} ({show(str(problem))[1:-1]})") from None


def _check_expansion(root: yaml.Node, where: str) -> None:
    """Refuse a node graph whose expansion (aliases copied out) exceeds MAX_NODES values or MAX_DEPTH levels,
    or that refers to itself. Each node is visited once (memoised), iteratively."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            size[key], height[key] = 1, 0
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise GenfillError(f"{where}: expands to more than {MAX_NODES:,} values (YAML aliases)")
            if height[key] > MAX_DEPTH:
                raise GenfillError(f"{where}: nested more than {MAX_DEPTH} levels deep (YAML aliases)")
            continue
        if key in size:
            continue
        if key in on_path:
            raise GenfillError(f"{where}: a YAML alias refers to itself")
        on_path.add(key)
        stack.append((node, True))
        for c in children:
            if id(c) in on_path:
                raise GenfillError(f"{where}: a YAML alias refers to itself")
            if id(c) not in size:
                stack.append((c, False))


def read_yaml(path: str | Path) -> dict:
    """A config file through `load_yaml`; an empty file is {}; anything but a mapping is an error."""
    path = Path(path)
    if not path.is_file():
        raise GenfillError(f"config file not found: {path}")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:  # before reading it: a config is never megabytes
            raise GenfillError(f"{path}: {path.stat().st_size:,} bytes is over the limit of {MAX_YAML_BYTES:,} "
                               "for a config file")
        data = path.read_bytes()
    except OSError as exc:
        raise GenfillError(f"cannot read config file {path}: {exc.strerror}") from None
    raw = load_yaml(data, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GenfillError(f"{path}: a config must be a mapping of sections")
    return raw
