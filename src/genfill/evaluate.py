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
fills against the originals, all mask kinds together and per kind), a model's test-set loss parts, and the FID
of a generative model's prior samples. LPIPS and FID need weight packages; when one is missing, a one-line
warning names the pip line and everything else still runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from genfill.config import DataConfig, MaskConfig, from_dict, read_yaml, resolve_config, to_dict
from genfill.data.cache import ImageCache, load_cache
from genfill.data.datasets import source_key
from genfill.data.masks import check_params, fixed_masks, hole_ratio, masks_at
from genfill.errors import GenfillError
from genfill.metrics.basic import edge_error, l1, mse, psnr, ssim

FillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METRICS = {"l1": l1, "mse": mse, "psnr": psnr, "ssim": ssim, "edge": edge_error}
HIGHER_IS_BETTER = {"psnr", "ssim", "psnr_hole", "ssim_hole"}

BUCKETS = ("0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%", "60-100%")
_EDGE_TOL = 1e-6
EVAL_FORMAT = 1
DEFAULT_MASKS = "thin,medium,thick,square"
DEFAULT_SEED = MaskConfig().eval_seed


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


def test_batches(data: ImageCache, mask_kinds: dict[str, dict], n: int, seed: int, split: str = "test",
                 batch_size: int = 64, device="cpu"):
    """Yield (kind, positions, x, m): the first n images of `split`, masks fixed per (seed, position)."""
    for kind, params in mask_kinds.items():
        for x, pos in data.iterate(split, batch_size, shuffle=False, device=device, limit=n):
            start = int(pos[0])
            m = fixed_masks(kind, len(x), data.size, data.size, seed=seed, start=start, device=device, **params)
            yield kind, pos, x, m


def warn(msg: str) -> None:
    print(f"genfill: warning: {msg}", file=sys.stderr)


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


def evaluate_methods(methods: dict[str, FillFn], data: ImageCache, mask_kinds: dict[str, dict], n: int = 500,
                     seed: int = 1234, split: str = "test", batch_size: int = 64, device="cpu",
                     lpips: bool = False, fid: bool = False) -> dict[str, EvalResult]:
    """Fill the first n images of `split` under each mask kind with every method; score each image.

    lpips adds a per-image "lpips" record (AlexNet); fid fills `extras` with FID/KID of each method's
    composited fills against the originals, all mask kinds pooled ("fid", "kid", "kid_std") and per kind
    ("by_mask"); the pooled fills are compared with the originals repeated once per kind. A missing weight package turns the metric off with a warning.
    """
    results = {name: EvalResult(name) for name in methods}
    lp = _try_lpips(device) if lpips else None
    inception = _try_inception(device) if fid else None
    real_feats: dict[int, torch.Tensor] = {}
    fake_feats: dict[str, dict[str, list[torch.Tensor]]] = {name: {} for name in methods}
    for kind, pos, x, m in test_batches(data, mask_kinds, n, seed, split, batch_size, device):
        ratios = hole_ratio(m).tolist()
        if inception is not None:
            todo = [i for i, p in enumerate(pos.tolist()) if p not in real_feats]
            if todo:
                for i, f in zip(todo, inception(x[todo])):
                    real_feats[int(pos[i])] = f
        for name, fill in methods.items():
            t = time.perf_counter()
            with torch.no_grad():
                filled = fill(x, m)
            if filled.device.type == "cuda":
                torch.cuda.synchronize()
            res = results[name]
            res.seconds += time.perf_counter() - t
            res.images += len(x)
            scores = {k: v.tolist() for k, v in score(filled, x, m).items()}
            if lp is not None:
                with torch.no_grad():
                    scores["lpips"] = lp(filled, x).tolist()
            if inception is not None:
                fake_feats[name].setdefault(kind, []).append(inception(filled))
            for i, p in enumerate(pos.tolist()):
                res.records.append({"index": p, "mask": kind, "hole_ratio": ratios[i], "bucket": bucket_of(ratios[i]),
                                    **{k: v[i] for k, v in scores.items()}})
    if inception is not None and real_feats:
        real = torch.stack([real_feats[p] for p in sorted(real_feats)])
        for name, by_kind in fake_feats.items():
            # Every kind fills the same n images, so the pooled fills are paired with the originals repeated
            # once per kind: a perfect fill scores 0 (a single copy would have another sample covariance).
            pooled = fid_kid(torch.cat([f for fs in by_kind.values() for f in fs]), real.repeat(len(by_kind), 1))
            pooled["by_mask"] = {k: fid_kid(torch.cat(fs), real) for k, fs in by_kind.items()}
            results[name].extras.update(pooled)
    return results


