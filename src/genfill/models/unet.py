"""`unet`: the default inpainter. A residual U-Net that sees the masked image, the mask and (optionally) a
cheap classical fill, and predicts the hole; the output is always composited (known pixels kept exactly).

Input (N, 2C+1, H, W) = [x * (1 - m), m, base] where `base` is the classical fill (`prior`):

- ``prior: harmonic`` (default): the harmonic (Laplace) fill of the hole computed on the device in torch,
  batched, with no host sync: a coarse-to-fine multigrid cascade. The known-pixel average image and the
  "all-hole" mask are pooled 2x down to 8x8; at the coarsest level Jacobi sweeps start from the mean known
  colour; each finer level starts from the bilinear upsampling of the coarser solution and runs
  `prior_iters` Jacobi sweeps ``u <- m * avg4(u) + (1 - m) * x`` (replicate borders = Neumann). A 32x32
  square converges in a few dozen sweeps per level instead of thousands at full size. The network predicts
  a residual on top, in the hole only: ``pred = clamp(base + m * delta, -1, 1)``, so an untrained net
  already fills like a diffusion peer and training only has to learn what diffusion gets wrong. (Known
  pixels are composited away anyway; masking the residual keeps their L1 from pulling the hole's
  correction towards zero.)
- ``prior: biharmonic``: that harmonic fill refined towards the thin-plate (biharmonic) fill by
  `smooth_iters` conjugate-gradient iterations on the device (`solver: cg`; see `genfill.models.thinplate`), which
  continues gradients across thin strokes where the harmonic fill flattens them.
- ``prior: none``: base is the masked image itself (zeros in the hole) and ``pred = tanh(out)``.

Network (widths w0..wL, `blocks` residual blocks per level):

    stem conv3x3 -> [ResBlock x blocks, keep skip, stride-2 conv] per level but the last
    bottleneck at the last width: ResBlock x blocks, then `context` blocks of global context:
        dilated:  residual blocks with dilations 2, 4, 8, ... (receptive field grows geometrically)
        ffc:      LaMa-style fast Fourier convolution blocks: a local 3x3 branch plus a spectral branch
                  (rfft2 -> 1x1 conv over real/imag channels -> irfft2) whose receptive field is the image
    optional SAGAN self-attention at the bottleneck (`attention: true`)
    decoder: nearest 2x up + conv, concat skip, ResBlock x blocks; GroupNorm-SiLU-conv3x3 to C (zero init)

`unshuffle: f` (default 1, the older net) wraps that in a space-to-depth stem and a depth-to-space head:
the input is pixel-unshuffled (each f x f patch becomes f*f channels, (N, (2C+1) f^2, H/f, W/f)) before the
stem conv, and the head's conv gives C f^2 channels that are pixel-shuffled back to (N, C, H, W). No block
runs at full resolution: on the CPU the 16-channel convolutions at 64x64 (above all their backward) made
that level cost as much as the three coarser levels together (53 % of the network's time; GroupNorm and
SiLU everywhere only 8 %).
The thin-plate prior already carries the full-resolution detail (thin strokes); the net learns a residual
in the hole, which a 2x2-patch head renders well. unet-faces64 uses f = 2 with widths [32, 64, 128] (the
older [16, 32, 64, 128] minus its 64x64 level): about as many weights, 1.8-2x fewer CPU seconds per training
step at the same fill quality after the same steps (benchmarks/results/train_speed.md).

ResBlock: x + conv(act(norm(conv(act(norm(x)))))) (GroupNorm + SiLU by default; 1x1 skip when the width
changes). `gated: true` makes every 3x3 conv in the blocks a gated convolution (Yu et al. 2019, DeepFill
v2): conv to 2x channels, features * sigmoid(gate), so the net can learn where the hole's invalid pixels are.

Losses (`genfill.losses`), on the whole-image prediction against the original:
``w_l1 * recon + w_perceptual * LPIPS(composite) + w_adv * adversarial(composite)``, where recon is
`hole_weighted_l1` (`recon: l1`) or `psnr_loss` (`recon: psnr`: minus the mean per-image PSNR, the metric
itself; it keeps thin strokes from being drowned by big holes, and its gradients are much larger than the
L1's, so weigh the other terms accordingly); the
perceptual and adversarial terms are multiplied by 0 until `loss_warmup_steps` training forwards have run (a
step counter buffer in the model, saved in checkpoints, read as a tensor so no host sync happens). With
`w_adv > 0` the model carries a PatchGAN discriminator (`blocks.PatchDiscriminator`) and the shared loop
runs its discriminator step (see `train.train_step`).

Uncertainty (`uncertainty: true`, default off so existing checkpoints and presets are unchanged): the last
conv gets C more channels, a per-pixel log-scale s of a Laplace distribution around the prediction,
b = exp(s - 3) (so an untrained net starts near b = 0.05). It is trained by the Laplace negative
log-likelihood on hole pixels, ``w_nll * mean_hole(|x - pred| / b + log b)``, with `pred` detached there:
the fill is trained by the same losses as without it, and b learns the expected absolute error (the Laplace
maximum-likelihood scale) of that fill at each pixel. `fill_scale` returns b; its central 90 % interval is
pred +- ln(10) b. The unet still draws one fill: a pixel-wise Laplace draw would be noise, not another
plausible fill, so `fill_samples` refuses.

Measurements behind these choices (the masked residual, each prior alone, lr and recon): benchmarks/results/presets.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.losses import (ADVERSARIAL_KINDS, adversarial_d_loss, adversarial_g_loss, hole_weighted_l1, laplace_nll,
                            perceptual_loss, psnr_loss)
from genfill.models.base import GenModel, ModelOutput
from genfill.pixels import composite
from genfill.models.blocks import FFCBlock, PatchDiscriminator, ResBlock, SelfAttention, activation, norm
# The prior lives in its own module; its names stay importable from here (the sampler family and older code).
from genfill.models.thinplate import SOLVERS, _laplace, biharmonic_fill, harmonic_fill, levels_for  # noqa: F401

PRIORS = ("harmonic", "biharmonic", "none")
RECONS = ("l1", "psnr")
CONTEXTS = ("none", "dilated", "ffc")


@dataclass
class UNetConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # channels per level (len-1 downsamplings)
    blocks: int = 1  # residual blocks per level (encoder, bottleneck, decoder)
    norm: str = "group"  # group | batch | instance | none
    activation: str = "silu"
    attention: bool = False  # SAGAN self-attention at the bottleneck
    gated: bool = False  # gated 3x3 convolutions in the residual blocks
    context: str = "none"  # global-context bottleneck: none | dilated | ffc
    context_blocks: int = 2
    # Space-to-depth factor of the stem: the input is pixel-unshuffled by this factor (f x f pixels become
    # f*f channels) before the first conv and the output pixel-shuffled back, so no block runs at full
    # resolution (1 = the older net, a conv stem at full resolution; module docstring).
    unshuffle: int = 1
    prior: str = "harmonic"  # classical fill the net corrects: harmonic | none
    prior_iters: int = 24  # Jacobi sweeps per multigrid level
    smooth_iters: int = 40  # biharmonic prior: thin-plate iterations after the harmonic fill
    solver: str = "cg"  # biharmonic prior: cg (conjugate gradients) | descent (gradient steps; older checkpoints)
    hole_weight: float = 6.0  # L1 weight of hole pixels (known pixels 1)
    recon: str = "l1"  # reconstruction term: l1 (hole-weighted) | psnr (minus the per-image PSNR, losses.psnr_loss)
    w_l1: float = 1.0
    w_perceptual: float = 0.0  # LPIPS (AlexNet, frozen) on the composited fill
    w_adv: float = 0.0  # PatchGAN adversarial term on the composited fill (0 = no discriminator)
    loss_warmup_steps: int = 0  # perceptual and adversarial terms start after this many training steps
    adversarial: str = "hinge"  # bce | hinge
    d_base: int = 32
    d_layers: int = 3
    d_norm: str = "none"
    uncertainty: bool = False  # also learn a per-pixel Laplace scale of the fill (module docstring)
    w_nll: float = 1.0  # weight of its negative log-likelihood on hole pixels

    def __post_init__(self) -> None:
        if not self.widths or min(self.widths) < 1:
            raise GenfillError("model.widths: need at least one positive width")
        if min(self.blocks, self.context_blocks, self.prior_iters, self.smooth_iters, self.loss_warmup_steps) < 0:
            raise GenfillError("model: blocks, context_blocks, prior_iters, smooth_iters and loss_warmup_steps must "
                               "be >= 0")
        if self.unshuffle < 1:
            raise GenfillError(f"model.unshuffle: {self.unshuffle} must be >= 1 (1 = no space-to-depth stem)")
        if self.recon not in RECONS:
            raise GenfillError(f"model.recon: {self.recon!r} is not one of {', '.join(RECONS)}")
        if self.solver not in SOLVERS:
            raise GenfillError(f"model.solver: {self.solver!r} is not one of {', '.join(SOLVERS)}")
        if self.prior not in PRIORS:
            raise GenfillError(f"model.prior: {self.prior!r} is not one of {', '.join(PRIORS)}")
        if self.context not in CONTEXTS:
            raise GenfillError(f"model.context: {self.context!r} is not one of {', '.join(CONTEXTS)}")
        if self.adversarial not in ADVERSARIAL_KINDS:
            raise GenfillError(f"model.adversarial: {self.adversarial!r} is not one of {', '.join(ADVERSARIAL_KINDS)}")
        if min(self.hole_weight, self.w_l1, self.w_perceptual, self.w_adv, self.w_nll) < 0:
            raise GenfillError("model: loss weights and hole_weight must be >= 0")
        norm(self.norm, 8)  # fail now on an unknown norm or activation, not at build time
        activation(self.activation)


def prior_fill(cfg: UNetConfig, x: Tensor, m: Tensor, levels: int) -> Tensor:
    """The classical fill named by `cfg.prior` (and its `prior_iters`, `smooth_iters`, `solver`) of `x` under
    holes `m` with a cascade `levels` deep: what `UNet.base_fill` computes, for every family that corrects it."""
    if cfg.prior == "harmonic":
        return harmonic_fill(x, m, cfg.prior_iters, levels=levels).to(x.dtype)
    if cfg.prior == "biharmonic":
        return biharmonic_fill(x, m, cfg.prior_iters, cfg.smooth_iters, solver=cfg.solver, levels=levels).to(x.dtype)
    return x * (1 - m)


class ResUNet(nn.Module):
    """(N, in_ch, H, W) -> (N, out_ch, H, W), unbounded; H and W are padded to a multiple of
    unshuffle * 2^(levels-1)."""

    def __init__(self, in_ch: int, out_ch: int, c: UNetConfig) -> None:
        super().__init__()
        w, nn_, act, g, f = c.widths, c.norm, c.activation, c.gated, c.unshuffle
        self.factor = f
        self.stem = nn.Conv2d(in_ch * f * f, w[0], 3, padding=1)
        self.enc = nn.ModuleList(nn.Sequential(*[ResBlock(w[i], w[i], nn_, act, g) for _ in range(c.blocks)])
                                 for i in range(len(w) - 1))
        self.down = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1) for i in range(len(w) - 1))
        mid: list[nn.Module] = [ResBlock(w[-1], w[-1], nn_, act, g) for _ in range(c.blocks)]
        if c.attention:
            mid.append(SelfAttention(w[-1]))
        for i in range(c.context_blocks if c.context != "none" else 0):
            mid.append(ResBlock(w[-1], w[-1], nn_, act, g, dilation=2 ** (i % 3 + 1)) if c.context == "dilated"
                       else FFCBlock(w[-1], nn_, act, g))
        self.mid = nn.Sequential(*mid)
        self.up = nn.ModuleList(nn.Conv2d(w[i + 1], w[i], 3, padding=1) for i in range(len(w) - 1))
        self.dec = nn.ModuleList(nn.Sequential(ResBlock(2 * w[i], w[i], nn_, act, g),
                                               *[ResBlock(w[i], w[i], nn_, act, g) for _ in range(c.blocks - 1)])
                                 for i in range(len(w) - 1))
        self.out = nn.Sequential(norm(nn_, w[0]), activation(act), nn.Conv2d(w[0], out_ch * f * f, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # start as "no correction": pred = the classical fill
        nn.init.zeros_(self.out[-1].bias)
        self.multiple = f * 2 ** (len(w) - 1)

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The encoder half (stem, down path, bottleneck): the bottleneck features (N, widths[-1], H/M, W/M) with
        M = `multiple` (unshuffle * 2^(levels-1)) and the skips the decoder concatenates. H and W must be
        multiples of `multiple`."""
        z = self.stem(F.pixel_unshuffle(x, self.factor) if self.factor > 1 else x)
        skips = []
        for enc, down in zip(self.enc, self.down):
            z = enc(z)
            skips.append(z)
            z = down(z)
        return self.mid(z), skips

    def pad(self, x: Tensor) -> Tensor:
        """`x` padded (replicate, bottom and right) to H and W that are multiples of `multiple`."""
        ph, pw = -x.shape[-2] % self.multiple, -x.shape[-1] % self.multiple
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        z, skips = self.encode(self.pad(x))
        for i in reversed(range(len(self.up))):
            z = self.up[i](F.interpolate(z, scale_factor=2.0, mode="nearest"))
            z = self.dec[i](torch.cat([z, skips[i]], 1))
        z = self.out(z)
        return (F.pixel_shuffle(z, self.factor) if self.factor > 1 else z)[..., :h, :w]


