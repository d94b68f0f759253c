"""`genfill.load(...)` -> an Inpainter that fills your own images, at their own size.

    import genfill
    painter = genfill.load("runs/vae-faces64")          # a run, a checkpoint, an export, or "telea"
    out = painter.fill("photo.jpg", "photo_mask.png")   # a PIL image of the photo's size and mode

`fill(image, mask)` takes a path, a PIL image, a numpy array (H,W / H,W,1 / H,W,3 / H,W,4; uint8, uint16 or
float in [0, 1]) or a torch tensor (H,W / C,H,W / 1,C,H,W; uint8 or float in [0, 1]) and gives back the same
type, size, dtype and mode (a path gives back a PIL image, or for a PNG/TIFF with 16 bits per colour channel,
which PIL cannot hold, an (H,W,3|4) uint16 array). Masks: white / True / > 0.5 = hole. Grey images
are filled by an RGB model as grey RGB and come back grey; an RGB image under a grey model is filled channel
by channel. An alpha channel is filled by Telea inside the hole and kept everywhere else. Every pixel
outside the hole is returned unchanged, bit for bit: the fill is composited in the input's own dtype.

Several fills of one hole (families that can draw them: `painter.can_diversify`):

    fills = painter.fill(photo, mask, samples=6, seed=0)       # a list of 6 different fills
    res = painter.fill_samples(photo, mask, 6, seed=0)          # .fills, .uncertainty (H,W), .panel()

A `sampler` run fills with one sample (sharp; `seed` picks it); its mean fill (best PSNR, blurry) is one flag
away: `genfill.load("runs/sampler-faces64", mean=True)` (CLI: `genfill fill --mean`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from genfill.errors import GenfillError
from genfill.inpaint import fill_native, fill_native_many, thin_part
from genfill.imageread import open_image, to_8bit
from genfill.metrics.uncertainty import check_samples
from genfill.models.base import single_fill_message
from genfill.models.exemplars import detail_energy, latin_draws, normal_quantile
from genfill.peers import telea
from genfill.pixels import FillFn, from_unit, plural_panel, to_unit
from genfill.resolve import resolve, set_blend
from genfill.validate import integer, seed as valid_seed

ImageLike = Any  # str | Path | PIL.Image.Image | np.ndarray | torch.Tensor


# ---------------------------------------------------------------- images in and out


@dataclass
class Decoded:
    """An input image as (H,W,C) float32 in [0, 1] plus what it takes to give it back in its own form."""

    pixels: np.ndarray  # (H,W,C) float32 in [0, 1]
    raw: np.ndarray  # (H,W,C) the original values, in the original dtype (composited into)
    kind: str  # pil | numpy | tensor
    scale: float  # 255, 65535 or 1 (float)
    layout: dict = field(default_factory=dict)  # how to restore the shape/mode/device

    @property
    def colour(self) -> int:
        return 1 if self.pixels.shape[2] in (1, 2) else 3


def _open(path: str | Path) -> Image.Image | np.ndarray:
    """Through the one guarded reader (pixel limit, decompression bombs, any decoder failure -> GenfillError,
    EXIF orientation applied); 16 bits per colour channel come as a uint16 array, kept to the last bit."""
    return open_image(path, keep_depth=True)


def _array_scale(a: np.ndarray, what: str) -> float:
    if a.dtype == np.uint8:
        return 255.0
    if a.dtype == np.uint16:
        return 65535.0
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or a.min(initial=0) < 0 or a.max(initial=0) > 1:
            raise GenfillError(f"{what}: float pixels must be finite and lie in [0, 1]")
        return 1.0
    raise GenfillError(f"{what}: dtype {a.dtype} is not supported (use uint8, uint16 or float in [0, 1])")


def decode_image(image: ImageLike) -> Decoded:
    """Any image form (path, PIL, numpy, tensor; module docstring) -> `Decoded`; a path is read once."""
    if isinstance(image, (str, Path)):
        image = _open(image)
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            mode = image.mode
        elif mode == "1":
            image = image.convert("L")
        elif mode in ("I;16", "I;16B", "I;16L"):
            image = Image.fromarray(np.asarray(image).astype(np.uint16))
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            raise GenfillError(f"image mode {mode} is not supported (L, LA, RGB, RGBA, P, 1, I;16)")
        a = np.asarray(image)
        a = a[:, :, None] if a.ndim == 2 else a
        scale = _array_scale(a, "image")
        return Decoded(a.astype(np.float32) / scale, a, "pil", scale, {"mode": mode})
    if isinstance(image, torch.Tensor):
        t = image.detach()
        layout = {"ndim": t.ndim, "dtype": t.dtype, "device": t.device}
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise GenfillError(f"image tensor: one image at a time (1,C,H,W), got {tuple(t.shape)}; "
                                   "use fill_many for several")
            t = t[0]
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[0] not in (1, 2, 3, 4):
            raise GenfillError(f"image tensor: expected (H,W), (C,H,W) or (1,C,H,W) with C in 1..4, got "
                               f"{tuple(image.shape)}")
        a = t.permute(1, 2, 0).cpu().numpy()
        if a.dtype.kind == "f" and a.dtype != np.float16:
            a = a.astype(np.float64, copy=False)
        scale = _array_scale(a, "image tensor")
        return Decoded(a.astype(np.float32) / scale, a, "tensor", scale, layout)
    if isinstance(image, np.ndarray):
        a = image
        layout = {"ndim": a.ndim}
        a = a[:, :, None] if a.ndim == 2 else a
        if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
            raise GenfillError(f"image array: expected (H,W) or (H,W,C) with C in 1..4, got {image.shape}")
        scale = _array_scale(a, "image array")
        return Decoded(a.astype(np.float32) / scale, a, "numpy", scale, layout)
    raise GenfillError(f"cannot fill a {type(image).__name__}: give a path, a PIL image, a numpy array or a tensor")


def _encode(d: Decoded, filled: np.ndarray, hole: np.ndarray) -> ImageLike:
    """Composite `filled` (H,W,C float in [0, 1]) into the original values at the hole, in their dtype."""
    raw = d.raw
    if raw.dtype.kind == "f":
        new = filled.astype(raw.dtype)
    else:
        new = np.clip(np.round(filled * d.scale), 0, d.scale).astype(raw.dtype)
    out = np.where(hole[:, :, None], new, raw)
    if d.kind == "numpy":
        return out[:, :, 0] if d.layout["ndim"] == 2 else out
    if d.kind == "tensor":
        t = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)
        t = t.to(device=d.layout["device"], dtype=d.layout["dtype"])
        return t[0] if d.layout["ndim"] == 2 else (t[None] if d.layout["ndim"] == 4 else t)
    mode = d.layout["mode"]
    im = Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
    if mode == "1":  # no dithering: it would spread the hole's grey levels onto known pixels
        return im.convert("1", dither=Image.Dither.NONE)
    if mode.startswith("I;16"):
        return Image.fromarray(out[:, :, 0].astype(np.uint16))
    return im


def _values(a: np.ndarray) -> str:
    """A short description of an array's values for an error message."""
    return f"values from {a.min():g} to {a.max():g}"


