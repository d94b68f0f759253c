"""Training throughput of every model family, eager fp32 vs the fast path, in one run; fill latency; CPU fill
next to OpenCV Telea. Run: python benchmarks/throughput.py [--device cuda] [--quick] [--families ...]
[--sizes ...] [--compile] [--out results.json]   (`make bench` runs it with the defaults).

For each family (a config in configs/ whose model kind is in genfill.models.REGISTRY) at its natural sizes
(64 and 256; a seed config at its own data.size), with untrained weights and synthetic images:

- eager vs fast: train-step images/s of (a) the plain eager fp32 NCHW path (PyTorch's default backend
  flags, foreach Adam, no autocast) and (b) the fast path of genfill.train.prepare (bf16 autocast,
  channels_last, fused Adam on CUDA, cuDNN autotune + TF32; with --compile also torch.compile, and the
  faster of the two counts), on one batch already on the device; ratio = b / a.
- flops: FLOPs of one training step (torch.utils.flop_counter.FlopCounterMode, eager model), so achieved
  TFLOP/s = flops * steps/s of the fast path, as a share of the bf16 matmul rate measured here (n x n @ n x n).
- peak memory of each path (CUDA only: torch.cuda.max_memory_allocated).
- loop: the real loop, `genfill.train.train()` itself, on a synthetic uint8 cache resident on the device with
  the config's mask bank: images/s by the loop's clock (`LoopClock`: after the first step; validation and
  checkpoints excluded) next to the step-only figure of the same path (fast on CUDA, eager fp32 elsewhere), so the gap
  between them is visible; the share of the loop's time the data + mask stream alone takes
  (train.train_batches, timed without steps); and an epoch EXTRAPOLATED to 162,770 images (CelebA train).
- fill latency (eval mode, torch.inference_mode, the fast path's autocast) at batch 1 and a large batch.
- agreement: one training step's loss from identical weights and inputs, eager vs fast, relative difference.
- CPU fill: one 64x64 image, the default model of each family (torch.set_num_threads(2)) next to
  genfill.peers.telea.

Results go to benchmarks/results/<device slug>.json with the command, torch version and date.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from genfill.config import RunConfig
from genfill.loadconfig import load_config
from genfill.data.cache import ImageCache
from genfill.masks import fixed_masks, make_masks
from genfill.errors import GenfillError
from genfill.io import atomic_write_json
from genfill.models import REGISTRY, GenModel, build_model, save_model
from genfill.pixels import from_unit
from genfill.device import autocast, fast_path, pick_device
import genfill.train
from genfill.train import mask_source, prepare, train, train_batches, train_step

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RESULTS = ROOT / "benchmarks" / "results"
# One config per family; a family joins when its config exists and its model kind is registered.
FAMILY_CONFIGS = ("vae-faces64", "avae-faces64", "treevi-faces64", "vqvae-faces64", "vqvae-prior-faces64",
                  "gan-faces64", "seed002-gan", "unet-faces64")
NATURAL_SIZES = (64, 256)  # seed configs train at their own data.size instead
CELEBA_TRAIN = 162_770  # images in CelebA's train split: the epoch the epoch time is extrapolated to
LOSS_RTOL = 0.05  # bf16 tolerance for one step's loss, eager vs fast


@dataclass(frozen=True)
class Settings:
    """How much to measure. batch None = by size: about 4M pixels per batch, 8..1024 images."""

    batch: int | None
    warmup: int  # untimed steps before each timing
    steps: int  # timed train steps per path
    epoch_steps: int  # timed steps of the real loop (train() itself), after one untimed step
    matmul_n: int  # side of the bf16 matmul that measures the peak rate
    fill_batches: tuple[int, ...]
    fill_repeats: int
    size: int | None  # quick mode and CPU: this size replaces every family's natural sizes
    compile: bool
    bank_size: int | None = None  # masks in the real loop's bank; None = the config's masks.bank_size


def default_settings(device: torch.device, quick: bool, compile: bool = False) -> Settings:
    if quick:  # what tests and the CPU use: seconds per family
        return Settings(batch=4, warmup=1, steps=2, epoch_steps=2, matmul_n=256, fill_batches=(1, 16),
                        fill_repeats=3, size=32, compile=compile, bank_size=1024)
    if device.type == "cuda":
        return Settings(batch=None, warmup=5, steps=20, epoch_steps=50, matmul_n=8192, fill_batches=(1, 256),
                        fill_repeats=20, size=None, compile=compile)
    # CPU: 64x64 only (256x256 takes minutes a step on 2 cores; --sizes 256 asks for it), small batches,
    # so `make bench` finishes in minutes.
    return Settings(batch=4, warmup=1, steps=3, epoch_steps=10, matmul_n=512, fill_batches=(1, 16),
                    fill_repeats=5, size=64, compile=compile)


def batch_for(size: int, settings: Settings) -> int:
    if settings.batch is not None:
        return settings.batch
    return int(min(1024, max(8, 2 ** int(np.log2(4 * 2**20 / size**2)))))


# ---------------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------------


@dataclass
class Family:
    name: str  # the config's stem
    cfg: RunConfig
    sizes: tuple[int, ...]


def discover(names: list[str] | None = None) -> tuple[list[Family], list[dict]]:
    """Families to measure and the ones skipped (with why): configs present whose kind is registered."""
    wanted = list(names) if names else list(FAMILY_CONFIGS)
    families, skipped = [], []
    for name in wanted:
        path = CONFIGS / f"{name}.yaml"
        if not path.is_file():
            if names:  # asked for by name: say why it is missing
                skipped.append({"family": name, "reason": f"no config {path.relative_to(ROOT)}"})
            continue
        raw_kind = load_yaml_kind(path)
        if raw_kind not in REGISTRY:
            skipped.append({"family": name, "reason": f"model kind {raw_kind!r} is not in genfill.models.REGISTRY"})
            continue
        cfg = load_config(path)  # a prior's model.vqvae is only read when the model is built (model_spec)
        sizes = (cfg.data.size,) if name.startswith("seed") else NATURAL_SIZES
        families.append(Family(name, cfg, sizes))
    return families, skipped


def load_yaml_kind(path: Path) -> str | None:
    from genfill.config import read_yaml

    return (read_yaml(path).get("model") or {}).get("kind")


def model_spec(family: Family, size: int, workdir: Path) -> dict:
    """The family's model section for `size`. A VQ-VAE prior needs a VQ-VAE checkpoint of the same size:
    a fresh, untrained one from configs/vqvae-faces64.yaml is written to `workdir` (speed does not depend
    on the weights)."""
    spec = dict(family.cfg.model)
    if spec["kind"] == "vqvae_prior":
        vq = load_config(CONFIGS / "vqvae-faces64.yaml").model
        torch.manual_seed(0)
        path = workdir / f"vqvae-{size}.pt"
        save_model(path, build_model(vq, size, family.cfg.data.channels))
        spec.update(vqvae=str(path), vqvae_spec={})
    return spec


def fresh_model(spec: dict, size: int, channels: int, seed: int = 0) -> GenModel:
    torch.manual_seed(seed)  # the same seed builds the same weights for both paths
    return build_model(copy.deepcopy(spec), size, channels)


def set_backend_defaults(device: torch.device) -> None:
    """PyTorch's default backend flags, so the eager path is not sped up by an earlier fast path's TF32."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions


