"""Seed 002's GAN inpainter: a U-Net generator with SAGAN self-attention at the bottleneck, a PatchGAN
discriminator, and adversarial + L1 + Sobel-edge + SSIM losses.

Generator (`UNetGenerator`, base b; every conv 3x3 with bias, ReLU, no norm by default):

    enc1  2 conv  in -> b -> b           (in = 4: masked RGB + mask channel; 3 with mask_channel: false)
    pool1, enc2  2 conv  b -> 2b -> 2b
    pool2, enc3  2 conv  2b -> 4b -> 4b
    pool3, attention (SAGAN at 4b channels, query/key 4b/8, gamma = 0 at start)
    bottleneck   2 conv  4b -> 4b -> 4b
    up, dec3     2 conv  (4b + enc3 4b) -> 4b -> 4b
    up, dec2     2 conv  (4b + enc2 2b) -> 2b -> 2b
    up, dec1     conv (2b + enc1 b) -> b, conv b -> 3, tanh

At b = 64 with the mask channel this is exactly seed 002's 4,880,836 parameters block by block (enc1 39,296,
enc2 221,440, enc3 885,248, attention 82,241, bottleneck 1,180,160, dec3 1,769,984, dec2 590,080, dec1 112,387;
`benchmarks/gan_param_search.py` shows the search: only 4 input channels give enc1's count, and dec3's count
forces a 256-channel bottleneck). The discriminator (`blocks.PatchDiscriminator`, base 32) is exactly the
seed's 35,553. Inputs whose side is not a multiple of 8 are replicate-padded and the output cropped back.

Two variants (`variant`):

- ``context`` (seed 002's main model): per image, the hole's bounding box is dilated by `context` pixels,
  grown to a square (shifted to stay inside the image; clamped to the image when it cannot), and that box is
  cropped and bilinearly resized to `crop_size` x `crop_size` (boxes differ per image; resizing gives every
  crop in a batch one size). The generator sees the masked crop plus the resized mask; its output is resized
  back into the box (bilinear) and blended as every genfill fill is: ``out = m * pred + (1 - m) * x`` with
  the full-resolution mask, so pixels inside the hole take the generator's output and every pixel outside
  the hole, the context ring included, stays exactly the original (the ring is input only). Outside the box,
  `pred` is the original image. Losses and the discriminator work on the crops (the seed's 32 px hole +
  4 px ring = 40 px box = crop_size 40: no resampling at all). Works with every mask kind; a large
  free-form hole gives a large box, shrunk to `crop_size`.
- ``whole`` (the seed's alternative): the full masked image in one pass; losses and the discriminator see
  whole images.

Losses (`genfill.losses`), on the generator's output against the original (crop or whole image):
``w_l1 * L1 + w_edge * Sobel-edge + w_ssim * (1 - SSIM)`` from `forward`, where L1 weighs hole pixels
`hole_weight` times (1 = the seed's plain L1), and ``w_adv * adversarial`` from `g_adv_loss`, on the
discriminator's verdict about the composited fill (`adversarial`: bce with logits, the seed's, or hinge).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.losses import ADVERSARIAL_KINDS, adversarial_d_loss, adversarial_g_loss, edge_loss, l1_loss, ssim_loss
from genfill.models.base import GenModel, ModelOutput
from genfill.models.blocks import PatchDiscriminator, SelfAttention, conv_stack


@dataclass
class GANConfig:
    variant: str = "context"  # context | whole
    base: int = 64  # generator base channels (seed: 64; whole-image variant 32)
    mask_channel: bool = True  # feed the mask as a 4th input channel (true reproduces the seed's counts)
    norm: str = "none"  # generator norm after each conv: none (the seed's) | batch | group | instance
    activation: str = "relu"
    attention_reduction: int = 8  # query/key dimension = channels / this
    context: int = 4  # context variant: pixels of known ring around the hole's bounding box
    crop_size: int = 40  # context variant: side every crop is resized to (a multiple of 8)
    d_base: int = 32
    d_layers: int = 2
    d_norm: str = "batch"
    adversarial: str = "bce"  # bce | hinge
    w_adv: float = 1.0
    w_l1: float = 100.0
    w_edge: float = 10.0
    w_ssim: float = 1.0
    hole_weight: float = 1.0  # L1 weight of hole pixels relative to known ones (1 = plain mean)

    def __post_init__(self) -> None:
        """Checked when the config is loaded, so a bad value fails before any data is read."""
        cfg = self
        if cfg.variant not in ("context", "whole"):
            raise GenfillError(f"model.variant: {cfg.variant!r} is not one of context, whole")
        if cfg.adversarial not in ADVERSARIAL_KINDS:
            raise GenfillError(f"model.adversarial: {cfg.adversarial!r} is not one of {', '.join(ADVERSARIAL_KINDS)}")
        if cfg.base < 1 or cfg.d_base < 1 or cfg.d_layers < 1 or cfg.attention_reduction < 1:
            raise GenfillError("model: base, d_base, d_layers and attention_reduction must be >= 1")
        if cfg.variant == "context" and (cfg.crop_size < 16 or cfg.crop_size % 8 or cfg.context < 0):
            raise GenfillError(f"model.crop_size must be a multiple of 8 and >= 16 (got {cfg.crop_size}); "
                               f"model.context >= 0 (got {cfg.context})")
        if min(cfg.w_adv, cfg.w_l1, cfg.w_edge, cfg.w_ssim, cfg.hole_weight) < 0:
            raise GenfillError("model: loss weights and hole_weight must be >= 0")


class UNetGenerator(nn.Module):
    """The U-Net above: (N, in_ch, H, W) -> (N, out_ch, H, W) in [-1, 1]."""

    BLOCKS = ("enc1", "enc2", "enc3", "attention", "bottleneck", "dec3", "dec2", "dec1")

    def __init__(self, in_ch: int, out_ch: int, base: int = 64, act: str = "relu", norm_name: str = "none",
                 reduction: int = 8) -> None:
        super().__init__()
        b = base
        self.enc1 = conv_stack(in_ch, [b, b], act, norm_name)
        self.enc2 = conv_stack(b, [2 * b, 2 * b], act, norm_name)
        self.enc3 = conv_stack(2 * b, [4 * b, 4 * b], act, norm_name)
        self.attention = SelfAttention(4 * b, reduction)
        self.bottleneck = conv_stack(4 * b, [4 * b, 4 * b], act, norm_name)
        self.dec3 = conv_stack(8 * b, [4 * b, 4 * b], act, norm_name)
        self.dec2 = conv_stack(6 * b, [2 * b, 2 * b], act, norm_name)
        self.dec1 = conv_stack(3 * b, [b, out_ch], act, norm_name, last_act=False)

    def block_parameters(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in self.BLOCKS}

    @staticmethod
    def _up(h: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(h, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % 8, -w % 8  # three 2x poolings need sides divisible by 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        z = self.bottleneck(self.attention(F.max_pool2d(e3, 2)))
        d3 = self.dec3(torch.cat([self._up(z, e3), e3], 1))
        d2 = self.dec2(torch.cat([self._up(d3, e2), e2], 1))
        out = torch.tanh(self.dec1(torch.cat([self._up(d2, e1), e1], 1)))
        return out[..., :h, :w]


# ---- the context variant's boxes: crop each image's hole region to one size, paste the result back


def box_tensor(m: Tensor, context: int) -> Tensor:
    """Per image, (top, left, bottom, right) (exclusive ends) of the hole's bounding box dilated by
    `context`, grown to a square where the image allows (kept inside the image). No hole: the whole image.
    (N,4) int64, computed with tensor ops only, so the batch size stays dynamic in an ONNX trace."""
    _, _, height, width = m.shape
    rows = m.amax(dim=(1, 3)) > 0.5  # (N, H)
    cols = m.amax(dim=(1, 2)) > 0.5  # (N, W)

    def extent(hit: Tensor, limit: int) -> tuple[Tensor, Tensor]:
        idx = torch.arange(limit, device=hit.device).expand_as(hit)
        first = torch.where(hit, idx, torch.full_like(idx, limit)).amin(1)
        last = torch.where(hit, idx, torch.full_like(idx, -1)).amax(1)
        return first - context, last + 1 + context

    t, b = extent(rows, height)
    l, r = extent(cols, width)
    side = torch.maximum(b - t, r - l)
    t, b = _grow(t, b, side, height)
    l, r = _grow(l, r, side, width)
    boxes = torch.stack([t, l, b, r], 1)
    full = torch.tensor([0, 0, height, width], device=m.device).expand_as(boxes)
    return torch.where(rows.any(1, keepdim=True), boxes, full)


def hole_boxes(m: Tensor, context: int) -> Tensor:
    """`box_tensor` by its older name: (N,4) long on m's device, no host sync."""
    return box_tensor(m, context)


