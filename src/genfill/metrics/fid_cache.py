"""Inception features kept on disk, so FID/KID per mask kind cost only the fills that changed.

An evaluation's features depend only on its protocol: the real test images' features on (data key, split,
image size, channels, the Inception network and how it runs); a deterministic fill's (a classical peer's)
also on the peer's code and libraries, the mask kind and its parameters, and the mask seed. Each such set is
one file, named by a hash of everything it depends on (`key`), holding one float32 row per position in the
split (Inception returns float32, so nothing is rounded). A protocol that differs in any part hashes to
another file: changing the seed, the masks, the data or the peer's code never reads stale features. The
number of images is not part of the key: the first n positions of a split are the same images whatever n
is, so a file of N rows serves any n <= N, and a larger n recomputes and replaces it.

A peer's per-image scores (PSNR, SSIM, ..., LPIPS: the records `genfill.evaluate` writes) and the time its
fills took are kept the same way (`PeerRecords`): with them and its features on disk, an evaluation does not
fill with that peer again. Their key adds how the scores were made (metrics, LPIPS on or off, device type).

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


class PeerRecords:
    """Per-image score records of deterministic peers under one protocol, on disk beside the features.

    `base` is what every score depends on besides the peer and the mask kind (data, split, size, metrics,
    LPIPS, device type); `peers` maps each method's name to its peer name (None: never cached). `has` says
    whether (method, kind) can be replayed for the first n positions, `replay` appends a batch's records and
    time to an `EvalResult`, `keep` gathers a computed batch, and `store` writes what covered all n."""

    def __init__(self, folder: str | Path | None, base: dict, peers: dict[str, str | None],
                 mask_kinds: dict[str, dict], seed: int, n: int) -> None:
        self.folder = None if folder is None else Path(folder)
        self.base, self.peers, self.kinds, self.seed, self.n = base, peers, mask_kinds, seed, n
        self.loaded: dict[tuple[str, str], dict] = {}  # (method, kind) -> {position: (record, seconds)}
        self.fresh: dict[tuple[str, str], dict] = {}
        for name, peer in peers.items():
            for kind in mask_kinds if peer and self.folder is not None else ():
                rows = self._load(self._parts(name, kind))
                if rows is not None:
                    self.loaded[(name, kind)] = rows

    def _parts(self, name: str, kind: str) -> dict:
        return {**self.base, "scores_of": self.peers[name], "code": peer_code(), "mask": kind,
                "params": self.kinds[kind], "seed": self.seed}

    def _path(self, parts: dict) -> Path:
        return self.folder / f"{key(parts)}.scores.json"

    def _load(self, parts: dict) -> dict | None:
        try:
            doc = json.loads(self._path(parts).read_text())
            rows = {int(r["index"]): (r, float(s)) for r, s in zip(doc["records"], doc["seconds"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or damaged: a miss, recomputed and rewritten
        return rows if all(p in rows for p in range(self.n)) else None

    def has(self, name: str, kind: str) -> bool:
        return (name, kind) in self.loaded

    def replay(self, name: str, kind: str, positions: list[int], result) -> None:
        rows = [self.loaded[(name, kind)][p] for p in positions]
        result.records.extend(dict(r) for r, _ in rows)
        result.replayed_seconds += sum(s for _, s in rows)  # its speed, not time spent now
        result.images += len(rows)

    def keep(self, name: str, kind: str, records: list[dict], seconds: float) -> None:
        if self.peers.get(name) and self.folder is not None and records:
            rows = self.fresh.setdefault((name, kind), {})
            for r in records:
                rows[int(r["index"])] = (r, seconds / len(records))

    def store(self) -> None:
        for (name, kind), rows in self.fresh.items():
            if not all(p in rows for p in range(self.n)):
                continue  # a partial set (fewer images than asked for): nothing to serve later
            order = sorted(rows)
            doc = {"format": FORMAT, **self._parts(name, kind), "records": [rows[p][0] for p in order],
                   "seconds": [rows[p][1] for p in order]}
            try:
                atomic_write_json(self._path(self._parts(name, kind)), doc)
            except GenfillError as exc:  # an optimisation: the evaluation stands without it
                say(f"genfill: warning: peer scores not cached ({exc})", warning=True)