# ---------------------------------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of fn(), the device drained before and after (CUDA only: elsewhere calls block)."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def synthetic_batch(cfg: RunConfig, size: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [-1, 1] and the config's masks, (B,C,H,W) and (B,1,H,W), on the device."""
    g = torch.Generator().manual_seed(0)
    x = from_unit(torch.rand(batch, cfg.data.channels, size, size, generator=g))
    m = make_masks(cfg.masks.kind, batch, size, size, generator=g, **cfg.masks.params)
    return x.to(device), m.to(device)


# ---------------------------------------------------------------------------------------------------
# Measurements: one function each
# ---------------------------------------------------------------------------------------------------


def matmul_tflops(device: torch.device, n: int, repeats: int = 10) -> float:
    """The device's bf16 matmul rate (TFLOP/s) on one n x n @ n x n product, best of `repeats`."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    best = min(timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * n**3 / best / 1e12


class TrainPath:
    """One training path: model, optimisers, forward and the flags train_step takes."""

    def __init__(self, spec: dict, cfg: RunConfig, size: int, device: torch.device, fast: bool, compile: bool):
        if not fast:
            set_backend_defaults(device)
        tc = replace(cfg.train, compile=compile)
        self.model, self.forward, self.opt, self.opt_d = prepare(
            fresh_model(spec, size, cfg.data.channels), tc, device, fast)
        self.fast, self.use_amp, self.grad_clip = fast, fast and cfg.train.amp, cfg.train.grad_clip
        self.model.train()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.fast else x

    def step(self, x: torch.Tensor, m: torch.Tensor):
        return train_step(self.model, self.forward, self.opt, self.opt_d, self.inputs(x), m, 1.0, self.use_amp,
                          self.grad_clip)


def train_throughput(path: TrainPath, x: torch.Tensor, m: torch.Tensor, settings: Settings) -> dict:
    """Train-step images/s on one batch already on the device, and the path's peak memory."""
    device = x.device
    reset_peak(device)
    for _ in range(settings.warmup):
        path.step(x, m)

    def run():
        for _ in range(settings.steps):
            path.step(x, m)

    seconds = timed(run, device)
    return {"images_per_s": settings.steps * len(x) / seconds, "step_ms": 1e3 * seconds / settings.steps,
            "peak_memory_mb": peak_mb(device)}