def _grow(lo: Tensor, hi: Tensor, side: Tensor, limit: int) -> tuple[Tensor, Tensor]:
    """Widen [lo, hi) around its centre to `side` (at most `limit`), shifted to lie within [0, limit)."""
    side = side.clamp(max=limit)
    lo = lo - torch.div(side - (hi - lo), 2, rounding_mode="floor")
    lo = torch.minimum(lo.clamp(min=0), limit - side)
    return lo, lo + side


def _as_boxes(boxes, device) -> Tensor:
    return boxes if isinstance(boxes, Tensor) else torch.tensor(boxes, device=device).view(-1, 4)


def _thetas(boxes: Tensor, height: int, width: int, dtype, inverse: bool) -> Tensor:
    """Affine maps (N,2,3) for F.affine_grid (align_corners=False): crop -> box, or image -> crop (inverse).
    Computed in float64, then cast (the exact values the crop-size-wide identity case needs)."""
    t, l, b, r = boxes.double().unbind(1)
    bw, bh = r - l, b - t
    zero = torch.zeros_like(bw)
    if not inverse:  # crop coordinate u in [-1, 1] -> image coordinate over the box
        rows = [bw / width, zero, (l + r) / width - 1, zero, bh / height, (t + b) / height - 1]
    else:  # image coordinate -> crop coordinate; the box maps onto [-1, 1]
        rows = [width / bw, zero, (width - 2 * l - bw) / bw, zero, height / bh, (height - 2 * t - bh) / bh]
    return torch.stack(rows, 1).view(-1, 2, 3).to(dtype)


