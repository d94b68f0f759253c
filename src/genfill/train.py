"""The training loop, top to bottom like nanoGPT's train.py: set-up (data on the device, the mask source, the
model, its optimisers and weight average, resume), the step (`train_step`: one optimiser step, two for
adversarial models, written out), logging, validation and atomic checkpoints at each epoch's end, the stop
(epochs, train.max_steps, train.time_budget_s). What `genfill pretrain` shares with it (the run folder, the
log, RNG state, schedule and budget) is in genfill.runs.

A run directory holds: config.yaml, checkpoints/{last,best}.pt, metrics.jsonl, samples/, curves.png.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from genfill import distributed
from genfill.config import RunConfig, TrainConfig, to_dict
from genfill.data.cache import ImageCache, load_cache
from genfill.masks import MASK_KINDS, make_masks, mask_bank
from genfill.device import autocast, fast_path, pick_device
from genfill.distributed import part_index
from genfill.ema import EMA
from genfill.errors import GenfillError
from genfill.export import init_from
from genfill.io import load_checkpoint, save_image
from genfill.metrics.basic import psnr
from genfill.models import GenModel, build_model, load_encoder, save_model
from genfill.pixels import composite, fill_panel
from genfill.progress import Progress, say
from genfill.runs import (adam, check_finite, check_new_run, check_resumable, finished, lr_factor, open_run,
                          out_of_budget, plot_curves, restore_rng, rng_state, set_lr, steps_per_epoch, to_device,
                          total_steps, write_log)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    best_val: float
    last_val: dict
    seconds: float


@dataclass
class State:
    """The model, its optimisers and weight average, and where the run is: what a checkpoint holds and a
    resumed run continues from."""
    model: GenModel
    forward: Callable  # the model, or its DDP and/or torch.compile wrapper
    opt: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None  # the discriminator's, for adversarial families
    ema: EMA | None
    g: torch.Generator  # data order and flips
    g_mask: torch.Generator  # which bank masks, and their transforms
    step: int = 0
    epoch: int = 0
    best_val: float = math.inf
    order: torch.Tensor | None = None  # a half-done epoch's image order
    seen: int = 0  # how many images of that order were trained on

    @property
    def shown(self) -> GenModel:
        """The weights validated, filled with and saved: the average when train.ema is on."""
        return self.ema.model if self.ema is not None else self.model


# ---- the loop


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
    tc, run_dir = cfg.train, cfg.run_dir
    world, main = distributed.world_size(), distributed.is_main()
    part = (distributed.rank(), world) if world > 1 else None
    check_world(tc, world, dev)
    ckpt_dir = check_new_run(run_dir, resume)

    # ---- data, resident on the device when it fits; training masks from the bank, on the device
    with distributed.main_first():  # rank 0 builds the data cache and the mask bank on disk, the rest read them
        data = (data if data is not None else load_cache(cfg.data, verbose=verbose)).to(dev)
        if len(data.split("train")) == 0 or len(data.split("val")) == 0:
            raise GenfillError("the dataset needs at least one training and one validation image")
        draw_masks, mask_device = mask_source(cfg, data.size, dev, verbose)

    # ---- model, optimisers, the weight average; on resume, the state last.pt holds
    fast = fast_path(tc.fast, dev)
    s = start(cfg, data.size, data.channels, dev, fast, mask_device, resume, verbose, data)
    if resume:
        resume_from(s, ckpt_dir / "last.pt", cfg, data.size, data.channels, dev)
        if finished(tc, s.step, s.epoch):  # a finished run: train nothing more (not even one step), write nothing
            return TrainResult(run_dir, s.step, s.epoch, s.best_val, {}, 0.0)
    log = open_run(cfg, [ckpt_dir, run_dir / "samples"], s.step, resume, main)  # only rank 0 writes

    n_train = len(data.split("train"))
    horizon = total_steps(tc, steps_per_epoch(tc, n_train))
    t0 = time.time()
    last_val, stop, loss = {}, False, None
    s.model.train()
    if verbose:
        say(f"genfill: training {cfg.model['kind']} ({s.model.num_parameters():,} parameters) on {dev} "
            f"-> {run_dir}")
    # One run-level bar: steps towards max_steps (or epochs x steps per epoch), against the time budget when
    # there is one; its ETA is whichever ends the run first. Validation results ride along on its line.
    budget = tc.time_budget_s - (time.time() - t0) if tc.time_budget_s else None
    bar = Progress(horizon, f"train {cfg.name}", "steps", budget_s=budget, enabled=verbose, initial=s.step)
    try:
        while not finished(tc, s.step, s.epoch) and not stop:
            if s.order is None:
                s.order, s.seen = data.epoch_order("train", s.g), 0
            ended = True
            for x, m in train_batches(data, cfg, tc.batch_size, s.g, s.g_mask, dev, draw_masks, order=s.order,
                                      start=s.seen, part=part):
                if fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                # under torchrun with a time budget, rank 0's clock (one tiny broadcast per step)
                elapsed = distributed.broadcast_float(time.time() - t0) if tc.time_budget_s else time.time() - t0
                lr = schedule(s, tc, horizon, elapsed)
                with distributed.batch_part(part):
                    loss, parts = train_step(s.model, s.forward, s.opt, s.opt_d, x, m, kl_warmup(tc, s.step),
                                             tc.amp and fast, tc.grad_clip, tc.accumulate)
                s.step += 1
                s.seen += tc.batch_size  # the global batch: every rank walks the same order
                if s.ema is not None:
                    s.ema.update(s.model, s.step)
                bar.update(1)
                # The host reads the device only here, every log_every steps (and at the epoch's end).
                if s.step % tc.log_every == 0 or s.step == 1:
                    log_step(log, bar, s, loss, parts, tc.lr * lr, t0, ckpt_dir / "last.pt")
                if out_of_budget(tc, s.step, elapsed):
                    stop = True
                    ended = s.seen >= n_train - n_train % tc.batch_size if n_train >= tc.batch_size else True
                    break
            if loss is not None:
                loss = distributed.mean_of(loss, {})[0]  # every rank stops alike on a non-finite loss
                check_finite(loss, s.step, ckpt_dir / "last.pt")
            if ended:
                s.epoch += 1
                s.order, s.seen = None, 0
            last_val = end_epoch(s, cfg, data, dev, log, bar, ckpt_dir, t0, main)
    finally:
        bar.close()
    log.close()
    distributed.barrier()  # the others wait for rank 0's last writes
    return TrainResult(run_dir, s.step, s.epoch, s.best_val, last_val, time.time() - t0)


# ---- set-up


def check_world(tc: TrainConfig, world: int, dev: torch.device) -> None:
    """What the world size (torchrun) rules out, before anything is built or written."""
    distributed.check_batch(tc.batch_size, world, tc.accumulate)
    if tc.sync_bn and world > 1 and dev.type != "cuda":
        raise GenfillError("train.sync_bn needs GPUs (SyncBatchNorm runs on CUDA only)")
    if tc.freeze_encoder_steps and world > 1:
        raise GenfillError("train.freeze_encoder_steps: not supported under torchrun (DDP fixes the trained "
                           "parameters when it wraps the model)")


def train_batches(data: ImageCache, cfg: RunConfig, batch_size: int, generator: torch.Generator,
                  mask_generator: torch.Generator, device, draw_masks, order: torch.Tensor | None = None,
                  start: int = 0, part: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches (x, m): shuffled, flipped per `data.flip`, full batches only, with masks
    from `draw_masks(n, mask_generator)` (`mask_source`: the config's mask bank, sampled on the device, or
    fresh masks of its kind). Shared by train() and benchmarks/throughput.py. `order`/`start`: an epoch's
    image order and how many of it are done (resuming inside an epoch). `batch_size` is the global batch;
    `part` (rank, world) keeps this rank's slice of it, images and masks both drawn for the whole global
    batch (genfill.distributed: exactly a 1-process run's batch)."""
    mine = part_index(batch_size, part, cfg.train.accumulate)
    for x, _ in data.iterate("train", batch_size, shuffle=True, generator=generator, flip=cfg.data.flip,
                             drop_last=True, device=device, order=order, start=start, part=part,
                             micro=cfg.train.accumulate):
        yield x, draw_masks(batch_size, mask_generator)[mine].to(device)


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


