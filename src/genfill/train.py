"""The training loop, top to bottom: data on the device, masks in batch, one optimiser step (two for
adversarial models, written out below), logging, validation each epoch, atomic checkpoints, resume.

A run directory holds: config.yaml, checkpoints/{last,best}.pt, metrics.jsonl, samples/, curves.png.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from genfill import distributed
from genfill.config import RunConfig, TrainConfig, save_config, to_dict
from genfill.data.cache import ImageCache, cache_dir, load_cache
from genfill.data.masks import MASK_KINDS, make_masks, mask_bank
from genfill.device import autocast, fast_path, pick_device
from genfill.distributed import part_index
from genfill.ema import EMA
from genfill.errors import GenfillError
from genfill.io import (_pause_for_tests, atomic_write_text, load_checkpoint, make_dir, own_folder,
                        remove_stale_temps, save_figure, save_image)
from genfill.pixels import composite, fill_panel
from genfill.progress import Progress, say
from genfill.models import GenModel, build_model, load_encoder, save_model, saved_config


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    best_val: float
    last_val: dict
    seconds: float
    loop_seconds: float = 0.0  # time in the step loop after its first step (no validation, no checkpoints)
    loop_images: int = 0  # images trained in that time: loop_images / loop_seconds is the loop's images/s


def train_batches(data: ImageCache, cfg: RunConfig, batch_size: int, generator: torch.Generator,
                  mask_generator: torch.Generator, device, draw_masks=None, order: torch.Tensor | None = None,
                  start: int = 0, part: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches (x, m): shuffled, flipped per `data.flip`, full batches only, with masks
    from `draw_masks(n, mask_generator)` (mask_source: the config's mask bank, sampled on the device) or,
    when None, fresh masks of the config's kind drawn where `mask_generator` lives. Shared by train() and
    benchmarks/throughput.py. `order`/`start`: an epoch's image order and how many of it are done (resuming
    inside an epoch). `batch_size` is the global batch; `part` (rank, world) keeps this rank's slice of it,
    images and masks both drawn for the whole global batch (genfill.distributed: exactly a 1-process
    run's batch)."""
    size = data.size
    mine = part_index(batch_size, part, cfg.train.accumulate)
    for x, _ in data.iterate("train", batch_size, shuffle=True, generator=generator, flip=cfg.data.flip,
                             drop_last=True, device=device, order=order, start=start, part=part,
                             micro=cfg.train.accumulate):
        if draw_masks is not None:
            m = draw_masks(batch_size, mask_generator)
        else:
            m = make_masks(cfg.masks.kind, batch_size, size, size, generator=mask_generator,
                           device=mask_generator.device, **cfg.masks.params)
        yield x, m[mine].to(device)


def val_batches(data: ImageCache, cfg: RunConfig, n: int, batch_size: int, device, split: str = "val"):
    """(x, m): the first n images of `split` under holes fixed per (eval_seed, position in the split), the
    same holes the evaluator uses, so every model and every epoch sees them."""
    for _, _, x, m in data.heldout_batches({cfg.masks.kind: cfg.masks.params}, n, cfg.masks.eval_seed, split,
                                           batch_size, device):
        yield x, m


@torch.no_grad()
def validate(model: GenModel, data: ImageCache, cfg: RunConfig, device, split: str = "val") -> dict:
    """Mean loss parts and composited-fill PSNR over the first `val_images` images of `split`.

    Under torchrun every rank scores every world-th batch and the sums are reduced across ranks, so all
    ranks return the same numbers, those of a 1-process run up to the summation order.
    """
    from genfill.metrics.basic import psnr

    model.eval()
    sums: dict[str, float] = {}
    n = 0
    world, me = distributed.world_size(), distributed.rank()
    for i, (x, m) in enumerate(val_batches(data, cfg, cfg.train.val_images, cfg.train.batch_size, device, split)):
        if i % world != me:
            continue
        with autocast(device, cfg.train.amp and fast_path(cfg.train.fast, device)):
            out = model(x, m)
        fill = composite(x, m, out.pred.float())
        vals = {"loss": out.loss.float(), **{k: v.float() for k, v in out.parts.items()}}
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + v.item() * len(x)
        sums["psnr"] = sums.get("psnr", 0.0) + psnr(fill, x).sum().item()
        n += len(x)
    model.train()
    if world > 1:
        every = distributed.gather_objects((sums, n))
        sums = {k: sum(s.get(k, 0.0) for s, _ in every) for k in every[0][0]}
        n = sum(c for _, c in every)
    return {k: v / max(n, 1) for k, v in sums.items()}