def step_flops(path: TrainPath, x: torch.Tensor, m: torch.Tensor) -> int:
    """FLOPs of one training step (forward, backward; the optimiser's elementwise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        path.step(x, m)
    return int(counter.get_total_flops())


def loss_agreement(spec: dict, cfg: RunConfig, size: int, x: torch.Tensor, m: torch.Tensor) -> dict:
    """One step's loss from identical weights, inputs and noise: eager fp32 vs the fast path."""
    device = x.device
    losses = {}
    for name, fast in (("eager", False), ("fast", True)):
        path = TrainPath(spec, cfg, size, device, fast, compile=False)
        torch.manual_seed(1)
        loss, _ = path.step(x, m)
        losses[name] = float(loss)
        del path
    rel = abs(losses["fast"] - losses["eager"]) / max(abs(losses["eager"]), 1e-8)
    return {"eager_loss": losses["eager"], "fast_loss": losses["fast"], "rel_diff": rel, "rtol": LOSS_RTOL,
            "ok": rel <= LOSS_RTOL}


class LoopClock:
    """train()'s step loop timed from outside, by wrapping the batches it steps through
    (genfill.train.train_batches): the clock runs from the end of the run's first step (lazy init, compile,
    autotune excluded; the device drained there) to the end of each epoch's last step, so validation and
    checkpoints fall outside; `images` counts those trained in that time."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.images, self.first = device, 0.0, 0, True

    @contextmanager
    def wrapping(self) -> Iterator["LoopClock"]:
        real = genfill.train.train_batches

        def timed_batches(data, cfg, batch_size, *args, **kwargs):
            t = time.perf_counter()
            try:
                for batch in real(data, cfg, batch_size, *args, **kwargs):
                    try:
                        yield batch  # the loop steps on it before asking for the next (or stopping)
                    finally:
                        if self.first:  # the clock starts after the run's first step
                            sync(self.device)
                            self.first, t = False, time.perf_counter()
                        else:
                            self.images += batch_size
            finally:
                self.seconds += time.perf_counter() - t

        genfill.train.train_batches = timed_batches
        try:
            yield self
        finally:
            genfill.train.train_batches = real


def real_loop(spec: dict, cfg: RunConfig, size: int, batch: int, device: torch.device, settings: Settings,
              workdir: Path) -> dict:
    """`genfill.train.train()` itself on a synthetic uint8 cache resident on the device: its own loop's
    images/s (`LoopClock`: after the first step, validation and checkpoints excluded) on the path
    train() picks (fast on CUDA, eager fp32 elsewhere; compiled with --compile), masks from the config's
    bank; the epoch time extrapolated from it to CelebA's train split; and the share of the loop's time
    that the data + mask stream alone (train.train_batches, the same stream, timed without the steps)
    takes."""
    steps = settings.epoch_steps
    n = batch * (steps + 1)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, size, size, cfg.data.channels), dtype=torch.uint8, generator=gen)
    cache = ImageCache(images, {"train": np.arange(n), "val": np.arange(batch), "test": np.arange(batch)})
    run_cfg = replace(
        cfg, name=f"{spec['kind']}-{size}-{time.time_ns()}", out_dir=str(workdir / "runs"), model=dict(spec),
        data=replace(cfg.data, size=size, cache_dir=str(workdir / "cache")),
        masks=replace(cfg.masks, bank_size=cfg.masks.bank_size if settings.bank_size is None else settings.bank_size),
        train=replace(cfg.train, batch_size=batch, epochs=1, max_steps=steps + 1, time_budget_s=None,
                      val_images=batch, sample_every_epoch=False, log_every=10**9, compile=settings.compile,
                      device=str(device), accumulate=1),
    )
    with LoopClock(device).wrapping() as clock:
        train(run_cfg, verbose=False, data=cache)
    loop_ips = clock.images / clock.seconds

    data = cache.to(device)
    draw_masks, mask_device = mask_source(run_cfg, size, device)  # the bank train() drew, from its cache
    g, g_mask = torch.Generator().manual_seed(0), torch.Generator(mask_device).manual_seed(1)
    fast = fast_path(run_cfg.train.fast, device)

    def data_only():
        for _ in train_batches(data, run_cfg, batch, g, g_mask, device, draw_masks):
            pass

    # The median of three passes: on a shared machine one pass can land in someone else's burst.
    data_s = statistics.median(timed(data_only, device) for _ in range(3)) * steps / (steps + 1)
    masks = f"bank of {run_cfg.masks.bank_size}" if run_cfg.masks.bank_size else "per step"
    return {"resident": str(data.images.device), "path": ("fast" if fast else "eager") +
            ("+compile" if settings.compile else ""), "masks": masks,
            "timed_steps": steps, "timed_images": clock.images, "measured_s": clock.seconds,
            "images_per_s": loop_ips, "extrapolated_images": CELEBA_TRAIN,
            "epoch_s_extrapolated": CELEBA_TRAIN / loop_ips, "data_masks_s": data_s,
            "data_masks_share": data_s / clock.seconds}


def fill_latency(model: GenModel, cfg: RunConfig, size: int, batch: int, fast: bool, repeats: int) -> float:
    """Median milliseconds of model.fill on `batch` images (eval mode, inference_mode, fast-path autocast)."""
    device = next(model.parameters()).device
    x, m = synthetic_batch(cfg, size, batch, device)
    if fast:
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    times = []
    with torch.inference_mode(), autocast(device, fast and cfg.train.amp):
        model.fill(x, m)
        for _ in range(repeats):
            times.append(timed(lambda: model.fill(x, m), device))
    model.train(was_training)
    return 1e3 * statistics.median(times)


def cpu_fill_latency(families: list[Family], workdir: Path, threads: int = 2, repeats: int = 30) -> dict:
    """Milliseconds to fill one 64x64 image on the CPU (median and min of `repeats`), each family's default
    model (untrained weights: latency does not depend on them) next to OpenCV Telea."""
    from genfill.peers import telea

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = from_unit(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    m = fixed_masks("thick", 1, 64, 64, seed=0)

    def measure(fn) -> dict:
        fn()
        times = [timed(fn, torch.device("cpu")) for _ in range(repeats)]
        return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times)}

    out = {"threads": threads, "size": 64, "repeats": repeats, "telea": measure(lambda: telea(x, m)), "models": {}}
    try:
        for fam in families:
            if fam.cfg.data.channels != 3:
                continue
            model = build_model(model_spec(fam, 64, workdir), 64, 3).eval()
            with torch.inference_mode():
                out["models"][fam.name] = measure(lambda: model.fill(x, m))
    finally:
        torch.set_num_threads(before)
    return out


# ---------------------------------------------------------------------------------------------------
# One family at one size, and the whole run
# ---------------------------------------------------------------------------------------------------


def measure_family(fam: Family, size: int, device: torch.device, settings: Settings, peak_tflops: float,
                   workdir: Path) -> dict:
    cfg = fam.cfg
    spec = model_spec(fam, size, workdir)
    batch = batch_for(size, settings)
    x, m = synthetic_batch(cfg, size, batch, device)
    row = {"family": fam.name, "kind": spec["kind"], "size": size, "batch": batch}

    eager = TrainPath(spec, cfg, size, device, fast=False, compile=False)
    row["num_parameters"] = eager.model.num_parameters()
    row["eager"] = train_throughput(eager, x, m, settings)
    row["flops_per_step"] = step_flops(eager, x, m)
    del eager

    variants = {"fast": TrainPath(spec, cfg, size, device, fast=True, compile=False)}
    row["fast"] = train_throughput(variants["fast"], x, m, settings)
    row["fast_variant"] = "fast"
    if settings.compile:
        variants["fast+compile"] = TrainPath(spec, cfg, size, device, fast=True, compile=True)
        row["fast_compiled"] = train_throughput(variants["fast+compile"], x, m, settings)
        if row["fast_compiled"]["images_per_s"] > row["fast"]["images_per_s"]:
            row["fast_variant"] = "fast+compile"
    best = row["fast_compiled"] if row["fast_variant"] == "fast+compile" else row["fast"]
    row["ratio"] = best["images_per_s"] / row["eager"]["images_per_s"]
    row["tflops"] = row["flops_per_step"] * best["images_per_s"] / batch / 1e12
    row["share_of_bf16_matmul"] = row["tflops"] / peak_tflops

    fast = variants[row["fast_variant"]]
    row["epoch"] = real_loop(spec, cfg, size, batch, device, settings, workdir)
    # the step-only figure of the path train() takes, for the loop/step ratio
    step_only = row["fast"] if device.type == "cuda" else row["eager"]
    if settings.compile and device.type == "cuda":
        step_only = row["fast_compiled"]
    row["epoch"]["step_only_images_per_s"] = step_only["images_per_s"]
    row["epoch"]["loop_over_step"] = row["epoch"]["images_per_s"] / step_only["images_per_s"]
    row["fill_ms"] = {str(b): fill_latency(fast.model, cfg, size, b, device.type == "cuda", settings.fill_repeats)
                      for b in settings.fill_batches}
    del variants, fast
    row["agreement"] = loss_agreement(spec, cfg, size, x, m)
    reset_peak(device)
    return row


def device_slug(device: torch.device) -> tuple[str, str]:
    """(slug, readable name) of the device: nvidia-h100-80gb-hbm3, cpu-amd-epyc, ..."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        name = f"cpu {name}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), name


