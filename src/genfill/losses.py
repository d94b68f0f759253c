"""Training losses shared by all model families.

Everything here takes images in the library range (float NCHW in [-1, 1]) and masks (N,1,H,W) float,
1 = hole, and returns a scalar. The evaluation metrics in `genfill.metrics` reuse the Sobel pieces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure as _tm_ssim

from genfill.errors import GenfillError
from genfill.pixels import to_unit

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
    # Replicate padding by concatenation: the same values as F.pad(mode="replicate"), whose backward
    # fails under torch.compile on CPU when the gradient arrives channels_last (torch 2.13).
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=2)
    x = torch.cat([x[..., :1], x, x[..., -1:]], dim=3)
    g = F.conv2d(x, weight, groups=c)
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
    s = _tm_ssim(to_unit(pred), to_unit(target), reduction="elementwise_mean", **SSIM_KWARGS)
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


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
            hole_weight: float = 1.0) -> torch.Tensor:
    """Mean absolute error; with `mask`, hole pixels weigh `hole_weight` and known pixels 1 (normalised by
    the total weight, so `hole_weight=1` is the plain mean)."""
    d = (pred - target).abs()
    if mask is None or hole_weight == 1.0:
        return d.mean()
    w = (1 + (hole_weight - 1) * mask).expand_as(d)
    return (d * w).sum() / w.sum()


ADVERSARIAL_KINDS = ("bce", "hinge")


def adversarial_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Discriminator loss on raw logits. bce: BCE-with-logits, real -> 1 and fake -> 0 (the two terms summed);
    hinge: mean relu(1 - real) + mean relu(1 + fake)."""
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    raise GenfillError(f"unknown adversarial loss {kind!r} (valid: {', '.join(ADVERSARIAL_KINDS)})")


def adversarial_g_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Generator loss on the discriminator's logits for fakes. bce: non-saturating BCE towards 1; hinge: -mean."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "hinge":
        return -fake_logits.mean()
    raise GenfillError(f"unknown adversarial loss {kind!r} (valid: {', '.join(ADVERSARIAL_KINDS)})")



def hole_weighted_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, hole_weight: float = 1.0
                     ) -> torch.Tensor:
    """Mean absolute error on the [-1, 1] scale, hole pixels weighted `hole_weight`, known pixels 1, divided
    by the pixel count (not by the total weight): sum(|pred - target| * (1 + (hole_weight - 1) * m)) / numel.
    Unlike `l1_loss`, a batch with bigger holes weighs more, which is what an inpainter is judged on."""
    d = (pred - target).abs()
    return (d * (1 + (hole_weight - 1) * mask)).mean()


def psnr_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Minus the mean per-image PSNR (dB, images scaled to [0, 1]) of the composited prediction: the whole-image
    MSE counts the hole only (`mask` 1), as `genfill eval` scores a fill. Averaging PSNR, not MSE, weighs each
    image by 1/MSE, so a thin stroke whose fill is already good still matters next to a big square (an L1 or
    MSE mean is dominated by the big holes). Inputs on [-1, 1]; an image without a hole adds a constant."""
    mse = ((pred - target) * mask).pow(2).flatten(1).mean(1) / 4
    return (10 * torch.log10(mse + eps)).mean()


def perceptual_loss(pred: torch.Tensor, target: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
    """Mean LPIPS distance through genfill's own frozen LPIPS network (`genfill.metrics.lpips`; AlexNet
    when `net` is None), with gradients flowing into `pred` only. The network is never trained: its
    parameters have requires_grad False and it stays in eval mode."""
    if net is None:
        from genfill.metrics.lpips import get_lpips

        net = get_lpips("alexnet", pred.device)
    return net(pred.float(), target.float()).mean()


def laplace_nll(pred: torch.Tensor, log_b: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean Laplace negative log-likelihood of `x` under Laplace(pred, b = exp(log_b)) over hole values
    (m (N,1,H,W), 1 = hole), dropping the constant log 2: mean_hole(|x - pred| / b + log b). Minimised
    over b at b = |x - pred| (in expectation: the mean absolute error at that pixel)."""
    return _masked_mean((x - pred).abs() * torch.exp(-log_b) + log_b, m)
