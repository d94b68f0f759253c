"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning") as an inpainter.

conv encoder -> codebook of K vectors of dimension D (nearest neighbour, straight-through gradient) -> decoder.
Like the VAE's masked mode, the encoder sees the image with its hole blanked plus the mask channel and the
decoder is trained to produce the whole image, with `hole_weight` on the hole's squared error.

The codebook learns either by gradient (the paper's codebook loss ||sg[z_e] - e||^2) or, with `ema: true`,
by exponential moving averages of the vectors assigned to each code (the paper's appendix), with
Laplace-smoothed cluster sizes. Both keep the commitment term `commitment * ||z_e - sg[e]||^2`.
The EMA statistics start as one pseudo-vector at each initial code (cluster size 1, sum = the code), so a
code that is never chosen keeps its value instead of being divided by a near-zero count.
Codes unused for `dead_after` training steps are restarted at random encoder outputs of the current batch.

A VQ-VAE alone cannot draw new images: train a gated PixelCNN over its code grid as a second stage
(kind `vqvae_prior`, see `genfill.models.pixelcnn`). For interpolation, `encode` returns the continuous
pre-quantisation map z_e (D, h, w); `decode` quantises its argument to the nearest codes, then decodes, so a
linear path between two encodings decodes to a sequence of code grids that switch code by code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.losses import hole_weighted_mse
from genfill.models.base import GenModel, ModelOutput
from genfill.models.blocks import ConvDecoder, ConvEncoder, ResidualStack, masked_input


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation of (N,D,h,w) maps with a straight-through gradient.

    In training mode each call also counts code usage (for `usage_stats`), updates the EMA codebook when
    `ema` is set, and restarts codes unused for `dead_after` calls (0 = never). In eval mode it only quantises.
    """

    def __init__(self, codebook_size: int, code_dim: int, commitment: float = 0.25, ema: bool = True,
                 decay: float = 0.99, eps: float = 1e-5, dead_after: int = 100) -> None:
        super().__init__()
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.commitment, self.ema, self.decay, self.eps, self.dead_after = commitment, ema, decay, eps, dead_after
        init = torch.empty(codebook_size, code_dim).uniform_(-1 / codebook_size, 1 / codebook_size)
        if ema:
            self.register_buffer("embedding", init)
            self.register_buffer("cluster_size", torch.ones(codebook_size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embedding = nn.Parameter(init)
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))
        # Usage since the last `usage_stats()` call; not saved with the weights.
        self.register_buffer("usage", torch.zeros(codebook_size), persistent=False)

    def codes(self, z: Tensor) -> Tensor:
        """Index of the nearest code for each position of z (N,D,h,w) -> (N,h,w) long."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.code_dim).float()
        e = self.embedding.float()
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: Tensor) -> Tensor:
        """Code vectors of an index grid (N,h,w) -> (N,D,h,w)."""
        return self.embedding[codes].permute(0, 3, 1, 2).contiguous()

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """-> (z_q with straight-through gradient, codes (N,h,w), vq loss, parts)."""
        with torch.autocast(z.device.type, enabled=False):  # distances and EMA sums in float32
            z = z.float()
            codes = self.codes(z)
            q = self.lookup(codes)
            commit = F.mse_loss(z, q.detach())
            loss = self.commitment * commit
            parts = {"commit": commit.detach()}
            if not self.ema:
                codebook = F.mse_loss(q, z.detach())
                loss = loss + codebook
                parts["codebook"] = codebook.detach()
            counts = torch.bincount(codes.flatten(), minlength=self.codebook_size).float()
            p = counts / counts.sum()
            parts["perplexity"] = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
            if self.training:
                with torch.no_grad():
                    self.usage += counts
                    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.code_dim)
                    if self.ema:
                        self._ema_update(flat, codes.flatten(), counts)
                    self._restart_dead(flat, counts)
            z_q = z + (q - z).detach()  # straight-through: the decoder's gradient passes to the encoder
        return z_q, codes, loss, parts

    def _ema_update(self, flat: Tensor, codes: Tensor, counts: Tensor) -> None:
        d = self.decay
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat)
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
        # Laplace smoothing keeps every size positive without changing the total.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.embedding.copy_(self.embed_sum / smoothed[:, None])

    def _restart_dead(self, flat: Tensor, counts: Tensor) -> None:
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.dead_after <= 0:
            return
        dead = (self.unused_steps >= self.dead_after).nonzero().flatten()
        if len(dead) == 0:
            return
        pick = torch.randint(0, len(flat), (len(dead),), device=flat.device)
        new = flat[pick].to(self.embedding.dtype)
        self.embedding.data[dead] = new
        if self.ema:  # restart the averages as one pseudo-vector at the new code, like at initialisation
            self.cluster_size[dead] = 1.0
            self.embed_sum[dead] = new
        self.unused_steps[dead] = 0

    def usage_stats(self) -> dict[str, float]:
        """Perplexity of code usage since the last call (K = all codes used equally) and the fraction of
        codes used; resets the counts. Empty when nothing was counted."""
        total = self.usage.sum()
        if total <= 0:
            return {}
        p = self.usage / total
        stats = {"code_perplexity": math.exp(-(p * torch.log(p.clamp_min(1e-10))).sum().item()),
                 "code_usage": (self.usage > 0).float().mean().item()}
        self.usage.zero_()
        return stats


