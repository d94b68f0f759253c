"""FID/KID of an evaluation: every method's composited fills against the original test images, all mask kinds
pooled and per kind, with an optional bootstrap spread over test images; and the FID of a model's prior samples.

`evaluate.evaluate_methods` hands each batch's test images and fills to a `FidTally`. Fills wait until
FID_BATCH of one (method, kind) have gathered, then go through Inception together; a kind's last fills go
through before the next kind starts. Features of the real test images and of the classical peers' fills (which
are deterministic) are kept on disk per protocol (`genfill.metrics.fid_cache`), so a second evaluation
computes only what changed. The Inception time spent on each method's fills, and on the real images, is
reported beside the scores. A missing Inception weight package turns FID off with a one-line warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from genfill.data.cache import ImageCache
from genfill.errors import GenfillError
from genfill.metrics import fid  # through the module: a test can take its weights away
from genfill.metrics.fid_cache import FeatureCache, peer_code
from genfill.models import GenModel
from genfill.peers import PEERS
from genfill.progress import say

FID_BATCH = 256  # fills gathered per Inception call (InceptionFeatures splits them into its own batches)


def _try_inception(device) -> Callable | None:
    """The Inception feature extractor, or None with a one-line warning when its weights are missing."""
    try:
        fid.weights_path()
    except GenfillError as exc:
        say(f"genfill: warning: FID/KID skipped: {exc}", warning=True)
        return None
    return fid.InceptionFeatures(device=device)


def fid_kid(fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """FID and KID (mean, std) between two Inception feature sets (N, 2048)."""
    kid, kid_std = fid.kid_from_features(fake, real, subsets=100, subset_size=1000)
    return {"fid": fid.fid_from_features(fake, real), "kid": kid, "kid_std": kid_std}


def fid_by_kind(fake: dict[str, torch.Tensor], real: torch.Tensor, bootstrap: int = 0, seed: int = 0) -> dict:
    """FID/KID of one method's fills: {"fid", "kid", "kid_std"} of every kind pooled (against the originals
    repeated once per kind, so a perfect fill scores 0) and "by_mask": {kind: {...}}. `bootstrap` B > 1 adds
    to each kind the spread over test images (`genfill.metrics.fid.fid_kid_bootstrap`: fid_std, fid_lo,
    fid_hi, kid_lo, kid_hi; its kid_std replaces the subsets' one). `fake[kind]` row i is the fill of
    test image i, `real` row i that image."""
    out = fid_kid(torch.cat(list(fake.values())), real.repeat(len(fake), 1))
    out["by_mask"] = {}
    for kind, f in fake.items():
        out["by_mask"][kind] = (fid.fid_kid_bootstrap(f, real, bootstrap, seed) if bootstrap > 1 and len(f) > 1
                                else fid_kid(f, real))
    return out


def peer_name(fill) -> str | None:
    """The registry name of a classical peer's fill function (deterministic: its features may be cached)."""
    return next((k for k, v in PEERS.items() if v is fill), None)


@dataclass
class FidTally:
    """FID/KID bookkeeping of one evaluation: features computed or read from the cache, and their time.
    Build it with `open`; feed it `add_real` and `add_fill` per batch and `end_kind` when a kind is done;
    `finish` gives each method's extras."""

    features: Callable
    cache: FeatureCache
    base: dict  # what every feature set depends on (data, split, size, the network)
    peers: dict[str, str | None]  # method -> its peer name (None: not a peer, never cached)
    mask_kinds: dict[str, dict]
    seed: int
    real: torch.Tensor | None = None  # (n, D) when read from the cache
    real_rows: dict = field(default_factory=dict)  # position -> (D,) computed in this run
    cached: dict = field(default_factory=dict)  # (method, kind) -> (n, D) read from the cache
    fake: dict = field(default_factory=dict)  # method -> kind -> [feature chunks]
    pending: dict = field(default_factory=dict)  # (method, kind) -> [fill chunks awaiting Inception]
    spent: dict = field(default_factory=dict)  # method -> (Inception seconds, images) on its fills
    seconds: float = 0.0
    images: int = 0

    @classmethod
    def open(cls, methods: dict, data: ImageCache, mask_kinds: dict[str, dict], n: int, seed: int, split: str,
             device, features: Callable | None = None, feature_cache: str | Path | None = None) -> FidTally | None:
        """The tally of an evaluation of the first n images of `split` (None when Inception is missing), with
        what `feature_cache` already holds read. `features` replaces the Inception extractor (tests)."""
        extractor = features if features is not None else _try_inception(device)
        if extractor is None:
            return None
        net = fid.identity(device)
        if features is not None:  # an injected extractor (tests) is another network: name it by its own identity
            net = {"net": getattr(features, "cache_id", repr(features))}
        base = {"data": data.key, "split": split, "size": data.size, "channels": data.channels, "features": net}
        tally = cls(extractor, FeatureCache(feature_cache), base, {name: peer_name(fn) for name, fn in methods.items()},
                    mask_kinds, seed, spent={name: (0.0, 0) for name in methods})
        tally.real = tally.cache.load({**base, "real": True}, n)
        for name in methods:
            for kind in mask_kinds:
                parts = tally._fill_parts(name, kind)
                hit = tally.cache.load(parts, n) if parts is not None else None
                if hit is not None:
                    tally.cached[(name, kind)] = hit
        return tally

    def _fill_parts(self, name: str, kind: str) -> dict | None:
        """What a peer's fills under `kind` depend on (its cache key), None for a method that is not a peer."""
        if not self.peers.get(name):
            return None
        return {**self.base, "fill": self.peers[name], "code": peer_code(), "mask": kind,
                "params": self.mask_kinds[kind], "seed": self.seed}

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        t = time.perf_counter()
        f = self.features(images)
        self.seconds += time.perf_counter() - t
        self.images += len(images)
        return f

    def _flush(self, name: str, kind: str, force: bool = False) -> None:
        """Inception over the fills gathered for (method, kind) once FID_BATCH of them wait (or `force`); the
        time counts to that method."""
        chunks = self.pending.get((name, kind), [])
        if chunks and (force or sum(len(c) for c in chunks) >= FID_BATCH):
            s0, i0 = self.seconds, self.images
            self.fake.setdefault(name, {}).setdefault(kind, []).append(self._run(torch.cat(chunks)))
            self.pending[(name, kind)] = []
            s, i = self.spent[name]
            self.spent[name] = (s + self.seconds - s0, i + self.images - i0)

    def add_real(self, pos: torch.Tensor, x: torch.Tensor) -> None:
        """The features of the test images at positions `pos` (N,) not seen yet (none when the cache had them)."""
        if self.real is None:
            todo = [i for i, p in enumerate(pos.tolist()) if p not in self.real_rows]
            if todo:
                for i, f in zip(todo, self._run(x[todo])):
                    self.real_rows[int(pos[i])] = f

    def has_fills(self, name: str, kind: str) -> bool:
        """Whether (method, kind)'s fill features came from the cache (its fills need not be made)."""
        return (name, kind) in self.cached

    def add_fill(self, name: str, kind: str, filled: torch.Tensor) -> None:
        """A batch of method `name`'s composited fills under `kind` (skipped when the cache had them)."""
        if (name, kind) not in self.cached:
            self.pending.setdefault((name, kind), []).append(filled.detach())
            self._flush(name, kind)

    def end_kind(self, kind: str | None = None) -> None:
        """Inception over every fill still waiting under `kind` (None: under every kind)."""
        for name, k in list(self.pending):
            if kind is None or k == kind:
                self._flush(name, k, force=True)

    def finish(self, bootstrap: int = 0) -> dict[str, dict]:
        """{method: extras}: `fid_by_kind` of its fills (`bootstrap` as there) and "inception": its Inception
        work ({"seconds", "images", "cached_images"}) and the real images' ({"real_seconds", "real_images",
        "real_cached"}). The new feature sets go to the cache. Empty when no image was seen."""
        if self.real is None and not self.real_rows:
            return {}
        # Everything Inception did that no method's fills account for was the real images.
        real_seconds = self.seconds - sum(s for s, _ in self.spent.values())
        real_images = self.images - sum(i for _, i in self.spent.values())
        if self.real is None:
            self.real = torch.stack([self.real_rows[p] for p in sorted(self.real_rows)])
            self.cache.store({**self.base, "real": True}, self.real)
        out = {}
        for name in self.spent:
            out[name] = fid_by_kind(self._features_by_kind(name), self.real, bootstrap, self.seed)
            cached = sum(len(v) for (nm, _), v in self.cached.items() if nm == name)
            out[name]["inception"] = {"seconds": round(self.spent[name][0], 2), "images": self.spent[name][1],
                                      "cached_images": cached, "real_seconds": round(max(real_seconds, 0.0), 2),
                                      "real_images": real_images, "real_cached": not self.real_rows}
        return out

    def _features_by_kind(self, name: str) -> dict[str, torch.Tensor]:
        """Method `name`'s fill features per kind, from the cache or this run (stored when a peer's)."""
        by_kind = {}
        for kind in self.mask_kinds:
            if (name, kind) in self.cached:
                by_kind[kind] = self.cached[(name, kind)]
            elif self.fake.get(name, {}).get(kind):
                by_kind[kind] = torch.cat(self.fake[name][kind])
                parts = self._fill_parts(name, kind)
                if parts is not None:
                    self.cache.store(parts, by_kind[kind])
        return by_kind


@torch.no_grad()
def sample_fid(model: GenModel, data: ImageCache, n: int, split: str = "test", device="cpu", seed: int = 0) -> dict | None:
    """FID/KID of n prior samples against the first n images of `split`; None if Inception is missing."""
    inception = _try_inception(device)
    if inception is None:
        return None
    n = min(n, len(data.split(split)))
    g = torch.Generator(device).manual_seed(seed)
    fake = torch.cat([inception(model.sample(min(64, n - s), g)) for s in range(0, n, 64)])
    real = torch.cat([inception(x) for x, _ in data.iterate(split, 64, shuffle=False, device=device, limit=n)])
    return fid_kid(fake, real)