@torch.no_grad()
def test_loss_parts(model, data: ImageCache, mask_kinds: dict[str, dict], n: int, seed: int, split: str = "test",
                    batch_size: int = 64, device="cpu") -> dict:
    """A model's loss and its parts (recon, kl, ...) in eval mode over the evaluated images and holes:
    {"loss": mean, "recon": mean, ..., "by_mask": {kind: {...}}} (means over images, batch-weighted)."""
    was_training = model.training
    model.eval()
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    torch.manual_seed(seed)  # models that draw noise in eval mode give the same numbers each run
    for kind, _, x, m in test_batches(data, mask_kinds, n, seed, split, batch_size, device):
        out = model(x, m)
        vals = {"loss": out.loss, **out.parts}
        s = sums.setdefault(kind, {})
        for k, v in vals.items():
            s[k] = s.get(k, 0.0) + float(v.float()) * len(x)
        counts[kind] = counts.get(kind, 0) + len(x)
    model.train(was_training)
    by_mask = {k: {p: v / counts[k] for p, v in s.items()} for k, s in sums.items()}
    total = sum(counts.values())
    keys = list(dict.fromkeys(p for s in sums.values() for p in s))
    pooled = {p: sum(s.get(p, 0.0) for s in sums.values()) / max(total, 1) for p in keys}
    return {**pooled, "by_mask": by_mask}


@torch.no_grad()
def sample_fid(model, data: ImageCache, n: int, split: str = "test", device="cpu", seed: int = 0) -> dict | None:
    """FID/KID of n prior samples against the first n images of `split`; None if Inception is missing."""
    inception = _try_inception(device)
    if inception is None:
        return None
    n = min(n, len(data.split(split)))
    g = torch.Generator(device).manual_seed(seed)
    fake = torch.cat([inception(model.sample(min(64, n - s), g)) for s in range(0, n, 64)])
    real = torch.cat([inception(x) for x, _ in data.iterate(split, 64, shuffle=False, device=device, limit=n)])
    return fid_kid(fake, real)


# ---------------------------------------------------------------------------------------------------------
# The `genfill eval` job: resolve methods, fix the protocol, write eval.json + CSVs + failure galleries
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Method:
    """One thing to evaluate: a classical peer or a trained model."""

    name: str
    fill: FillFn
    kind: str  # "peer" or the model kind
    source: str  # the peer's name or the checkpoint path
    parameters: int | None = None
    model: object = None  # the GenModel, for models
    data: dict | None = None  # the checkpoint's own data config


def resolve_method(spec: str, device) -> Method:
    """A peer name (telea, ns, biharmonic, mean) or a checkpoint / run directory -> Method."""
    from genfill.peers import PEERS

    if spec in PEERS:
        return Method(spec, PEERS[spec], "peer", spec)
    path = Path(spec)
    if not path.exists():
        raise GenfillError(f"{spec!r} is neither a peer ({', '.join(PEERS)}) nor a checkpoint or run directory")
    from genfill.models import load_model

    model, ckpt = load_model(path, device)
    run_cfg = ckpt.get("run_config", {})
    return Method(run_cfg.get("name") or path.stem, lambda x, m: model.fill(x, m), ckpt["kind"], ckpt["path"],
                  model.num_parameters(), model, run_cfg.get("data"))


def resolve_data(data: str | None, methods: list[Method]) -> DataConfig:
    """--data: a YAML file or config preset name whose `data:` section is used, or `faces64` (the built-in
    default); None means the first checkpoint's own data config, else the built-in faces64."""
    if data is None:
        own = next((m.data for m in methods if m.data is not None), None)
        return from_dict(DataConfig, own, prefix="data") if own is not None else DataConfig()
    if data == "faces64":
        return DataConfig()
    raw = read_yaml(resolve_config(data))
    return from_dict(DataConfig, raw.get("data", {}), prefix="data")