def crop_boxes(x: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Bilinear crop-and-resize of each image's box to (size, size); exact copies where a box is size wide."""
    theta = _thetas(_as_boxes(boxes, x.device), x.shape[-2], x.shape[-1], x.dtype, inverse=False)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def paste_boxes(crops: Tensor, boxes: Tensor, background: Tensor) -> Tensor:
    """Resize each crop back into its box over `background` (N,C,H,W); outside the boxes, background."""
    n, c, height, width = background.shape
    crops = crops.to(background.dtype)  # autocast may hand in bf16; the paste is done in the image's dtype
    boxes = _as_boxes(boxes, background.device)
    theta = _thetas(boxes, height, width, crops.dtype, inverse=True)
    grid = F.affine_grid(theta, [n, c, height, width], align_corners=False)
    pasted = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ys = torch.arange(height, device=background.device).view(1, 1, height, 1)
    xs = torch.arange(width, device=background.device).view(1, 1, 1, width)
    t, l, b, r = (v.view(-1, 1, 1, 1) for v in boxes.unbind(1))
    inside = ((ys >= t) & (ys < b) & (xs >= l) & (xs < r)).to(background.dtype)
    return inside * pasted + (1 - inside) * background


class GAN(GenModel):
    Config = GANConfig
    kind = "gan"

    def __init__(self, cfg: GANConfig, image_size: int, channels: int) -> None:
        super().__init__(cfg, image_size, channels)
        in_ch = channels + (1 if cfg.mask_channel else 0)
        self.generator = UNetGenerator(in_ch, channels, cfg.base, cfg.activation, cfg.norm, cfg.attention_reduction)
        self.discriminator = PatchDiscriminator(channels, cfg.d_base, cfg.d_layers, cfg.d_norm)

    # ---- pieces
    def _boxes(self, m: Tensor):
        return box_tensor(m, self.cfg.context) if self.cfg.variant == "context" else None

    def _view(self, img: Tensor, boxes) -> Tensor:
        """What losses and the discriminator look at: the crops (context) or the whole image."""
        return img if boxes is None else crop_boxes(img, boxes, self.cfg.crop_size)

    def _generate(self, x: Tensor, m: Tensor, boxes) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(whole-image prediction, generator output, its target, its mask), the last three in view space."""
        xv, mv = self._view(x, boxes), self._view(m, boxes)
        inp = xv * (1 - mv)
        if self.cfg.mask_channel:
            inp = torch.cat([inp, mv], 1)
        out = self.generator(inp)
        pred = out if boxes is None else paste_boxes(out, boxes, x)
        return pred, out, xv, mv

    # ---- interface
    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:
        c = self.cfg
        pred, out, target, mv = self._generate(x, m, self._boxes(m))
        out32, target32 = out.float(), target.float()
        l1 = l1_loss(out32, target32, mv.float(), c.hole_weight)
        edge = edge_loss(out32, target32)
        ssim = ssim_loss(out32, target32)
        loss = c.w_l1 * l1 + c.w_edge * edge + c.w_ssim * ssim
        return ModelOutput(loss=loss, pred=pred, parts={"l1": l1, "edge": edge, "ssim": ssim})

    def d_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        boxes = self._boxes(m)
        real_logits = self.discriminator(self._view(x, boxes)).float()
        fake_logits = self.discriminator(self._view(fake, boxes)).float()
        loss = adversarial_d_loss(real_logits, fake_logits, self.cfg.adversarial)
        return loss, {"d_loss": loss.detach(), "d_real": real_logits.mean().detach(),
                      "d_fake": fake_logits.mean().detach()}

    def g_adv_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.discriminator(self._view(fake, self._boxes(m))).float()
        adv = adversarial_g_loss(logits, self.cfg.adversarial)
        return self.cfg.w_adv * adv, {"adv": adv.detach()}

    @torch.no_grad()
    def predict(self, x: Tensor, m: Tensor) -> Tensor:
        """The generator's output pasted into each hole's box (context) or the whole image (whole)."""
        return self._generate(x, m, self._boxes(m))[0]

    def block_parameters(self) -> dict[str, int]:
        """Per-block generator parameter counts plus the discriminator's, as the seed lists them."""
        return {**self.generator.block_parameters(),
                "discriminator": sum(p.numel() for p in self.discriminator.parameters())}
