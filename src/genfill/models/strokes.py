"""`StrokeRefiner`: a small full-resolution network that corrects a mean fill in thin strokes (holes 1-2 px
wide) and says how far off the corrected fill still is there, pixel by pixel.

Why: in a stroke 1-2 px wide the truth is nearly fixed by the pixels on either side, so the question there is not
what to draw but how precisely. The sampler's U-Net sees the image at a quarter of its size in its deep layers
and fills such strokes barely better than the biharmonic peer (35.6 dB against 35.6 on faces64's thin holes),
and a sample's spread there must be as large as the fill's error *where* that error is: spread sized by the
true error costs no FID, spread sized by the detail around the stroke costs 2-5
(benchmarks/results/blend_variants_oracle.md). A few dilated 3x3 convolutions at full resolution (receptive
field 23 px) see exactly the neighbourhood that decides a stroke.

Input: [x * (1 - m), m, mean, 10 e] with e the detail energy of the known pixels around (the hybrid blend's rule,
`exemplars.detail_energy`, 3 px window); output: a correction (C channels) and a Laplace scale b (C channels,
[-1, 1] units): `0.05 exp(o)`, o clamped to [-12, 3]. The output convolution starts at zero: an untrained
refiner leaves the fill as it is and says b = 0.05 everywhere. The sampler (`stroke_width > 0`) trains it on
LaMa thin strokes drawn each step, under L1 of the corrected fill plus 0.1 x the Laplace negative log-likelihood
of b with that fill detached (b learns the corrected fill's expected absolute error), over the strokes' thin
part (`sampler.thin_part`). Trained apart on a finished faces64 sampler's mean fills (a probe, 8 CPU minutes,
1,680 steps; n = 300 thin test holes): thin-part PSNR 28.70 -> 29.39 dB, thin FID 25.69 -> 21.96, and
r(b, |error|) 0.61 where the detail energy reaches 0.42. Inside the sampler's step on 2 CPU cores it gets far
fewer useful steps (+0.29 dB, r 0.58 after 15 minutes): benchmarks/results/stroke_refiner.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.models.exemplars import detail_energy

STROKE_WINDOW = 3.0  # px: the detail-energy window of the refiner's fourth input (the hybrid blend's)
STROKE_DILATIONS = (1, 2, 4, 2, 1)  # the residual body's 3x3 convolutions: a receptive field of 23 px
SCALE_UNIT, SCALE_CLAMP = 0.05, (-12.0, 3.0)  # b = SCALE_UNIT * exp(o), o clamped


class StrokeRefiner(nn.Module):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.channels = channels
        self.inp = nn.Conv2d(2 * channels + 2, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in STROKE_DILATIONS)
        self.out = nn.Conv2d(width, 2 * channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, m: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
        """(correction, b), each (N,C,H,W), for images x under holes m (N,1,H,W; 1 = hole) with mean fill `mean`
        (whole-image predictions). Add the correction where the caller wants it (the sampler: the thin part)."""
        m = m.to(x.dtype)
        energy = detail_energy(x, 1 - m, STROKE_WINDOW).to(x.dtype)
        h = F.silu(self.inp(torch.cat([x * (1 - m), m, mean.to(x.dtype), 10 * energy], 1)))
        for conv in self.body:
            h = h + F.silu(conv(h))
        o = self.out(h)
        c = self.channels
        return o[:, :c], SCALE_UNIT * torch.exp(o[:, c:].float().clamp(*SCALE_CLAMP))
