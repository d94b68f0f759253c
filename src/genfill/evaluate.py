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

With `samples=K` (`genfill eval --samples K`), a model that draws several fills (`can_diversify`) also
draws K fills of every image (seeded by the eval seed), and each record gains their quality (best-of-K and
mean-over-K whole-image PSNR and LPIPS: `psnr_best`, `psnr_meank`, `lpips_best`, `lpips_meank`), their
diversity (mean pairwise LPIPS, `diversity`) and the calibration of their spread
(`genfill.metrics.uncertainty`): `coverage90`, the share of true hole values inside the per-value
empirical 5-95 % interval of the K fills, and `unc_corr`, Pearson's r over hole pixels between the spread
and the absolute error of the model's ordinary fill. A model that learns a scale (`fill_scale`: the unet
with `uncertainty: true`) gets the same two from its predicted interval, with or without --samples. The
same two numbers pooled over every hole value of a mask kind go to `extras["plural"]["by_mask"]`.
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
from genfill.metrics.uncertainty import (LEVEL, CalibrationTally, Moments, coverage, diversity, nominal_coverage,
                                         sample_interval, scale_interval, spread)
from genfill.models import GenModel, ModelOutput
from genfill.pixels import composite
from genfill.progress import Progress, say

FillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
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
    seconds: float = 0.0  # fill time only
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
        return 1000.0 * self.seconds / max(self.images, 1)


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


def _try_inception(device) -> Callable | None:
    from genfill.metrics.fid import InceptionFeatures, weights_path

    try:
        weights_path()
    except GenfillError as exc:
        warn(f"FID/KID skipped: {exc}")
        return None
    return InceptionFeatures(device=device)


