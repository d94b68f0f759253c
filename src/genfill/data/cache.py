"""The uint8 image store: every source is decoded once into `cache_dir/<key>/`, then served from memory.

Batches are cut from one uint8 (N,H,W,C) tensor that lives on the training device when it fits (always on
CPU; on a GPU when it takes under a quarter of free memory), so a GPU never waits on image decoding: a batch
is an index, a gather, a cast and an optional flip.

A cache file bigger than `data.memory_cap_mb` is memory-mapped instead (`streamed`): held-out batches read
their rows from the map, and a training epoch walks a chunk-shuffled order (`epoch_order`: chunks of
contiguous images in random order, shuffled inside a window of a few chunks) whose chunks a background
thread reads ahead, each in one contiguous read, so host memory holds a few chunks, never the dataset.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from genfill.config import DataConfig
from genfill.data.datasets import faces64_split, load_source, source_key
from genfill.masks import fixed_masks
from genfill.distributed import part_index
from genfill.errors import GenfillError
from genfill.io import atomic_save_npy, atomic_write_json, make_dir, remove_stale_temps
from genfill.pixels import from_uint8
from genfill.progress import Progress, say
from genfill.usercache import ENV, mark

SPLITS = ("train", "val", "test")


class ImageCache:
    """uint8 images (N,H,W,C) with split indices; `batch()` returns float NCHW in [-1, 1] on the device."""

    def __init__(self, images: np.ndarray | torch.Tensor, splits: dict[str, np.ndarray], info: dict | None = None,
                 key: str = "memory", chunk_images: int | None = None) -> None:
        # chunk_images set: `images` is a memory map read in chunks of this many images (streamed)
        self.images = torch.as_tensor(images) if chunk_images is None else images
        self.chunk_images = chunk_images
        self.splits = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in splits.items()}
        self.info = info or {}
        self.key = key

    @property
    def streamed(self) -> bool:
        return self.chunk_images is not None

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
        if self.streamed:
            return self  # stays a memory map; batches travel to the device as they are cut
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
        if self.streamed:
            device = torch.device(device) if device is not None else torch.device("cpu")
            rows = idx.cpu().numpy()
            x = torch.from_numpy(np.ascontiguousarray(self.images[np.sort(rows)][np.argsort(np.argsort(rows))]))
            return self._finish(x.to(device, non_blocking=True), flip, device)
        device = torch.device(device) if device is not None else self.images.device
        x = self.images[idx.to(self.images.device)].to(device, non_blocking=True)
        return self._finish(x, flip, device)

    @staticmethod
    def _finish(x: torch.Tensor, flip: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        x = from_uint8(x.permute(0, 3, 1, 2))
        if flip is not None:
            x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(3), x)
        return x.contiguous()

    def iterate(self, split: str, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                flip: bool = False, drop_last: bool = False, device=None,
                limit: int | None = None, order: torch.Tensor | None = None, start: int = 0,
                part: tuple[int, int] | None = None, micro: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, positions) where positions index into the split (stable ids for fixed masks).
        `order` (a permutation of the split, e.g. a checkpoint's) replaces the shuffle; `start` skips that
        many images of it (resuming inside an epoch). `part` (rank, world): every batch is drawn whole
        (order and flips, from the same generator on every rank) and this rank keeps its share of it
        (`distributed.part_index`, for `micro` micro-batches)."""
        ids = self.split(split)
        n = len(ids) if limit is None else min(limit, len(ids))
        if order is None:
            order = self.epoch_order(split, generator)[:n] if shuffle else torch.arange(n)
        n = len(order)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        mine = part_index(batch_size, part, micro)

        def batches():
            for first in range(start, stop, batch_size):
                pos = order[first : first + batch_size]
                f = (torch.rand(len(pos), generator=generator) < 0.5) if flip else None
                pos, f = pos[mine], (f[mine] if f is not None else None)
                yield ids[pos.to(ids.device)], f, pos

        if not self.streamed:
            for rows, f, pos in batches():
                yield self.batch(rows, device, f), pos
            return
        for x, f, pos in _read_ahead(self.images, self.chunk_images, batches()):
            yield self._finish(x.to(device or "cpu", non_blocking=True), f, torch.device(device or "cpu")), pos

    def epoch_order(self, split: str, generator: torch.Generator | None) -> torch.Tensor:
        """A training epoch's order of the split's positions: a permutation; on a streamed cache a
        chunk-shuffled one (chunks of `chunk_images` images contiguous in the file, in random order, shuffled
        within windows of READ_AHEAD chunks), so a window is read in READ_AHEAD contiguous reads."""
        ids = self.split(split)
        if not self.streamed:
            return torch.randperm(len(ids), generator=generator)
        by_file = ids.argsort()  # positions in file order
        chunks = list(by_file.split(self.chunk_images))
        out = []
        which = torch.randperm(len(chunks), generator=generator)
        for w in range(0, len(chunks), READ_AHEAD):
            window = torch.cat([chunks[int(c)] for c in which[w:w + READ_AHEAD]])
            out.append(window[torch.randperm(len(window), generator=generator)])
        return torch.cat(out)

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