def decode_mask(mask: ImageLike, size: tuple[int, int], resize: bool = False, dilate: int = 0) -> np.ndarray:
    """Any mask form -> (H,W) bool, True = hole, for an image of `size` (H, W). A picture (path, PIL): white
    (brighter than mid-grey at the file's own bit depth) is a hole. An array or tensor: bool, or exactly 0/1
    (1 = hole; uint8 / uint16 may also be 0/255 / 0/65535); any other value is refused (a soft or 0/255 float
    mask would otherwise mark holes silently wrong). `resize` scales a mask of another size (nearest);
    `dilate` grows the hole by that many pixels."""
    dilate = integer("dilate", dilate, 0, 4096)
    picture = isinstance(mask, (str, Path, Image.Image))
    if isinstance(mask, (str, Path)):
        mask = _open(mask)
    if isinstance(mask, Image.Image):
        # Thresholded at the mask's own depth: 16-bit and float masks are scaled to 8 bits first (PIL's own
        # convert("L") clips them: a 31 % grey 16-bit region would become hole, a float 1.0 no hole).
        m = np.asarray(to_8bit(mask).convert("L")) > 127
    else:
        a = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        while a.ndim > 2 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 3:  # (H,W,C): any channel marks a hole
            a = a.max(axis=2)
        if a.ndim != 2:
            raise GenfillError(f"mask: expected (H,W) or (H,W,C), got shape {mask.shape}")
        if a.dtype == bool:
            m = a
        elif not picture and a.dtype in (np.uint8, np.uint16):  # 0/1, or 0/max as a mask picture stores it
            full = np.iinfo(a.dtype).max
            top = 1 if ((a == 0) | (a == 1)).all() else full
            if top == full and not ((a == 0) | (a == full)).all():
                raise GenfillError(f"mask: {a.dtype} values must be 0 and 1 or 0 and {full} (hole), got "
                                   f"{_values(a)}: threshold it first (mask > {full // 2})")
            m = a == top
        elif a.dtype == np.uint16:  # a 16-bit picture file: its own depth, brighter than mid-grey of 65535
            m = a > 32767
        elif a.dtype.kind == "f":  # exactly 0/1: a soft or 0/255 float mask is a mistake, not a hole
            if not ((a == 0) | (a == 1)).all():
                raise GenfillError(f"mask: float values must be exactly 0 (known) or 1 (hole), got {_values(a)}: "
                                   "threshold it first (mask > 0.5)")
            m = a == 1
        else:
            raise GenfillError(f"mask: dtype {a.dtype} is not supported (bool, uint8, uint16 or float in [0, 1])")
    if m.shape != tuple(size):
        if not resize:
            raise GenfillError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {size[1]}x{size[0]}: pass "
                               "mask_resize=True (CLI: --mask-resize) to scale it (nearest)")
        m = np.asarray(Image.fromarray(m).resize((size[1], size[0]), Image.NEAREST))
    if dilate > 0:
        import cv2

        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        m = cv2.dilate(m.astype(np.uint8), k) > 0
    if not m.any():
        raise GenfillError("mask has no hole (no pixel is white / True): nothing to fill")
    if m.all():
        raise GenfillError("mask covers the whole image: no known pixel to fill from")
    return m


