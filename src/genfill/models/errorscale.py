"""ErrorScale: how far the mean fill is likely to be off at each hole pixel, learnt beside the mean pass.

Why: the sampler's `hybrid` blend spreads its K fills in a thin stroke by shifting the mean fill there by a
random amount times a size per pixel. How much FID that spread costs depends on where the size puts it, not
on how much there is of it (benchmarks/results/blend_variants_oracle.md, thin strokes, n = 300):
- sized by the mean fill's actual error (an oracle that reads the truth), the spread covers 0.65 of the truth at
  no FID cost: 25.75 against the mean fill's 25.69;
- sized by the detail energy of the known pixels around the stroke (the hand-made rule), 0.67 coverage costs
  4.8 FID (30.50): it shifts pixels the mean fill had right and misses the ones it had wrong (r 0.44).
So a better guess of the error's size buys spread for less FID. This head learns the guess: a small CNN that
reads the composited mean fill, the hole and the detail energy, and predicts the scale b of a Laplace law on
|mean fill - truth| per hole value. It is trained by that law's negative log-likelihood, |e| / b + log b,
minimised when b is the expected |e| there, on the mean pass's own errors, detached, so the mean pass is
trained exactly as without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.models.exemplars import detail_energy

WINDOW = 3.0  # px: the detail-energy window the head reads (the hybrid blend's HYBRID_WINDOW)
ENERGY_GAIN = 10.0  # detail energy is ~0.01-0.1 in [-1, 1] units: brought to the other inputs' range
SIZE_UNIT = 0.05  # the head's softplus output in [-1, 1] units: a typical thin-stroke error is ~0.03


class ErrorScale(nn.Module):
    """(N,C,H,W) predicted mean |mean fill - truth| (Laplace scale, > 0) from [composite, hole, detail energy]:
    five convolutions of `width` channels (the third dilated): a 11 px receptive field."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 2, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, channels, 1))

    def forward(self, x: Tensor, m: Tensor, mean: Tensor) -> Tensor:
        """x the images (only known pixels are read), m (N,1,H,W) the holes, mean the mean pass's prediction."""
        md = m.to(x.dtype)
        comp = x * (1 - md) + mean.to(x.dtype) * md
        energy = detail_energy(x, 1 - md, WINDOW).to(x.dtype)
        return F.softplus(self.net(torch.cat([comp, md, ENERGY_GAIN * energy], 1)).float()) * SIZE_UNIT + 1e-4


def laplace_nll(scale: Tensor, err: Tensor, m: Tensor) -> Tensor:
    """Mean over hole values of |err| / scale + log scale: the negative log-likelihood of err under a Laplace law
    of that scale (less log 2), minimised by scale = E|err| at each value."""
    hole = m.float().expand_as(err)
    nll = err.float().abs() / scale + scale.log()
    return (nll * hole).sum() / hole.sum().clamp_min(1)
