"""Training losses shared by all model families.

Everything here takes images in the library range (float NCHW in [-1, 1]) and masks (N,1,H,W) float,
1 = hole, and returns a scalar. The evaluation metrics in `genfill.metrics` reuse the Sobel pieces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure as _tm_ssim

# One SSIM definition for the loss and the metric: Gaussian window 11, sigma 1.5, on [0, 1] images.
SSIM_KWARGS = dict(gaussian_kernel=True, kernel_size=11, sigma=1.5, data_range=1.0)

# Sobel kernels divided by 8, so a unit ramp (value rising by 1 per pixel) has gradient 1.
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel gradients of each channel, `(gx, gy)`, each (N,C,H,W).

    Borders are replicate-padded, so a constant image has zero gradient everywhere.
    """
    c = x.shape[1]
    kx = _SOBEL_X.to(device=x.device, dtype=x.dtype)
    weight = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(c, 1, 1, 1)  # (2C,1,3,3): gx, gy per channel
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=c)
    return g[:, 0::2], g[:, 1::2]


def sobel_magnitude(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Gradient magnitude sqrt(gx^2 + gy^2 + eps), (N,C,H,W); eps keeps the gradient finite at 0."""
    gx, gy = sobel(x)
    return torch.sqrt(gx * gx + gy * gy + eps)


def _masked_mean(v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return v.mean()
    w = mask.expand_as(v)
    return (v * w).sum() / w.sum().clamp_min(1e-8)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM, computed on the [0, 1] scale of [-1, 1] images."""
    s = _tm_ssim((pred + 1) / 2, (target + 1) / 2, reduction="elementwise_mean", **SSIM_KWARGS)
    return 1.0 - s


def edge_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference of per-channel Sobel magnitudes; over hole pixels when `mask` is given."""
    d = (sobel_magnitude(pred) - sobel_magnitude(target)).abs()
    return _masked_mean(d, mask)


def hole_weighted_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, hole_weight: float = 1.0
                      ) -> torch.Tensor:
    """Mean squared error on the [0, 1] pixel scale, hole pixels weighted `hole_weight`, known pixels 1."""
    err = ((pred - target) / 2).pow(2)
    if hole_weight != 1.0:
        err = err * ((1 - mask) + hole_weight * mask)
    return err.mean()