# ---------------------------------------------------------------- the inpainter


SampleFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
MAX_PANEL_PIXELS = 100_000_000  # the samples picture of one image (K+2 tiles at its own size)


@dataclass
class PluralFill:
    """K different fills of one image (each in the input's own type, size and mode, known pixels exact) and
    the per-pixel uncertainty: the std over the K fills of values in [0, 1], averaged over colour channels,
    (H,W) float32, 0 outside the hole."""

    fills: list
    uncertainty: np.ndarray
    pixels: np.ndarray  # (H,W,C) the input in [0, 1]
    hole: np.ndarray  # (H,W) bool
    arrays: np.ndarray  # (K,H,W,C) the fills in [0, 1]

    def panel(self) -> torch.Tensor:
        """The samples picture (3,H',W') in [-1, 1]: the input (hole white), the K fills, the heat map
        (black = 0; a std of pixels.HEAT_MAX = 0.15 or more is white)."""
        c = 1 if self.pixels.shape[2] in (1, 2) else 3
        t = lambda a: from_unit(torch.from_numpy(np.ascontiguousarray(a[..., :c])).movedim(-1, -3).float())  # noqa: E731
        m = torch.from_numpy(self.hole)[None, None].float()
        return plural_panel(t(self.pixels)[None], m, t(self.arrays)[:, None],
                            torch.from_numpy(self.uncertainty)[None, None])


