"""Gated PixelCNN prior over a VQ-VAE's code grid (second training stage), kind `vqvae_prior`.

The network follows van den Oord et al. 2016 ("Conditional Image Generation with PixelCNN Decoders"):
a vertical stack (everything above the current row) and a horizontal stack (the current row, left of the
current position) built from masked convolutions, gated units tanh(a) * sigmoid(b), the vertical stack fed
into the horizontal one through a 1x1 conv, and a residual 1x1 on the horizontal stack. Splitting the two
stacks removes the original PixelCNN's blind spot. The first layer uses type-A masks (the vertical kernel's
own row and the horizontal kernel's own column are zeroed, so position (i, j) never sees its own code);
later layers use type B (their own row / column included, which only carries information from strictly
earlier positions). That is the paper's "shift down by one row" written as a mask.

The prior's config names a finished VQ-VAE run (`vqvae:` run directory or checkpoint). At build time
(`VQVAEPrior.build`, before the constructor, which never reads files) that checkpoint is read once; its kind, config, image size and channels go into the prior's own config as
`vqvae_spec`, and its weights become the frozen submodule `vqvae`, whose state is saved with the prior's.
So the prior's checkpoint is self-contained: `load_model(prior_ckpt)` finds `vqvae_spec` filled, rebuilds
the VQ-VAE from it without opening any other file, and loads every weight from the one state dict.

Pluralistic fills (`fill_samples`, `--samples K`): the masked image is encoded to codes as the VQ-VAE's own
fill does; a code cell is *known* when none of the pixels of its cell (image_size / grid on a side) is hole.
Known codes are kept; every other code is drawn from the PixelCNN in raster order given the codes before it
(known ones and those already drawn), K times; each grid is decoded and composited. The PixelCNN is causal:
a drawn code sees the known codes above and to the left, not those below or to the right of the hole (the
composite keeps the known pixels there, and the decoder's overlap smooths the join, but nothing forces the
drawn codes to agree with them: a known limit of raster-order priors for inpainting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.io import load_checkpoint
from genfill.models.base import GenModel, ModelOutput
from genfill.models.vqvae import VQVAE, VQVAEConfig
from genfill.pixels import composite
from genfill.typed import from_dict


class MaskedConv2d(nn.Conv2d):
    """A conv whose weight is multiplied by a fixed 0/1 mask (kH,kW) on every call; padding is explicit
    (left, right, top, bottom) so the output keeps the input's size."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], pad: tuple[int, int, int, int],
                 mask: Tensor) -> None:
        super().__init__(cin, cout, kernel)
        self.pad = pad
        self.register_buffer("mask", mask[None, None].clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, self.pad), self.weight * self.mask, self.bias)


