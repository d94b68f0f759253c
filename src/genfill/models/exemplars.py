"""Exemplars: training images kept inside a model and looked up by the pixels a hole leaves known.

Why: a network trained for a few CPU minutes cannot draw an eye, but the training set holds thousands of
them. For images that share a layout (aligned faces, the built-in faces64, CelebA) the training images whose
known pixels are closest to a test image's, once their seams are corrected, continue it with real detail: the
scene-completion idea of Hays & Efros (SIGGRAPH 2007), with the whole training set as the database. Drawing
one of the k nearest at random gives different plausible fills, whose spread reflects how much the known
pixels pin the hole down (many near neighbours that agree: small spread).

- **index**: `count` training images chosen at random (seeded), stored as uint8 (N, C, S, S) in the model's
  state (checkpoints and exports carry them: 12 KB per 64x64 colour image).
- **lookup** (`neighbours`): keys are the images average-pooled to `key_size` x `key_size`; the distance of a
  stored image to a query is the squared difference over the key cells the query's hole leaves entirely known,
  computed for all N stored images by two matrix products. The k nearest are candidates; a candidate within
  one grey level of the query over the whole image (the query itself, plain or mirrored, when a model is
  trained on the images it stores) is never returned. One candidate is drawn per fill from `generator`.
- **seam correction** (`corrected`): exemplar c, query x, hole m: c + H((x - c) * (1 - m)) where H is the
  harmonic fill (`thinplate.harmonic_fill`): the hole gets c's detail and the smooth interpolation of the
  colour difference along the hole's border (Poisson blending's effect: no visible seam, c's light and
  colour brought to x's).
- **depth ramp** (`depth_weight`): a pixel less than `ramp[0]` pixels from the known region takes the
  classical fill, more than `ramp[1]` the corrected exemplar, linearly between. Thin strokes (a few pixels
  wide) are best filled by the thin-plate fill; a stranger's detail there is noise.
- **detail energy** (`detail_energy`): how much fine detail an image's known pixels have around each pixel
  (the RMS of the image minus its 1.5 px blur, over the known pixels of a Gaussian window), defined inside the
  hole too: the sampler's `hybrid` blend scales its thin-stroke spread by it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genfill.augment import gaussian_blur as augment_blur
from genfill.models.thinplate import harmonic_fill, levels_for

DUPLICATE = 1.0 / 127.5  # mean |difference| below one grey level over a whole image: the same image


def hole_depth(m: Tensor, cap: float) -> Tensor:
    """(N,1,H,W) float: how deep each hole pixel lies (chessboard distance to the known region: the hole's first
    ring is 1), counted up to `cap` + 2 (deeper pixels read that); 0 on known pixels."""
    reach, depth = 1 - m.float(), m.float()
    for _ in range(int(cap) + 1):  # each 3x3 max-pool grows the known region by one pixel
        reach = F.max_pool2d(reach, 3, 1, 1)
        depth = depth + (1 - reach)
    return depth


def depth_weight(m: Tensor, ramp: tuple[float, float]) -> Tensor:
    """(N,1,H,W) in [0, 1]: 0 up to `ramp[0]` pixels (chessboard distance) into the hole from its known
    border, 1 from `ramp[1]` on, linear between; 0 on known pixels."""
    lo, hi = ramp
    return ((hole_depth(m, hi) - lo) / max(hi - lo, 1e-6)).clamp(0, 1) * m.float()


def latin_draws(k: int, n: int, generator: torch.Generator | None) -> Tensor:
    """(k, n) uniforms in [0, 1), a Latin-hypercube draw per column: one in each of [j/k, (j+1)/k), in random
    order. Each is uniform on its own (one sample is drawn as with a fresh uniform), but k of them spread
    evenly: with k = the number of nearest faces, the first K rows pick K different faces (`neighbours`),
    where independent draws repeat one (6 fills of 8 faces: 92 % of images)."""
    dev = generator.device if generator else None
    order = torch.rand(k, n, generator=generator, device=dev).argsort(0)
    return (order + torch.rand(k, n, generator=generator, device=dev)) / k


def normal_quantile(u: Tensor) -> Tensor:
    """Standard normal draws from uniforms u in [0, 1) (the inverse CDF, u kept 1e-6 off 0 and 1): with
    `latin_draws`, K normals spread evenly (hybrid's shifts in `Sampler.fill_samples`, `api.shift_thin`'s)."""
    return math.sqrt(2) * torch.erfinv(2 * u.clamp(1e-6, 1 - 1e-6) - 1)


def gaussian_blur(y: Tensor, sigma: float) -> Tensor:
    """(N,C,H,W) blurred per channel by one Gaussian of `sigma` px (3 sigma a side): `augment.gaussian_blur`'s
    separable, reflect-padded blur with the same sigma for every image."""
    n = len(y)
    return augment_blur(y, torch.ones(n, dtype=torch.bool, device=y.device),
                        torch.full((n,), float(sigma), device=y.device), 2 * int(3 * sigma) + 1)


def detail_energy(y: Tensor, known: Tensor, sigma: float, per_channel: bool = False) -> Tensor:
    """(N,1,H,W) RMS of y's detail (y minus its 1.5 px blur, normalised over the known pixels) over the known
    pixels within a Gaussian window of `sigma` px, inside the hole too (normalised convolution); (N,C,H,W), one
    per channel, with `per_channel`. Float32 whatever y's dtype."""
    y, known = y.float(), known.float()
    smooth = gaussian_blur(y * known, 1.5) / gaussian_blur(known, 1.5).clamp_min(1e-3)
    d2 = (y - smooth) ** 2
    d2 = (d2 if per_channel else d2.mean(1, keepdim=True)) * known
    return (gaussian_blur(d2, sigma) / gaussian_blur(known, sigma).clamp_min(1e-3)).clamp_min(0).sqrt()