def shift_thin(arrays: np.ndarray, pixels: np.ndarray, hole: np.ndarray, thin: np.ndarray, gains: np.ndarray,
               colour: int) -> None:
    """Spread K fills (K,H,W,C) in [0, 1] over the `thin` part of their `hole` (pixels the native fill fills
    outside the model, the same in every fill), in place: fill k's thin pixels move by gains[k] x the image's
    detail energy around them (`exemplars.detail_energy` of `pixels`' known pixels, HYBRID_WINDOW px; 0 where
    the surround is flat), on the first `colour` channels alike, clipped to [0, 1]: a sampler's thin strokes
    in `hybrid_samples`, at the photo's own size (`Sampler.thin_stroke_gain`)."""
    from genfill.models.sampler import HYBRID_WINDOW  # the sampler's module: imported when a sampler draws

    x = torch.from_numpy(np.ascontiguousarray(pixels[..., :colour], dtype=np.float32)).permute(2, 0, 1)[None]
    known = torch.from_numpy(~hole)[None, None].float()
    energy = detail_energy(x, known, HYBRID_WINDOW)[0, 0].numpy() * thin  # (H, W), 0 off the thin part
    moved = arrays[..., :colour] + gains[:, None, None, None] * energy[None, :, :, None]
    arrays[..., :colour] = np.clip(moved, 0, 1)