def gate(h: Tensor) -> Tensor:
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: (vertical, horizontal) -> (vertical, horizontal), each (N,dim,h,w)."""

    def __init__(self, dim: int, kernel: int, mask_type: str) -> None:
        super().__init__()
        half = kernel // 2
        kh = half + 1
        # Vertical: rows i-half..i, all columns j-half..j+half; type A drops row i.
        vmask = torch.ones(kh, kernel)
        # Horizontal: row i, columns j-half..j; type A drops column j.
        hmask = torch.ones(1, kh)
        if mask_type == "A":
            vmask[-1] = 0
            hmask[0, -1] = 0
        self.vertical = MaskedConv2d(dim, 2 * dim, (kh, kernel), (half, half, half, 0), vmask)
        self.horizontal = MaskedConv2d(dim, 2 * dim, (1, kh), (half, 0, 0, 0), hmask)
        self.v_to_h = nn.Conv2d(2 * dim, 2 * dim, 1)
        self.h_out = nn.Conv2d(dim, dim, 1)
        # The first layer's horizontal input is the embedding of the current code itself: no skip there.
        self.residual = mask_type == "B"

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v_pre = self.vertical(v)
        h_out = self.h_out(gate(self.horizontal(h) + self.v_to_h(v_pre)))
        return gate(v_pre), (h + h_out if self.residual else h_out)


class GatedPixelCNN(nn.Module):
    """Logits (N,K,h,w) of each code given the codes before it in raster order; input (N,h,w) long."""

    def __init__(self, codebook_size: int, dim: int = 64, layers: int = 8, kernel: int = 5, head: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(codebook_size, dim)
        self.layers = nn.ModuleList([GatedLayer(dim, kernel, "A" if i == 0 else "B") for i in range(layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(dim, head, 1), nn.ReLU(), nn.Conv2d(head, codebook_size, 1))

    def forward(self, codes: Tensor) -> Tensor:
        x = self.embed(codes).permute(0, 3, 1, 2)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)


@dataclass
class VQVAEPriorConfig:
    vqvae: str = ""  # the finished VQ-VAE: a run directory or a checkpoint path
    dim: int = 64  # channels of both stacks
    layers: int = 8  # gated layers (the first is type A)
    kernel: int = 5  # odd; the receptive field grows by kernel // 2 rows and columns per layer
    head: int = 256  # width of the 1x1 output head
    temperature: float = 1.0  # default sampling temperature (logits / T)
    # Filled at build time from `vqvae` (kind, model_config, image_size, channels, source); leave it empty.
    vqvae_spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checked when the config is loaded, so a bad value fails before any data (or checkpoint) is read."""
        if not self.vqvae and not self.vqvae_spec:
            raise GenfillError("model.vqvae: name the finished VQ-VAE run (e.g. runs/vqvae-faces64) or checkpoint")
        if self.kernel < 3 or self.kernel % 2 == 0:
            raise GenfillError(f"model.kernel: must be odd and >= 3, got {self.kernel}")
        if self.layers < 1:
            raise GenfillError("model.layers: needs at least one gated layer")
        if self.dim < 1 or self.head < 1:
            raise GenfillError("model: dim and head must be >= 1")
        if self.temperature <= 0:
            raise GenfillError(f"model.temperature: must be > 0, got {self.temperature}")


def read_vqvae_spec(path: str) -> tuple[dict, dict]:
    """(spec, state_dict) of the VQ-VAE checkpoint at `path` (a run directory or a .pt file)."""
    ckpt = load_checkpoint(path)
    if ckpt["kind"] != "vqvae":
        raise GenfillError(f"model.vqvae: {ckpt['path']} holds a {ckpt['kind']} model, not a vqvae")
    spec = {"kind": "vqvae", "model_config": ckpt["model_config"], "image_size": ckpt["image_size"],
            "channels": ckpt["channels"], "source": ckpt["path"]}
    return spec, ckpt["model"]


