"""The `genfill eval` job: resolve what to evaluate (classical peers, runs, checkpoints, exports:
`genfill.resolve`), fix the protocol (data, split, n, mask kinds, seed), score every method with the scoring
library (`genfill.evaluate`), and write `eval.json`, `records.csv`, `summary.csv`, the pictures and
`report.html` (genfill.report's shared page).
`genfill compare` reads what this writes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from genfill.config import EVAL_MASKS, EVAL_SEED, DataConfig, from_dict, read_yaml, resolve_config, to_dict
from genfill.data.cache import ImageCache, load_heldout
from genfill.data.datasets import source_key
from genfill.masks import check_params
from genfill.device import pick_device
from genfill.errors import GenfillError
from genfill.evaluate import EvalResult, evaluate_methods
from genfill.io import atomic_write_json, atomic_write_text
from genfill.metrics.fid_eval import sample_fid
from genfill.metrics.uncertainty import check_samples
from genfill.models.base import single_fill_message
from genfill.pictures import Pictures, make_pictures, plural_picture, slug
from genfill.report import results_sections, write_page
from genfill.resolve import Filler, resolve, with_blend
from genfill.verdict import plural_table

EVAL_FORMAT = 1
DEFAULT_MASKS = ",".join(EVAL_MASKS)
DEFAULT_SEED = EVAL_SEED
# FID/KID per mask kind are on by default from this many test images (--fid / --no-fid decide otherwise).
# Below it FID's small-sample bias (its expectation falls like 1/n) swamps differences between fills, and the
# cost is not worth it; from a few hundred on, with the real images' and the peers' features cached
# (genfill.metrics.fid_cache), a model's fills are the only new Inception work.
FID_AUTO_MIN = 200


def resolve_data(data: str | None, methods: list[Filler]) -> DataConfig:
    """--data: a YAML file or config preset name whose `data:` section is used, `faces64` (the built-in
    default), or a folder of images (every image scored, centre-cropped to the model's size); None means the
    first checkpoint's own data config, else the built-in faces64."""
    if data is None:
        own = next((m.data for m in methods if m.data is not None), None)
        return from_dict(DataConfig, own, prefix="data") if own is not None else DataConfig()
    if data == "faces64":
        return DataConfig()
    if Path(data).is_dir():  # a folder of the user's images, at the (first) model's size
        model = next((m.model for m in methods if m.model is not None), None)
        size, channels = (model.image_size, model.channels) if model is not None else (64, 3)
        return DataConfig(name="folder", root=str(data), size=size, channels=channels)
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


def worst_images(res: EvalResult, k: int = 8) -> list[dict]:
    """A method's k worst images by hole MSE (seed 004's failure gallery): [{index, mask, hole_ratio, mse_hole}].
    The report draws them with every method's fill of the same image and hole."""
    rows = [r for r in res.records if r["mse_hole"] == r["mse_hole"]]
    worst = sorted(rows, key=lambda r: -r["mse_hole"])[:k]
    return [{"index": r["index"], "mask": r["mask"], "hole_ratio": r["hole_ratio"], "mse_hole": r["mse_hole"]}
            for r in worst]


def resolve_all(specs: list[str | Filler], device, names: list[str | None] | None = None,
                blend: str | None = None) -> list[Filler]:
    """Each spec resolved (`genfill.resolve`; a Filler is taken as it is), renamed by `names` (one per spec,
    None keeps the default) and made unique (a second "telea" is "telea-2"). `blend` makes every sampler draw
    with that exemplar blend, named NAME-BLEND (unless `names` names it); it must reach at least one."""
    methods: list[Filler] = []
    for i_spec, spec in enumerate(specs):
        meth = spec if isinstance(spec, Filler) else resolve(spec, device)
        if blend is not None and with_blend(meth, blend):
            meth.name = f"{meth.name}-{blend}"
        if names and i_spec < len(names) and names[i_spec]:
            meth.name = names[i_spec]
        base, i = meth.name, 2
        while any(o.name == meth.name for o in methods):
            meth.name, i = f"{base}-{i}", i + 1
        methods.append(meth)
    if blend is not None and not any(m.blend for m in methods):
        raise GenfillError(f"--blend {blend} picks how a sampler draws; none of {', '.join(m.name for m in methods)} "
                           "is a sampler")
    return methods


def _open_data(data: str | dict | None, methods: list[Filler], split: str, n: int,
               verbose: bool) -> tuple[DataConfig, ImageCache, str]:
    """(data config, the held-out images, the split scored): a user's folder is scored whole; every model
    must work at the data's size and channels."""
    data_cfg = from_dict(DataConfig, data, prefix="data") if isinstance(data, dict) else resolve_data(data, methods)
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        split = "all"  # a user's folder is scored whole, not cut 80/10/10
    cache = load_heldout(data_cfg, split, n, verbose=verbose)  # only the n images scored, when it can
    for meth in methods:
        if meth.model is not None and (meth.model.image_size, meth.model.channels) != (cache.size, cache.channels):
            raise GenfillError(f"{meth.source} works on {meth.model.image_size}px images with {meth.model.channels} "
                               f"channels, the data has {cache.size}px and {cache.channels}")
    if len(cache.split(split)) < 1:
        raise GenfillError(f"the {split} split of {cache.key} is empty")
    return data_cfg, cache, split


def _default_out(first: Filler) -> Path:
    """A run's evaluation goes next to its checkpoints' folder; peers' to runs/eval-<name>."""
    return (Path(first.source).parent.parent / "eval" if first.model is not None
            else Path("runs") / f"eval-{slug(first.name)}")


def _entry(meth: Filler, res: EvalResult, cache: ImageCache, proto: Protocol, samples: int | None, gallery: int,
           fid_on: bool, device) -> dict:
    """A method's part of eval.json: what it is, its speed, its summary and extras, a model's loss parts and
    (with FID on) its prior samples' FID, its worst images."""
    entry = {"kind": meth.kind, "source": meth.source, "parameters": meth.parameters,
             "ms_per_image": res.ms_per_image, "images": res.images, "summary": res.summary(),
             **{k: v for k, v in res.extras.items() if k != "test_loss"}}
    if meth.blend:
        entry["blend"] = meth.blend
    if meth.model is not None:
        entry["test_loss"] = res.extras.get("test_loss")
        if fid_on and meth.model.can_sample:
            entry["sample_fid"] = sample_fid(meth.model, cache, proto.n, proto.split, device)
    if samples and meth.model is None:
        entry["plural"] = {"k": 1, "note": single_fill_message(f"the {meth.name} peer")}
    if gallery:
        entry["failures"] = worst_images(res, gallery)
        entry["gallery"] = None
    return entry


def _draw(doc: dict, cache: ImageCache, methods: list[Filler], samples: int | None, out: Path) -> Pictures:
    """The report's pictures (and each sampler's several fills), their files noted in `doc`."""
    pics = make_pictures(doc, cache, {m.name: m.fill for m in methods}, out)
    for name, rel in pics.failures.items():
        doc["methods"][name]["gallery"] = rel
    for meth in methods:
        if samples and meth.model is not None and meth.model.can_diversify:
            rel = f"plural_{slug(meth.name)}.png"
            plural_picture(cache, doc["protocol"], meth.model, samples, out / rel)
            doc["methods"][meth.name]["plural"].update(picture=rel, shown=min(samples, 6))
    return pics


def evaluate_specs(specs: list[str | Filler], out_dir: str | Path | None = None, data: str | dict | None = None,
                   masks: str | list[str] | dict = DEFAULT_MASKS, n: int = 500, fid: bool | None = None,
                   seed: int = DEFAULT_SEED, split: str = "test", device: str = "auto", lpips: bool = True,
                   gallery: int = 8, verbose: bool = True, names: list[str | None] | None = None,
                   report: bool = True, samples: int | None = None, fid_bootstrap: int = 0,
                   blend: str | None = None) -> Path:
    """The `genfill eval` job: evaluate peers, runs, checkpoints and exports under one protocol and write
    `eval.json`, `records.csv`, `summary.csv`, the pictures (`headline.png`, `side_<kind>.png`,
    `failures_<method>.png`) and `report.html` to out_dir. Returns eval.json.

    `data` may also be a data-config dict (what an eval.json stores), so a comparison can re-run a protocol.
    `names` renames methods (one per spec, None keeps the default); `report=False` skips pictures and page.
    `samples` K also scores K fills per image of every model that draws several (diversity, best-of-K and
    mean-over-K quality, calibration; `metrics.plural_eval.plural_scores`); the others are noted as drawing one.
    `fid` None turns FID/KID per mask kind on from FID_AUTO_MIN images; their features are cached next to
    the data (`features/` under the data's cache root: `data.cache_dir`, else the per-user cache);
    `fid_bootstrap` B adds a spread over test images per kind. `blend` makes every sampler draw with that
    exemplar blend (`resolve_all`; eval.json notes it, so pictures redrawn later draw alike).
    `doc["timing"]` records the seconds of the whole evaluation and of Inception."""
    if not specs:
        raise GenfillError("nothing to evaluate: pass a checkpoint, run directory or peer name")
    if samples is not None:
        check_samples(samples)
    if not isinstance(n, int) or n < 1:
        raise GenfillError(f"-n must be at least 1 test image, got {n}")
    dev = pick_device(device)
    methods = resolve_all(specs, dev, names, blend)
    data_cfg, cache, split = _open_data(data, methods, split, n, verbose)
    n_eff = min(n, len(cache.split(split)))
    proto = Protocol(to_dict(data_cfg), split, n_eff, parse_masks(masks, cache.size), seed, cache.key)
    out = Path(out_dir) if out_dir is not None else _default_out(methods[0])
    t0 = time.time()
    fid_on = n_eff >= FID_AUTO_MIN if fid is None else bool(fid)
    results = evaluate_methods({m.name: m.model if m.model is not None else m.fill for m in methods}, cache,
                               proto.masks, n_eff, seed, split, device=dev, lpips=lpips, fid=fid_on, verbose=verbose,
                               samples=samples or 1, feature_cache=data_cfg.cache_root / "features",
                               fid_bootstrap=fid_bootstrap)
    doc = {"format": EVAL_FORMAT, "protocol": proto.as_dict(),
           "methods": {m.name: _entry(m, results[m.name], cache, proto, samples, gallery, fid_on, dev)
                       for m in methods}}
    doc["seconds"] = round(time.time() - t0, 2)
    doc["timing"] = timing(results, doc["seconds"], fid_on, fid is None)
    pics = _draw(doc, cache, methods, samples, out) if report else None
    write_eval(out, doc, results)
    if pics is not None:
        write_report(out / "report.html", f"genfill eval: {', '.join(doc['methods'])}", _finite(doc), pics)
    return out / "eval.json"


def timing(results: dict[str, EvalResult], seconds: float, fid_on: bool, auto: bool) -> dict:
    """Where an evaluation's time went: {"seconds", "fill_seconds", "fid": {"on", "auto", "seconds", "images",
    "cached_images", "images_per_s"}} (Inception's share: the real images once, then every method's fills)."""
    inc = [r.extras.get("inception") for r in results.values() if r.extras.get("inception")]
    out = {"seconds": seconds, "fill_seconds": round(sum(r.seconds for r in results.values()), 2),
           "fid": {"on": fid_on, "auto": auto}}
    if inc:
        secs = sum(i["seconds"] for i in inc) + inc[0]["real_seconds"]
        imgs = sum(i["images"] for i in inc) + inc[0]["real_images"]
        cached = sum(i["cached_images"] for i in inc)
        out["fid"].update(seconds=round(secs, 2), images=imgs, cached_images=cached,
                          real_cached=inc[0]["real_cached"], images_per_s=round(imgs / secs, 2) if secs > 0 else None)
    return out


def write_report(path: Path, title: str, doc: dict, pics: Pictures, intro: list[str] | None = None,
                 details: list[str] | None = None) -> Path:
    """An evaluation's page (report.py's shared sections), raw files linked next to it."""
    raw = [(f, f) for f in ("eval.json", "records.csv", "summary.csv", "plural.csv") if (path.parent / f).is_file()]
    return write_page(path, title, results_sections(doc, pics, intro, details, raw))


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_eval(out: Path, doc: dict, results: dict[str, EvalResult]) -> None:
    """eval.json, records.csv (one row per method x image x mask kind) and summary.csv (one row per method x
    group: all / mask kind / hole-ratio bucket)."""
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
    plural = plural_table(doc)
    if plural is not None:
        atomic_write_text(out / "plural.csv", _csv_text(plural[1], plural[2]))
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
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise GenfillError(f"{path} is not valid JSON (line {exc.lineno})") from exc
    except ValueError as exc:  # not UTF-8
        raise GenfillError(f"{path} is not valid JSON ({exc.__class__.__name__})") from exc
    if not isinstance(doc, dict) or doc.get("format") != EVAL_FORMAT or "protocol" not in doc:
        raise GenfillError(f"{path} is not a genfill eval.json")
    if not isinstance(doc.get("methods"), dict) or not doc["methods"]:
        raise GenfillError(f"{path} is not a complete genfill eval.json: it has no methods")
    return doc, path.parent