class Inpainter:
    """Fills images of any size. `size` is the model's working side (None for a classical peer, which works
    at any size directly); `fill_fn(x, m)` fills a batch (N,C,S,S) in [-1, 1] under masks (N,1,S,S), 1 = hole,
    composited; `channels` is what it expects (1 or 3; None = any). `sample_fn(x, m, generator)` draws one
    more different fill the same way, for families that can (None: `single` says why not)."""

    def __init__(self, name: str, fill_fn: FillFn, size: int | None, channels: int | None,
                 device: torch.device | str = "cpu", model: torch.nn.Module | None = None,
                 feather: int | None = None, sample_fn: SampleFn | None = None, single: str = "") -> None:
        self.name, self.fill_fn, self.size, self.channels = name, fill_fn, size, channels
        self.device, self.model, self.feather = torch.device(device), model, feather
        self.sample_fn, self.single = sample_fn, single

    @property
    def can_diversify(self) -> bool:
        return self.sample_fn is not None

    def __repr__(self) -> str:
        at = f"{self.size}x{self.size}" if self.size else "any size"
        return f"Inpainter({self.name!r}, works at {at}, device={self.device})"

    def fill(self, image: ImageLike, mask: ImageLike, seed: int | None = None, mask_resize: bool = False,
             dilate: int = 0, samples: int | None = None) -> ImageLike:
        """Fill `image` under `mask` at the image's own size; returns the image's own type, size and mode.
        `samples=K` returns a list of K different fills instead (see `fill_samples`)."""
        if samples is not None:
            return self.fill_samples(image, mask, samples, seed, mask_resize, dilate).fills
        _check_seed(seed)
        d = decode_image(image)
        return self.fill_decoded(d, decode_mask(mask, d.pixels.shape[:2], mask_resize, dilate), seed)

    def fill_decoded(self, d: Decoded, hole: np.ndarray, seed: int | None = None) -> ImageLike:
        """`fill` of an image and hole decoded once already (`decode_image`, `decode_mask`; `genfill fill`'s
        file jobs), the seed checked by the caller."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(seed)
            filled = self.fill_array(d.pixels, hole)
        return _encode(d, filled, hole)

    def fill_many(self, images: Sequence[ImageLike], masks: ImageLike | Sequence[ImageLike],
                  seed: int | None = None, **options: Any) -> list[ImageLike]:
        """Fill each image under its mask (a list as long as `images`) or under one shared mask. Without a
        seed, the windows of all images go through the model together, in batches (`inpaint.fill_native_many`;
        the same fills as one `fill` per image); with one, image i is filled alone with seed + i."""
        images = list(images)
        if isinstance(masks, (list, tuple)):
            if len(masks) != len(images):
                raise GenfillError(f"fill_many: {len(images)} images but {len(masks)} masks")
        else:
            masks = [masks] * len(images)
        unknown = set(options) - {"mask_resize", "dilate", "samples"}
        if unknown:
            raise TypeError(f"fill_many() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        if seed is not None or options.get("samples") is not None:
            return [self.fill(im, m, seed=None if seed is None else seed + i, **options)
                    for i, (im, m) in enumerate(zip(images, masks))]
        decoded = [decode_image(im) for im in images]
        holes = [decode_mask(m, d.pixels.shape[:2], options.get("mask_resize", False), options.get("dilate", 0))
                 for d, m in zip(decoded, masks)]
        filled = self.fill_arrays([d.pixels for d in decoded], holes)
        return [_encode(d, f, h) for d, f, h in zip(decoded, filled, holes)]

    def fill_samples(self, image: ImageLike, mask: ImageLike, k: int, seed: int | None = None,
                     mask_resize: bool = False, dilate: int = 0) -> PluralFill:
        """K different fills of `image` under `mask`, each at the image's own size by the same windows as
        `fill` (inpaint.py), drawn from one generator seeded by `seed` (None: a random seed)."""
        if self.sample_fn is None:
            raise GenfillError(self.single)
        check_samples(k)
        _check_seed(seed)
        d = decode_image(image)
        return self.samples_decoded(d, decode_mask(mask, d.pixels.shape[:2], mask_resize, dilate), k, seed)

    def samples_decoded(self, d: Decoded, hole: np.ndarray, k: int, seed: int | None = None) -> PluralFill:
        """`fill_samples` of an image and hole decoded once already, K and the seed checked by the caller (and
        `can_diversify`)."""
        h, w = hole.shape
        if (k + 2) * h * w > MAX_PANEL_PIXELS:
            raise GenfillError(f"{k} fills of a {w}x{h} image make a picture of over {MAX_PANEL_PIXELS // 10**6} "
                               "M pixels: ask for fewer --samples")
        g = torch.Generator(self.device)
        g.manual_seed(int(torch.randint(2**62, (1,))) if seed is None else seed)
        fill_fn = lambda x, m: self.sample_fn(x, m, g)  # noqa: E731
        arrays = np.stack([self.fill_array(d.pixels, hole, fill_fn) for _ in range(k)])
        colour = d.colour
        gain = self.model.thin_stroke_gain() if hasattr(self.model, "thin_stroke_gain") else 0.0
        thin = thin_part(hole, self.size) if gain and self.size is not None else None
        if thin is not None and thin.any():  # drawn after the fills: the fills are those of a seed without it
            z = normal_quantile(latin_draws(k, 1, g)[:, 0]).cpu().numpy()  # K normals spread evenly
            shift_thin(arrays, d.pixels, hole, thin, gain * z, colour)
        unc = arrays[..., :colour].std(0, ddof=1).mean(-1).astype(np.float32) * hole
        return PluralFill([_encode(d, a, hole) for a in arrays], unc, d.pixels, hole, arrays)

    def fill_array(self, pixels: np.ndarray, hole: np.ndarray, fill_fn: FillFn | None = None) -> np.ndarray:
        """(H,W,C) float in [0, 1] with C in 1..4 (2 and 4 carry alpha last) -> filled, same shape (by
        `fill_fn`, default the inpainter's own)."""
        return self.fill_arrays([pixels], [hole], fill_fn)[0]

    def fill_arrays(self, pixels: Sequence[np.ndarray], holes: Sequence[np.ndarray],
                    fill_fn: FillFn | None = None) -> list[np.ndarray]:
        """`fill_array` of several images; the windows of those whose colour channels are the model's go
        through it together (`inpaint.fill_native_many`)."""
        fill_fn = fill_fn or self.fill_fn
        colours = [1 if p.shape[2] in (1, 2) else 3 for p in pixels]
        xs = [from_unit(torch.from_numpy(np.ascontiguousarray(p[:, :, :c])).permute(2, 0, 1).float()).to(self.device)
              for p, c in zip(pixels, colours)]
        out: list[torch.Tensor | None] = [None] * len(xs)
        together = [i for i, x in enumerate(xs) if self.size is not None and x.shape[0] == self.channels]
        if together:
            with torch.no_grad():
                done = fill_native_many([xs[i] for i in together], [holes[i] for i in together], fill_fn,
                                        self.size, self.feather)
            for i, x in zip(together, done):
                out[i] = x
        results = []
        for i, (p, hole, c) in enumerate(zip(pixels, holes, colours)):
            x = out[i] if out[i] is not None else self._fill_colour(xs[i], hole, fill_fn)
            filled = to_unit(x).cpu().permute(1, 2, 0).numpy()
            if p.shape[2] > c:  # alpha: filled inside the hole by Telea, kept outside
                a = from_unit(torch.from_numpy(np.ascontiguousarray(p[:, :, c:])).permute(2, 0, 1)[None])
                m = torch.from_numpy(hole)[None, None].float()
                alpha = to_unit(telea(a, m)[0]).permute(1, 2, 0).numpy()
                filled = np.concatenate([filled, alpha], axis=2)
            results.append(np.clip(filled, 0, 1))
        return results

    @torch.no_grad()
    def _fill_colour(self, x: torch.Tensor, hole: np.ndarray, fill_fn: FillFn) -> torch.Tensor:
        """(C,H,W) in [-1, 1], C = 1 or 3, under `hole` -> filled (C,H,W), adapting C to the model's."""
        c = x.shape[0]
        if self.size is None:  # a peer: native size, any channels
            m = torch.from_numpy(hole).to(x)[None, None]
            return fill_fn(x[None], m)[0]
        if self.channels == c:
            return fill_native(x, hole, fill_fn, self.size, self.feather)
        if self.channels == 3:  # grey image, RGB model: fill as grey RGB, back to grey
            return fill_native(x.expand(3, -1, -1), hole, fill_fn, self.size, self.feather).mean(0, keepdim=True)
        # RGB image, grey model: the channels as three grey images, their windows batched together
        return torch.cat(fill_native_many([x[i : i + 1] for i in range(c)], [hole] * c, fill_fn, self.size,
                                          self.feather))


def _check_seed(seed: int | None) -> None:
    if seed is not None:
        valid_seed("seed", seed)


def _model_fill_fn(model: torch.nn.Module, options: dict) -> FillFn:
    def fill_fn(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return model.fill(x, m, **options)

    return fill_fn


def _model_sample_fn(model: torch.nn.Module) -> SampleFn:
    def sample_fn(x: torch.Tensor, m: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return model.fill_samples(x, m, 1, generator)[0]

    return sample_fn


def from_model(model, name: str = "model", feather: int | None = None, **options: Any) -> Inpainter:
    """An Inpainter around a GenModel already in memory (eval mode, on its device). Fill options (a fill
    `method`) choose one fill, so an inpainter given some draws no samples."""
    dev = next(model.parameters()).device
    blend = options.pop("blend", None)  # how a sampler draws, not a fill method: its samples stay on
    if blend is not None and not set_blend(model, blend):
        raise GenfillError(f"blend is a sampler's option; a {model.kind} model has none")
    single = single_fill_message(f"a {model.kind} model")
    sample_fn = _model_sample_fn(model.eval()) if model.can_diversify else None
    if options and sample_fn is not None:
        sample_fn = None
        single = f"a fill method ({', '.join(f'{k}={v}' for k, v in options.items())}) gives one fill: leave it out to draw several"
    return Inpainter(name, _model_fill_fn(model.eval(), options), model.image_size, model.channels, dev, model,
                     feather, sample_fn, single)


def load(path_or_name: str | Path, device: str | torch.device = "auto", feather: int | None = None,
         **options: Any) -> Inpainter:
    """An Inpainter from a run directory, a checkpoint (.pt), an exported folder (model.safetensors +
    config.json), or a classical peer by name (telea, ns, biharmonic, patchmatch, mean): `genfill.resolve`.
    `options` go to the model's fill (e.g. method="optimize" for a VAE, mean=True for a sampler's mean fill);
    blend="seam" | "residual" | "hybrid" sets how a sampler draws (its `model.exemplar_blend`) for every fill and sample."""
    filler = resolve(path_or_name, device)
    if filler.model is None:
        if options:
            raise GenfillError(f"the {filler.name} peer takes no fill options (got {', '.join(options)})")
        return Inpainter(filler.name, filler.fill, None, None, "cpu", single=single_fill_message(f"the {filler.name} peer"))
    return from_model(filler.model, str(path_or_name), feather, **options)
