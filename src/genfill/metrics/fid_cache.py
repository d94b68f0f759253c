"""Inception features kept on disk, so FID/KID per mask kind cost only the fills that changed.

An evaluation's features depend only on its protocol: the real test images' features on (data key, split,
image size, channels, the Inception network and how it runs); a deterministic fill's (a classical peer's)
also on the peer's code and libraries, the mask kind and its parameters, and the mask seed. Each such set is
one file, named by a hash of everything it depends on (`key`), holding one float32 row per position in the
split (Inception returns float32, so nothing is rounded). A protocol that differs in any part hashes to
another file: changing the seed, the masks, the data or the peer's code never reads stale features. The
number of images is not part of the key: the first n positions of a split are the same images whatever n
is, so a file of N rows serves any n <= N, and a larger n recomputes and replaces it.

Models are never cached here: a checkpoint changes under the same path while it trains.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from genfill.errors import GenfillError
from genfill.io import atomic_save_npy, atomic_write_json
from genfill.progress import say

FORMAT = 1


def key(parts: dict) -> str:
    """The file stem of a feature set: a hash of its canonical JSON description."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@lru_cache(maxsize=None)
def peer_code() -> str:
    """What a peer's fills depend on besides its inputs: the peers module's source and the versions of the
    libraries that fill (OpenCV, scikit-image, pypatchmatch, numpy)."""
    import inspect
    from importlib import metadata

    import genfill.peers

    versions = {}
    for dist in ("opencv-python-headless", "opencv-python", "scikit-image", "pypatchmatch", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    src = inspect.getsource(genfill.peers)
    return hashlib.sha256((src + json.dumps(versions, sort_keys=True)).encode()).hexdigest()[:16]


class FeatureCache:
    """Feature sets under `folder` (None: a cache that never hits and never writes)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = None if folder is None else Path(folder)
        self.hits = 0  # rows read from disk, for the time report
        self.writes = 0

    def _path(self, parts: dict) -> Path:
        return self.folder / f"{key(parts)}.npy"

    def load(self, parts: dict, n: int) -> torch.Tensor | None:
        """The first n rows (float64, (n, D)) of the set `parts` describes, or None when fewer are stored
        (or the file is missing or unreadable: a miss, recomputed and rewritten)."""
        if self.folder is None:
            return None
        try:
            arr = np.load(self._path(parts), allow_pickle=False)
        except (OSError, ValueError):
            return None
        if arr.ndim != 2 or len(arr) < n or not np.isfinite(arr[:n]).all():
            return None
        self.hits += n
        return torch.from_numpy(arr[:n].astype(np.float64))

    def store(self, parts: dict, feats: torch.Tensor) -> None:
        """Store a set's rows (positions 0..N-1) with a readable description next to it."""
        if self.folder is None or len(feats) == 0:
            return
        path = self._path(parts)
        try:
            atomic_save_npy(path, feats.detach().cpu().float().numpy())
            atomic_write_json(path.with_suffix(".json"), {"format": FORMAT, "rows": len(feats), **parts})
        except GenfillError as exc:  # a cache is an optimisation: the evaluation's numbers stand without it
            say(f"genfill: warning: Inception features not cached ({exc})", warning=True)
            return
        self.writes += 1
