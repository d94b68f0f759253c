"""Pluralistic fills and per-pixel uncertainty: how different K fills of one hole are, and how well a
predicted uncertainty knows where the fill is wrong.

Shapes: K fills of N images are (K,N,C,H,W); truth and a fill (N,C,H,W); masks (N,1,H,W), 1 = hole; all in
one pixel scale ([-1, 1] inside genfill; every number here is scale-free or in the caller's scale).

- **Uncertainty map** (`spread`): the per-pixel standard deviation over the K fills (Bessel-corrected),
  averaged over channels, (N,1,H,W). A family that learns a scale (the unet with `uncertainty: true`) gives
  its own map instead.
- **Diversity** (`diversity`): the mean over the K(K-1)/2 pairs of fills of a distance (N,) per image,
  genfill's LPIPS in `genfill eval`; 0 when the fills are identical.
- **Calibration, coverage**: the share of true hole values (every channel of every hole pixel) inside the
  predicted central interval of `level` (90 %). From K fills: the empirical 5 % and 95 % quantiles per
  value (`sample_interval`, linear interpolation between order statistics). From a predicted scale:
  mean +- z * sigma with z = 1.645 for a Gaussian, mean +- ln(10) * b for a Laplace of scale b
  (`scale_interval`; the same 90 % mass). **Finite K**: even fills drawn from the true distribution cover
  the truth less often than `level` when there are few of them: the truth is as likely to fall in any of
  the K+1 gaps between sorted fills, and the interpolated 5-95 % quantiles span a share about
  level * (K-1)/(K+1) of those gaps (0.70 at K = 8, 0.86 at K = 40); `nominal_coverage` is that figure,
  the one to compare a sampled coverage with.
- **Calibration, correlation** (`pearson`): Pearson's r between the uncertainty map and the absolute error
  of the fill (averaged over channels) over hole pixels: per image, or pooled over many (`CalibrationTally`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from genfill.errors import GenfillError

LEVEL = 0.9


def spread(samples: Tensor) -> Tensor:
    """(K,N,C,H,W) fills -> (N,1,H,W): per-pixel standard deviation over the K fills, averaged over channels."""
    return samples.float().std(0, correction=1).mean(1, keepdim=True)


def diversity(samples: Tensor, dist: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Mean over pairs i < j of dist(samples[i], samples[j]) (a per-image distance (N,)) -> (N,)."""
    k = samples.shape[0]
    if k < 2:
        raise ValueError("diversity needs at least two fills")
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    a = torch.cat([samples[i] for i, _ in pairs])
    b = torch.cat([samples[j] for _, j in pairs])
    return dist(a, b).float().view(len(pairs), -1).mean(0)


def sample_interval(samples: Tensor, level: float = LEVEL) -> tuple[Tensor, Tensor]:
    """Empirical central interval per value of K fills (K,N,C,H,W): the (1-level)/2 and (1+level)/2
    quantiles over K, each (N,C,H,W)."""
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float32, device=samples.device)
    lo, hi = torch.quantile(samples.float(), q, dim=0)
    return lo, hi


def half_width(level: float = LEVEL, distribution: str = "gaussian") -> float:
    """Half-width of the central `level` interval of a unit-scale Gaussian (sigma = 1: 1.645 at 90 %) or
    Laplace (b = 1: ln(1 / (1 - level)) = ln 10 at 90 %)."""
    if distribution == "gaussian":
        return math.sqrt(2.0) * torch.erfinv(torch.tensor(level, dtype=torch.float64)).item()
    if distribution == "laplace":
        return -math.log(1.0 - level)
    raise ValueError(f"unknown distribution {distribution!r} (gaussian | laplace)")


def scale_interval(mean: Tensor, scale: Tensor, distribution: str = "gaussian",
                   level: float = LEVEL) -> tuple[Tensor, Tensor]:
    """mean -+ half_width * scale: the central `level` interval of a predicted Gaussian (scale = sigma) or
    Laplace (scale = b)."""
    h = half_width(level, distribution) * scale.float()
    return mean.float() - h, mean.float() + h