def start(cfg: RunConfig, size: int, channels: int, dev: torch.device, fast: bool, mask_device: torch.device,
          resume: bool, verbose: bool, data: ImageCache | None = None) -> State:
    """The model, its optimisers, the weight average and the run's random streams. Seeded here, after the data
    and the mask bank: nothing before may change the model's init."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model, size, channels)
    if tc.sync_bn and distributed.world_size() > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model, forward, opt, opt_d = prepare(model, tc, dev, fast)
    # on resume, last.pt already holds the fine-tuned weights: never load over the trained ones
    for source, load in ((tc.init_from, init_from), (tc.init_encoder_from, load_encoder)):
        if source and not resume:
            loaded = load(model, source)
            if verbose:
                say(f"genfill: starting from {loaded}")
    if data is not None and not resume:  # training images a family keeps (exemplars); on resume last.pt has them
        model.index(data.split("train"), data.batch, torch.Generator().manual_seed(tc.seed + 2))
    model, forward = wrap_ddp(model, forward, dev)  # after init_from: rank 0's weights everywhere
    ema = EMA(model, tc.ema) if tc.ema > 0 else None  # after init_from: the average starts from those weights
    return State(model, forward, opt, opt_d, ema, g=torch.Generator().manual_seed(tc.seed),
                 g_mask=torch.Generator(mask_device).manual_seed(tc.seed + 1))


def prepare(model: GenModel, tc: TrainConfig, dev: torch.device, fast: bool):
    """`model` on `dev` with its optimisers: (model, forward, opt, opt_d). The fast path keeps activations
    channels_last, steps Adam fused and (on CUDA) lets cuDNN autotune and use TF32; `forward` is the model
    or, with train.compile, its torch.compile'd wrapper. Shared by train() and benchmarks/throughput.py."""
    model = to_device(model, dev, fast)
    opt = adam(model.param_groups(), tc.lr, tc, dev, fast)
    opt_d = None
    if model.discriminator is not None:
        opt_d = adam(model.discriminator.parameters(), tc.lr_d or tc.lr, tc, dev, fast)
    forward = torch.compile(model) if tc.compile else model
    return model, forward, opt, opt_d


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


