"""Shared fixtures: a tiny built-in-faces cache and tiny run configs, so every test runs in seconds on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genfill.config import build_config

# Two threads by default; OMP_NUM_THREADS=1 (what `make mutate` runs each mutation with) is honoured.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))

TINY_SIZE = 32
TINY_COUNT = 60


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    """One data cache for the whole session (the faces are drawn once, then read from disk)."""
    return tmp_path_factory.mktemp("cache")


def tiny_raw(run_root: Path, cache_root: Path, model: dict | None = None, **sections) -> dict:
    """A raw config dict: 60 faces at 32x32, tiny VAE, 2 steps; override any section by keyword."""
    raw = {
        "name": "tiny",
        "out_dir": str(run_root),
        "data": {"name": "faces64", "size": TINY_SIZE, "count": TINY_COUNT, "cache_dir": str(cache_root)},
        "masks": {"kind": "square", "params": {"size": 12, "margin": 4}},
        "model": model or {"kind": "vae", "channels": [8, 16], "latent_dim": 8},
        "train": {"epochs": 1, "max_steps": 2, "batch_size": 8, "val_images": 16, "log_every": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture
def make_cfg(tmp_path, cache_root):
    """make_cfg(model={...}, train={...}) -> a validated RunConfig writing under tmp_path/runs."""

    def make(model: dict | None = None, **sections):
        return build_config(tiny_raw(tmp_path / "runs", cache_root, model, **sections))

    return make


@pytest.fixture
def tiny_data(make_cfg):
    """The tiny faces cache as an ImageCache (train/val/test split 48/6/6)."""
    from genfill.data.cache import load_cache

    return load_cache(make_cfg().data, verbose=False)
