"""Score fill methods, ours and classical, on the same test images under the same fixed holes.

Every method is a function ``fill(x, m) -> composited (N,C,H,W)``; every metric is computed on the composited
output against the original, over the whole image and over the hole only. Results are kept per image
(`records`), so any grouping (mask kind, hole-ratio bucket) is an aggregation of the same numbers.

Hole-ratio buckets (LaMa's grouping, in tenths): an image whose hole covers a fraction r of its pixels goes to
bucket ``floor(10 r)`` capped at 6, i.e. the half-open ranges [0, 10%), [10%, 20%), ..., [50%, 60%) and
[60%, 100%]. A ratio exactly on an edge goes to the bucket *above* it (exactly 10% is in "10-20%", exactly 60%
in "60-100%"); a ratio within 1e-6 below an edge counts as on it, so float32 rounding of an exact area (e.g.
0.3 stored as 0.29999998) cannot move an image down a bucket.

Beyond the per-image metrics: LPIPS (AlexNet) per image, FID/KID per method over the evaluated set (composited
fills against the originals, all mask kinds together and per kind), a model's test-set loss parts (from the same
forward pass that gives its fills), and the FID of a generative model's prior samples. LPIPS and FID need weight packages; when one is missing, a one-line
warning names the pip line and everything else still runs.

With `samples=K` (`genfill eval --samples K`), a model that draws several fills also draws K fills of every
image, and each record gains their quality, diversity and calibration (`genfill.metrics.plural_eval`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from genfill.config import EVAL_SEED
from genfill.data.cache import ImageCache
from genfill.masks import hole_ratio
from genfill.errors import GenfillError
from genfill.metrics.basic import edge_error, l1, mse, psnr, ssim
from genfill.metrics.fid_cache import PeerRecords
from genfill.metrics.fid_eval import FidTally, peer_name
from genfill.metrics.plural_eval import plural_scores, plural_summary
from genfill.metrics.uncertainty import CalibrationTally
from genfill.models import GenModel, ModelOutput
from genfill.pixels import FillFn, composite
from genfill.progress import Progress, say

METRICS = {"l1": l1, "mse": mse, "psnr": psnr, "ssim": ssim, "edge": edge_error}
HIGHER_IS_BETTER = {"psnr", "ssim", "psnr_hole", "ssim_hole"}

BUCKETS = ("0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%", "60-100%")
_EDGE_TOL = 1e-6


def bucket_of(ratio: float) -> str:
    """The hole-ratio bucket of a ratio in [0, 1]; see the module docstring for the edge rule."""
    return BUCKETS[min(max(int(math.floor((float(ratio) + _EDGE_TOL) * 10)), 0), len(BUCKETS) - 1)]


def score(filled: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image metrics, whole image and hole only: {"psnr": (N,), "psnr_hole": (N,), ...}."""
    filled, x, m = filled.float(), x.float(), m.float()
    out = {}
    for name, fn in METRICS.items():
        out[name] = fn(filled, x)
        out[f"{name}_hole"] = fn(filled, x, mask=m)
    return out


def _nanmean(vals: list[float]) -> float:
    vals = [v for v in vals if v == v]
    return sum(vals) / len(vals) if vals else float("nan")


@dataclass
class EvalResult:
    method: str
    records: list[dict] = field(default_factory=list)  # one per (image, mask kind)
    seconds: float = 0.0  # fill time only, spent in this run
    replayed_seconds: float = 0.0  # fill time a cached peer's records carry (metrics.fid_cache.PeerRecords)
    images: int = 0
    extras: dict = field(default_factory=dict)  # fid / kid (per method), filled in by evaluate_methods

    def select(self, kind: str | None = None, bucket: str | None = None) -> list[dict]:
        return [r for r in self.records if (kind is None or r["mask"] == kind) and
                (bucket is None or r["bucket"] == bucket)]

    def mean(self, metric: str, kind: str | None = None, bucket: str | None = None) -> float:
        """Mean of a per-image metric over the selected records (NaN, an empty hole, is skipped)."""
        return _nanmean([r[metric] for r in self.select(kind, bucket) if metric in r])

    @property
    def metrics(self) -> list[str]:
        return [k for k in (self.records[0] if self.records else {}) if k not in ("index", "mask", "bucket")]

    def summary(self) -> dict:
        """{"all": {metric: mean, "count": n}, "mask": {kind: {...}}, "bucket": {label: {...}}}; empty buckets
        are left out."""

        def group(rows: list[dict]) -> dict:
            return {"count": len(rows), **{k: _nanmean([r[k] for r in rows]) for k in self.metrics}}

        kinds = list(dict.fromkeys(r["mask"] for r in self.records))
        return {"all": group(self.records),
                "mask": {k: group(self.select(kind=k)) for k in kinds},
                "bucket": {b: group(rows) for b in BUCKETS if (rows := self.select(bucket=b))}}

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * (self.seconds + self.replayed_seconds) / max(self.images, 1)


