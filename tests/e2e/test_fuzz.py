"""Fuzzing the readers (images, masks, checkpoints, the metrics log) and the config loader with hypothesis:
random bytes, truncated files, corrupted headers, random YAML values for every config field. The only allowed
outcomes are success or a GenfillError. `INPUTS` counts what was tried; the last test prints and checks it
(`pytest tests/e2e/test_fuzz.py -s`)."""

from __future__ import annotations

import dataclasses
import io
import tempfile
import typing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from genfill.config import RunConfig
from genfill.loadconfig import build_config, load_config
from genfill.masks import load_mask_file
from genfill.errors import GenfillError
from genfill.imageread import read_image
from genfill.io import load_checkpoint
from genfill.models import REGISTRY
from genfill.runs import read_metrics

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INPUTS: Counter = Counter()
TMP = Path(tempfile.mkdtemp(prefix="genfill-fuzz-"))


def _samples() -> dict[str, bytes]:
    """Small valid files in every format the reader meets: what the truncations and header flips start from."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
    out = {}
    for fmt, im in [("PNG", rgb), ("JPEG", rgb), ("BMP", rgb), ("WEBP", rgb), ("GIF", rgb.convert("P")),
                    ("TIFF", rgb), ("PNG16", Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16))),
                    ("RGBA", rgb.convert("RGBA"))]:
        buf = io.BytesIO()
        im.save(buf, format={"PNG16": "PNG", "RGBA": "PNG"}.get(fmt, fmt))
        out[fmt] = buf.getvalue()
    return out


SAMPLES = _samples()


def _only_genfill_errors(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except GenfillError:
        return None


def _check_reader(data: bytes, suffix: str) -> None:
    path = TMP / f"fuzz{suffix}"
    path.write_bytes(data)
    im = _only_genfill_errors(read_image, path, 3)
    if im is not None:
        assert im.mode == "RGB"
    _only_genfill_errors(read_image, path, 1)
    m = _only_genfill_errors(load_mask_file, path)
    if m is not None:
        assert m.dtype == torch.float32 and set(m.unique().tolist()) <= {0.0, 1.0}


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".webp", ".gif", ".tif"]))
def test_readers_take_random_bytes(data, suffix):
    INPUTS["images: random bytes"] += 1
    _check_reader(data, suffix)


@FUZZ
@given(fmt=st.sampled_from(sorted(SAMPLES)), frac=st.floats(0, 1, exclude_max=True))
def test_readers_take_truncated_files(fmt, frac):
    INPUTS["images: truncated"] += 1
    data = SAMPLES[fmt]
    _check_reader(data[: int(len(data) * frac)], ".img")


@FUZZ
@given(fmt=st.sampled_from(sorted(SAMPLES)),
       edits=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), min_size=1, max_size=8))
def test_readers_take_corrupted_headers(fmt, edits):
    INPUTS["images: random headers"] += 1
    data = bytearray(SAMPLES[fmt])
    for pos, byte in edits:
        if pos < len(data):
            data[pos] = byte
    _check_reader(bytes(data), ".img")


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory, cache_root):
    from tests.conftest import tiny_raw
    from genfill.train import train

    cfg = build_config(tiny_raw(tmp_path_factory.mktemp("ck"), cache_root))
    train(cfg, verbose=False)
    return (cfg.run_dir / "checkpoints" / "last.pt").read_bytes()


@FUZZ
@given(data=st.data())
def test_checkpoint_reader_takes_random_and_truncated_files(checkpoint_bytes, data):
    INPUTS["checkpoints"] += 1
    choice = data.draw(st.sampled_from(["random", "truncated", "flipped"]))
    if choice == "random":
        blob = data.draw(st.binary(max_size=4096))
    elif choice == "truncated":
        blob = checkpoint_bytes[: data.draw(st.integers(0, len(checkpoint_bytes) - 1))]
    else:
        blob = bytearray(checkpoint_bytes)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    path = TMP / "fuzz.pt"
    path.write_bytes(blob)
    _only_genfill_errors(load_checkpoint, path)


@FUZZ
@given(text=st.text(max_size=500))
def test_metrics_log_reader_never_fails(text):
    INPUTS["metrics.jsonl"] += 1
    path = TMP / "metrics.jsonl"
    path.write_bytes(text.encode("utf-8", "replace"))
    rows = read_metrics(path)
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in rows)


# ------------------------------------------------------------------ the config loader


def _fields(cls, prefix="") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _fields(tp, f"{prefix}{f.name}.")
        elif f.name != "model":
            out.append(prefix + f.name)
    return out


FIELDS = _fields(RunConfig) + sorted({f"model.{f.name}" for cls in REGISTRY.values()
                                      for f in dataclasses.fields(cls.Config)}) + ["model.kind", "masks.kind"]

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-3, 300)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["vae", "gan", "vqvae", "faces64", "folder", "square", "mixed", "auto", "cpu", "1e-3"]))
YAML_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def _base() -> dict:
    return {"data": {"cache_dir": str(TMP / "cache")}, "model": {"kind": "vae", "channels": [8, 16]}}


@settings(FUZZ, max_examples=600)
@given(edits=st.lists(st.tuples(st.sampled_from(FIELDS), YAML_VALUES), min_size=1, max_size=5))
def test_config_loader_takes_random_values_for_every_field(edits):
    INPUTS["config: random field values"] += 1
    raw = _base()
    for dotted, value in edits:
        node = raw
        *parents, key = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    cfg = _only_genfill_errors(build_config, raw)
    if cfg is not None:  # what loads, validated, also survives the YAML round trip and --set overrides
        path = TMP / "cfg.yaml"
        path.write_text(yaml.safe_dump(raw))
        _only_genfill_errors(load_config, path)


@FUZZ
@given(text=st.text(max_size=300), sets=st.lists(st.text(max_size=30), max_size=3))
def test_config_loader_takes_random_yaml_text_and_overrides(text, sets):
    INPUTS["config: random YAML text / --set"] += 1
    path = TMP / "random.yaml"
    path.write_bytes(text.encode("utf-8", "replace"))
    _only_genfill_errors(load_config, path, sets)


def test_fuzz_inputs_were_tried():
    """Runs after the fuzz tests above (file order): every strategy ran; the counts go in the closing note."""
    print("\nfuzz inputs tried:", dict(INPUTS), "total", sum(INPUTS.values()))
    if len(INPUTS) < 7:
        pytest.skip("run the whole file to count every fuzz test")
    assert all(n >= 100 for n in INPUTS.values()), INPUTS