def run(device: str = "auto", quick: bool = False, families: list[str] | None = None,
        sizes: list[int] | None = None, out: str | Path | None = None, compile: bool = False,
        settings: Settings | None = None, command: str | None = None, verbose: bool = True) -> dict:
    """Measure everything and write the JSON; returns the results."""
    dev = pick_device(device)
    settings = settings or default_settings(dev, quick, compile)
    fams, skipped = discover(families)
    slug, name = device_slug(dev)
    results = {
        "command": command or "benchmarks.throughput.run()",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(),
        "device": name, "device_slug": slug, "cpu_threads": torch.get_num_threads(),
        "settings": asdict(settings),
        "note": ("untrained weights, synthetic images; epoch times are EXTRAPOLATED from "
                 f"epoch.timed_images to {CELEBA_TRAIN:,} images (CelebA train)"),
        "bf16_matmul_tflops": matmul_tflops(dev, settings.matmul_n),
        "rows": [], "skipped": skipped,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for fam in fams:
            for size in sizes or ((settings.size,) if settings.size else fam.sizes):
                if verbose:
                    print(f"... {fam.name} at {size}x{size}", file=sys.stderr, flush=True)
                try:
                    results["rows"].append(measure_family(fam, size, dev, settings, results["bf16_matmul_tflops"],
                                                          Path(tmp)))
                except (GenfillError, torch.OutOfMemoryError) as exc:
                    reset_peak(dev)
                    skipped.append({"family": fam.name, "size": size, "reason": str(exc).splitlines()[0]})
        results["cpu_fill_64"] = cpu_fill_latency(fams, Path(tmp))
    path = Path(out) if out else RESULTS / f"{slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, results)
    results["path"] = str(path)
    return results


# ---------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------


def _fmt(v, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def table(results: dict) -> str:
    lines = [f"{results['device']}  torch {results['torch']}  {results['date']}  "
             f"bf16 matmul {results['bf16_matmul_tflops']:.3g} TFLOP/s (n={results['settings']['matmul_n']})"]
    fill_b = results["settings"]["fill_batches"]
    head = ["family", "size", "batch", "eager img/s", "fast img/s", "ratio", "loop img/s", "loop/step", "data%",
            "TFLOP/s", "%matmul", "peak MB e/f", "epoch s*", *[f"fill b{b} ms" for b in fill_b], "loss rel"]
    rows = []
    for r in results["rows"]:
        best = r["fast_compiled"] if r["fast_variant"] == "fast+compile" else r["fast"]
        rows.append([r["family"], str(r["size"]), str(r["batch"]), _fmt(r["eager"]["images_per_s"], ".4g"),
                     _fmt(best["images_per_s"], ".4g") + ("c" if r["fast_variant"] == "fast+compile" else ""),
                     _fmt(r["ratio"], ".2f"), _fmt(r["epoch"]["images_per_s"], ".4g"),
                     _fmt(r["epoch"]["loop_over_step"], ".2f"), _fmt(100 * r["epoch"]["data_masks_share"], ".1f"),
                     _fmt(r["tflops"]), _fmt(100 * r["share_of_bf16_matmul"], ".1f"),
                     f"{_fmt(r['eager']['peak_memory_mb'], '.0f')}/{_fmt(best['peak_memory_mb'], '.0f')}",
                     _fmt(r["epoch"]["epoch_s_extrapolated"], ".4g"),
                     *[_fmt(r["fill_ms"][str(b)], ".3g") for b in fill_b],
                     _fmt(r["agreement"]["rel_diff"], ".1e") + ("" if r["agreement"]["ok"] else "!")])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.append("loop: genfill.train.train() itself (validation excluded) on the path it takes (fast on CUDA, "
                 "eager elsewhere); loop/step = loop img/s over that path's step-only img/s; data% = share of the "
                 "loop's time the data + mask stream alone takes (masks from the bank).")
    lines.append(f"* epoch: {CELEBA_TRAIN:,} images, EXTRAPOLATED from the loop's img/s. "
                 "c = torch.compile'd. loss rel: one step, eager vs fast (! = over tolerance).")
    for s in results["skipped"]:
        lines.append(f"skipped {s['family']}{' at ' + str(s['size']) if 'size' in s else ''}: {s['reason']}")
    cpu = results["cpu_fill_64"]
    lines.append(f"\nCPU fill of one 64x64 image, {cpu['threads']} threads, median (min) ms of {cpu['repeats']}:")
    lines.append(f"  {'telea (OpenCV)':<22} {cpu['telea']['median_ms']:8.2f} ({cpu['telea']['min_ms']:.2f})")
    for fam, t in cpu["models"].items():
        lines.append(f"  {fam:<22} {t['median_ms']:8.2f} ({t['min_ms']:.2f})")
    lines.append(f"-> {results.get('path', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--quick", action="store_true", help="tiny size (32), batch 4, 2 steps: tests and smoke runs")
    parser.add_argument("--families", nargs="+", help=f"config stems (default: {' '.join(FAMILY_CONFIGS)})")
    parser.add_argument("--sizes", nargs="+", type=int, help="image sides (default: each family's natural sizes)")
    parser.add_argument("--compile", action="store_true", help="also measure the fast path under torch.compile")
    parser.add_argument("--out", help="JSON path (default: benchmarks/results/<device>.json)")
    args = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    try:
        results = run(args.device, args.quick, args.families, args.sizes, args.out, args.compile, command=command)
    except GenfillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(table(results))


if __name__ == "__main__":
    main()
