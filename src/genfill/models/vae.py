"""Configurable convolutional VAE (and beta-VAE), as generator and as inpainter.

Two ways to inpaint, chosen by `inpaint`:
- ``masked``: the encoder sees the image with its hole blanked plus the mask as an extra channel and the
  decoder is trained to produce the whole image, with `hole_weight` on the hole's reconstruction error.
- ``whole`` (seed 000's way): trained on whole images; at fill time the masked image is encoded and the
  known pixels pasted back, or (`fill(method="optimize")`) z is optimised so the decoder matches the known
  pixels, then composited.

The reconstruction term is computed on the [0, 1] pixel scale as the seeds do: MSE on the decoder output
(tanh or sigmoid), or BCE on sigmoid logits. `reduction: sum` sums it over pixels per image (seed 004's
"MSESum") and sums the KL over latent units; `mean` divides both by the number of pixels.

The posterior is mean-field Gaussian per image (`posterior: gaussian`) or TreeVI's tree-structured Gaussian
over the batch (`posterior: treevi`, with `tree: mst | chain`; see treevi.py), through `posterior_sample`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.models.base import GenModel, ModelOutput
from genfill.models.blocks import ConvDecoder, ConvEncoder, gaussian_draw, gaussian_kl, masked_input, reparameterize
from genfill.models.treevi import TREES, TreePosterior
from genfill.pixels import composite, from_unit, to_unit


@dataclass
class VAEConfig:
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    kernel: int = 4
    stride: int = 2
    padding: int = 1
    activation: str = "leaky_relu"
    norm: str = "batch"
    latent_dim: int = 128
    output: str = "tanh"  # tanh | sigmoid
    likelihood: str = "mse"  # mse | bce (bce needs output: sigmoid)
    reduction: str = "sum"  # sum | mean
    beta: float = 1.0
    inpaint: str = "masked"  # masked | whole
    hole_weight: float = 1.0  # weight of the hole's reconstruction error (masked mode); known pixels weigh 1
    posterior: str = "gaussian"  # gaussian (mean-field per image) | treevi (tree-correlated batch, treevi.py)
    tree: str = "mst"  # treevi only: mst (minimum spanning tree of the means) | chain (batch order)
    tree_max_corr: float = 0.99  # treevi only: |edge correlation| bound

    def __post_init__(self) -> None:
        """Checked when the config is loaded, so a bad value fails before any data is read."""
        choices = {"output": ("tanh", "sigmoid"), "likelihood": ("mse", "bce"), "reduction": ("sum", "mean"),
                   "inpaint": ("masked", "whole"), "posterior": ("gaussian", "treevi"), "tree": TREES}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise GenfillError(f"model.{key}: {getattr(self, key)!r} is not one of {', '.join(valid)}")
        if self.likelihood == "bce" and self.output != "sigmoid":
            raise GenfillError("model.likelihood: bce needs output: sigmoid")
        if not self.channels:
            raise GenfillError("model.channels: needs at least one conv layer")
        if not 0 < self.tree_max_corr < 1:
            raise GenfillError("model.tree_max_corr: must lie strictly between 0 and 1")
        if self.latent_dim < 1 or self.beta < 0 or self.hole_weight < 0:
            raise GenfillError("model: latent_dim must be >= 1, beta and hole_weight >= 0")


class VAE(GenModel):
    Config = VAEConfig
    kind = "vae"
    can_sample = True
    can_interpolate = True
    can_diversify = True
    # The encoder (SSL pretraining, train.init_encoder_from): the conv stack; the posterior head (to_stats) and
    # the decoder start fresh.
    encoder_prefixes = ("encoder.",)

    def __init__(self, cfg: VAEConfig, image_size: int, channels: int) -> None:
        super().__init__(cfg, image_size, channels)
        in_ch = channels + (1 if cfg.inpaint == "masked" else 0)
        self.encoder = ConvEncoder(in_ch, cfg.channels, image_size, cfg.kernel, cfg.stride, cfg.padding,
                                   cfg.activation, cfg.norm)
        c, s = self.encoder.out_channels, self.encoder.out_size
        self.feat_shape = (c, s, s)
        self.to_stats = nn.Linear(c * s * s, 2 * cfg.latent_dim)
        self.from_latent = nn.Linear(cfg.latent_dim, c * s * s)
        self.decoder = ConvDecoder(cfg.channels, self.encoder.sizes, channels, cfg.kernel, cfg.stride,
                                   cfg.padding, cfg.activation, cfg.norm)
        self.tree_posterior = (TreePosterior(cfg.latent_dim, cfg.tree, cfg.tree_max_corr)
                               if cfg.posterior == "treevi" else None)

    # ---- pieces
    def _encoder_input(self, x: Tensor, m: Tensor | None) -> Tensor:
        if self.cfg.inpaint == "whole":
            return x if m is None else x * (1 - m)
        return masked_input(x, m)

    def stats(self, x: Tensor, m: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.encoder(self._encoder_input(x, m)).flatten(1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    @property
    def feature_dim(self) -> int:
        return self.encoder.out_channels

    def encoder_features(self, x: Tensor) -> Tensor:
        """(N, channels[-1]) conv features, averaged over space, of whole images (mask 0 in masked mode)."""
        m = torch.zeros_like(x[:, :1])
        return self.encoder(self._encoder_input(x, m)).mean((2, 3))

    def posterior_sample(self, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        """Draw z ~ q(z|x) and return it with the per-image KL to the prior, (N,). With `posterior: treevi`
        the batch's latents are drawn jointly from the tree posterior (treevi.py)."""
        if self.tree_posterior is not None:
            return self.tree_posterior(mu, logvar)
        return reparameterize(mu, logvar), gaussian_kl(mu, logvar)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(self.from_latent(z).view(-1, *self.feat_shape))

    def to_image(self, logits: Tensor) -> Tensor:
        return torch.tanh(logits) if self.cfg.output == "tanh" else from_unit(torch.sigmoid(logits))

    def recon_error(self, logits: Tensor, x: Tensor) -> Tensor:
        """Per-pixel reconstruction error on the [0, 1] scale, (N,C,H,W)."""
        target = to_unit(x)
        if self.cfg.likelihood == "bce":
            return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return (to_unit(self.to_image(logits)) - target).pow(2)

    def elbo(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """The (beta-)ELBO terms: (loss, parts {recon, kl}, decoder logits, z); z is a posterior draw in
        training and the mean in eval mode."""
        enc_mask = m if self.cfg.inpaint == "masked" else None
        mu, logvar = self.stats(x, enc_mask)
        z, kl = self.posterior_sample(mu, logvar) if self.training else (mu, gaussian_kl(mu, logvar))
        logits = self.decode_logits(z)
        err = self.recon_error(logits, x)
        if self.cfg.inpaint == "masked" and self.cfg.hole_weight != 1.0:
            err = err * ((1 - m) + self.cfg.hole_weight * m)
        recon = err.flatten(1).sum(1)
        if self.cfg.reduction == "mean":
            pixels = x[0].numel()
            recon, kl = recon / pixels, kl / pixels
        recon, kl = recon.mean(), kl.mean()
        loss = recon + self.cfg.beta * kl_scale * kl
        return loss, {"recon": recon, "kl": kl}, logits, z

    # ---- interface
    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:
        loss, parts, logits, _ = self.elbo(x, m, kl_scale)
        return ModelOutput(loss=loss, pred=self._eval_pred(x, m, self.to_image(logits)), parts=parts)

    def _eval_pred(self, x: Tensor, m: Tensor, pred: Tensor) -> Tensor:
        """`pred` of forward. In eval mode it must be `predict(x, m)`: the masked mode's loss already decodes
        the mean of the masked image, but the whole mode's loss encodes the whole image, so its fill is
        predicted apart (one more encoder pass, in eval mode only)."""
        if self.training or self.cfg.inpaint == "masked":
            return pred
        return self.predict(x, m)

    def epoch_stats(self) -> dict[str, float]:
        return self.tree_posterior.epoch_stats() if self.tree_posterior is not None else {}

    @torch.no_grad()
    def fill(self, x: Tensor, m: Tensor, method: str = "auto", steps: int = 200, lr: float = 0.05) -> Tensor:
        """Composite fill. method: auto | encode | optimize (latent optimisation against the known pixels)."""
        if method not in ("auto", "encode", "optimize"):
            raise GenfillError(f"fill method {method!r} is not one of auto, encode, optimize")
        if method != "optimize":
            return composite(x, m, self.predict(x, m))
        mu = self._optimize_latent(self.stats(x, m)[0], x, m, steps, lr)
        return composite(x, m, self.to_image(self.decode_logits(mu)))

    @torch.no_grad()
    def fill_samples(self, x: Tensor, m: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """K fills (K,N,C,H,W) from the posterior of the masked image: z ~ q(z | masked x) = N(mu, sigma^2)
        (with `posterior: treevi` its per-image marginal, so images do not depend on their batch), decoded
        and composited. The posterior, not the prior: q is what the encoder believes given the known pixels,
        wide where the hole leaves the image open, so its draws differ in the hole and still agree with its
        border; a prior draw is some other face, whose hole pixels do not meet the known ones."""
        mu, logvar = self.stats(x, m)
        z = gaussian_draw(mu.repeat(k, 1), logvar.repeat(k, 1), generator)
        pred = self._sample_image(z, generator).view(k, *x.shape)
        return composite(x.expand(k, *x.shape), m.expand(k, *m.shape), pred)

    def _sample_image(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """The image of latent draws z (what fill_samples decodes)."""
        return self.to_image(self.decode_logits(z))

    @torch.no_grad()
    def predict(self, x: Tensor, m: Tensor) -> Tensor:
        """The decoding of the posterior mean of the masked image."""
        return self.to_image(self.decode_logits(self.stats(x, m)[0]))

    def _optimize_latent(self, z0: Tensor, x: Tensor, m: Tensor, steps: int, lr: float) -> Tensor:
        """Find z whose decoding matches the known pixels (a weak N(0, I) prior keeps z plausible)."""
        known = 1 - m
        z = z0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                pred = self.to_image(self.decode_logits(z))
                fit = ((pred - x).pow(2) * known).flatten(1).sum(1) / known.flatten(1).sum(1).clamp_min(1)
                loss = fit.sum() + 1e-3 * z.pow(2).mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return z.detach()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        dev = next(self.parameters()).device
        z = torch.randn(n, self.cfg.latent_dim, generator=generator, device=dev)
        return self.to_image(self.decode_logits(z))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        return self.stats(x, None)[0]

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        return self.to_image(self.decode_logits(z))

    def latent_shape(self) -> tuple[int, ...]:
        return (self.cfg.latent_dim,)


class BetaVAE(VAE):
    """A VAE whose beta defaults to 4 (Higgins et al. 2017): the same model under its usual name."""

    kind = "beta_vae"

    @dataclass
    class Config(VAEConfig):
        beta: float = 4.0
