"""An exponential moving average of a model's weights (train.ema), the weights a run validates, fills and
saves with.

After optimiser step t (1-based) every floating-point parameter is averaged as

    avg <- d_t * avg + (1 - d_t) * w,      d_t = min(decay, (1 + t) / (10 + t))

The warm-up of d_t (TensorFlow's ExponentialMovingAverage with num_updates) keeps the average from
remembering the random initial weights on short runs: d_1 = 2/11, d_10 = 11/20, d_90 = 0.91, and it
reaches decay 0.999 only after 8,990 steps. Buffers (BatchNorm statistics, a VQ-VAE's EMA codebook,
counters) are copied from the live model, not averaged: they are statistics of the live weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, step: int) -> float:
    """d_t of the module docstring for optimiser step `step` (1-based)."""
    return min(decay, (1 + step) / (10 + step))


class EMA:
    """`EMA(model, decay)`; `update(model, step)` after each optimiser step; `.model` is the averaged copy
    (eval mode, no gradients), a model of the same class that fill/sample/validate take as it is."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs = [(a, w) for a, w in zip(self.model.parameters(), model.parameters())
                       if a.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if self._pairs:
            avg, live = zip(*self._pairs)
            torch._foreach_lerp_(list(avg), list(live), 1.0 - ema_decay(self.decay, step))
        for a, b in zip(self.model.buffers(), model.buffers()):
            a.copy_(b)