class VQVAEPrior(GenModel):
    """A gated PixelCNN over the codes of a frozen VQ-VAE. forward: NLL of x's codes; sample: new images."""

    Config = VQVAEPriorConfig
    kind = "vqvae_prior"
    can_sample = True
    can_interpolate = True  # in the VQ-VAE's pre-quantisation space
    can_diversify = True  # the hole's codes drawn given the known ones

    @classmethod
    def build(cls, cfg: VQVAEPriorConfig, image_size: int, channels: int) -> VQVAEPrior:
        """First build: read the VQ-VAE checkpoint once, remember what it is in `cfg.vqvae_spec` and start
        from its weights. Rebuilding from a prior's checkpoint finds the spec filled and reads nothing."""
        if cfg.vqvae_spec:
            return cls(cfg, image_size, channels)
        spec, state = read_vqvae_spec(cfg.vqvae)
        model = cls(replace(cfg, vqvae_spec=spec), image_size, channels)
        model.vqvae.load_state_dict(state)
        return model

    def __init__(self, cfg: VQVAEPriorConfig, image_size: int, channels: int) -> None:
        super().__init__(cfg, image_size, channels)
        spec = cfg.vqvae_spec
        if not spec:
            raise GenfillError("model.vqvae_spec: empty; build a prior with build_model, which reads model.vqvae")
        if (spec.get("image_size"), spec.get("channels")) != (image_size, channels):
            raise GenfillError(f"model.vqvae: the VQ-VAE was trained on {spec.get('image_size')}px images with "
                               f"{spec.get('channels')} channels, this data has {image_size}px and {channels}")
        self.vqvae = VQVAE(from_dict(VQVAEConfig, spec["model_config"], prefix="model.vqvae_spec.model_config"),
                           image_size, channels)
        self.vqvae.requires_grad_(False)
        self.vqvae.eval()
        self.codebook_size = self.vqvae.cfg.codebook_size
        self.pixelcnn = GatedPixelCNN(self.codebook_size, cfg.dim, cfg.layers, cfg.kernel, cfg.head)

    def train(self, mode: bool = True) -> VQVAEPrior:
        """Train the PixelCNN; the VQ-VAE stays frozen in eval mode (no EMA updates, no restarts)."""
        super().train(mode)
        self.vqvae.eval()
        return self

    def generator_parameters(self):
        return list(self.pixelcnn.parameters())

    # ---- training
    def forward(self, x: Tensor, m: Tensor, kl_scale: float = 1.0) -> ModelOutput:
        """NLL (nats per code) of the codes of the whole image x; pred is the frozen VQ-VAE's fill of (x, m)."""
        codes = self.vqvae.encode_codes(x, None)
        logits = self.pixelcnn(codes)
        nll = F.cross_entropy(logits.float(), codes)
        return ModelOutput(loss=nll, pred=self.vqvae.predict(x, m),
                           parts={"nll": nll.detach(), "bits_per_code": nll.detach() / math.log(2)})

    # ---- inference
    @torch.no_grad()
    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     temperature: float | None = None) -> Tensor:
        """Draw (n,h,w) code grids position by position in raster order."""
        gh, gw = self.vqvae.code_grid()
        dev = next(self.parameters()).device
        codes = torch.zeros(n, gh, gw, dtype=torch.long, device=dev)
        return self.fill_codes(codes, torch.ones_like(codes, dtype=torch.bool), generator, temperature)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float | None = None) -> Tensor:
        return self.vqvae.decode_codes(self.sample_codes(n, generator, temperature))

    def hole_codes(self, m: Tensor) -> Tensor:
        """(N,h,w) bool: the code cells with at least one hole pixel of `m` (N,1,H,W) in their cell."""
        gh, gw = self.vqvae.code_grid()
        return F.adaptive_max_pool2d(m.float(), (gh, gw))[:, 0] > 0

    @torch.no_grad()
    def fill_codes(self, codes: Tensor, redraw: Tensor, generator: torch.Generator | None = None,
                   temperature: float | None = None) -> Tensor:
        """Redraw the codes (N,h,w) where `redraw` (N,h,w bool) is set, position by position in raster
        order from the PixelCNN given all codes before (kept and drawn); the others are kept. A new tensor."""
        t = self.cfg.temperature if temperature is None else temperature
        if t <= 0:
            raise GenfillError(f"temperature must be > 0, got {t}")
        codes = codes.clone()
        rows = redraw.any(2).any(0).nonzero().flatten().tolist()
        for i in rows:
            for j in redraw[:, i].any(0).nonzero().flatten().tolist():
                logits = self.pixelcnn(codes[:, : i + 1])[:, :, i, j].float() / t
                drawn = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)
                codes[:, i, j] = torch.where(redraw[:, i, j], drawn, codes[:, i, j])
        return codes

    @torch.no_grad()
    def fill_samples(self, x: Tensor, m: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """K fills (K,N,C,H,W): the hole's codes drawn from the PixelCNN given the known codes (module
        docstring), decoded, composited."""
        codes = self.vqvae.encode_codes(x, m).repeat(k, 1, 1)
        codes = self.fill_codes(codes, self.hole_codes(m).repeat(k, 1, 1), generator)
        pred = self.vqvae.decode_codes(codes).view(k, *x.shape)
        return composite(x.expand(k, *x.shape), m.expand(k, *m.shape), pred)

    @torch.no_grad()
    def predict(self, x: Tensor, m: Tensor) -> Tensor:
        """The frozen VQ-VAE's prediction: the prior draws new images, the VQ-VAE fills holes."""
        return self.vqvae.predict(x, m)

    def encode(self, x: Tensor) -> Tensor:
        return self.vqvae.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.vqvae.decode(z)

    def latent_shape(self) -> tuple[int, ...]:
        return self.vqvae.latent_shape()
