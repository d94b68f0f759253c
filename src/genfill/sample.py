"""Generation: grids of prior samples and rows of latent morphs between encoded or random faces."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genfill.errors import GenfillError
from genfill.imageread import center_crop_resize, image_to_tensor, read_image
from genfill.io import check_target, image_format, save_image
from genfill.pixels import make_grid
from genfill.models import GenModel


# One grid image holds at most this many pixels (about 1 GB as float): 16 000 samples at 64 px.
MAX_GRID_PIXELS = 80_000_000


def sample_grid(model: GenModel, n: int, out: str | Path, seed: int = 0, nrow: int | None = None) -> Path:
    """Draw `n` samples from the model's prior into one grid (10x10 for n = 100)."""
    if n < 1:
        raise GenfillError(f"-n must be at least 1, got {n}")
    if nrow is not None and nrow < 1:
        raise GenfillError(f"--nrow must be at least 1, got {nrow}")
    side = model.image_size + 2
    most = max(1, MAX_GRID_PIXELS // (side * side))
    if n > most:  # refused before drawing anything, not after minutes of sampling
        raise GenfillError(f"-n {n} is too many for one grid of {model.image_size}px images (at most {most}); "
                           f"run sample several times with different --seed")
    image_format(out)
    check_target(out)
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


def morph_rows(rows: int | None, images: list[str] | None = None, pool: torch.Tensor | None = None) -> int:
    """How many rows `interpolate` draws: one per image pair; with a pool, `rows` (default 4) or as many as
    its pairs allow; else `rows` random pairs. Asking image files for another number is an error."""
    if rows is not None and rows < 1:
        raise GenfillError(f"--rows must be at least 1, got {rows}")
    if images:
        if rows is not None and rows != len(images) // 2:
            raise GenfillError(f"--rows {rows} does not match the {len(images) // 2} image pair(s) given: "
                               f"each pair of images is one row (leave out --rows)")
        return len(images) // 2
    if pool is not None and len(pool) >= 2:
        return min(rows or 4, len(pool) // 2)
    return rows or 4


def interpolate(model: GenModel, out: str | Path, rows: int | None = 4, steps: int = 8,
                images: list[str] | None = None, pool: torch.Tensor | None = None, seed: int = 0) -> Path:
    """Rows of `steps` decodings between pairs of latents: encoded image files (pairs in order), encoded
    images from `pool` (N,C,H,W in [-1,1]), or random prior draws (spherical path). See morph_rows."""
    if not model.can_interpolate:
        raise GenfillError(f"a {model.kind} model has no latent space to interpolate in")
    if steps < 2 or steps > 256:
        raise GenfillError(f"interpolation needs 2 <= --steps <= 256, got {steps}")
    if images and len(images) % 2:
        raise GenfillError("interpolation between image files needs an even number of images (pairs)")
    rows = morph_rows(rows, images, pool)
    if rows > 256:
        raise GenfillError(f"at most 256 morph rows, got {rows}")
    image_format(out)
    check_target(out)
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
