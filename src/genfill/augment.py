"""Batched image augmentations for self-supervised pretraining, in plain torch on the training device.

Every random number comes from one `torch.Generator` living on the images' device, drawn in a fixed order, so
the same generator state gives the same views; every choice ("flip this image?", "blur it?") is a tensor and
applied with `torch.where`, so nothing here waits for the device (no `.item()`, no branch on a value).

Images in and out are float (N,C,H,W) in [-1, 1]; the colour transforms work on [0, 1] inside (C = 3; a grey
image, C = 1, skips saturation, hue and greyscale). The pieces, each a pure function of the images and the
random numbers it is given (so a test can call it with chosen ones):

- `resized_crop`: crop a box per image (centre and size as fractions of the side) and resize it back to
  (H, W) with `affine_grid` + bilinear `grid_sample`; the box (0.5, 0.5, 1, 1) is the identity.
- `flip`: mirror the chosen images left-right.
- `colour_jitter`: brightness, contrast, saturation, hue, in that order (torchvision draws a random order per
  call; a fixed order keeps the batch in one pass); hue rotates the chroma plane of YIQ by `hue * 2 pi`.
- `greyscale`: ITU-R 601 luma copied to the three channels.
- `gaussian_blur`: a separable Gaussian, its sigma drawn per image, reflect padding.
- `solarize`: pixels above 0.5 become 1 - pixel (BYOL's second view).

`two_views` draws the two views SimCLR, BYOL and Barlow Twins learn from: crop, flip, then with their
probabilities jitter, greyscale, blur and solarize, the probabilities of blur and solarize per view (BYOL and
Barlow Twins use asymmetric views: blur 1.0 / 0.1, solarize 0.0 / 0.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genfill.errors import GenfillError

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, what torchvision's rgb_to_grayscale uses
YIQ = [list(LUMA), [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]  # RGB -> YIQ (NTSC)
YIQ_TO_RGB = torch.linalg.inv(torch.tensor(YIQ, dtype=torch.float64)).tolist()  # its exact inverse


@dataclass
class AugmentConfig:
    """The view recipe (SimCLR's, Chen et al. 2020, Appendix A; scaled to 64x64 where it is in pixels)."""

    crop_scale: tuple[float, float] = (0.2, 1.0)  # crop area as a fraction of the image (paper 0.08 at 224 px;
    # at 64 px an 8 % crop is 18 px across, less than the faces' features)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio range (drawn log-uniform)
    flip: float = 0.5  # probability of a left-right flip
    jitter: float = 0.8  # probability of colour jitter
    brightness: float = 0.4  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # shift drawn from [-h, h] turns (<= 0.5)
    grey: float = 0.2  # probability of greyscale
    blur: tuple[float, float] = (0.5, 0.5)  # probability of a Gaussian blur, per view
    blur_sigma: tuple[float, float] = (0.1, 0.6)  # px; the paper's 0.1-2.0 px at 224 px, scaled to 64
    blur_kernel: int = 7  # odd; about 10 % of the side, as in the paper
    solarize: tuple[float, float] = (0.0, 0.0)  # probability of solarizing, per view

    def __post_init__(self) -> None:
        def prob(key: str, *values: float) -> None:
            if not all(0.0 <= v <= 1.0 for v in values):
                raise GenfillError(f"ssl.augment.{key}: probabilities must lie in [0, 1], got {list(values)}")

        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise GenfillError(f"ssl.augment.crop_scale: need 0 < low <= high <= 1, got {list(self.crop_scale)}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise GenfillError(f"ssl.augment.crop_ratio: need 0 < low <= high, got {list(self.crop_ratio)}")
        prob("flip", self.flip)
        prob("jitter", self.jitter)
        prob("grey", self.grey)
        prob("blur", *self.blur)
        prob("solarize", *self.solarize)
        for key in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, key) <= 1:
                raise GenfillError(f"ssl.augment.{key}: must lie in [0, 1], got {getattr(self, key)}")
        if not 0 <= self.hue <= 0.5:
            raise GenfillError(f"ssl.augment.hue: must lie in [0, 0.5], got {self.hue}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise GenfillError(f"ssl.augment.blur_sigma: need 0 < low <= high, got {list(self.blur_sigma)}")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise GenfillError(f"ssl.augment.blur_kernel: must be an odd number >= 1, got {self.blur_kernel}")


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=g.device)


def _chance(n: int, p: float, g: torch.Generator) -> Tensor:
    """(n,) bool: each True with probability p."""
    return torch.rand(n, generator=g, device=g.device) < p


def _pick(which: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per image: `a` where `which` (N,) is True, else `b`."""
    return torch.where(which.view(-1, *([1] * (a.dim() - 1))), a, b)


def crop_boxes(n: int, scale: tuple[float, float], ratio: tuple[float, float], g: torch.Generator) -> Tensor:
    """(n, 4) random boxes (cx, cy, w, h) as fractions of the side: area uniform in `scale`, aspect ratio
    log-uniform in `ratio`, clamped to the image (torchvision retries out-of-image draws; a clamp needs no
    loop), placed uniformly inside it."""
    area = _uniform(n, scale[0], scale[1], g)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), g)
    w = (area * log_r.exp()).sqrt().clamp(max=1.0)
    h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = w / 2 + (1 - w) * torch.rand(n, generator=g, device=g.device)
    cy = h / 2 + (1 - h) * torch.rand(n, generator=g, device=g.device)
    return torch.stack([cx, cy, w, h], 1)


def resized_crop(x: Tensor, boxes: Tensor) -> Tensor:
    """Each image's box (cx, cy, w, h; fractions of the side) resized to the image's own size (bilinear).
    In grid_sample's [-1, 1] coordinates the box maps to the affine transform diag(w, h) + (2cx-1, 2cy-1)."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0], theta[:, 1, 1] = boxes[:, 2], boxes[:, 3]
    theta[:, 0, 2], theta[:, 1, 2] = 2 * boxes[:, 0] - 1, 2 * boxes[:, 1] - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False).to(x.dtype)


def flip(x: Tensor, which: Tensor) -> Tensor:
    """Mirror left-right the images where `which` (N,) bool is True."""
    return _pick(which, x.flip(-1), x)


def _grey(x01: Tensor) -> Tensor:
    """(N,1,H,W) luma of RGB images in [0, 1]."""
    r, g, b = x01.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def greyscale(x01: Tensor, which: Tensor) -> Tensor:
    """RGB images in [0, 1]: the chosen ones replaced by their luma in all three channels."""
    if x01.shape[1] != 3:
        return x01
    return _pick(which, _grey(x01).expand_as(x01), x01)


def _mix(mat: list[list[float]], x: Tensor) -> Tensor:
    """(N,3,H,W) -> (N,3,H,W): channel i = sum_j mat[i][j] * channel j (constants as Python floats: no copy
    to the device)."""
    c = x.unbind(1)
    return torch.stack([row[0] * c[0] + row[1] * c[1] + row[2] * c[2] for row in mat], 1)


def _hue_rotate(x01: Tensor, turns: Tensor) -> Tensor:
    """Rotate the chroma (I, Q) of YIQ by `turns` (N,) * 2 pi; luma unchanged."""
    y, i, q = _mix(YIQ, x01).unbind(1)
    c, s = (f(2 * math.pi * turns).view(-1, 1, 1) for f in (torch.cos, torch.sin))
    return _mix(YIQ_TO_RGB, torch.stack([y, c * i - s * q, s * i + c * q], 1))


def colour_jitter(x01: Tensor, which: Tensor, b: Tensor, c: Tensor, s: Tensor, h: Tensor) -> Tensor:
    """Images in [0, 1]; per image (N,) factors: brightness `b` (x * b), contrast `c` (about the image's mean
    luma), saturation `s` (about each pixel's luma), hue shift `h` turns; each result clamped to [0, 1] as
    torchvision does. Applied where `which` is True."""
    v = lambda t: t.view(-1, 1, 1, 1)  # noqa: E731
    y = (x01 * v(b)).clamp(0, 1)
    grey = _grey(y) if y.shape[1] == 3 else y
    y = ((y - grey.mean((1, 2, 3), keepdim=True)) * v(c) + grey.mean((1, 2, 3), keepdim=True)).clamp(0, 1)
    if y.shape[1] == 3:
        y = (_grey(y) + (y - _grey(y)) * v(s)).clamp(0, 1)
        y = _hue_rotate(y, h).clamp(0, 1)
    return _pick(which, y, x01)


def gaussian_blur(x01: Tensor, which: Tensor, sigma: Tensor, kernel: int) -> Tensor:
    """Separable Gaussian blur, sigma (N,) px per image, `kernel` taps, reflect padding; where `which`."""
    n, ch, hh, ww = x01.shape
    r = kernel // 2
    t = torch.arange(-r, r + 1, device=x01.device, dtype=x01.dtype)
    k = torch.exp(-0.5 * (t / sigma.to(x01.dtype).view(-1, 1)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # (N*C, kernel): one filter per image channel
    y = x01.reshape(1, n * ch, hh, ww)
    pad = min(r, hh - 1, ww - 1)  # reflect padding needs pad < side; a tiny image blurs with fewer taps
    if pad < r:
        k, r = k[:, r - pad : r + pad + 1], pad
        k = k / k.sum(1, keepdim=True)
    y = F.pad(y, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(n * ch, 1, 1, -1), groups=n * ch)
    y = F.conv2d(y, k.view(n * ch, 1, -1, 1), groups=n * ch)
    return _pick(which, y.view(n, ch, hh, ww), x01)


def solarize(x01: Tensor, which: Tensor, threshold: float = 0.5) -> Tensor:
    """Images in [0, 1]: pixels at or above `threshold` inverted (1 - x), where `which`."""
    return _pick(which, torch.where(x01 >= threshold, 1 - x01, x01), x01)


def augment(x: Tensor, cfg: AugmentConfig, g: torch.Generator, view: int = 0) -> Tensor:
    """One random view of each image of `x` (N,C,H,W) in [-1, 1]; `view` (0 or 1) picks the per-view blur and
    solarize probabilities. The generator must live on x's device."""
    if g.device != x.device:
        raise GenfillError(f"augment: the generator is on {g.device}, the images on {x.device}")
    n = x.shape[0]
    y = resized_crop(x.float(), crop_boxes(n, cfg.crop_scale, cfg.crop_ratio, g))
    y = flip(y, _chance(n, cfg.flip, g))
    y = ((y + 1) / 2).clamp(0, 1)
    jit = _chance(n, cfg.jitter, g)
    b = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, g)
    c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g)
    s = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, g)
    h = _uniform(n, -cfg.hue, cfg.hue, g)
    y = colour_jitter(y, jit, b, c, s, h)
    y = greyscale(y, _chance(n, cfg.grey, g))
    blur = _chance(n, cfg.blur[view], g)
    y = gaussian_blur(y, blur, _uniform(n, cfg.blur_sigma[0], cfg.blur_sigma[1], g), cfg.blur_kernel)
    y = solarize(y, _chance(n, cfg.solarize[view], g))
    return (y * 2 - 1).to(x.dtype)


def two_views(x: Tensor, cfg: AugmentConfig, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """The two augmented views of every image (see the module docstring)."""
    return augment(x, cfg, g, 0), augment(x, cfg, g, 1)