def resume_from(s: State, path: Path, cfg: RunConfig, size: int, channels: int, dev: torch.device) -> None:
    """Load the state a run's last.pt holds into `s`: weights, optimisers, position, random streams."""
    ckpt = load_checkpoint(path, dev)
    check_resumable(ckpt, cfg, s.model, size, channels)
    # "model" holds the weights load_model gives (the average when train.ema is on), "model_live" the
    # optimiser's own weights when they differ.
    live = ckpt.get("model_live") or ckpt["model"]
    try:
        s.model.load_state_dict(live)
        if s.ema is not None:
            s.ema.model.load_state_dict(ckpt["model"] if ckpt.get("model_live") is not None else live)
        s.opt.load_state_dict(ckpt["optim"])
        if s.opt_d is not None and ckpt.get("optim_d") is not None:
            s.opt_d.load_state_dict(ckpt["optim_d"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise GenfillError(f"cannot resume from {ckpt['path']}: its weights do not fit this model "
                           f"({str(exc).splitlines()[0]})") from None
    s.step, s.epoch, s.best_val = ckpt["step"], ckpt["epoch"], ckpt["best_val"]
    if ckpt.get("epoch_order") is not None:
        s.order, s.seen = ckpt["epoch_order"].cpu(), int(ckpt["epoch_seen"])
    restore_rng(ckpt, dev, rng=s.g, rng_masks=s.g_mask)


# ---- the step


def schedule(s: State, tc: TrainConfig, horizon: int, elapsed: float) -> float:
    """Set the learning rates (and the encoder freeze) for step `s.step`; returns the lr multiplier."""
    lr = lr_factor(tc, s.step, horizon, elapsed / tc.time_budget_s if tc.time_budget_s else 0.0)
    set_lr(s.opt, tc.lr * lr)
    set_lr(s.opt_d, (tc.lr_d or tc.lr) * lr)
    if tc.freeze_encoder_steps:  # frozen for steps 0 .. N-1 (a resumed run too); cheap: a flag per tensor
        freeze_encoder(s.model, s.step < tc.freeze_encoder_steps)
    return lr


def kl_warmup(tc: TrainConfig, step: int) -> float:
    """The KL term's weight at 0-based `step`: rising linearly over train.kl_warmup_steps, then 1."""
    return min(1.0, (step + 1) / tc.kl_warmup_steps) if tc.kl_warmup_steps > 0 else 1.0


def freeze_encoder(model: GenModel, frozen: bool) -> None:
    """train.freeze_encoder_steps: the encoder's parameters get no gradient (backward stops at them), so Adam,
    which skips parameters without one, leaves them (and their moments) alone."""
    for p in model.encoder_parameters():
        p.requires_grad_(not frozen)


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


# ---- logging, validation, checkpoints


def log_step(log, bar: Progress, s: State, loss: torch.Tensor, parts: dict, lr: float, t0: float,
             kept: Path) -> None:
    """One train row of metrics.jsonl: the global batch's loss and parts (read from the device here)."""
    loss, parts = distributed.mean_of(loss, parts)  # the global batch's, under torchrun
    check_finite(loss, s.step, kept)
    vals = {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}, "lr": lr}
    bar.set_stats(loss=vals["loss"])
    write_log(log, {"step": s.step, "epoch": s.epoch, "split": "train", "time": round(time.time() - t0, 2), **vals})


def end_epoch(s: State, cfg: RunConfig, data: ImageCache, dev: torch.device, log, bar: Progress, ckpt_dir: Path,
              t0: float, main: bool) -> dict:
    """The end of an epoch (or a stop inside one): validate (the averaged weights when train.ema is on), keep
    the best, write everything atomically; returns the validation numbers. Validation and samples run on a
    forked RNG: an extra validation (a stop mid-epoch) must not change the training noise that follows, or a
    resumed run would differ from a straight one."""
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        last_val = validate(s.shown, data, cfg, dev)
        if cfg.train.sample_every_epoch and main:
            save_samples(s.shown, data, cfg, dev, cfg.run_dir / "samples" / f"epoch{max(s.epoch, 1):03d}.png")
    last_val.update(s.model.epoch_stats())
    write_log(log, {"step": s.step, "epoch": s.epoch, "split": "val", "time": round(time.time() - t0, 2),
                    **last_val})
    bar.set_stats(epoch=s.epoch, **{f"val {k}": v for k, v in last_val.items() if k in ("loss", "psnr")})
    if last_val["loss"] < s.best_val:
        s.best_val = last_val["loss"]
        save_checkpoint(s, cfg, ckpt_dir / "best.pt", dev, main)
    save_checkpoint(s, cfg, ckpt_dir / "last.pt", dev, main)
    if main:
        plot_curves(cfg.run_dir)
    return last_val


def save_checkpoint(s: State, cfg: RunConfig, path: Path, dev: torch.device, main: bool) -> None:
    """save_model writes what rebuilds the model (the average when train.ema is on: what load_model gives);
    the rest is what a resumed run continues from, the live weights included. A run stopped mid-epoch
    (max_steps, time budget) resumes inside that epoch: same image order, same position (epoch_order,
    epoch_seen), so it matches a run that never stopped. Only rank 0 writes."""
    if not main:
        return
    save_model(path, s.shown, run_config=to_dict(cfg), model_live=s.model.state_dict() if s.ema is not None else None,
               optim=s.opt.state_dict(), optim_d=s.opt_d.state_dict() if s.opt_d is not None else None,
               step=s.step, epoch=s.epoch, best_val=s.best_val, epoch_order=s.order, epoch_seen=s.seen,
               **rng_state(dev, rng=s.g, rng_masks=s.g_mask))


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
