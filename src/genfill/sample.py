"""Generation: grids of prior samples and rows of latent morphs between encoded or random faces."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genfill.errors import GenfillError
from genfill.io import center_crop_resize, image_to_tensor, read_image, save_image
from genfill.pixels import make_grid
from genfill.models import GenModel


def sample_grid(model: GenModel, n: int, out: str | Path, seed: int = 0, nrow: int | None = None) -> Path:
    """Draw `n` samples from the model's prior into one grid (10x10 for n = 100)."""
    if n < 1:
        raise GenfillError(f"-n must be at least 1, got {n}")
    if not model.can_sample:
        raise GenfillError(f"a {model.kind} model cannot sample new images")
    device = next(model.parameters()).device
    g = torch.Generator(device).manual_seed(seed)
    chunks = [model.sample(min(256, n - s), g) for s in range(0, n, 256)]
    x = torch.cat(chunks).float().cpu()
    save_image(make_grid(x, nrow or math.ceil(math.sqrt(n))), out)
    return Path(out)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation, the natural path between two draws of a Gaussian prior."""
    af, bf = a.flatten(1), b.flatten(1)
    cos = (af * bf).sum(1) / (af.norm(dim=1) * bf.norm(dim=1)).clamp_min(1e-8)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7)).view(-1, *([1] * (a.dim() - 1)))
    so = torch.sin(omega)
    out = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    return torch.where(so.abs() < 1e-6, (1 - t) * a + t * b, out)


def interpolate(model: GenModel, out: str | Path, rows: int = 4, steps: int = 8, images: list[str] | None = None,
                pool: torch.Tensor | None = None, seed: int = 0) -> Path:
    """Rows of `steps` decodings between pairs of latents: encoded image files (pairs in order), encoded
    images from `pool` (N,C,H,W in [-1,1]), or random prior draws (spherical path)."""
    if not model.can_interpolate:
        raise GenfillError(f"a {model.kind} model has no latent space to interpolate in")
    if steps < 2 or rows < 1:
        raise GenfillError("interpolation needs --steps >= 2 and --rows >= 1")
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    if images:
        if len(images) % 2:
            raise GenfillError("interpolation between image files needs an even number of images (pairs)")
        x = torch.cat([image_to_tensor(center_crop_resize(read_image(p, model.channels), model.image_size))
                       for p in images]).to(device)
        z = model.encode(x)
        za, zb, path = z[0::2], z[1::2], "linear"
    elif pool is not None and len(pool) >= 2:
        idx = torch.randperm(len(pool), generator=g)[: 2 * rows]
        z = model.encode(pool[idx].to(device))
        za, zb, path = z[0::2], z[1::2], "linear"
    else:
        z = torch.randn(2 * rows, *model.latent_shape(), generator=g).to(device)
        za, zb, path = z[0::2], z[1::2], "spherical"
    ts = torch.linspace(0, 1, steps).tolist()
    frames = [(slerp(za, zb, t) if path == "spherical" else (1 - t) * za + t * zb) for t in ts]
    with torch.no_grad():
        decoded = torch.stack([model.decode(f) for f in frames], dim=1)  # (rows, steps, C, H, W)
    save_image(make_grid(decoded.flatten(0, 1).float().cpu(), steps), out)
    return Path(out)
