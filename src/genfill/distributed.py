"""Data-parallel training under torchrun: process-group set-up and teardown, rank helpers, and the one
trick that makes N processes train exactly like one.

`genfill train` reads torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); without it the world is one
process and every helper here is a no-op. NCCL on CUDA, gloo on CPU.

Exactness. `train.batch_size` is the GLOBAL batch. Every rank draws the whole global batch's random
numbers (the epoch's image order, the flips, the bank masks) from the same seeded generators and keeps its
slice `[rank * b, (rank + 1) * b)`, b = batch_size / world (of each micro-batch with train.accumulate,
`part_index`); the model's reparameterisation noise is drawn the same way (`randn_like` below). So the union of the ranks' batches, masks and noise is exactly a 1-process
run's, every rank's generators stay in lockstep (a checkpoint written by rank 0 resumes every rank), and
the all-reduce mean of the ranks' gradients equals the 1-process gradient of a loss that is a mean over
images, up to the summation order. The price is drawing W times the random numbers a rank needs: a few
integers and one mask gather per image, negligible next to a step.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
import torch.distributed as dist

from genfill.errors import GenfillError

_PART: tuple[int, int] | None = None  # (rank, world) while a training step runs on a slice of the batch


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes logs, samples and checkpoints."""
    return rank() == 0


def launched() -> bool:
    """Whether torchrun (or torch.distributed.run) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> tuple[torch.device, bool]:
    """Join torchrun's process group (once) and return this rank's device: cuda:LOCAL_RANK on GPUs (NCCL),
    the CPU otherwise (gloo); and whether this call created the group (the caller then tears it down). A
    no-op when not launched by torchrun, or when the caller's own code has joined a group already."""
    if not launched():
        return device, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise GenfillError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) on this node: "
                               f"lower --nproc_per_node")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise GenfillError(f"multi-process training runs on cuda (NCCL) or cpu (gloo), not {device.type}")
    if dist.is_initialized():
        return device, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (building a data cache or a mask bank on disk), then the others, which
    then find it built."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def per_rank_batch(global_batch: int, world: int, accumulate: int = 1) -> int:
    """The per-rank batch for a global `train.batch_size`; world (and accumulate) must divide it."""
    check_batch(global_batch, world, accumulate)
    return global_batch // world


def check_batch(global_batch: int, world: int, accumulate: int = 1) -> None:
    """A global `train.batch_size` that `world` ranks share, each in `accumulate` micro-batches, or why not."""
    if global_batch % world:
        raise GenfillError(f"train.batch_size {global_batch} is the global batch: it must be divisible by the "
                           f"world size {world}")
    b = global_batch // world
    if b % accumulate:
        raise GenfillError(f"train.accumulate {accumulate} must divide the per-rank batch {b} "
                           f"(train.batch_size {global_batch} / world size {world})")


def part_index(n_global: int, part: tuple[int, int] | None, micro: int = 1) -> torch.Tensor | slice:
    """This rank's images of a global batch of n_global, split in `micro` micro-batches (train.accumulate):
    slice `rank` of each global micro-batch, so global micro-batch j is the union of the ranks' micro-batch
    j (the same grouping, and noise, as one process accumulating). All of it when part is None."""
    if part is None:
        return slice(0, n_global)
    r, w = part
    step = n_global // micro  # a global micro-batch
    b = step // w  # this rank's share of it
    return torch.cat([torch.arange(j * step + r * b, j * step + (r + 1) * b) for j in range(micro)])


@contextmanager
def batch_part(part: tuple[int, int] | None) -> Iterator[None]:
    """While active, `randn_like` draws noise for the global batch and returns this rank's slice."""
    global _PART
    before, _PART = _PART, (part if part is not None and part[1] > 1 else None)
    try:
        yield
    finally:
        _PART = before


def randn_like(t: torch.Tensor) -> torch.Tensor:
    """torch.randn_like(t) for per-image noise (dim 0 = images); inside `batch_part` the slice of the global
    batch's noise this rank's images would get in a 1-process run."""
    if _PART is None:
        return torch.randn_like(t)
    r, w = _PART
    n = t.shape[0]
    full = torch.randn((n * w, *t.shape[1:]), dtype=t.dtype, device=t.device)
    return full[r * n:(r + 1) * n]


def all_reduce_mean_(tensors: Iterable[torch.Tensor]) -> None:
    """Average tensors (gradients) across ranks in place, in one flat all-reduce."""
    ts = [t for t in tensors if t is not None]
    w = world_size()
    if w == 1 or not ts:
        return
    flat = torch.cat([t.reshape(-1) for t in ts])
    dist.all_reduce(flat)
    flat /= w
    offset = 0
    for t in ts:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Mean gradient across ranks (what DDP's hooks compute), for a step DDP cannot see: the adversarial
    families' discriminator and generator steps run backward through d_loss / g_adv_loss, not forward.
    Every rank runs the same code on the same model, so the parameters without a gradient (skipped by
    the optimiser, as in a 1-process run) are the same on every rank."""
    if world_size() == 1:
        return
    all_reduce_mean_([p.grad for p in params if p.grad is not None])


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers to every rank (DDP does this for the modules it wraps)."""
    if world_size() == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


def gather_objects(obj):
    """Every rank's `obj` as a list, rank order (validation sums)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_float(value: float) -> float:
    """Rank 0's `value` on every rank (the elapsed time a time budget and its cosine read, so every rank
    takes the same learning rate and stops at the same step)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, 0)
    return float(t.item())


def mean_of(loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The global batch's loss and parts (the mean of the ranks' per-rank means), for logging and the
    non-finite check, so every rank logs and stops alike. Identity in one process."""
    if world_size() == 1:
        return loss, parts
    flat = torch.stack([loss.detach().float(), *(v.detach().float() for v in parts.values())])
    dist.all_reduce(flat)
    flat /= world_size()
    return flat[0], dict(zip(parts, flat[1:]))