def save_samples(model: GenModel, data: ImageCache, cfg: RunConfig, device, path: Path, n: int = 8) -> None:
    """A panel of validation fills (rows: original / masked / fill) plus prior samples when the model has them
    and the heat map of the fill's uncertainty when it has one (`GenModel.uncertainty_map`)."""
    model.eval()
    x, m = next(val_batches(data, cfg, n, n, device))
    with torch.no_grad():
        filled = model.fill(x, m)
        rows = [filled]
        if model.can_sample:
            rows.append(model.sample(len(x), torch.Generator(device).manual_seed(0)))
        unc = model.uncertainty_map(x, m, generator=torch.Generator(device).manual_seed(0))
    save_image(fill_panel(x, m, *rows, uncertainty=unc), path)
    model.train()


def plot_curves(run_dir: Path) -> None:
    """training-curves PNG from metrics.jsonl: every logged part, train and val."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir / "metrics.jsonl")
    keys = sorted({k for r in rows for k in r if k not in ("step", "epoch", "split", "time", "lr")
                   and all(isinstance(r.get(k, 0.0), (int, float)) for r in rows)})
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split, style in (("train", "-"), ("val", "o-")):
            pts = [(r["step"], r[key]) for r in rows if r.get("split") == split and key in r]
            if pts:
                ax.plot(*zip(*pts), style, label=split, markersize=3)
        ax.set_title(key)
        ax.set_xlabel("step")
        if all(r[key] > 0 for r in rows if key in r) and key not in ("psnr",):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, run_dir / "curves.png", dpi=90)


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a line that is not a JSON object (a kill mid-write tears the last one)
    is skipped, not fatal."""
    rows = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def check_finite(loss: torch.Tensor, step: int, kept: Path | None = None) -> None:
    if not torch.isfinite(loss):
        where = (f"the last good checkpoint, {kept}, is kept" if kept is not None and kept.is_file()
                 else "no checkpoint was written")
        raise GenfillError(f"loss became {loss.item()} at step {step}: lower train.lr or set train.grad_clip "
                           f"({where})")


