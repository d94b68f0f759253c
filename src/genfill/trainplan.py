"""`genfill train --dry-run`: what a training run would do, resolved (device and world, global, per-rank and
micro batches, steps per epoch and in all, where the cache lives), without training or building anything."""

from __future__ import annotations

import os

import numpy as np

from genfill import distributed
from genfill.config import RunConfig
from genfill.data.cache import ImageCache, cache_dir, load_cache
from genfill.data.datasets import split_sizes
from genfill.device import pick_device
from genfill.runs import steps_per_epoch, total_steps


def plan(cfg: RunConfig, device: str | None = None, data: ImageCache | None = None) -> dict:
    """What `genfill train` would do, resolved (`--dry-run`): device, world, batches, steps, cache. Bounded: a
    cache that is not built yet is not built (that takes minutes); its size is worked out instead."""
    tc = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device or tc.device)
    per_rank = distributed.per_rank_batch(tc.batch_size, world, tc.accumulate)
    if data is None and not (cache_dir(cfg.data) / "meta.json").is_file():
        n_train = unbuilt_train_size(cfg.data)
        place = f"not built yet: {cache_dir(cfg.data)} is built by the first run"
    else:
        data = data if data is not None else load_cache(cfg.data, verbose=False)
        n_train = len(data.split("train"))
        nbytes = int(np.prod(data.images.shape)) if hasattr(data.images, "shape") else 0
        if data.streamed:
            place = (f"memory-mapped ({nbytes / 1e6:.1f} MB > data.memory_cap_mb {cfg.data.memory_cap_mb}), read "
                     f"in chunks of {data.chunk_images} images by a background thread")
        elif dev.type == "cuda":
            place = f"in host memory ({nbytes / 1e6:.1f} MB), on the GPU when under a quarter of its free memory"
        else:
            place = f"in host memory ({nbytes / 1e6:.1f} MB)"
    steps = steps_per_epoch(tc, n_train) if n_train is not None else None
    return {"device": (f"{dev.type} x {world} (cuda:LOCAL_RANK per rank, NCCL)" if dev.type == "cuda" and world > 1
                       else f"cpu x {world} (gloo)" if world > 1 else str(dev)),
            "world_size": world, "global_batch": tc.batch_size, "per_rank_batch": per_rank,
            "micro_batch": per_rank // tc.accumulate,
            "train_images": n_train if n_train is not None else "known once the cache is built",
            "steps_per_epoch": steps if steps is not None else "known once the cache is built",
            "total_steps": total_steps(tc, steps) if steps is not None else (
                tc.max_steps if tc.max_steps is not None else "known once the cache is built"),
            "epochs": tc.epochs, "cache": place, "run_dir": str(cfg.run_dir)}


def unbuilt_train_size(cfg) -> int | None:
    """Training images of a cache not built yet, without building it: the built-in faces' seeded 80/10/10 split
    of data.count (datasets.seeded_split's arithmetic); None for a folder or CelebA (known after reading)."""
    return split_sizes(cfg.count)[0] if cfg.name == "faces64" else None