def warn(msg: str) -> None:
    say(f"genfill: warning: {msg}", warning=True)


def _try_lpips(device) -> Callable | None:
    """The LPIPS (AlexNet) scorer, or None with a one-line warning when its weights are missing."""
    from genfill.metrics.lpips import get_lpips

    try:
        net = get_lpips("alexnet", device)
    except GenfillError as exc:
        warn(f"LPIPS skipped: {exc}")
        return None
    return lambda a, b: net(a.float(), b.float())


class LossTally:
    """Sums of a model's loss and parts per mask kind, weighted by batch size."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, out: ModelOutput, n: int) -> None:
        s = self.sums.setdefault(kind, {})
        for k, v in {"loss": out.loss, **out.parts}.items():
            s[k] = s.get(k, 0.0) + float(v.float()) * n
        self.counts[kind] = self.counts.get(kind, 0) + n

    def means(self) -> dict:
        """{"loss": mean, "recon": mean, ..., "by_mask": {kind: {...}}} (means over images)."""
        by_mask = {k: {p: v / self.counts[k] for p, v in s.items()} for k, s in self.sums.items()}
        total = sum(self.counts.values())
        keys = list(dict.fromkeys(p for s in self.sums.values() for p in s))
        pooled = {p: sum(s.get(p, 0.0) for s in self.sums.values()) / max(total, 1) for p in keys}
        return {**pooled, "by_mask": by_mask}


class _ModelRun:
    """A model under evaluation: its training flag to restore, its loss parts and calibration per mask kind,
    and the generator of its K fills (seeded by the eval seed)."""

    def __init__(self, model: GenModel, seed: int, device) -> None:
        self.model = model
        self.was_training = model.training
        self.loss = LossTally()
        self.calibration = CalibrationTally()
        self.generator = torch.Generator(device).manual_seed(seed)

    def extras(self, samples: int) -> dict:
        """Puts the model back in its mode; its `test_loss` (and `plural`) extras."""
        self.model.train(self.was_training)
        out = {"test_loss": self.loss.means()}
        if samples > 1 or self.calibration.total:
            out["plural"] = plural_summary(self.model, samples, self.calibration)
        return out


def _fill(method: FillFn | GenModel, res: EvalResult, x: torch.Tensor, m: torch.Tensor
          ) -> tuple[torch.Tensor, ModelOutput | None]:
    """One batch's composited fill by a method (a model's forward also gives its loss parts); the time
    counts to `res`."""
    t = time.perf_counter()
    out = None
    with torch.no_grad():
        if isinstance(method, GenModel):
            out = method(x, m)
            filled = composite(x, m, out.pred)
        else:
            filled = method(x, m)
    if filled.device.type == "cuda":
        torch.cuda.synchronize()
    res.seconds += time.perf_counter() - t
    res.images += len(x)
    return filled, out


def _scores(filled: torch.Tensor, x: torch.Tensor, m: torch.Tensor, kind: str, lp: Callable | None,
            run: _ModelRun | None, samples: int) -> dict[str, list[float]]:
    """Every per-image score of one batch's fills: `score`, LPIPS, and a model's K fills or scale."""
    scores = {k: v.tolist() for k, v in score(filled, x, m).items()}
    if lp is not None:
        with torch.no_grad():
            scores["lpips"] = lp(filled, x).tolist()
    if run is not None:
        plural = plural_scores(run.model, x, m, filled, samples, run.generator, lp)
        if plural is not None:
            run.calibration.add(kind, *plural[1:])
            scores.update({k: v.tolist() for k, v in plural[0].items()})
    return scores


def _records(kind: str, pos: torch.Tensor, ratios: list[float], scores: dict[str, list[float]]) -> list[dict]:
    return [{"index": p, "mask": kind, "hole_ratio": ratios[i], "bucket": bucket_of(ratios[i]),
             **{k: v[i] for k, v in scores.items()}} for i, p in enumerate(pos.tolist())]


def evaluate_methods(methods: dict[str, FillFn | GenModel], data: ImageCache, mask_kinds: dict[str, dict],
                     n: int = 500, seed: int = EVAL_SEED, split: str = "test", batch_size: int = 64, device="cpu",
                     lpips: bool = False, fid: bool = False, verbose: bool = True,
                     samples: int = 1, feature_cache: str | Path | None = None, features: Callable | None = None,
                     fid_bootstrap: int = 0) -> dict[str, EvalResult]:
    """Fill the first n images of `split` under each mask kind with every method; score each image.

    A method is a fill function or a GenModel. A model runs once per batch, in eval mode: its forward pass
    gives the fill (the composite of `out.pred`, which equals `predict`) and its loss parts, whose means
    land in `extras["test_loss"]` ({"loss", "recon", ..., "by_mask": {kind: {...}}}); its time counts both.
    lpips adds a per-image "lpips" record (AlexNet); fid fills `extras` with FID/KID of each method's
    composited fills against the originals, all mask kinds pooled ("fid", "kid", "kid_std") and per kind
    ("by_mask"; `fid_by_kind`, with a bootstrap spread over test images when `fid_bootstrap` B > 1), and
    "inception": {"seconds", "images", "cached_images"} (that method's Inception work; `FidTally`).
    `feature_cache` (a folder) keeps the real images' features and the classical peers' fills' features
    per protocol (`genfill.metrics.fid_cache`), so a second evaluation computes only what changed;
    `features` replaces the Inception extractor ((N,C,H,W) -> (N, D); tests).
    A missing weight package turns a metric off with a warning. `verbose` shows a bar over images x mask
    kinds. `samples` K > 1 adds the scores of K fills per image (module docstring) for models that draw several.
    """
    results = {name: EvalResult(name) for name in methods}
    runs = {name: _ModelRun(fn, seed, device) for name, fn in methods.items() if isinstance(fn, GenModel)}
    for run in runs.values():
        run.model.eval()
    if runs:
        torch.manual_seed(seed)  # models that draw noise in eval mode give the same numbers each run
    lp = _try_lpips(device) if lpips else None
    n_eff = min(n, len(data.split(split)))
    fs = FidTally.open(methods, data, mask_kinds, n_eff, seed, split, device, features, feature_cache) if fid else None
    peers = PeerRecords(feature_cache, {"data": data.key, "split": split, "size": data.size, "channels": data.channels,
                                        "metrics": sorted(METRICS), "lpips": lp is not None,
                                        "device": torch.device(device).type},
                        {name: peer_name(fn) for name, fn in methods.items()}, mask_kinds, seed, n_eff)
    bar = Progress(n_eff * len(mask_kinds), f"eval {', '.join(methods)}", "img", enabled=verbose)
    prev_kind = None
    for kind, pos, x, m in data.heldout_batches(mask_kinds, n, seed, split, batch_size, device):
        if fs is not None:
            if prev_kind is not None and kind != prev_kind:
                fs.end_kind(prev_kind)  # a kind's last fills go through Inception before the next kind starts
            fs.add_real(pos, x)
        prev_kind = kind
        ratios = hole_ratio(m).tolist()
        for name, method in methods.items():
            if peers.has(name, kind) and (fs is None or fs.has_fills(name, kind)):
                peers.replay(name, kind, pos.tolist(), results[name])  # a peer this protocol has seen
                continue
            seconds = results[name].seconds
            filled, out = _fill(method, results[name], x, m)
            if out is not None:
                runs[name].loss.add(kind, out, len(x))
            scores = _scores(filled, x, m, kind, lp, runs.get(name), samples)
            if fs is not None:
                fs.add_fill(name, kind, filled)
            records = _records(kind, pos, ratios, scores)
            results[name].records.extend(records)
            peers.keep(name, kind, records, results[name].seconds - seconds)
        bar.update(len(x))
    peers.store()
    if fs is not None:
        fs.end_kind()  # the last kind's fills, inside the bar's time
    bar.close()
    for name, run in runs.items():
        results[name].extras.update(run.extras(samples))
    for name, extras in (fs.finish(fid_bootstrap) if fs is not None else {}).items():
        results[name].extras.update(extras)
    return results


@torch.no_grad()
def loss_parts(model: GenModel, data: ImageCache, mask_kinds: dict[str, dict], n: int, seed: int,
               split: str = "test", batch_size: int = 64, device="cpu") -> dict:
    """A model's loss and its parts (recon, kl, ...) in eval mode over the evaluated images and holes:
    {"loss": mean, "recon": mean, ..., "by_mask": {kind: {...}}} (means over images, batch-weighted).
    `evaluate_methods` gathers the same numbers in its one pass; this is for a model's parts alone."""
    was_training = model.training
    model.eval()
    tally = LossTally()
    torch.manual_seed(seed)  # models that draw noise in eval mode give the same numbers each run
    for kind, _, x, m in data.heldout_batches(mask_kinds, n, seed, split, batch_size, device):
        tally.add(kind, model(x, m), len(x))
    model.train(was_training)
    return tally.means()
