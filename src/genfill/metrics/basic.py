"""Per-image reconstruction metrics, batched on the input's device.

Every function takes `pred` and `target` as float (N,C,H,W) images in [-1, 1] and returns a (N,) tensor,
one value per image, so an evaluator can group images by hole ratio before averaging. All metrics are
computed on the [0, 1] scale, `(x + 1) / 2`: L1 and MSE in [0, 1] units, PSNR with data range 1 (that is,
data range 2 in [-1, 1] units), SSIM with data range 1.

`mask` (optional, (N,1,H,W) float, 1 = hole) restricts a metric to hole pixels. An image whose mask
holds no hole pixel gets NaN: the metric is undefined there, and NaN cannot be mistaken for a score.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure as _tm_ssim

from genfill.errors import GenfillError
from genfill.losses import SSIM_KWARGS, sobel_magnitude
from genfill.pixels import to_unit

# PSNR of identical images would be +inf; it is capped here so bucket means stay finite.
PSNR_MAX_DB = 100.0

# ITU-R BT.601 luma weights, for metrics defined on a greyscale image.
_LUMA = (0.299, 0.587, 0.114)


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise GenfillError(
            f"metrics need two images of one shape (N,C,H,W), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if mask is not None:
        n, _, h, w = pred.shape
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != n or mask.shape[2:] != (h, w):
            raise GenfillError(f"mask must be (N,1,H,W) = ({n},1,{h},{w}), got {tuple(mask.shape)}")


def _per_image_mean(v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of v (N,C,H,W) per image; over hole pixels (and all channels) when a mask is given."""
    if mask is None:
        return v.flatten(1).mean(1)
    w = mask.to(v.dtype).expand_as(v)
    total = (v * w).flatten(1).sum(1)
    count = w.flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp_min(1e-12), torch.full_like(total, float("nan")))


def l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error on the [0, 1] scale, (N,)."""
    _check(pred, target, mask)
    return _per_image_mean((to_unit(pred) - to_unit(target)).abs(), mask)


def mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error on the [0, 1] scale, (N,)."""
    _check(pred, target, mask)
    return _per_image_mean((to_unit(pred) - to_unit(target)) ** 2, mask)


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, data range 1 on the [0, 1] scale, (N,); capped at PSNR_MAX_DB."""
    e = mse(pred, target, mask)
    floor = 10.0 ** (-PSNR_MAX_DB / 10.0)  # the MSE at which PSNR reaches the cap
    return -10.0 * torch.log10(e.clamp_min(floor))  # NaN (empty hole) stays NaN


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity, Gaussian window 11 with sigma 1.5, data range 1 on the [0, 1] scale, (N,).

    Unmasked: torchmetrics' per-image SSIM (the mean of the SSIM map over every pixel; the borders are
    reflect-padded). Masked: the SSIM map averaged over hole pixels and channels.
    """
    _check(pred, target, mask)
    value, full = _tm_ssim(to_unit(pred), to_unit(target), reduction="none", return_full_image=True, **SSIM_KWARGS)
    if mask is None:
        return value
    return _per_image_mean(full, mask)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) in [0, 1] -> (N,1,H,W): luma for RGB, the channel itself for greyscale, else the mean."""
    if x.shape[1] == 3:
        w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def edge_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference of Sobel gradient magnitudes of the greyscale [0, 1] images, (N,).

    The Sobel kernels are divided by 8 (see `genfill.losses.sobel`), so the unit is intensity per pixel.
    """
    _check(pred, target, mask)
    d = (sobel_magnitude(_grey(to_unit(pred))) - sobel_magnitude(_grey(to_unit(target)))).abs()
    return _per_image_mean(d, mask)