class ExemplarBank(nn.Module):
    """Stored training images and their lookup. Empty until `index` (or a loaded state) fills it."""

    def __init__(self, channels: int, size: int, k: int = 8, key_size: int = 32) -> None:
        super().__init__()
        self.k, self.key_size = k, key_size
        self.register_buffer("images", torch.zeros(0, channels, size, size, dtype=torch.uint8))
        self._keys: tuple[tuple, Tensor] | None = None  # (tag of the images it was made from, keys)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take_shape(self, saved: Tensor | None) -> None:
        """Make room for a saved bank of another size (its count is the data's, not the config's)."""
        if saved is not None and saved.shape != self.images.shape:
            self.images = torch.zeros_like(saved, device=self.images.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.take_shape(state_dict.get(prefix + "images"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def index(self, positions: Tensor, read, count: int, generator: torch.Generator) -> None:
        """Store `count` images (all, when fewer) drawn at random by `generator` from `positions`;
        read(positions) -> (n, C, S, S) float images in [-1, 1]."""
        pick = positions[torch.randperm(len(positions), generator=generator)[:count]].sort().values
        chunks = [read(pick[i:i + 1024]) for i in range(0, len(pick), 1024)]
        images = torch.cat(chunks) if chunks else self.images.float()
        self.images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).to(self.images.device)

    def _key(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x.float(), self.key_size).flatten(1)

    def keys(self) -> Tensor:
        """(N, C * key_size^2) float32 keys of the stored images, made once per state of the bank."""
        tag = (self.images.data_ptr(), self.images._version, self.images.shape, self.images.device)
        if self._keys is None or self._keys[0] != tag:
            keys = torch.cat([self._key(self.stored(slice(i, i + 1024))) for i in range(0, len(self), 1024)])
            self._keys = (tag, keys)
        return self._keys[1]

    def stored(self, idx) -> Tensor:
        """Stored images `idx` as float in [-1, 1]."""
        return self.images[idx].float() / 127.5 - 1

    @torch.no_grad()
    def candidates(self, x: Tensor, m: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """The `count` + 2 stored images nearest to each query x (N,C,H,W) in the key cells its hole m leaves
        known, nearest first, resized to H x W when the size differs: (N, count + 2, C, H, W), and (N, count + 2)
        True where one is the query itself, plain or mirrored (the 2 spare make up for those)."""
        if len(self) == 0:
            raise RuntimeError("exemplar bank is empty: the model was never indexed")  # a programming error
        keys = self.keys()
        known = (F.adaptive_avg_pool2d(1 - m.float(), self.key_size) > 0.999).float()
        w = known.expand(-1, x.shape[1], -1, -1).flatten(1)
        q = self._key(x)
        dist = (w * q * q).sum(1, keepdim=True) - 2 * (w * q) @ keys.T + w @ (keys * keys).T  # (N, stored)
        cand = dist.topk(min(count + 2, len(self)), largest=False).indices
        imgs = self.stored(cand.flatten().cpu()).to(x.device)
        if imgs.shape[-2:] != x.shape[-2:]:
            imgs = F.interpolate(imgs, size=x.shape[-2:], mode="bilinear", align_corners=False)
        imgs = imgs.view(*cand.shape, *x.shape[1:])  # (N, count + 2, C, H, W)
        xf = x.float()[:, None]
        same = torch.minimum((imgs - xf).abs().mean((2, 3, 4)), (imgs.flip(-1) - xf).abs().mean((2, 3, 4)))
        return imgs, same < DUPLICATE

    @torch.no_grad()
    def neighbours(self, x: Tensor, m: Tensor, reps: int, generator: torch.Generator | None,
                   draws: Tensor | None = None) -> Tensor:
        """(reps * N, C, H, W) exemplars for queries x (N,C,H,W) under holes m: for each of `reps` draws and each
        image, one of its k nearest stored images (module docstring), resized to H x W when the size differs.
        `draws` (reps, N) uniforms in [0, 1) pick them instead of fresh ones from `generator` (`latin_draws`)."""
        imgs, duplicate = self.candidates(x, m, self.k)
        rank = torch.where(duplicate, torch.full(duplicate.shape, float("inf"), device=x.device), torch.arange(
            imgs.shape[1], device=x.device, dtype=torch.float32).expand(duplicate.shape))
        order = rank.argsort(1)[:, :min(self.k, len(self))]  # the k nearest that are not the query itself
        usable = torch.isfinite(rank.gather(1, order)).sum(1).clamp_min(1)  # (N,)
        if draws is None:
            draws = torch.rand(reps, len(x), generator=generator, device=generator.device if generator else None)
        slot = (draws.to(x.device) * usable).long().clamp_max(usable - 1)  # (reps, N)
        chosen = order.gather(1, slot.T).T  # (reps, N) index into the k + 2 candidates
        rows = torch.arange(len(x), device=x.device).expand(reps, -1)
        return imgs[rows, chosen].reshape(reps * len(x), *x.shape[1:]).to(x.dtype)

    @staticmethod
    def corrected(x: Tensor, m: Tensor, c: Tensor) -> Tensor:
        """Exemplars c (R*N rows) seam-corrected to queries x (N rows) under holes m: c + H((x - c)(1 - m))."""
        reps = c.shape[0] // x.shape[0]
        xr, mr = x.float().repeat(reps, 1, 1, 1), m.float().repeat(reps, 1, 1, 1)
        diff = harmonic_fill((xr - c.float()) * (1 - mr), mr, levels=levels_for(*x.shape[-2:]))
        return (c.float() + diff).clamp(-1, 1).to(x.dtype)