def write_log(log, row: dict) -> None:
    """One metrics.jsonl row, flushed (a fault test can kill between the halves of a line)."""
    line = json.dumps(row) + "\n"
    if os.environ.get("GENFILL_TEST_PAUSE", "").startswith("metrics"):
        log.write(line[: len(line) // 2])  # the fault test kills here, between the halves of a line
        log.flush()
        _pause_for_tests("metrics", str(row["step"]))
        line = line[len(line) // 2 :]
    log.write(line)
    log.flush()


RESUME_KEYS = ("optim", "step", "epoch", "best_val", "rng", "torch_rng")


def check_resumable(ckpt: dict, cfg, model: GenModel, size: int, channels: int, keys=RESUME_KEYS) -> None:
    """The checkpoint must hold what resume restores (`keys`), for this model (cfg.model) and data shape."""
    path = ckpt["path"]
    for key in keys:
        if key not in ckpt:
            raise GenfillError(f"cannot resume from {path}: it lacks {key!r} (not a training checkpoint)")
    if ckpt["kind"] != cfg.model["kind"]:
        raise GenfillError(f"cannot resume: the checkpoint holds a {ckpt['kind']} model, the config a "
                           f"{cfg.model['kind']}")
    if (ckpt["image_size"], ckpt["channels"]) != (size, channels):
        raise GenfillError(f"cannot resume: the run trained on {ckpt['image_size']}px images with "
                           f"{ckpt['channels']} channel(s), the data now has {size}px and {channels} "
                           f"(data.size / data.channels changed)")
    now, saved = to_dict(model.cfg), saved_config(ckpt["kind"], ckpt["model_config"])
    changed = sorted(k for k in set(now) | set(saved) if now.get(k) != saved.get(k))
    if changed:
        k = changed[0]
        raise GenfillError(f"cannot resume: model.{k} is {now.get(k)!r} in the config but "
                           f"{saved.get(k)!r} in the checkpoint (changed keys: {', '.join(changed)}); "
                           f"use a new run name to train a different model")


def train_step(model: GenModel, forward, opt, opt_d, x: torch.Tensor, m: torch.Tensor, kl_scale: float,
               use_amp: bool, grad_clip: float | None,
               accumulate: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step (two for adversarial models). Returns the loss and its parts as device tensors;
    nothing here waits for the device. `forward` is the model, its DistributedDataParallel wrapper (under
    torchrun: DDP averages the gradients during backward) and/or its torch.compile'd wrapper. An adversarial
    model's steps run backward through d_loss / g_adv_loss, which DDP does not see, so under torchrun its
    gradients are averaged explicitly before each optimiser step (distributed.average_gradients).

    With `accumulate` k > 1 the batch is cut into k equal micro-batches whose gradients add up (each loss
    scaled by 1/k) to the gradient of the whole batch, for models whose loss is a mean over images (not
    through batch statistics: BatchNorm, TreeVI's tree). A plain model frees each micro-batch's graph
    before the next; an adversarial model keeps the generator's graphs until its step, because the
    discriminator must first be updated on all of the batch's fakes, so only the discriminator saves memory."""
    dev = x.device
    micro = list(zip(x.chunk(accumulate), m.chunk(accumulate)))
    k = len(micro)
    opt.zero_grad(set_to_none=True)
    outs = []
    loss_sum = torch.zeros((), device=dev)
    parts_sum: dict[str, torch.Tensor] = {}

    def add(parts: dict[str, torch.Tensor]) -> None:
        for name, v in parts.items():
            parts_sum[name] = parts_sum.get(name, 0) + v.detach().float() / k

    for i, (xi, mi) in enumerate(micro):
        # DDP: all-reduce only in the last micro-batch's backward (the gradients have added up by then)
        with forward.no_sync() if hasattr(forward, "no_sync") and i < k - 1 else nullcontext():
            with autocast(dev, use_amp):
                out = forward(xi, mi, kl_scale=kl_scale)
            add(out.parts)
            if opt_d is None:
                (out.loss / k).backward()  # this micro-batch's graph is freed here
                loss_sum = loss_sum + out.loss.detach().float() / k
            else:
                outs.append(out)

    if opt_d is not None:
        # Discriminator step: real images vs the generator's composited fills (or the model's own
        # `out.fake`, e.g. AVAE's prior samples), detached.
        fakes = [out.fake if out.fake is not None else composite(xi, mi, out.pred)
                 for out, (xi, mi) in zip(outs, micro)]
        opt_d.zero_grad(set_to_none=True)
        for fake, (xi, mi) in zip(fakes, micro):
            with autocast(dev, use_amp):
                d_loss, d_parts = model.d_loss(xi, mi, fake.detach())
            (d_loss / k).backward()
            add(d_parts)
        distributed.average_gradients(model.discriminator.parameters())
        opt_d.step()
        # Generator step: its own losses plus fooling the (just updated) discriminator.
        total = 0
        for out, fake, (xi, mi) in zip(outs, fakes, micro):
            with autocast(dev, use_amp):
                g_adv, g_parts = model.g_adv_loss(xi, mi, fake)
            total = total + (out.loss + g_adv) / k
            add(g_parts)
        total.backward()
        distributed.average_gradients(model.generator_parameters())
        loss_sum = total.detach().float()

    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.generator_parameters(), grad_clip)
    opt.step()
    return loss_sum, parts_sum


def lr_factor(tc: TrainConfig, step: int, total_steps: int, time_frac: float = 0.0) -> float:
    """The learning-rate multiplier for optimiser step `step` (0-based) of `total_steps`: a linear warm-up
    over train.warmup_steps (1/w, 2/w, ..., 1), times 1 (constant) or a cosine from 1 after the warm-up
    to 0 at the end of training; the end is `total_steps`, or the time budget if that comes first
    (`time_frac` = elapsed / train.time_budget_s)."""
    w = tc.warmup_steps
    warm = min(1.0, (step + 1) / w) if w > 0 else 1.0
    if tc.schedule == "constant":
        return warm
    progress = max((step - w) / max(1, total_steps - w), time_frac)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def total_steps(tc: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps the run will take when no time budget stops it first."""
    total = tc.epochs * steps_per_epoch
    return min(total, tc.max_steps) if tc.max_steps is not None else total


def mask_source(cfg: RunConfig, size: int, device: torch.device, verbose: bool = False):
    """`draw(n, generator)` -> (n,1,size,size) training masks on `device`, and the device the generator must
    live on. From the mask bank (masks.bank_size > 0, a random kind) or drawn fresh per step. Masks are made
    on the training device (CPU or CUDA), so a step does no host work for them."""
    where = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    kind, params = cfg.masks.kind, dict(cfg.masks.params)
    if cfg.masks.bank_size > 0 and MASK_KINDS[kind].random:
        bank = mask_bank(kind, cfg.masks.bank_size, size, size, seed=cfg.masks.bank_seed, device=where,
                         cache_dir=cfg.data.cache_root, verbose=verbose, **params)
        return (lambda n, g: bank.sample(n, g).to(device)), where

    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        return make_masks(kind, n, size, size, generator=g, device=where, **params).to(device)

    return draw, where


def prepare(model: GenModel, tc: TrainConfig, dev: torch.device, fast: bool):
    """`model` on `dev` with its optimisers: (model, forward, opt, opt_d). The fast path keeps activations
    channels_last, steps Adam fused and (on CUDA) lets cuDNN autotune and use TF32; `forward` is the model
    or, with train.compile, its torch.compile'd wrapper. Shared by train() and benchmarks/throughput.py."""
    model = to_device(model, dev, fast)
    opt = adam(model.generator_parameters(), tc.lr, tc, dev, fast)
    opt_d = None
    if model.discriminator is not None:
        opt_d = adam(model.discriminator.parameters(), tc.lr_d or tc.lr, tc, dev, fast)
    forward = torch.compile(model) if tc.compile else model
    return model, forward, opt, opt_d


def to_device(module: torch.nn.Module, dev: torch.device, fast: bool) -> torch.nn.Module:
    """`module` on `dev`; on the fast path channels_last, and on CUDA cuDNN autotuning and TF32."""
    module = module.to(dev)
    if fast:
        module = module.to(memory_format=torch.channels_last)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return module


def adam(params, lr: float, tc: TrainConfig, dev: torch.device, fast: bool) -> torch.optim.Adam:
    """Adam with train.betas and train.weight_decay (fused on the CUDA fast path)."""
    fused = {"fused": True} if fast and dev.type == "cuda" else {}
    return torch.optim.Adam(params, lr=lr, betas=tc.betas, weight_decay=tc.weight_decay, **fused)


def set_lr(opt: torch.optim.Optimizer | None, lr: float) -> None:
    for group in (opt.param_groups if opt is not None else ()):
        group["lr"] = lr


def freeze_encoder(model: GenModel, frozen: bool) -> None:
    """train.freeze_encoder_steps: the encoder's parameters get no gradient (backward stops at them), so Adam,
    which skips parameters without one, leaves them (and their moments) alone."""
    for p in model.encoder_parameters():
        p.requires_grad_(not frozen)


def out_of_budget(tc: TrainConfig, step: int, elapsed: float) -> bool:
    """train.max_steps reached or train.time_budget_s spent: stop inside the epoch."""
    return (tc.max_steps is not None and step >= tc.max_steps) or (
        tc.time_budget_s is not None and elapsed >= tc.time_budget_s)


RUN_FILES = ("checkpoints", "config.yaml", "metrics.jsonl", "samples", "curves.png")  # what a run writes


def check_new_run(run_dir: Path, resume: bool) -> Path:
    """A new run must not write into a folder that holds anything of another run (a best.pt without a last.pt
    is still someone's run), a resumed run must exist. Returns its checkpoints folder. The run's folder is
    the command's own from here: on --resume it rewrites the config and checkpoints it read (genfill.io)."""
    ckpt_dir = run_dir / "checkpoints"
    if not resume:
        if (ckpt_dir / "last.pt").exists():
            raise GenfillError(f"{run_dir} already holds a run: pass --resume, or pick another name (--set name=...)")
        found = [name for name in RUN_FILES if (run_dir / name).exists() and not _empty_dir(run_dir / name)]
        if found:
            raise GenfillError(f"{run_dir} holds {found[0]} of another run (no checkpoints/last.pt to resume): "
                               "pick another name (--set name=...) or move it away")
    if resume and not (ckpt_dir / "last.pt").exists():
        raise GenfillError(f"nothing to resume: {ckpt_dir / 'last.pt'} does not exist")
    own_folder(run_dir)
    return ckpt_dir


def _empty_dir(path: Path) -> bool:
    """A folder holding nothing but temp files a killed writer left (those are swept when the run opens)."""
    try:
        return path.is_dir() and all(p.name.startswith(".") and p.name.endswith(".tmp") for p in path.iterdir())
    except OSError:
        return False


def open_run(cfg, folders: list[Path], step: int, resume: bool, main: bool = True):
    """Make the run's folders (first removing temp files a killed write left), write config.yaml, and open
    metrics.jsonl for appending. The log holds exactly the steps the checkpoint holds: rows written after it
    (a kill between the log and the checkpoint) would be written again on resume, and a torn last line is
    dropped. Only rank 0 (`main`) writes; the others get a log into /dev/null."""
    run_dir = cfg.run_dir
    log_path = run_dir / "metrics.jsonl"
    if main:
        for folder in (run_dir, *folders):
            remove_stale_temps(folder)
        for folder in folders:
            make_dir(folder)
        save_config(cfg, run_dir / "config.yaml")
        rows = [r for r in read_metrics(log_path) if r["step"] <= step] if resume else []
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in rows))
    try:
        return open(log_path, "a") if main else open(os.devnull, "w")
    except OSError as exc:
        raise GenfillError(f"cannot write {log_path}: {exc.strerror}") from None


def rng_state(dev: torch.device, **generators: torch.Generator) -> dict:
    """The random state a resumed run continues from: each named generator's, torch's, the GPU's."""
    return {**{k: g.get_state() for k, g in generators.items()}, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}


def restore_rng(ckpt: dict, dev: torch.device, **generators: torch.Generator) -> None:
    """Undo `rng_state` (a generator missing from an older checkpoint keeps its seed)."""
    for key, g in generators.items():
        if ckpt.get(key) is not None:
            g.set_state(ckpt[key].cpu())
    torch.set_rng_state(ckpt["torch_rng"].cpu())  # the models' own noise (reparameterisation, ...)
    if dev.type == "cuda" and ckpt.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), dev)


def finished(tc: TrainConfig, step: int, epoch: int) -> bool:
    return epoch >= tc.epochs or (tc.max_steps is not None and step >= tc.max_steps)


def wrap_ddp(model: GenModel, forward, dev: torch.device):
    """Under torchrun: the forward DDP runs (gradients averaged in backward) for a plain family; an
    adversarial family keeps `forward` (train_step averages its gradients) and gets rank 0's weights.
    Returns (model, forward)."""
    if distributed.world_size() == 1:
        return model, forward
    if model.discriminator is not None:
        distributed.broadcast_module(model)
        return model, forward
    from torch.nn.parallel import DistributedDataParallel as DDP

    ddp = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True)
    return model, (torch.compile(ddp) if forward is not model else ddp)


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
    steps = max(1, n_train // tc.batch_size) if n_train is not None else None
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
    from genfill.data.datasets import split_sizes

    return split_sizes(cfg.count)[0] if cfg.name == "faces64" else None


def train(cfg: RunConfig, resume: bool = False, device: str | None = None, verbose: bool = True,
          data: ImageCache | None = None) -> TrainResult:
    """Train cfg's model into cfg.run_dir. `data` replaces the config's dataset (benchmarks, tests).
    Under torchrun this joins the process group and leaves it at the end (genfill.distributed)."""
    dev, created = distributed.init(pick_device(device or cfg.train.device))
    try:
        return _train(cfg, resume, dev, verbose and distributed.is_main(), data)
    finally:
        if created:
            distributed.teardown()


def _train(cfg: RunConfig, resume: bool, dev: torch.device, verbose: bool, data: ImageCache | None) -> TrainResult:
    tc = cfg.train
    world, main = distributed.world_size(), distributed.is_main()
    part = (distributed.rank(), world) if world > 1 else None
    distributed.per_rank_batch(tc.batch_size, world, tc.accumulate)
    if tc.sync_bn and world > 1 and dev.type != "cuda":
        raise GenfillError("train.sync_bn needs GPUs (SyncBatchNorm runs on CUDA only)")
    if tc.freeze_encoder_steps and world > 1:
        raise GenfillError("train.freeze_encoder_steps: not supported under torchrun (DDP fixes the trained "
                           "parameters when it wraps the model)")
    run_dir = cfg.run_dir
    ckpt_dir = check_new_run(run_dir, resume)

    # ---- data, resident on the device when it fits; training masks from the bank, on the device
    with distributed.main_first():  # rank 0 builds the data cache and the mask bank on disk, the rest read them
        data = (data if data is not None else load_cache(cfg.data, verbose=verbose)).to(dev)
        if len(data.split("train")) == 0 or len(data.split("val")) == 0:
            raise GenfillError("the dataset needs at least one training and one validation image")
        size, channels = data.size, data.channels
        draw_masks, mask_device = mask_source(cfg, size, dev, verbose)

    # ---- model, optimisers, the weight average. Seeded here, after the data and the mask bank: nothing
    # before may change the model's init.
    torch.manual_seed(tc.seed)
    fast = fast_path(tc.fast, dev)
    use_amp = tc.amp and fast
    model = build_model(cfg.model, size, channels)
    if tc.sync_bn and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model, forward, opt, opt_d = prepare(model, tc, dev, fast)
    if tc.init_from and not resume:  # on resume, last.pt already holds the fine-tuned weights
        from genfill.export import init_from

        loaded = init_from(model, tc.init_from)
        if verbose:
            say(f"genfill: starting from {loaded}")
    if tc.init_encoder_from and not resume:  # likewise: never over the trained encoder
        loaded = load_encoder(model, tc.init_encoder_from)
        if verbose:
            say(f"genfill: starting from {loaded}")
    model, forward = wrap_ddp(model, forward, dev)  # after init_from: rank 0's weights everywhere
    ema = EMA(model, tc.ema) if tc.ema > 0 else None  # after init_from: the average starts from those weights
    step, epoch, best_val = 0, 0, math.inf
    order, seen = None, 0  # a half-done epoch's image order and how many of it were trained on
    g = torch.Generator().manual_seed(tc.seed)  # data order and flips
    g_mask = torch.Generator(mask_device).manual_seed(tc.seed + 1)  # which bank masks, and their transforms
    if resume:
        ckpt = load_checkpoint(ckpt_dir / "last.pt", dev)
        check_resumable(ckpt, cfg, model, size, channels)
        # "model" holds the weights load_model gives (the average when train.ema is on), "model_live" the
        # optimiser's own weights when they differ.
        live = ckpt.get("model_live") or ckpt["model"]
        try:
            model.load_state_dict(live)
            if ema is not None:
                ema.model.load_state_dict(ckpt["model"] if ckpt.get("model_live") is not None else live)
            opt.load_state_dict(ckpt["optim"])
            if opt_d is not None and ckpt.get("optim_d") is not None:
                opt_d.load_state_dict(ckpt["optim_d"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise GenfillError(f"cannot resume from {ckpt['path']}: its weights do not fit this model "
                               f"({str(exc).splitlines()[0]})") from None
        step, epoch, best_val = ckpt["step"], ckpt["epoch"], ckpt["best_val"]
        if ckpt.get("epoch_order") is not None:
            order, seen = ckpt["epoch_order"].cpu(), int(ckpt["epoch_seen"])
        restore_rng(ckpt, dev, rng=g, rng_masks=g_mask)
        if finished(tc, step, epoch):
            # A finished run: train nothing more (not even one step), write nothing.
            return TrainResult(run_dir, step, epoch, best_val, {}, 0.0)
    # only rank 0 writes; every rank holds the same state (genfill.distributed)
    log = open_run(cfg, [ckpt_dir, run_dir / "samples"], step, resume, main)
    shown = ema.model if ema is not None else model  # the weights validated, filled with and saved

    def checkpoint(name: str) -> None:
        # save_model writes what rebuilds the model (the average when train.ema is on: what load_model
        # gives); the rest is what a resumed run continues from, the live weights included. A run stopped
        # mid-epoch (max_steps, time budget) resumes inside that epoch: same image order, same position
        # (epoch_order, epoch_seen), so it matches a run that never stopped.
        if not main:
            return
        save_model(ckpt_dir / name, shown, run_config=to_dict(cfg),
                   model_live=model.state_dict() if ema is not None else None,
                   optim=opt.state_dict(), optim_d=opt_d.state_dict() if opt_d is not None else None,
                   step=step, epoch=epoch, best_val=best_val, epoch_order=order, epoch_seen=seen,
                   **rng_state(dev, rng=g, rng_masks=g_mask))

    n_train = len(data.split("train"))
    steps_per_epoch = max(1, n_train // tc.batch_size)
    horizon = total_steps(tc, steps_per_epoch)
    t0 = time.time()
    loop_s, loop_images, first = 0.0, 0, True
    last_val: dict = {}
    stop = False
    loss = None
    model.train()
    if verbose:
        say(f"genfill: training {cfg.model['kind']} ({model.num_parameters():,} parameters) on {dev} "
            f"-> {run_dir}")
    # One run-level bar: steps towards max_steps (or epochs x steps per epoch), against the time budget when
    # there is one; its ETA is whichever ends the run first. Validation results ride along on its line.
    budget = tc.time_budget_s - (time.time() - t0) if tc.time_budget_s else None
    bar = Progress(horizon, f"train {cfg.name}", "steps", budget_s=budget, enabled=verbose, initial=step)
    try:
        while not finished(tc, step, epoch) and not stop:
            if order is None:
                order, seen = data.epoch_order("train", g), 0
            ended = True
            t_loop = time.perf_counter()
            for x, m in train_batches(data, cfg, tc.batch_size, g, g_mask, dev, draw_masks, order=order, start=seen,
                                       part=part):
                if fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                kl_scale = min(1.0, (step + 1) / tc.kl_warmup_steps) if tc.kl_warmup_steps > 0 else 1.0
                # under torchrun with a time budget, rank 0's clock (one tiny broadcast per step)
                elapsed = distributed.broadcast_float(time.time() - t0) if tc.time_budget_s else time.time() - t0
                lr = lr_factor(tc, step, horizon, elapsed / tc.time_budget_s if tc.time_budget_s else 0.0)
                set_lr(opt, tc.lr * lr)
                set_lr(opt_d, (tc.lr_d or tc.lr) * lr)
                if tc.freeze_encoder_steps:  # frozen for steps 0 .. N-1 (a resumed run too); cheap: a flag per tensor
                    freeze_encoder(model, step < tc.freeze_encoder_steps)

                _pause_for_tests("step", str(step + 1))
                with distributed.batch_part(part):
                    loss, parts = train_step(model, forward, opt, opt_d, x, m, kl_scale, use_amp, tc.grad_clip,
                                             tc.accumulate)
                step += 1
                seen += tc.batch_size  # the global batch: every rank walks the same order
                if ema is not None:
                    ema.update(model, step)
                bar.update(1)
                if first:  # the loop's clock starts after its first step (lazy init, compile, autotune)
                    loss.item()
                    first, t_loop = False, time.perf_counter()
                else:
                    loop_images += tc.batch_size

                # The host reads the device only here, every log_every steps (and at the epoch's end).
                if step % tc.log_every == 0 or step == 1:
                    loss, parts = distributed.mean_of(loss, parts)  # the global batch's, under torchrun
                    check_finite(loss, step, ckpt_dir / "last.pt")
                    vals = {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}, "lr": tc.lr * lr}
                    bar.set_stats(loss=vals["loss"])
                    write_log(log, {"step": step, "epoch": epoch, "split": "train",
                                    "time": round(time.time() - t0, 2), **vals})
                if out_of_budget(tc, step, elapsed):
                    stop = True
                    ended = seen >= n_train - n_train % tc.batch_size if n_train >= tc.batch_size else True
                    break
            loop_s += time.perf_counter() - t_loop
            if loss is not None:
                loss = distributed.mean_of(loss, {})[0]  # every rank stops alike on a non-finite loss
                check_finite(loss, step, ckpt_dir / "last.pt")
            if ended:
                epoch += 1
                order, seen = None, 0

            # ---- end of epoch (or a stop inside one): validate (the averaged weights when train.ema is on),
            # keep the best, write everything atomically. Validation and samples run on a forked RNG: an extra
            # validation (a stop mid-epoch) must not change the training noise that follows, or a resumed run
            # would differ from a straight one.
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                last_val = validate(shown, data, cfg, dev)
                if tc.sample_every_epoch and main:
                    save_samples(shown, data, cfg, dev, run_dir / "samples" / f"epoch{max(epoch, 1):03d}.png")
            last_val.update(model.epoch_stats())
            write_log(log, {"step": step, "epoch": epoch, "split": "val", "time": round(time.time() - t0, 2),
                            **last_val})
            bar.set_stats(epoch=epoch, **{f"val {k}": v for k, v in last_val.items() if k in ("loss", "psnr")})
            if last_val["loss"] < best_val:
                best_val = last_val["loss"]
                checkpoint("best.pt")
            checkpoint("last.pt")
            if main:
                plot_curves(run_dir)
    finally:
        bar.close()
    log.close()
    distributed.barrier()  # the others wait for rank 0's last writes
    return TrainResult(run_dir, step, epoch, best_val, last_val, time.time() - t0, loop_s, loop_images)