def parse_masks(text: str | list[str] | dict, size: int) -> dict[str, dict]:
    """"thin,medium,thick,square" -> {kind: params}. `square` is seed 002's hole scaled to the image: half
    the side, a quarter-side margin (32 px with a 16 px margin at 64x64); other kinds scale themselves."""
    if isinstance(text, dict):
        kinds = dict(text)
    else:
        names = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
        if not names:
            raise GenfillError("--masks needs at least one mask kind")
        kinds = {k: ({"size": size // 2, "margin": size // 4} if k == "square" else {}) for k in names}
    for k, p in kinds.items():
        check_params(k, p)
    return kinds


@dataclass
class Protocol:
    """What makes two evaluations comparable: the same images (data, split, n) under the same holes."""

    data: dict
    split: str
    n: int
    masks: dict
    seed: int
    key: str | None = None  # the data's cache key, as recorded (computing it hashes a folder's file list)

    @property
    def data_key(self) -> str:
        if self.key is None:
            self.key = source_key(from_dict(DataConfig, self.data))
        return self.key

    def as_dict(self) -> dict:
        return {"data_key": self.data_key, "data": self.data, "split": self.split, "n": self.n,
                "masks": self.masks, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        return cls(d["data"], d["split"], d["n"], d["masks"], d["seed"], d.get("data_key"))

    def mismatch(self, other: "Protocol") -> str | None:
        """A description of the first difference, or None when both evaluate the same images and holes."""
        a, b = self.as_dict(), other.as_dict()
        for key in ("data_key", "split", "n", "masks", "seed"):
            if a[key] != b[key]:
                return f"{key} {a[key]!r} vs {b[key]!r}"
        return None


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


def failure_gallery(method: Method, res: EvalResult, data: ImageCache, proto: Protocol, path: Path, k: int = 8,
                    device="cpu") -> list[dict]:
    """The k worst images by hole MSE as a grid, rows original / masked / fill (seed 004's failure gallery)."""
    from genfill.io import make_grid, save_image

    rows = [r for r in res.records if r["mse_hole"] == r["mse_hole"]]
    worst = sorted(rows, key=lambda r: -r["mse_hole"])[:k]
    if not worst:
        return []
    ids = data.split(proto.split)
    x = torch.cat([data.batch(ids[r["index"]].view(1), device) for r in worst])
    m = torch.cat([masks_at(r["mask"], [r["index"]], data.size, data.size, seed=proto.seed, device=device,
                            **proto.masks[r["mask"]]) for r in worst])
    with torch.no_grad():
        filled = method.fill(x, m)
    save_image(make_grid(torch.cat([x, x * (1 - m) + m, filled]).float().cpu(), nrow=len(x)), path)
    return [{"index": r["index"], "mask": r["mask"], "hole_ratio": r["hole_ratio"], "mse_hole": r["mse_hole"]}
            for r in worst]


def evaluate_specs(specs: list[str], out_dir: str | Path | None = None, data: str | dict | None = None,
                   masks: str | list[str] | dict = DEFAULT_MASKS, n: int = 500, fid: bool = False, seed: int = DEFAULT_SEED,
                   split: str = "test", device: str = "auto", lpips: bool = True, gallery: int = 8,
                   verbose: bool = True) -> Path:
    """The `genfill eval` job: evaluate peers and/or checkpoints under one protocol and write
    `eval.json`, `records.csv`, `summary.csv` and `failures_<method>.png` to out_dir. Returns eval.json.

    `data` may also be a data-config dict (what an eval.json stores), so a comparison can re-run a protocol."""
    from genfill.train import pick_device

    if not specs:
        raise GenfillError("nothing to evaluate: pass a checkpoint, run directory or peer name")
    if not isinstance(n, int) or n < 1:
        raise GenfillError(f"-n must be at least 1 test image, got {n}")
    dev = pick_device(device)
    methods: list[Method] = []
    for spec in specs:
        meth = resolve_method(spec, dev)
        base, i = meth.name, 2
        while any(o.name == meth.name for o in methods):
            meth.name, i = f"{base}-{i}", i + 1
        methods.append(meth)
    data_cfg = from_dict(DataConfig, data, prefix="data") if isinstance(data, dict) else resolve_data(data, methods)
    cache = load_cache(data_cfg, verbose=verbose)
    for meth in methods:
        if meth.model is not None and (meth.model.image_size, meth.model.channels) != (cache.size, cache.channels):
            raise GenfillError(f"{meth.source} works on {meth.model.image_size}px images with {meth.model.channels} "
                               f"channels, the data has {cache.size}px and {cache.channels}")
    n_eff = min(n, len(cache.split(split)))
    if n_eff < 1:
        raise GenfillError(f"the {split} split of {cache.key} is empty")
    proto = Protocol(to_dict(data_cfg), split, n_eff, parse_masks(masks, cache.size), seed, cache.key)
    if out_dir is None:
        first = methods[0]
        out_dir = (Path(first.source).parent.parent / "eval" if first.model is not None
                   else Path("runs") / f"eval-{slug(first.name)}")
    out = Path(out_dir)
    t0 = time.time()
    results = evaluate_methods({m.name: m.fill for m in methods}, cache, proto.masks, n_eff, seed, split,
                               device=dev, lpips=lpips, fid=fid)
    doc = {"format": EVAL_FORMAT, "protocol": proto.as_dict(), "methods": {}}
    for meth in methods:
        res = results[meth.name]
        entry = {"kind": meth.kind, "source": meth.source, "parameters": meth.parameters,
                 "ms_per_image": res.ms_per_image, "images": res.images, "summary": res.summary(), **res.extras}
        if meth.model is not None:
            entry["test_loss"] = test_loss_parts(meth.model, cache, proto.masks, n_eff, seed, split, device=dev)
            if fid and getattr(meth.model, "can_sample", False):
                try:
                    entry["sample_fid"] = sample_fid(meth.model, cache, n_eff, split, dev)
                except GenfillError as exc:  # e.g. a prior that is not trained yet
                    warn(f"{meth.name}: no sample FID ({exc})")
        if gallery:
            name = f"failures_{slug(meth.name)}.png"
            entry["failures"] = failure_gallery(meth, res, cache, proto, out / name, gallery, dev)
            entry["gallery"] = name if entry["failures"] else None
        doc["methods"][meth.name] = entry
    doc["seconds"] = round(time.time() - t0, 2)
    write_eval(out, doc, results)
    return out / "eval.json"


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_eval(out: Path, doc: dict, results: dict[str, EvalResult]) -> None:
    """eval.json, records.csv (one row per method x image x mask kind) and summary.csv (one row per method x
    group: all / mask kind / hole-ratio bucket)."""
    from genfill.io import atomic_write_json, atomic_write_text

    metrics = list(dict.fromkeys(k for r in results.values() for k in r.metrics if k != "hole_ratio"))
    rec_rows = [[name, r["index"], r["mask"], r["hole_ratio"], r["bucket"], *[r.get(k, "") for k in metrics]]
                for name, res in results.items() for r in res.records]
    atomic_write_text(out / "records.csv", _csv_text(["method", "index", "mask", "hole_ratio", "bucket", *metrics],
                                                     rec_rows))
    sum_rows = []
    for name, entry in doc["methods"].items():
        s = entry["summary"]
        groups = [("all", "all", s["all"])] + [("mask", k, v) for k, v in s["mask"].items()] + \
                 [("bucket", k, v) for k, v in s["bucket"].items()]
        for group, value, row in groups:
            sum_rows.append([name, group, value, row["count"], *[row.get(k, "") for k in ["hole_ratio", *metrics]]])
    atomic_write_text(out / "summary.csv", _csv_text(["method", "group", "value", "count", "hole_ratio", *metrics],
                                                     sum_rows))
    atomic_write_json(out / "eval.json", _finite(doc))


def _finite(obj):
    """JSON has no NaN: write None instead (an empty group or a metric that is undefined there)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def load_eval(path: str | Path) -> tuple[dict, Path]:
    """Read an eval.json (or a folder holding one) -> (document, its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "eval.json"
    if not path.is_file():
        raise GenfillError(f"no evaluation at {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GenfillError(f"{path} is not valid JSON (line {exc.lineno})") from exc
    if not isinstance(doc, dict) or doc.get("format") != EVAL_FORMAT or "protocol" not in doc:
        raise GenfillError(f"{path} is not a genfill eval.json")
    return doc, path.parent
