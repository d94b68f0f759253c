"""`sampler`: an inpainter that draws plausible, sharp fills (a sample per call, K different ones on request)
and keeps the blurry-but-best-PSNR mean fill one flag away.

Why: the `unet` trained on minus-PSNR predicts the conditional mean, and the mean of many plausible faces is
a smooth smear (no eyes or mouth in a big hole; the perception-distortion trade-off, Blau & Michaeli 2018).
A sample from the conditional distribution can draw an eye where the mean cannot.

Network: the unet's residual U-Net (`unet.ResUNet`) correcting the unet's on-device thin-plate fill
(`unet.prior_fill`, what `unet.UNet.base_fill` computes, same `prior*` keywords), with extra input
channels: `noise_channels` of standard Gaussian noise z (inside the hole only) and one switch channel.
z is drawn at (ceil(H/s), ceil(W/s)), s = `noise_scale`, upsampled bilinearly to H x W and divided by the
upsampling's per-position standard deviation (`coherent_noise`), so every pixel is still N(0, 1) but
neighbours within ~s pixels share their draw. Why: per-pixel noise (s = 1, what checkpoints without the key
were trained with) lets the per-pixel CRPS be satisfied with high-frequency spread (the 120-step run filled
big holes with vertical streaks); coarse noise can only move whole regions of the fill. Input
(N, 2C + 1 + noise_channels + 1, H, W) = [x * (1 - m), m, base, z * m, switch]; output
``pred = clamp(base + m * net(...), -1, 1)``.

- **mean pass**: z = 0 and switch 0: the deterministic mean fill, trained by minus the per-image PSNR of the
  hole (`losses.psnr_loss`, the unet's `recon: psnr`). `fill(x, m, mean=True)`.
- **sample pass**: z ~ N(0, 1) and switch 1: one draw from the conditional distribution. Noise that is all
  zeros selects the mean pass (the switch is 1 exactly when any noise value is non-zero), so one graph (the
  ONNX export, `noise` an input) gives both.

One network, one forward per training batch over 1 + `train_samples` (K) copies of it: the mean copy and K
sample copies. Losses (`w_*` weights):

    w_mean * psnr_loss(mean)                                   the mean fill (what PSNR scores)
  + w_energy * CRPS over hole values, fair estimator:         a strictly proper scoring rule: minimised only
        mean_k |X_k - y| - 1/(2K(K-1)) sum_{i!=j} |X_i - X_j|  when the samples' marginal at each pixel is the
                                                                truth's conditional distribution, so it trains
                                                                the spread to be calibrated and keeps the
                                                                noise from being ignored (the -|X_i - X_j|
                                                                term pays for diversity)
  + w_perceptual * LPIPS(composite(X_k), x)                   sharpness (genfill's frozen AlexNet LPIPS)
  + w_adv * non-saturating PatchGAN loss on composite(X_k)     realism: the discriminator (`PatchDiscriminator`
                                                                on [image, mask], so it knows where the hole is;
                                                                real images get the same masks) is trained by
                                                                the shared loop (`train.train_step`) with
                                                                BCE and an R1 gradient penalty on real images,
                                                                gamma `r1`, applied every `r1_every` steps and
                                                                scaled by it (lazy R1, StyleGAN2)

The perceptual and adversarial terms start after `loss_warmup_steps` training forwards (a buffer, no host sync).

Exemplars (`exemplars: N > 0`, genfill.models.exemplars): N training images are stored in the model when
training starts (`index`), and a sample pass corrects, instead of the thin-plate fill, that fill moved towards
one of the `exemplar_k` stored images nearest in the query's known pixels (drawn with the noise's generator),
seam-corrected, by depth into the hole (`exemplar_ramp`: thin strokes keep the thin-plate fill). The noise
still enters; the mean pass is unchanged. With `train_samples: 0` only the mean pass trains (a unet's step)
and a sample is the mean fill moved towards the exemplar fill by the same depth ramp, uncorrected by the
network: the CPU preset's choice. Why: a network trained for minutes on a CPU cannot draw an eye in a
big hole, the stored faces can (benchmarks/results/perception_ab_exemplar.md). Such a model has no ONNX export.
`exemplar_blend` picks how the drawn exemplar c enters such a sample: `seam` (the default) as above,
`residual`: the mean fill plus c's detail beyond the mean pass on c under the same hole (`residual_samples`),
everywhere in the hole, or `hybrid`: residual where the hole is wide, and in thin strokes the mean fill
brightened or darkened as a whole by a random amount scaled to the detail x's own known pixels have there
(`hybrid_samples`). All are inference-only (one checkpoint serves each). seam keeps thin strokes the mean
fill (the best FID there) and its K fills too alike; residual draws calibrated spread and the lower FID in
wider holes, but a stranger's detail in thin strokes (the A/B's FID and coverage90 columns); hybrid keeps
residual's calibration and its wide holes at less FID cost in thin strokes (18.3 against 20.3 and seam's 16.3
at n = 1,000: benchmarks/results/perception_ab_latin.md).

Stroke refiner (`stroke_width > 0`, genfill.models.strokes): a small full-resolution network that corrects the
mean pass in the thin part of the hole (`thin_part`: strokes 1-2 px wide) and gives its per-pixel error size b,
which then sizes hybrid's thin-stroke shift (`stroke_gain` x b x z instead of the detail-energy rule). `mean_fill`
is the mean pass so corrected: what `fill(mean=True)`, every blend and the residual detail start from. It trains
in the same step, on thin strokes drawn for it, on the detached mean pass (`stroke_loss`, weight `w_stroke`),
at `stroke_lr` x train.lr (its own parameter group), and makes a step ~2.7x as long on a CPU: on 2
cores it is short of steps at 4 and at 15 minutes of training, so the CPU preset leaves it off
(benchmarks/results/stroke_refiner.md). Without it (0, the default) nothing changes.

Inference: `fill(x, m)` is one sample; its noise comes from a generator seeded by `torch.initial_seed()`, so
`torch.manual_seed(s)` (what `genfill.load(...).fill(..., seed=s)` and `genfill fill --seed s` do) picks the
sample and the same seed gives the same fill, call after call (eval's forward pass, `predict` and `fill`
agree). `fill_samples(x, m, K, generator)` draws K different ones from `generator`: their faces (and hybrid's
shifts) by Latin-hypercube draws (`exemplars.latin_draws`), so K <= exemplar_k fills use K different faces,
each fill drawn as `fill` draws one. Known pixels are always exact (every fill is composited).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.losses import adversarial_d_loss, adversarial_g_loss, hole_weighted_l1, perceptual_loss, psnr_loss
from genfill.masks import make_masks
from genfill.models.base import GenModel, ModelOutput
from genfill.models.blocks import PatchDiscriminator
from genfill.models.exemplars import (ExemplarBank, depth_weight, detail_energy, hole_depth, latin_draws,
                                      normal_quantile)
from genfill.models.strokes import StrokeRefiner
from genfill.models.thinplate import levels_for
from genfill.models.unet import ResUNet, UNetConfig, prior_fill
from genfill.pixels import composite

Strata = tuple[Tensor, Tensor] | None  # (exemplar, shift) uniforms per sample: Sampler.draw
BLENDS = ("seam", "residual", "hybrid")  # exemplar_blend: how a drawn stored face becomes a sample
# the hybrid blend (hybrid_samples): residual detail from a nearby hole depth of HYBRID_DEPTH[0] (none) to
# [1] (all); elsewhere the mean fill shifted by HYBRID_GAIN x the detail energy in a HYBRID_WINDOW px window
# (benchmarks/blend_variants_latin.md, n = 300, K = 8 drawn by `latin_draws`: thin-stroke coverage 0.64 at
# G = 0.5, 0.69 at 0.7; every tenth of G costs thin-stroke FID)
HYBRID_DEPTH, HYBRID_GAIN, HYBRID_WINDOW = (1.0, 3.0), 0.5, 3.0
# the same shift on the thin part of a big photo's hole, filled outside the model (`thin_stroke_gain`): strokes
# 3-9 px wide in photos, not 1-2 px in faces (benchmarks/results/native_thin_spread.md: coverage 0.50 at 0.5)
NATIVE_THIN_GAIN = 0.7


def hybrid_width(m: Tensor) -> Tensor:
    """(N,1,H,W) in [0, 1]: how wide the hole m is around each pixel, the hybrid blend's w: 0 where the deepest
    hole pixel within 2 px is HYBRID_DEPTH[0] deep, 1 where it is HYBRID_DEPTH[1] or more, linear between."""
    lo, hi = HYBRID_DEPTH
    return ((F.max_pool2d(hole_depth(m, hi), 5, 1, 2) - lo) / (hi - lo)).clamp(0, 1)


def thin_part(m: Tensor) -> Tensor:
    """(N,1,H,W) in [0, 1]: how much each hole pixel of m belongs to a thin stroke, m (1 - hybrid_width(m)): 1 in
    strokes 1-2 px wide, 0 where the hole is 3 px deep or more nearby (and outside the hole): where the stroke
    refiner corrects the mean fill and the hybrid blend shifts it."""
    m = m.float()
    return m * (1 - hybrid_width(m))


@dataclass
class SamplerConfig:
    # the network and the classical fill it corrects: the unet's keywords of the same names
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    unshuffle: int = 1  # the unet's space-to-depth stem factor (1: none)
    blocks: int = 1
    norm: str = "group"
    activation: str = "silu"
    attention: bool = False
    gated: bool = False
    context: str = "none"
    context_blocks: int = 2
    prior: str = "biharmonic"
    prior_iters: int = 24
    smooth_iters: int = 40
    solver: str = "cg"
    # sampling
    noise_channels: int = 4  # Gaussian noise channels in the hole
    noise_scale: int = 8  # noise drawn at H/s x W/s and upsampled (1: independent per pixel; module docstring)
    train_samples: int = 2  # K sample passes per training batch (the CRPS needs >= 2; 0: exemplars only, below)
    # losses (module docstring)
    w_mean: float = 1.0  # minus PSNR of the mean pass
    w_energy: float = 100.0  # CRPS of the samples over hole values ([-1, 1] units; ~psnr_loss's gradient scale)
    w_perceptual: float = 4.0  # LPIPS of the composited samples
    w_adv: float = 1.0  # non-saturating PatchGAN term on the composited samples (0 = no discriminator)
    r1: float = 1.0  # R1 penalty gamma on real images (discriminator step)
    r1_every: int = 4  # lazy R1: every this many discriminator steps, scaled by it
    loss_warmup_steps: int = 0  # perceptual and adversarial terms start after this many training forwards
    d_base: int = 32
    d_layers: int = 3
    d_norm: str = "none"
    # exemplars (genfill.models.exemplars): training images stored in the model; a sample pass then corrects
    # one of the k nearest (by the known pixels), seam-corrected, instead of the classical fill
    exemplars: int = 0  # images stored at training start (0: none; all of the training split when fewer)
    exemplar_k: int = 8  # a sample draws one of this many nearest
    exemplar_key: int = 32  # lookup keys: images average-pooled to this many cells a side
    exemplar_ramp: list[float] = field(default_factory=lambda: [2.0, 5.0])  # classical fill -> exemplar (px)
    # how a drawn exemplar c becomes a sample (train_samples 0): "residual" = the mean fill of x plus c's
    # detail beyond the mean fill of c under the same hole; "seam" = c seam-corrected, by the depth ramp;
    # "hybrid" = residual in wide holes, a detail-scaled brightness draw in thin strokes
    exemplar_blend: str = "seam"
    # the stroke refiner (genfill.models.strokes): a full-resolution network correcting the mean fill in thin
    # strokes, with a per-pixel error size that sizes the hybrid blend's shift there (0: none, as before)
    stroke_width: int = 0  # its channels
    stroke_gain: float = 1.0  # hybrid's thin-stroke shift: stroke_gain x its error size b x one normal per sample
    w_stroke: float = 1.0  # its loss (L1 + 0.1 Laplace NLL on thin strokes drawn each step) in the training loss
    stroke_lr: float = 5.0  # its learning rate, as a multiple of train.lr (a small network on a moving input)

    def __post_init__(self) -> None:
        self.unet_config()  # the network and prior keywords validate as the unet's do
        if self.noise_scale < 1:
            raise GenfillError("model.noise_scale: need at least 1 (1 = independent noise per pixel)")
        if self.noise_channels < 1:
            raise GenfillError("model.noise_channels: need at least 1 (the sampler's randomness)")
        if self.train_samples == 0:
            if self.exemplars <= 0 or self.w_adv > 0 or self.w_perceptual > 0:
                raise GenfillError("model.train_samples: 0 (untrained sample passes: a sample is the mean fill moved "
                                   "to an exemplar) needs model.exemplars > 0 and w_adv = w_perceptual = 0")
        elif self.train_samples < 2:
            raise GenfillError("model.train_samples: need at least 2 (the CRPS compares samples with each other), "
                               "or 0 with exemplars")
        if self.r1_every < 1 or self.loss_warmup_steps < 0:
            raise GenfillError("model.r1_every must be >= 1 and model.loss_warmup_steps >= 0")
        if min(self.w_mean, self.w_energy, self.w_perceptual, self.w_adv, self.r1, self.w_stroke) < 0:
            raise GenfillError("model: loss weights and r1 must be >= 0")
        if self.stroke_width < 0 or self.stroke_gain < 0 or self.stroke_lr <= 0:
            raise GenfillError(f"model.stroke_width ({self.stroke_width}) and model.stroke_gain ({self.stroke_gain}) "
                               f"must be >= 0 (stroke_width 0: no stroke refiner), model.stroke_lr ({self.stroke_lr}) "
                               "> 0")
        if self.exemplars < 0 or self.exemplar_k < 1 or self.exemplar_key < 1:
            raise GenfillError("model.exemplars must be >= 0, exemplar_k and exemplar_key >= 1")
        if self.exemplar_blend not in BLENDS:
            raise GenfillError(f"model.exemplar_blend: one of {', '.join(BLENDS)}, got {self.exemplar_blend!r}")
        if self.exemplar_blend != "seam" and self.train_samples != 0:
            raise GenfillError(f"model.exemplar_blend: {self.exemplar_blend} draws on the mean pass alone: needs "
                               "train_samples: 0")
        ramp = list(self.exemplar_ramp)
        if len(ramp) != 2 or not 0 <= ramp[0] < ramp[1] <= 64:
            raise GenfillError(f"model.exemplar_ramp: two depths in pixels, 0 <= start < end <= 64, got {ramp}")

    def unet_config(self) -> UNetConfig:
        """The unet config of the same network and prior (what ResUNet and the unet's base fill read)."""
        return UNetConfig(widths=list(self.widths), unshuffle=self.unshuffle, blocks=self.blocks, norm=self.norm,
                          activation=self.activation, attention=self.attention, gated=self.gated, context=self.context,
                          context_blocks=self.context_blocks, prior=self.prior, prior_iters=self.prior_iters,
                          smooth_iters=self.smooth_iters, solver=self.solver)


def crps(samples: Tensor, y: Tensor, m: Tensor) -> Tensor:
    """Fair CRPS estimator of K samples (K,N,C,H,W) against the truth y (N,C,H,W), averaged over hole values
    (m (N,1,H,W), 1 = hole): mean_k |X_k - y| - sum_{i != j} |X_i - X_j| / (2 K (K - 1)). Unbiased for the
    CRPS of the sampler's per-pixel distribution, whose expectation is minimised only by the true one."""
    k = samples.shape[0]
    err = (samples - y).abs().mean(0)
    pair = sum((samples[i] - samples[j]).abs() for i in range(k) for j in range(i + 1, k)) / (k * (k - 1))
    hole = m.expand_as(y)
    return ((err - pair) * hole).sum() / hole.sum().clamp_min(1)


def _upsample_std(n: int, size: int) -> Tensor:
    """(size,) standard deviation, per output position, of a 1-D linear upsampling (align_corners=False) of n
    independent N(0, 1) values to `size`: the root sum of squared interpolation weights."""
    weights = nn.functional.interpolate(torch.eye(n)[None], size=size, mode="linear", align_corners=False)[0]
    return weights.pow(2).sum(0).sqrt()


def coherent_noise(n: int, channels: int, h: int, w: int, scale: int, generator: torch.Generator | None,
                   device: torch.device | str) -> Tensor:
    """(n, channels, h, w) noise whose every value is N(0, 1) and whose neighbours within ~`scale` pixels are
    correlated: N(0, 1) drawn at (ceil(h/scale), ceil(w/scale)), upsampled bilinearly (align_corners=False)
    and divided by the upsampling's per-position std (bilinear weights shrink the variance between the coarse
    points). scale 1 is plain per-pixel noise, the same draws as torch.randn(n, channels, h, w)."""
    if scale == 1:
        return torch.randn(n, channels, h, w, generator=generator, device=device)
    hc, wc = -(-h // scale), -(-w // scale)
    z = torch.randn(n, channels, hc, wc, generator=generator, device=device)
    up = nn.functional.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
    std = _upsample_std(hc, h)[:, None] * _upsample_std(wc, w)[None, :]  # separable: the 2-D std
    return up / std.to(device)


class Sampler(GenModel):
    Config = SamplerConfig
    kind = "sampler"
    legacy = {"noise_scale": 1}  # checkpoints before coherent noise drew it per pixel
    legacy_names = {"warmup_steps": "loss_warmup_steps"}  # one warm-up vocabulary (train.lr_/kl_warmup_steps)
    can_diversify = True
    encoder_prefixes = ("net.stem.", "net.enc.", "net.down.", "net.mid.")

    def __init__(self, cfg: SamplerConfig, image_size: int, channels: int) -> None:
        super().__init__(cfg, image_size, channels)
        self._prior_cfg, self._prior_levels = cfg.unet_config(), levels_for(image_size)  # the unet's prior
        self.net = ResUNet(2 * channels + 1 + cfg.noise_channels + 1, channels, cfg.unet_config())
        # The unet zero-initialises its output conv (start as the classical fill); a small random one here
        # instead, so that even an untrained sampler's noise reaches its fills (K draws differ from step 0).
        head = self.net.out[-1]
        nn.init.normal_(head.weight, std=1e-3)
        if cfg.w_adv > 0:
            self.discriminator = PatchDiscriminator(channels + 1, cfg.d_base, cfg.d_layers, cfg.d_norm)
        if cfg.w_perceptual > 0:  # load the perceptual term's frozen LPIPS now, not at the first step
            self.frozen_lpips()
        if cfg.exemplars > 0:
            self.exemplars = ExemplarBank(channels, image_size, cfg.exemplar_k, cfg.exemplar_key)
        self.strokes = StrokeRefiner(channels, cfg.stroke_width) if cfg.stroke_width > 0 else None
        self._stroke_masks: torch.Generator | None = None  # draws the refiner's training strokes (not saved)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._d_steps = 0  # discriminator steps in this process (lazy R1; not saved)
        self._r1 = torch.zeros(())  # the last R1 penalty, logged on the steps in between

    @torch.compiler.disable  # TorchScript loops (genfill.models.thinplate): dynamo need not trace them
    def base_fill(self, x: Tensor, m: Tensor) -> Tensor:
        """The unet's classical fill (known pixels exact) that the network corrects."""
        return prior_fill(self._prior_cfg, x, m, self._prior_levels)

    def adapt_state(self, state: dict[str, Tensor], kind: str) -> dict[str, Tensor]:
        """train.init_from a unet run of the same widths: its weights, with the stem's extra input channels
        (noise, switch) a tenth of their fresh init, so the sampler starts near that unet's fill in both passes; the unet's step
        counter is dropped (the warm-up counts this run's steps). A sampler's own weights pass unchanged."""
        if kind != "unet":
            return state
        state = {k: v for k, v in state.items() if k.startswith("net.")}
        stem = state.get("net.stem.weight")
        own = self.net.stem.weight
        if stem is not None and stem.shape[1] < own.shape[1] and stem.shape[0] == own.shape[0]:
            # a tenth of the fresh init, not zeros: an exact tie between samples has a zero CRPS gradient
            pad = 0.1 * own.detach()[:, stem.shape[1]:].to(stem.dtype).cpu()
            state["net.stem.weight"] = torch.cat([stem, pad], 1)
        return {**state, "steps": torch.zeros((), dtype=torch.long)}

    def index(self, positions: Tensor, read, generator: torch.Generator) -> None:
        """Store `model.exemplars` training images (train.start calls this before the first step; a family
        without exemplars stores nothing)."""
        if self.cfg.exemplars > 0:
            self.exemplars.index(positions, read, self.cfg.exemplars, generator)

    def shape_state(self, state: dict[str, Tensor]) -> None:
        if self.cfg.exemplars > 0:
            self.exemplars.take_shape(state.get("exemplars.images"))

    def sample_base(self, x: Tensor, m: Tensor, base: Tensor, reps: int, generator: torch.Generator | None,
                    strata: Strata = None) -> Tensor:
        """(reps * N) bases of sample passes: the classical fill, or with exemplars that fill moved towards a
        drawn exemplar, seam-corrected, by the depth ramp (genfill.models.exemplars). `strata`: `draw`."""
        if self.cfg.exemplars <= 0 or len(self.exemplars) == 0:
            return base.repeat(reps, 1, 1, 1)
        faces = self.exemplars.neighbours(x, m, reps, generator, strata[0] if strata else None)
        ex = self.exemplars.corrected(x, m, faces)
        beta = depth_weight(m, tuple(self.cfg.exemplar_ramp)).to(x.dtype).repeat(reps, 1, 1, 1)
        b = base.repeat(reps, 1, 1, 1)
        return b + beta * (ex - b)

    def use_blend(self, blend: str) -> None:
        """Draw samples with `exemplar_blend` `blend` from now on (inference-only: the weights serve both); the
        config's own checks refuse a bad name or a sampler that cannot (trained sample passes, no exemplars)."""
        self.cfg = replace(self.cfg, exemplar_blend=blend)

    def residual_samples(self, x: Tensor, m: Tensor, mean: Tensor, reps: int, generator: torch.Generator | None,
                         strata: Strata = None) -> Tensor:
        """(reps * N) samples `exemplar_blend: residual`: mean + (c - mean_c), c a drawn exemplar and mean_c the
        mean pass of c under the same hole. c - mean_c is the detail the mean fill cannot predict, measured on
        an image whose truth is known; added to x's mean fill it gives x that detail. Its size is what the mean
        fill's error is on a similar image, so K draws spread as far as the truth strays from the mean (the
        calibration the seam blend lacked), and it is small at the hole's border, where both mean fills are pinned
        by their image's known pixels: no seam correction, no ramp. `strata`: `draw`."""
        return (mean.repeat(reps, 1, 1, 1) + self.residual_detail(x, m, reps, generator, strata)).clamp(-1, 1)

    def residual_detail(self, x: Tensor, m: Tensor, reps: int, generator: torch.Generator | None,
                        strata: Strata = None) -> Tensor:
        """(reps * N) c - mean_c: drawn exemplars c (`exemplars.neighbours`) less the mean pass on c under the
        same holes: the detail the residual and hybrid blends add to x's mean fill. `strata`: `draw`."""
        c = self.exemplars.neighbours(x, m, reps, generator, strata[0] if strata else None)
        return c - self.mean_fill(c, m.repeat(reps, 1, 1, 1))[0]

    def hybrid_samples(self, x: Tensor, m: Tensor, mean: Tensor, reps: int, generator: torch.Generator | None,
                       strata: Strata = None, scale: Tensor | None = None) -> Tensor:
        """(reps * N) samples `exemplar_blend: hybrid`: mean + w r + (1 - w) g e z in the hole. r = c - mean_c is
        the residual blend's detail (drawn first, as there), w in [0, 1] how wide the hole is nearby (0 where
        the deepest hole pixel within 2 px is 1 deep, 1 where it is 3 or more: `HYBRID_DEPTH`), e x's detail
        energy around the pixel (`exemplars.detail_energy`, `HYBRID_WINDOW` px), z one standard normal per
        sample and g = `HYBRID_GAIN`. A stranger's detail in a stroke 1-2 px wide lands off the edges it
        should continue (specks); brightening or darkening the whole stroke in proportion to the detail
        around it spreads the K fills as far (coverage) for less FID (blend_variants_band.md). With a stroke
        refiner, its error size `scale` (N,C,H,W: `mean_fill`) replaces g e: stroke_gain x b (the shift then as
        large as the refined fill's expected error, pixel by pixel: benchmarks/results/stroke_refiner.md).
        `strata`: `draw` (z is then the normal quantile of strata[1])."""
        r = self.residual_detail(x, m, reps, generator, strata)
        mr = m.repeat(reps, 1, 1, 1).to(x.dtype)
        w = hybrid_width(mr).to(x.dtype)
        if scale is None:
            size = HYBRID_GAIN * detail_energy(x.repeat(reps, 1, 1, 1), 1 - mr, HYBRID_WINDOW).to(x.dtype)
        else:
            size = self.cfg.stroke_gain * scale.to(x.dtype).repeat(reps, 1, 1, 1)
        if strata:
            z = normal_quantile(strata[1].reshape(-1, 1, 1, 1))
        else:
            z = torch.randn(len(mr), 1, 1, 1, generator=generator, device=generator.device if generator else None)
        shift = size * z.to(x.device, x.dtype)
        return (mean.repeat(reps, 1, 1, 1) + (w * r + (1 - w) * shift) * mr).clamp(-1, 1)

    def thin_stroke_gain(self) -> float:
        """How far each sample moves hole pixels it does not draw itself: the thin part of a big photo's hole,
        which the native fill fills outside the model, the same in every sample (genfill.inpaint.split_thin).
        With the calibrated blends (residual, hybrid) a sample shifts them as `hybrid_samples` shifts a thin
        stroke: NATIVE_THIN_GAIN x the detail energy around them x one normal per sample (the caller draws it:
        `genfill.api.shift_thin`); with seam none (its thin strokes keep the mean fill)."""
        return NATIVE_THIN_GAIN if self.cfg.exemplar_blend in ("residual", "hybrid") else 0.0

    # ---- the network
    def run(self, x: Tensor, m: Tensor, noise: Tensor, base: Tensor | None = None) -> Tensor:
        """Whole-image predictions (N,C,H,W) in [-1, 1] for noise (N, noise_channels, H, W): a sample pass where
        an image's noise has any non-zero value, the mean pass where it is all zeros. `x`, `m`, `base` may be
        the N images once while `noise` holds R*N rows (R passes of each image, one batch); `base` may also
        hold R*N rows (each pass its own: `sample_base`)."""
        if base is None:
            base = self.base_fill(x, m)
        reps = noise.shape[0] // x.shape[0]
        if reps * x.shape[0] != noise.shape[0] or noise.shape[1] != self.cfg.noise_channels:
            raise GenfillError(f"sampler: noise {tuple(noise.shape)} does not fit {x.shape[0]} images with "
                               f"{self.cfg.noise_channels} noise channels")
        if base.shape[0] == x.shape[0]:
            base = base.repeat(reps, 1, 1, 1)
        md = m.to(x.dtype)
        mr = md.repeat(reps, 1, 1, 1)
        cond = torch.cat([(x * (1 - md)).repeat(reps, 1, 1, 1), mr, base], 1)
        noise = noise.to(x.dtype)
        switch = (noise.flatten(1).abs().amax(1) > 0).to(x.dtype)[:, None, None, None].expand_as(mr)
        out = self.net(torch.cat([cond, noise * mr, switch], 1))
        return (base + mr.to(out.dtype) * out).clamp(-1, 1)

    def mean_pass(self, x: Tensor, m: Tensor, base: Tensor | None = None) -> Tensor:
        """The mean pass (all-zero noise) of images x under holes m: whole-image predictions, as `run`."""
        return self.run(x, m, x.new_zeros(len(x), self.cfg.noise_channels, *x.shape[-2:]), base)

    def mean_fill(self, x: Tensor, m: Tensor, base: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The mean fill (whole-image predictions): the mean pass, corrected in the thin part of the hole
        (`thin_part`) by the stroke refiner when the model has one; and that refiner's error size b (N,C,H,W; None
        without one), which sizes the hybrid blend's thin-stroke shift."""
        mean = self.mean_pass(x, m, base)
        if self.strokes is None:
            return mean, None
        correction, b = self.strokes(x, m, mean)
        return (mean + thin_part(m).to(mean.dtype) * correction.to(mean.dtype)).clamp(-1, 1), b

    @torch.compiler.disable  # masks drawn on the host: dynamo need not trace it
    def stroke_holes(self, x: Tensor) -> Tensor:
        """(N,1,H,W) LaMa thin strokes (the eval's `thin` kind) for the stroke refiner's training step, drawn on the
        CPU by a generator seeded once from torch.initial_seed() (a seeded run draws the same strokes) and copied
        to x's device without waiting (pinned memory: no host sync on a GPU)."""
        if self._stroke_masks is None:
            self._stroke_masks = torch.Generator().manual_seed(torch.initial_seed() + 7919)
        m = make_masks("thin", len(x), x.shape[-2], x.shape[-1], generator=self._stroke_masks)
        return m.pin_memory().to(x.device, non_blocking=True) if x.is_cuda else m.to(x.device)

    def stroke_loss(self, x: Tensor) -> dict[str, Tensor]:
        """The stroke refiner's training terms on x under thin strokes drawn for it (`stroke_holes`): L1 of the
        corrected mean pass and the Laplace NLL of its error size b (that fill detached), both over the strokes'
        thin part. The mean pass runs without gradients here: the U-Net trains on the batch's own holes."""
        m = self.stroke_holes(x)
        with torch.no_grad():
            mean = self.mean_pass(x, m)
        correction, b = self.strokes(x, m, mean)
        t = thin_part(m).expand(-1, x.shape[1], -1, -1)
        weight = t.sum().clamp_min(1)
        err = (mean.float() + correction.float() - x.float()).abs()
        l1 = (err * t).sum() / weight
        nll = ((err.detach() / b + b.log()) * t).sum() / weight
        return {"stroke_l1": l1, "stroke_nll": nll}

    @staticmethod
    def seeded(like: Tensor) -> torch.Generator:
        """A generator on `like`'s device seeded by torch.initial_seed(): the seeded default fill's draws."""
        return torch.Generator(like.device).manual_seed(torch.initial_seed())

    def noise(self, n: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(n, noise_channels, H, W) noise (`coherent_noise` at `noise_scale`) on `like`'s device; from
        `generator`, or (None) from a generator seeded by torch.initial_seed() (the module docstring: the seeded
        default fill). What `run` and the ONNX graph's `noise` input take."""
        return coherent_noise(n, self.cfg.noise_channels, *like.shape[-2:], self.cfg.noise_scale,
                              generator or self.seeded(like), like.device)

    def draw(self, x: Tensor, m: Tensor, base: Tensor, reps: int, generator: torch.Generator,
             mean: tuple[Tensor, Tensor | None] | None = None, strata: Strata = None) -> Tensor:
        """`reps` sample passes of every image, in one batch: (reps * N) predictions. With `train_samples: 0`
        the network never learnt a sample pass: a sample is the mean fill moved towards a drawn exemplar
        (`sample_base` around the mean fill, `mean` (`mean_fill`'s pair) when the caller has it), so thin strokes
        keep the trained mean fill. `strata` (two (reps, N) uniforms, `latin_draws` rows) pick the exemplar
        and hybrid's shift instead of fresh draws (`fill_samples`)."""
        z = self.noise(reps * len(x), x, generator)
        if self.cfg.train_samples == 0:
            fill, scale = self.mean_fill(x, m, base) if mean is None else mean
            if self.cfg.exemplar_blend == "residual":
                return self.residual_samples(x, m, fill, reps, generator, strata)
            if self.cfg.exemplar_blend == "hybrid":
                return self.hybrid_samples(x, m, fill, reps, generator, strata, scale)
            return self.sample_base(x, m, fill, reps, generator, strata).clamp(-1, 1)
        return self.run(x, m, z, self.sample_base(x, m, base, reps, generator, strata))

    # ---- inference
    @torch.no_grad()
    def predict(self, x: Tensor, m: Tensor, mean: bool = False) -> Tensor:
        """One seeded sample (N,C,H,W) in [-1, 1] (module docstring), or the mean fill with `mean`."""
        if mean:
            return self.mean_fill(x, m)[0]
        return self.draw(x, m, self.base_fill(x, m), 1, self.seeded(x))

    @torch.no_grad()
    def fill(self, x: Tensor, m: Tensor, mean: bool = False, **options) -> Tensor:
        """A composited sample; `mean=True` gives the deterministic mean fill (the best PSNR, blurry)."""
        if options:
            raise GenfillError(f"sampler takes one fill option, mean (got {', '.join(options)})")
        return composite(x, m, self.predict(x, m, mean=bool(mean)).to(x.dtype))

    @torch.no_grad()
    def fill_samples(self, x: Tensor, m: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """K composited samples (K,N,C,H,W) from `generator`, one pass per sample (memory of one batch). The K
        exemplar picks are rows of Latin-hypercube draws over `exemplar_k` strata, hybrid's K shifts one over K
        (`exemplars.latin_draws`): each sample is drawn as `fill` draws one, but K <= `exemplar_k` fills of an
        image use K different faces."""
        base, g = self.base_fill(x, m), generator or self.seeded(x)
        mean = None
        if self.cfg.train_samples == 0:  # the mean fill once for all K
            mean = self.mean_fill(x, m, base)
        faces = max(self.cfg.exemplar_k, 1)  # one stratum per nearest face: K <= exemplar_k picks K different ones
        u = torch.cat([latin_draws(faces, len(x), g) for _ in range(-(-k // faces))])[:k]
        v = latin_draws(k, len(x), g)
        return torch.stack([composite(x, m, self.draw(x, m, base, 1, g, mean, (u[j:j + 1], v[j:j + 1])).to(x.dtype))
                            for j in range(k)])

    # ---- the encoder (SSL pretraining): a whole image, no hole, no noise, mean pass
    @property
    def feature_dim(self) -> int:
        return self.cfg.widths[-1]

    def encoder_features(self, x: Tensor) -> Tensor:
        x = self.net.pad(x)
        zeros = torch.zeros_like(x[:, :1])
        extra = zeros.expand(-1, self.cfg.noise_channels + 1, -1, -1)
        z, _ = self.net.encode(torch.cat([x, zeros, x, extra], 1))
        return z.mean((2, 3))

    # ---- training
    def gate(self) -> Tensor:
        """1.0 once `loss_warmup_steps` training forwards have run, else 0.0 (a device tensor)."""
        return (self.steps >= self.cfg.loss_warmup_steps).float()

    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:
        c = self.cfg
        x32, m32 = x.float(), m.float()
        if not self.training:  # eval: the default fill (a seeded sample) and its PSNR, one pass
            pred = self.predict(x, m)
            p32 = pred.float()
            recon = psnr_loss(p32, x32, m32)
            parts = {"psnr_loss": recon, "l1": hole_weighted_l1(p32, x32, m32, 6.0)}
            if c.train_samples == 0:  # the loss is what training moves (the mean pass); the fill stays a sample
                parts["mean_psnr_loss"] = psnr_loss(self.predict(x, m, mean=True).float(), x32, m32)
                return ModelOutput(loss=parts["mean_psnr_loss"], pred=pred, parts=parts)
            return ModelOutput(loss=recon, pred=pred, parts=parts)
        n, k = len(x), c.train_samples
        if k == 0:  # the mean pass alone (samples are exemplar fills): the unet's step
            mean = self.mean_pass(x, m)
            parts = {"psnr_loss": psnr_loss(mean.float(), x32, m32)}
            loss = c.w_mean * parts["psnr_loss"] + self._stroke_term(x, parts)
            self.steps += 1
            return ModelOutput(loss=loss, pred=mean, parts=parts)
        z = coherent_noise(k * n, c.noise_channels, *x.shape[-2:], c.noise_scale, None, x.device)
        base = self.base_fill(x, m)
        bases = torch.cat([base, self.sample_base(x, m, base, k, None)])
        preds = self.run(x, m, torch.cat([torch.zeros_like(z[:n]), z]), bases)
        mean, samples = preds[:n], preds[n:]
        p32 = mean.float()
        s32 = samples.float().view(k, n, *x.shape[1:])
        parts = {"psnr_loss": psnr_loss(p32, x32, m32), "crps": crps(s32, x32, m32)}
        loss = c.w_mean * parts["psnr_loss"] + c.w_energy * parts["crps"] + self._stroke_term(x, parts)
        xr, mr = x32.repeat(k, 1, 1, 1), m32.repeat(k, 1, 1, 1)
        fakes = composite(xr, mr, samples.float())
        if c.w_perceptual > 0:
            parts["perceptual"] = perceptual_loss(fakes, xr, self.frozen_lpips())
            loss = loss + self.gate() * c.w_perceptual * parts["perceptual"]
        with torch.no_grad():  # is the noise used? mean |X_1 - X_2| over hole values ([-1, 1] units)
            hole = m32.expand_as(x32)
            parts["spread"] = ((s32[0] - s32[1]).abs() * hole).sum() / hole.sum().clamp_min(1)
        self.steps += 1
        return ModelOutput(loss=loss, pred=mean, parts=parts, fake=fakes.to(x.dtype))

    def param_groups(self) -> list[dict]:
        """The stroke refiner at `stroke_lr` x train.lr, the rest at train.lr (one group without a refiner)."""
        if self.strokes is None:
            return super().param_groups()
        own = {id(p) for p in self.strokes.parameters()}
        return [{"params": [p for p in self.generator_parameters() if id(p) not in own]},
                {"params": list(self.strokes.parameters()), "lr_scale": self.cfg.stroke_lr}]

    def _stroke_term(self, x: Tensor, parts: dict[str, Tensor]) -> Tensor | float:
        """w_stroke x (L1 + 0.1 NLL) of `stroke_loss`, its parts logged in `parts`; 0 without a stroke refiner."""
        if self.strokes is None:
            return 0.0
        parts.update(self.stroke_loss(x))
        return self.cfg.w_stroke * (parts["stroke_l1"] + 0.1 * parts["stroke_nll"])

    def _judge(self, img: Tensor, m: Tensor) -> Tensor:
        reps = img.shape[0] // m.shape[0]
        return self.discriminator(torch.cat([img, m.to(img.dtype).repeat(reps, 1, 1, 1)], 1)).float()

    def d_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """BCE on real images and the composited samples, plus the lazy R1 penalty on real images."""
        k = fake.shape[0] // x.shape[0]
        r1_now = self.cfg.r1 > 0 and self._d_steps % self.cfg.r1_every == 0
        self._d_steps += 1
        real = x.detach().repeat(k, 1, 1, 1).requires_grad_(r1_now)  # as many reals as fakes: balanced BCE
        real_logits = self._judge(real, m)
        fake_logits = self._judge(fake, m)
        loss = adversarial_d_loss(real_logits, fake_logits, "bce")
        parts = {"d_loss": loss.detach(), "d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}
        if r1_now:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            r1 = grad.float().pow(2).flatten(1).sum(1).mean()
            loss = loss + 0.5 * self.cfg.r1 * self.cfg.r1_every * r1
            self._r1 = r1.detach()
        parts["r1"] = self._r1.to(loss.device)
        return loss, parts

    def g_adv_loss(self, x: Tensor, m: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        adv = adversarial_g_loss(self._judge(fake, m), "bce")  # non-saturating: -log D(G(z))
        return self.gate() * self.cfg.w_adv * adv, {"adv": adv.detach()}