@dataclass
class VQVAEConfig:
    channels: list[int] = field(default_factory=lambda: [64, 128])  # strided conv layers (each halves the side)
    kernel: int = 4
    stride: int = 2
    padding: int = 1
    activation: str = "relu"
    norm: str = "none"
    res_blocks: int = 2  # residual blocks after the encoder's convs and before the decoder's
    res_channels: int = 64  # hidden width of a residual block
    codebook_size: int = 512  # K
    code_dim: int = 64  # D
    commitment: float = 0.25  # beta of the commitment term
    ema: bool = True  # codebook by EMA (decay, eps) instead of by the codebook loss
    decay: float = 0.99
    eps: float = 1e-5  # Laplace smoothing of the EMA cluster sizes
    dead_after: int = 100  # restart codes unused for this many training steps; 0 = never
    hole_weight: float = 1.0  # weight of the hole's squared error; known pixels weigh 1

    def __post_init__(self) -> None:
        """Checked when the config is loaded, so a bad value fails before any data is read."""
        if not self.channels:
            raise GenfillError("model.channels: needs at least one conv layer")
        if self.codebook_size < 2 or self.code_dim < 1:
            raise GenfillError("model: codebook_size must be >= 2 and code_dim >= 1")
        if not 0.0 <= self.decay < 1.0:
            raise GenfillError(f"model.decay: must be in [0, 1), got {self.decay}")
        if min(self.commitment, self.hole_weight, self.eps, self.dead_after, self.res_blocks) < 0:
            raise GenfillError("model: commitment, hole_weight, eps, dead_after and res_blocks must be >= 0")


class VQVAE(GenModel):
    Config = VQVAEConfig
    kind = "vqvae"
    can_sample = False  # only through a prior over its codes (kind vqvae_prior); sample() says how
    can_interpolate = True

    def __init__(self, cfg: VQVAEConfig, image_size: int, channels: int) -> None:
        super().__init__(cfg, image_size, channels)
        self.encoder_convs = ConvEncoder(channels + 1, cfg.channels, image_size, cfg.kernel, cfg.stride,
                                         cfg.padding, cfg.activation, cfg.norm)
        c, s = self.encoder_convs.out_channels, self.encoder_convs.out_size
        self.grid = s
        self.encoder_res = ResidualStack(c, cfg.res_channels, cfg.res_blocks, cfg.activation)
        self.to_code = nn.Conv2d(c, cfg.code_dim, 1)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.commitment, cfg.ema, cfg.decay,
                                         cfg.eps, cfg.dead_after)
        self.from_code = nn.Conv2d(cfg.code_dim, c, 3, 1, 1)
        self.decoder_res = ResidualStack(c, cfg.res_channels, cfg.res_blocks, cfg.activation)
        self.decoder = ConvDecoder(cfg.channels, self.encoder_convs.sizes, channels, cfg.kernel, cfg.stride,
                                   cfg.padding, cfg.activation, cfg.norm)

    # ---- pieces
    def encode_continuous(self, x: Tensor, m: Tensor | None = None) -> Tensor:
        """Pre-quantisation map z_e (N,D,h,w) of x with hole m (None = nothing missing)."""
        return self.to_code(self.encoder_res(self.encoder_convs(masked_input(x, m))))

    def decode_quantized(self, z_q: Tensor) -> Tensor:
        """Code vectors (N,D,h,w) -> image (N,C,H,W) in [-1, 1]."""
        return torch.tanh(self.decoder(self.decoder_res(self.from_code(z_q))))

    @torch.no_grad()
    def encode_codes(self, x: Tensor, m: Tensor | None = None) -> Tensor:
        """Code indices (N,h,w) of x; what a prior models (there with m = None)."""
        return self.quantizer.codes(self.encode_continuous(x, m))

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Code indices (N,h,w) -> images (N,C,H,W) in [-1, 1]."""
        return self.decode_quantized(self.quantizer.lookup(codes))

    def code_grid(self) -> tuple[int, int]:
        return (self.grid, self.grid)

    # ---- interface
    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:
        z_q, _, vq_loss, vq_parts = self.quantizer(self.encode_continuous(x, m))
        pred = self.decode_quantized(z_q)
        recon = hole_weighted_mse(pred.float(), x.float(), m, self.cfg.hole_weight)
        return ModelOutput(loss=recon + vq_loss, pred=pred, parts={"recon": recon, "vq": vq_loss, **vq_parts})

    def epoch_stats(self) -> dict[str, float]:
        return self.quantizer.usage_stats()

    @torch.no_grad()
    def predict(self, x: Tensor, m: Tensor) -> Tensor:
        """The decoding of the nearest codes of the masked image; no codebook statistics change (forward's
        straight-through value z + (q - z), so it matches forward's pred to the bit)."""
        z = self.encode_continuous(x, m)
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            z_q = z + (self.quantizer.lookup(self.quantizer.codes(z)) - z)
        return self.decode_quantized(z_q)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise GenfillError("a vqvae model samples through a prior over its codes: train one with "
                           "`genfill train --config configs/vqvae-prior-faces64.yaml` (model.vqvae: this run), "
                           "then sample from that run")

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Continuous pre-quantisation map (N,D,h,w) of whole images; `decode` quantises it."""
        return self.encode_continuous(x, None)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Quantise a pre-quantisation map (N,D,h,w) to its nearest codes and decode."""
        return self.decode_codes(self.quantizer.codes(z))

    def latent_shape(self) -> tuple[int, ...]:
        return (self.cfg.code_dim, self.grid, self.grid)
