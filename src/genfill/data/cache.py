"""The uint8 image store: every source is decoded once into `cache_dir/<key>/`, then served from memory.

Batches are cut from one uint8 (N,H,W,C) tensor that lives on the training device when it fits (always on
CPU; on a GPU when it takes under a quarter of free memory), so a GPU never waits on image decoding: a batch
is an index, a gather, a cast and an optional flip.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from genfill.config import DataConfig
from genfill.data.datasets import load_source, source_key
from genfill.data.masks import fixed_masks
from genfill.errors import GenfillError
from genfill.io import atomic_save_npy, atomic_write_json, make_dir, remove_stale_temps
from genfill.pixels import from_uint8

SPLITS = ("train", "val", "test")


class ImageCache:
    """uint8 images (N,H,W,C) with split indices; `batch()` returns float NCHW in [-1, 1] on the device."""

    def __init__(self, images: np.ndarray | torch.Tensor, splits: dict[str, np.ndarray], info: dict | None = None,
                 key: str = "memory") -> None:
        self.images = torch.as_tensor(images)
        self.splits = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in splits.items()}
        self.info = info or {}
        self.key = key

    @property
    def size(self) -> int:
        return self.images.shape[1]

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    def __len__(self) -> int:
        return self.images.shape[0]

    def split(self, name: str) -> torch.Tensor:
        """Indices of a split; "all" is every image in the cache's order (a user's folder, scored whole)."""
        if name == "all":
            return torch.cat([self.splits[s] for s in SPLITS]).sort().values
        if name not in self.splits:
            raise GenfillError(f"unknown split {name!r} (valid: {', '.join(self.splits)}, all)")
        return self.splits[name]

    def to(self, device: torch.device | str) -> "ImageCache":
        """Move the images to `device` if they fit comfortably; otherwise keep them on the CPU (pinned)."""
        device = torch.device(device)
        images = self.images
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() < free // 4:
                images = images.to(device, non_blocking=True)
            else:
                images = images.pin_memory()
        elif device.type != "cpu":
            images = images.to(device)
        out = ImageCache(images, {}, self.info, self.key)
        out.splits = {k: v.to(images.device) for k, v in self.splits.items()}
        return out

    def batch(self, idx: torch.Tensor, device: torch.device | str | None = None, flip: torch.Tensor | None = None):
        """Images `idx` as float (B,C,H,W) in [-1, 1]; `flip` (B,) bool mirrors those left-right."""
        device = torch.device(device) if device is not None else self.images.device
        x = self.images[idx.to(self.images.device)].to(device, non_blocking=True)
        x = from_uint8(x.permute(0, 3, 1, 2))
        if flip is not None:
            x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(3), x)
        return x.contiguous()

    def iterate(self, split: str, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                flip: bool = False, drop_last: bool = False, device=None,
                limit: int | None = None, order: torch.Tensor | None = None,
                start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, positions) where positions index into the split (stable ids for fixed masks).
        `order` (a permutation of the split, e.g. a checkpoint's) replaces the shuffle; `start` skips that
        many images of it (resuming inside an epoch)."""
        ids = self.split(split)
        n = len(ids) if limit is None else min(limit, len(ids))
        if order is None:
            order = torch.randperm(len(ids), generator=generator)[:n] if shuffle else torch.arange(n)
        n = len(order)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(start, stop, batch_size):
            pos = order[start : start + batch_size]
            f = (torch.rand(len(pos), generator=generator) < 0.5) if flip else None
            yield self.batch(ids[pos.to(ids.device)], device, f), pos

    def heldout_batches(self, mask_kinds: dict[str, dict], n: int, seed: int, split: str = "test",
                        batch_size: int = 64, device=None) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (kind, positions, x, m) for each mask kind in turn: the first n images of `split` in order,
        under masks fixed per (seed, position in the split), so every method, every epoch and every run sees
        the same holes on the same images (validation and evaluation both read them here)."""
        for kind, params in mask_kinds.items():
            for x, pos in self.iterate(split, batch_size, shuffle=False, device=device, limit=n):
                m = fixed_masks(kind, len(x), self.size, self.size, seed=seed, start=int(pos[0]), device=x.device,
                                **params)
                yield kind, pos, x, m


def cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir) / source_key(cfg)


def load_cache(cfg: DataConfig, verbose: bool = True) -> ImageCache:
    """Open the cache for `cfg`, building it first if absent (decoding every image exactly once)."""
    folder = cache_dir(cfg)
    meta = folder / "meta.json"
    if not meta.is_file():
        build_cache(cfg, folder, verbose)
    try:
        info = json.loads(meta.read_text())
        images = np.load(folder / "images.npy", mmap_mode=None)
        splits = {s: np.load(folder / f"split_{s}.npy") for s in SPLITS}
    except (OSError, ValueError) as exc:
        raise GenfillError(f"data cache {folder} is damaged ({exc.__class__.__name__}); delete it to rebuild") from exc
    return ImageCache(images, splits, info, folder.name)


def build_cache(cfg: DataConfig, folder: Path, verbose: bool = True) -> None:
    from tqdm import tqdm

    total = cfg.count if cfg.name == "faces64" else None
    bar = tqdm(total=total, desc=f"building {cfg.name} cache", unit="img", disable=not verbose, file=sys.stderr,
               leave=False)
    try:
        src = load_source(cfg, progress=bar.update)
    finally:
        bar.close()
    make_dir(folder)
    remove_stale_temps(folder)  # a killed earlier build
    atomic_save_npy(folder / "images.npy", np.ascontiguousarray(src.images))
    for s in SPLITS:
        atomic_save_npy(folder / f"split_{s}.npy", src.splits[s].astype(np.int64))
    # meta.json is written last: its presence means the cache is complete.
    atomic_write_json(folder / "meta.json", {"source": cfg.name, "size": cfg.size, "channels": cfg.channels,
                                             "count": int(len(src.images)),
                                             **{f"n_{s}": int(len(src.splits[s])) for s in SPLITS}, **src.info})
    if verbose:
        n = {s: len(src.splits[s]) for s in SPLITS}
        print(f"genfill: cached {len(src.images)} images at {folder} (train {n['train']}, val {n['val']}, "
              f"test {n['test']})", file=sys.stderr)