def nominal_coverage(k: int, level: float = LEVEL) -> float:
    """What the empirical `level` interval of k fills covers when the truth is one more draw from the same
    distribution: about level * (k-1) / (k+1) (module docstring)."""
    return level * (k - 1) / (k + 1)


def coverage(lo: Tensor, hi: Tensor, truth: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    """(covered, total) per image (N,): hole values of `truth` (N,C,H,W) within [lo, hi], and hole values."""
    w = m.float().expand_as(truth)
    inside = ((truth.float() >= lo) & (truth.float() <= hi)).float() * w
    return inside.flatten(1).sum(1), w.flatten(1).sum(1)


def pearson(u: Tensor, err: Tensor, m: Tensor) -> Tensor:
    """Pearson's r per image (N,) between maps u and err (N,1,H,W) over hole pixels; NaN where either is
    constant over the hole or the hole is empty."""
    return Moments.of(u, err, m).r()


@dataclass
class Moments:
    """Sums that give Pearson's r over pixels added in any number of batches: n, sums of u, e, u^2, e^2, u*e
    (per image when built by `of`, tensors (N,); scalars once pooled by `total`)."""

    n: Tensor
    su: Tensor
    se: Tensor
    suu: Tensor
    see: Tensor
    sue: Tensor

    @classmethod
    def of(cls, u: Tensor, err: Tensor, m: Tensor) -> Moments:
        w = m.double().flatten(1)
        u, e = u.double().flatten(1), err.double().flatten(1)
        return cls(w.sum(1), (w * u).sum(1), (w * e).sum(1), (w * u * u).sum(1), (w * e * e).sum(1),
                   (w * u * e).sum(1))

    def total(self) -> Moments:
        return Moments(*(getattr(self, f).sum() for f in ("n", "su", "se", "suu", "see", "sue")))

    def r(self) -> Tensor:
        n = self.n.clamp_min(1)
        cov = self.sue / n - (self.su / n) * (self.se / n)
        vu = self.suu / n - (self.su / n) ** 2
        ve = self.see / n - (self.se / n) ** 2
        ok = (vu > 1e-18) & (ve > 1e-18) & (self.n > 1)
        return torch.where(ok, cov / (vu.clamp_min(1e-300) * ve.clamp_min(1e-300)).sqrt(),
                           torch.full_like(cov, float("nan"))).float()


@dataclass
class CalibrationTally:
    """Pooled calibration of one method per mask kind: coverage = covered / total hole values, and
    Pearson's r over every hole pixel of the kind."""

    covered: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)
    moments: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, covered: Tensor, total: Tensor, moments: Moments) -> None:
        self.covered[kind] = self.covered.get(kind, 0.0) + float(covered.sum())
        self.total[kind] = self.total.get(kind, 0.0) + float(total.sum())
        pooled = moments.total()
        sums = [float(getattr(pooled, f)) for f in ("n", "su", "se", "suu", "see", "sue")]
        old = self.moments.get(kind, [0.0] * 6)
        self.moments[kind] = [a + b for a, b in zip(old, sums)]

    def by_mask(self) -> dict[str, dict[str, float]]:
        out = {}
        for kind, total in self.total.items():
            r = Moments(*(torch.tensor(v, dtype=torch.float64) for v in self.moments[kind])).r()
            out[kind] = {"coverage90": self.covered[kind] / total if total else float("nan"),
                         "unc_corr": float(r), "hole_values": int(total)}
        return out


MAX_SAMPLES = 64  # K fills of one hole: enough for any quantile worth reading, few enough to finish


def check_samples(k) -> int:
    """K for `--samples` / `samples=`: an int from 2 to MAX_SAMPLES (one fill is the ordinary fill), or a
    GenfillError saying so."""
    if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= MAX_SAMPLES:
        raise GenfillError(f"--samples must be a whole number from 2 to {MAX_SAMPLES} (K different fills of "
                           f"each hole), got {k!r}")
    return k