class UNet(GenModel):
    Config = UNetConfig
    kind = "unet"
    legacy = {"solver": "descent"}  # checkpoints before the CG solver corrected the gradient-step fill
    legacy_names = {"warmup_steps": "loss_warmup_steps"}  # one warm-up vocabulary (train.lr_/kl_warmup_steps)
    # The encoder (SSL pretraining, train.init_encoder_from): stem, the down path and the bottleneck (with its
    # attention and context blocks); the up path, the decoder blocks and the output head are the decoder.
    encoder_prefixes = ("net.stem.", "net.enc.", "net.down.", "net.mid.")

    def __init__(self, cfg: UNetConfig, image_size: int, channels: int) -> None:
        super().__init__(cfg, image_size, channels)
        self.net = ResUNet(2 * channels + 1, channels * (2 if cfg.uncertainty else 1), cfg)
        if cfg.w_adv > 0:
            self.discriminator = PatchDiscriminator(channels, cfg.d_base, cfg.d_layers, cfg.d_norm)
        if cfg.w_perceptual > 0:  # load the perceptual term's frozen LPIPS now, not at the first step
            self.frozen_lpips()
        # Training forwards run so far: gates the perceptual/adversarial terms without a host sync.
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.compiler.disable  # TorchScript loops (genfill.models.thinplate): dynamo need not trace them
    def base_fill(self, x: Tensor, m: Tensor) -> Tensor:
        """The classical fill (N,C,H,W) the network corrects, known pixels exact, for `x` in [-1, 1] and `m`
        (N,1,H,W), 1 = hole, of any size: the cascade's depth is the model's (`levels_for(image_size)`), so a
        window, a whole photo and an ONNX graph of any size compute the same operator."""
        return prior_fill(self.cfg, x, m, self.prior_levels)

    @property
    def size_multiple(self) -> int:
        """Fully convolutional: any H and W that are multiples of this fill directly (the ONNX export's
        dynamic height and width; other sizes are padded by the network in torch)."""
        return self.net.multiple

    @property
    def prior_levels(self) -> int:
        """2x poolings of the prior's multigrid cascade: those of an image_size square (64 -> 3)."""
        return levels_for(self.image_size)

    def predict(self, x: Tensor, m: Tensor) -> Tensor:
        """Whole-image prediction (N,C,H,W) in [-1, 1] for images `x` in [-1, 1] and masks `m` (N,1,H,W,
        1 = hole); only its hole pixels matter (fills composite it)."""
        return self.predict_with_scale(x, m)[0]

    def predict_with_scale(self, x: Tensor, m: Tensor) -> tuple[Tensor, Tensor | None]:
        """(prediction, log of the Laplace scale b (N,C,H,W) or None without `uncertainty`)."""
        base = self.base_fill(x, m)
        out = self.net(torch.cat([x * (1 - m), m.to(x.dtype), base], 1))
        log_b = None
        if self.cfg.uncertainty:
            out, raw = out.chunk(2, dim=1)
            log_b = raw.float().clamp(-20.0, 20.0) - 3.0
        if self.cfg.prior == "none":
            return torch.tanh(out), log_b
        return (base + m.to(out.dtype) * out).clamp(-1, 1), log_b

    scale_distribution = "laplace"

    @torch.no_grad()
    def fill_scale(self, x: Tensor, m: Tensor) -> Tensor | None:
        """The learned Laplace scale b (N,C,H,W) of the fill, [-1, 1] units; None without `uncertainty` (and
        then no forward pass is run: eval, sample panels and the ONNX export ask every model)."""
        if not self.cfg.uncertainty:
            return None
        return self.predict_with_scale(x, m)[1].exp()

    @property
    def feature_dim(self) -> int:
        return self.cfg.widths[-1]

    def encoder_features(self, x: Tensor) -> Tensor:
        """(N, widths[-1]) bottleneck features, averaged over space, of whole images `x` (N,C,H,W) in [-1, 1]: the
        encoder's input with no hole, [x, mask 0, base = x] (the classical fill of an empty hole is x itself,
        so it is not computed)."""
        x = self.net.pad(x)
        z, _ = self.net.encode(torch.cat([x, torch.zeros_like(x[:, :1]), x], 1))
        return z.mean((2, 3))

    def adv_gate(self) -> Tensor:
        """1.0 once `loss_warmup_steps` training forwards have run, else 0.0 (a device tensor)."""
        return (self.steps >= self.cfg.loss_warmup_steps).float()

    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:
        c = self.cfg
        pred, log_b = self.predict_with_scale(x, m)
        p32, x32, m32 = pred.float(), x.float(), m.float()
        l1 = hole_weighted_l1(p32, x32, m32, c.hole_weight)
        parts = {"l1": l1}
        if c.recon == "psnr":
            parts["psnr_loss"] = psnr_loss(p32, x32, m32)
            loss = c.w_l1 * parts["psnr_loss"]
        else:
            loss = c.w_l1 * l1
        if log_b is not None:
            nll = laplace_nll(p32.detach(), log_b, x32, m32)
            loss = loss + c.w_nll * nll
            parts["nll"] = nll
        if c.w_perceptual > 0:
            perc = perceptual_loss(composite(x32, m32, p32), x32, self.frozen_lpips())
            loss = loss + self.adv_gate() * c.w_perceptual * perc
            parts["perceptual"] = perc
        if self.training:
            self.steps += 1
        return ModelOutput(loss=loss, pred=pred, parts=parts)

    def d_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        real_logits = self.discriminator(x).float()
        fake_logits = self.discriminator(fake).float()
        loss = adversarial_d_loss(real_logits, fake_logits, self.cfg.adversarial)
        return loss, {"d_loss": loss.detach(), "d_real": real_logits.mean().detach(),
                      "d_fake": fake_logits.mean().detach()}

    def g_adv_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        adv = adversarial_g_loss(self.discriminator(fake).float(), self.cfg.adversarial)
        return self.adv_gate() * self.cfg.w_adv * adv, {"adv": adv.detach()}

    @torch.no_grad()
    def fill(self, x: Tensor, m: Tensor, **options) -> Tensor:
        if options:
            raise GenfillError(f"unet takes no fill options (got {', '.join(options)})")
        return composite(x, m, self.predict(x, m).to(x.dtype))