def fid_kid(fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """FID and KID (mean, std) between two Inception feature sets (N, 2048)."""
    from genfill.metrics.fid import fid_from_features, kid_from_features

    kid, kid_std = kid_from_features(fake, real, subsets=100, subset_size=1000)
    return {"fid": fid_from_features(fake, real), "kid": kid, "kid_std": kid_std}


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


@torch.no_grad()
def plural_scores(model: GenModel, x: torch.Tensor, m: torch.Tensor, filled: torch.Tensor, k: int,
                  generator: torch.Generator | None, lp: Callable | None) -> tuple[dict, torch.Tensor, torch.Tensor, Moments] | None:
    """Per-image scores of a model's K fills (k > 1 and the model can draw them) or of its predicted scale
    (module docstring), with the coverage counts and moments to pool: (scores {name: (N,)}, covered (N,),
    total (N,), moments). None when the model has neither."""
    out: dict[str, torch.Tensor] = {}
    if k > 1 and model.can_diversify:
        s = model.fill_samples(x, m, k, generator).float()
        xf = x.float()
        p = torch.stack([psnr(s[i], xf) for i in range(k)])
        out.update(psnr_best=p.max(0).values, psnr_meank=p.mean(0))
        if lp is not None:
            d = torch.stack([lp(s[i], xf) for i in range(k)])
            out.update(lpips_best=d.min(0).values, lpips_meank=d.mean(0), diversity=diversity(s, lp))
        lo, hi = sample_interval(s, LEVEL)
        u = spread(s)
    else:
        scale = model.fill_scale(x, m)
        if scale is None:
            return None
        lo, hi = scale_interval(filled, scale, model.scale_distribution, LEVEL)
        u = scale.float().mean(1, keepdim=True)
    err = (x.float() - filled.float()).abs().mean(1, keepdim=True)
    covered, total = coverage(lo, hi, x, m)
    moments = Moments.of(u, err, m)
    out.update(coverage90=covered / total.clamp_min(1), unc_corr=moments.r())
    return out, covered, total, moments


def plural_summary(model: GenModel, k: int, tally: CalibrationTally) -> dict:
    """What eval.json records about a model's several fills and calibration (`extras["plural"]`)."""
    from genfill.models.base import single_fill_message

    if k > 1 and model.can_diversify:
        return {"k": k, "source": "samples", "interval": "empirical 5-95 % quantiles of the K fills per value",
                "nominal_coverage": nominal_coverage(k, LEVEL), "by_mask": tally.by_mask()}
    if tally.total:
        dist = model.scale_distribution
        half = "1.645 sigma" if dist == "gaussian" else "ln(10) b"
        return {"k": 1, "source": "scale", "interval": f"fill +- {half} (a predicted {dist} scale)",
                "nominal_coverage": LEVEL, "by_mask": tally.by_mask()}
    return {"k": 1, "note": single_fill_message(f"a {model.kind} model")}


FID_BATCH = 256  # fills gathered per Inception call (InceptionFeatures splits them into its own batches)


@dataclass
class _FidState:
    """FID/KID bookkeeping of one evaluation: features computed or read from the cache, and their time."""

    features: Callable
    cache: object  # genfill.metrics.fid_cache.FeatureCache
    base: dict  # what every feature set depends on (data, split, size, the network)
    real: torch.Tensor | None = None  # (n, D) when read from the cache
    real_rows: dict = field(default_factory=dict)  # position -> (D,) computed in this run
    cached: dict = field(default_factory=dict)  # (method, kind) -> (n, D) read from the cache
    fake: dict = field(default_factory=dict)  # method -> kind -> [feature chunks]
    pending: dict = field(default_factory=dict)  # (method, kind) -> [fill chunks awaiting Inception]
    seconds: float = 0.0
    images: int = 0

    def run(self, images: torch.Tensor) -> torch.Tensor:
        t = time.perf_counter()
        f = self.features(images)
        self.seconds += time.perf_counter() - t
        self.images += len(images)
        return f

    def flush(self, name: str, kind: str, force: bool = False) -> None:
        """Inception over the fills gathered for (method, kind) once FID_BATCH of them wait (or `force`)."""
        chunks = self.pending.get((name, kind), [])
        if chunks and (force or sum(len(c) for c in chunks) >= FID_BATCH):
            self.fake.setdefault(name, {}).setdefault(kind, []).append(self.run(torch.cat(chunks)))
            self.pending[(name, kind)] = []


def _peer_name(fill) -> str | None:
    """The registry name of a classical peer's fill function (deterministic: its features may be cached)."""
    from genfill.peers import PEERS

    return next((k for k, v in PEERS.items() if v is fill), None)


def _fid_state(data: ImageCache, split: str, device, features: Callable | None,
               feature_cache: str | Path | None) -> _FidState | None:
    from genfill.metrics.fid import identity
    from genfill.metrics.fid_cache import FeatureCache

    extractor = features if features is not None else _try_inception(device)
    if extractor is None:
        return None
    net = identity(device)
    if features is not None:  # an injected extractor (tests) is another network: name it by its own identity
        net = {"net": getattr(features, "cache_id", repr(features))}
    base = {"data": data.key, "split": split, "size": data.size, "channels": data.channels, "features": net}
    return _FidState(extractor, FeatureCache(feature_cache), base)


def fid_by_kind(fake: dict[str, torch.Tensor], real: torch.Tensor, bootstrap: int = 0, seed: int = 0) -> dict:
    """FID/KID of one method's fills: {"fid", "kid", "kid_std"} of every kind pooled (against the originals
    repeated once per kind, so a perfect fill scores 0) and "by_mask": {kind: {...}}. `bootstrap` B > 1 adds
    to each kind the spread over test images (`genfill.metrics.fid.fid_kid_bootstrap`: fid_std, fid_lo,
    fid_hi, kid_lo, kid_hi; its kid_std replaces the subsets' one). `fake[kind]` row i is the fill of
    test image i, `real` row i that image."""
    from genfill.metrics.fid import fid_kid_bootstrap

    out = fid_kid(torch.cat(list(fake.values())), real.repeat(len(fake), 1))
    out["by_mask"] = {}
    for kind, f in fake.items():
        out["by_mask"][kind] = (fid_kid_bootstrap(f, real, bootstrap, seed) if bootstrap > 1 and len(f) > 1
                                else fid_kid(f, real))
    return out


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
    "inception": {"seconds", "images", "cached_images"} (that method's Inception work). Fills go through
    Inception FID_BATCH at a time. `feature_cache` (a folder) keeps the real images' features and the
    classical peers' fills' features per protocol (`genfill.metrics.fid_cache`), so a second evaluation
    computes only what changed; `features` replaces the Inception extractor ((N,C,H,W) -> (N, D); tests).
    A missing weight package turns a metric off with a warning. `verbose` shows a bar over images x mask
    kinds. `samples` K > 1 adds the scores of K fills per image (module docstring) for models that draw several.
    """
    results = {name: EvalResult(name) for name in methods}
    models = {name: fn for name, fn in methods.items() if isinstance(fn, GenModel)}
    tallies = {name: LossTally() for name in models}
    calibration = {name: CalibrationTally() for name in models}
    sample_gen = {name: torch.Generator(device).manual_seed(seed) for name in models}
    was_training = {name: model.training for name, model in models.items()}
    for model in models.values():
        model.eval()
    if models:
        torch.manual_seed(seed)  # models that draw noise in eval mode give the same numbers each run
    lp = _try_lpips(device) if lpips else None
    n_eff = min(n, len(data.split(split)))
    fs = _fid_state(data, split, device, features, feature_cache) if fid else None
    peer_names = {name: _peer_name(fn) for name, fn in methods.items() if name not in models}
    spent = {name: (0.0, 0) for name in methods}  # Inception seconds and images per method

    def fill_parts(name: str, kind: str) -> dict | None:
        from genfill.metrics.fid_cache import peer_code

        if not peer_names.get(name):
            return None
        return {**fs.base, "fill": peer_names[name], "code": peer_code(), "mask": kind,
                "params": mask_kinds[kind], "seed": seed}

    if fs is not None:
        fs.real = fs.cache.load({**fs.base, "real": True}, n_eff)
        for name in methods:
            for kind in mask_kinds:
                parts = fill_parts(name, kind)
                hit = fs.cache.load(parts, n_eff) if parts is not None else None
                if hit is not None:
                    fs.cached[(name, kind)] = hit
    def flush_all(force_kind: str | None) -> None:
        for name, kind in list(fs.pending):
            if force_kind is None or kind == force_kind:
                s0, i0 = fs.seconds, fs.images
                fs.flush(name, kind, force=True)
                spent[name] = (spent[name][0] + fs.seconds - s0, spent[name][1] + fs.images - i0)

    bar = Progress(n_eff * len(mask_kinds), f"eval {', '.join(methods)}", "img", enabled=verbose)
    prev_kind = None
    for kind, pos, x, m in data.heldout_batches(mask_kinds, n, seed, split, batch_size, device):
        if fs is not None and prev_kind is not None and kind != prev_kind:
            flush_all(prev_kind)  # a kind's last fills go through Inception before the next kind starts
        prev_kind = kind
        ratios = hole_ratio(m).tolist()
        if fs is not None and fs.real is None:
            todo = [i for i, p in enumerate(pos.tolist()) if p not in fs.real_rows]
            if todo:
                for i, f in zip(todo, fs.run(x[todo])):
                    fs.real_rows[int(pos[i])] = f
        for name, fill in methods.items():
            t = time.perf_counter()
            with torch.no_grad():
                if name in models:
                    out = models[name](x, m)
                    filled = composite(x, m, out.pred)
                else:
                    filled = fill(x, m)
            if filled.device.type == "cuda":
                torch.cuda.synchronize()
            res = results[name]
            res.seconds += time.perf_counter() - t
            res.images += len(x)
            if name in models:
                tallies[name].add(kind, out, len(x))
            scores = {k: v.tolist() for k, v in score(filled, x, m).items()}
            if lp is not None:
                with torch.no_grad():
                    scores["lpips"] = lp(filled, x).tolist()
            if name in models:
                plural = plural_scores(models[name], x, m, filled, samples, sample_gen[name], lp)
                if plural is not None:
                    calibration[name].add(kind, *plural[1:])
                    scores.update({k: v.tolist() for k, v in plural[0].items()})
            if fs is not None and (name, kind) not in fs.cached:
                s0, i0 = fs.seconds, fs.images
                fs.pending.setdefault((name, kind), []).append(filled.detach())
                fs.flush(name, kind)
                spent[name] = (spent[name][0] + fs.seconds - s0, spent[name][1] + fs.images - i0)
            for i, p in enumerate(pos.tolist()):
                res.records.append({"index": p, "mask": kind, "hole_ratio": ratios[i], "bucket": bucket_of(ratios[i]),
                                    **{k: v[i] for k, v in scores.items()}})
        bar.update(len(x))
    if fs is not None:
        flush_all(None)  # the last kind's fills, inside the bar's time
    bar.close()
    for name, model in models.items():
        model.train(was_training[name])
        results[name].extras["test_loss"] = tallies[name].means()
        if samples > 1 or calibration[name].total:
            results[name].extras["plural"] = plural_summary(model, samples, calibration[name])
    if fs is not None and (fs.real is not None or fs.real_rows):
        # Everything Inception did that no method's fills account for was the real images.
        real_seconds = fs.seconds - sum(s for s, _ in spent.values())
        real_images = fs.images - sum(i for _, i in spent.values())
        if fs.real is None:
            fs.real = torch.stack([fs.real_rows[p] for p in sorted(fs.real_rows)])
            fs.cache.store({**fs.base, "real": True}, fs.real)
        for name in methods:
            by_kind = {}
            for kind in mask_kinds:
                if (name, kind) in fs.cached:
                    by_kind[kind] = fs.cached[(name, kind)]
                elif fs.fake.get(name, {}).get(kind):
                    by_kind[kind] = torch.cat(fs.fake[name][kind])
                    parts = fill_parts(name, kind)
                    if parts is not None:
                        fs.cache.store(parts, by_kind[kind])
            results[name].extras.update(fid_by_kind(by_kind, fs.real, fid_bootstrap, seed))
            cached = sum(len(v) for (nm, _), v in fs.cached.items() if nm == name)
            results[name].extras["inception"] = {"seconds": round(spent[name][0], 2), "images": spent[name][1],
                                                 "cached_images": cached,
                                                 "real_seconds": round(max(real_seconds, 0.0), 2),
                                                 "real_images": real_images, "real_cached": not fs.real_rows}
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