READ_AHEAD = 4  # chunks per shuffle window, and chunks the reader thread keeps in memory (plus one)


def _read_ahead(images: np.ndarray, chunk_images: int, batches):
    """(uint8 images (B,H,W,C), flips, positions) for each (file rows, flips, positions) of `batches`,
    assembled by a background thread that reads the file rows in contiguous spans of about chunk_images
    rows (the span from a needed row to the next chunk_images rows), keeping READ_AHEAD + 1 spans."""
    q: queue.Queue = queue.Queue(maxsize=2)
    done = object()
    stop = threading.Event()

    def work() -> None:
        spans: dict[int, np.ndarray] = {}  # first row -> rows [first, first + len)
        try:
            for rows, f, pos in batches:
                out = []
                for r in rows.tolist():
                    hit = next((a for a, v in spans.items() if a <= r < a + len(v)), None)
                    if hit is None:
                        if len(spans) > READ_AHEAD:
                            spans.pop(next(iter(spans)))
                        spans[r] = np.array(images[r:r + chunk_images])  # one contiguous read
                        hit = r
                    out.append(spans[hit][r - hit])
                while not stop.is_set():
                    try:
                        q.put((torch.from_numpy(np.stack(out)), f, pos), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
            return
        q.put(done)

    t = threading.Thread(target=work, name="genfill-cache-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def cache_dir(cfg: DataConfig) -> Path:
    """This source's store: `<cache root>/<source key>/` (the root: data.cache_dir, else the per-user cache)."""
    return cfg.cache_root / source_key(cfg)


def load_cache(cfg: DataConfig, verbose: bool = True) -> ImageCache:
    """Open the cache for `cfg`, building it first if absent (decoding every image exactly once)."""
    folder = cache_dir(cfg)
    meta = folder / "meta.json"
    if not meta.is_file():
        build_cache(cfg, folder, verbose)
    try:
        info = json.loads(meta.read_text())
        # Over the memory cap: a read-only memory map, streamed in chunks (see the module docstring).
        cap = cfg.memory_cap_mb
        streamed = cap is not None and (folder / "images.npy").stat().st_size > cap * 1e6
        images = np.load(folder / "images.npy", mmap_mode="r" if streamed else None)
        splits = {s: np.load(folder / f"split_{s}.npy") for s in SPLITS}
    except (OSError, ValueError) as exc:
        raise GenfillError(f"data cache {folder} is damaged ({exc.__class__.__name__}); delete it to rebuild") from exc
    chunk = None
    if streamed:  # READ_AHEAD + 1 chunks in memory, plus the queue's batches: about half the cap
        per_image = int(np.prod(images.shape[1:]))
        chunk = max(1, int(cap * 1e6 / 2 / (READ_AHEAD + 1) / per_image))
    return ImageCache(images, splits, info, folder.name, chunk_images=chunk)


def load_heldout(cfg: DataConfig, split: str, n: int, verbose: bool = True) -> ImageCache:
    """What scoring n images needs: a cache whose `split` starts with the split's first n images, in order, so
    positions (and the holes fixed per position) are those of the full cache. The full cache when it is built
    (or the source is a folder / CelebA, whose split depends on every file); for the built-in faces, when no
    cache is built yet, only those n faces are drawn (face i is a pure function of (seed, i)), so scoring 16
    images takes seconds, not the minutes of drawing 20,000."""
    folder = cache_dir(cfg)
    if cfg.name != "faces64" or split not in SPLITS or (folder / "meta.json").is_file():
        return load_cache(cfg, verbose)
    with Progress(None, f"drawing {split} faces", "img", enabled=verbose) as bar:
        images, full = faces64_split(cfg, split, n, progress=bar.update)
    info = {"source": cfg.name, "size": cfg.size, "channels": cfg.channels, "partial": split,
            f"n_{split}": full}
    return ImageCache(images, {split: np.arange(len(images))}, info, folder.name)


def build_cache(cfg: DataConfig, folder: Path, verbose: bool = True) -> None:
    total = cfg.count if cfg.name == "faces64" else None
    mark(cfg.cache_root)
    if verbose:  # where a few hundred MB are about to go, before the minutes of building
        where = "data.cache_dir" if cfg.cache_dir else f"${ENV} moves it"
        say(f"genfill: building the {cfg.name} data cache once in {folder} ({where}; `genfill cache` lists it)")
    with Progress(total, f"building the {cfg.name} cache", "img", enabled=verbose) as bar:
        src = load_source(cfg, progress=bar.update)
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
        say(f"genfill: cached {len(src.images)} images at {folder} (train {n['train']}, val {n['val']}, "
            f"test {n['test']})")
