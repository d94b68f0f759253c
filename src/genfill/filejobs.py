"""The `genfill fill` command's job: image files and folders filled by an `Inpainter` (`genfill.api`).

`plan_files` decides which image goes with which mask to which output (folders searched recursively and
mirrored; `<stem>_mask.<ext>` pairs, one `--mask` for all, or holes generated per image by `--mask-kind`), and
refuses a plan that would write onto an input or twice to one file. `fill_files` then reads each image and
its mask once, fills it at its own size and writes the PNG atomically (and with `samples=K` the picture of K
fills and their spread next to it).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from genfill.api import Inpainter, decode_image, decode_mask
from genfill.masks import check_params, fixed_masks
from genfill.errors import GenfillError
from genfill.io import (IMAGE_EXTENSIONS, atomic_write_bytes, check_not_input, guard_inputs, image_format, note_input,
                        save_array, save_image)
from genfill.metrics.uncertainty import check_samples
from genfill.progress import Progress
from genfill.validate import integer, seed as valid_seed


@dataclass
class FileJob:
    source: Path
    mask: Path | None  # None: generated (--mask-kind)
    output: Path
    hole_ratio: float = 0.0
    samples: Path | None = None  # with --samples: the picture of the K fills and the heat map


def samples_path(output: Path) -> Path:
    """Where `fill --samples K` writes the samples picture of `output`: next to it, `<stem>_samples.png`."""
    return output.with_name(f"{output.stem}_samples.png")


def pair_mask(image: Path) -> Path | None:
    """`<stem>_mask.<ext>` next to `<stem>.<ext>` (LaMa / IOPaint's convention), any image suffix, .png first."""
    for ext in [".png", *sorted(IMAGE_EXTENSIONS - {".png"})]:
        cand = image.with_name(f"{image.stem}_mask{ext}")
        if cand.is_file():
            return cand
    return None


def plan_files(inputs: Sequence[str | Path], output: str | Path, mask: str | Path | None = None,
               generated: bool = False) -> list[FileJob]:
    """Which image goes with which mask to which output. Folders are searched recursively (files named
    `*_mask.*` are masks, not inputs) and the output mirrors each folder's tree; the outputs are PNG so the
    pixels outside the hole stay exact on disk. One file with `-o name.ext` writes exactly there."""
    out = Path(output)
    found: list[tuple[Path, Path]] = []  # (image, path relative to the output folder)
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                           and not f.stem.endswith("_mask"))
            if not files:
                raise GenfillError(f"no images in folder {p} ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            found += [(f, f.relative_to(p).with_suffix(".png")) for f in files]
        elif p.is_file():
            found.append((p, Path(p.name).with_suffix(".png")))
        else:
            raise GenfillError(f"image not found: {p}")
    # One file and an -o with a suffix is a file (x.tiff must not become a folder; .gif is refused clearly).
    single = len(found) == 1 and not Path(inputs[0]).is_dir() and bool(out.suffix) and not _is_dir(out)
    if not single:
        for item in inputs:
            if Path(item).is_dir() and _same_folder(Path(item), out):
                raise GenfillError(f"the output folder {out} is the input folder {item}: the fills would land on "
                                   "or next to the originals; name another folder")
    if single:
        image_format(out)
    jobs, seen = [], set()
    for src, rel in found:
        dst = out if single else out / rel
        if dst in seen:
            raise GenfillError(f"two inputs would both be written to {dst}: give them different names")
        seen.add(dst)
        m = Path(mask) if mask else (None if generated else pair_mask(src))
        if m is None and not generated:
            raise GenfillError(f"no mask for {src}: put {src.stem}_mask.png next to it, or pass --mask FILE "
                               "or --mask-kind KIND")
        jobs.append(FileJob(src, m, dst))
    return jobs


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, a loop: not a folder we can write into
        return False


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    except OSError:
        return False


def _counted(items: list, bar) -> Iterator:
    """Yield each item, advancing `bar` after it is done; the bar closes at the end (or on an error)."""
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def fill_files(painter: Inpainter, inputs: Sequence[str | Path], output: str | Path, mask: str | Path | None = None,
               mask_kind: str | None = None, mask_params: dict | None = None, seed: int = 0,
               mask_resize: bool = False, dilate: int = 0, progress: bool = True,
               samples: int | None = None) -> list[FileJob]:
    """Fill image files and folders; masks from `mask` (one for all), `<stem>_mask.png` pairs, or generated
    at each image's own size by `mask_kind` (fixed per (seed, image index)). Writes are atomic. `samples=K`
    also writes, next to each output, `<stem>_samples.png`: the input (hole white), K different fills and
    the heat map of their per-pixel spread (`PluralFill.panel`)."""
    if mask and mask_kind:
        raise GenfillError("give either --mask FILE or --mask-kind KIND, not both")
    if samples is not None:
        if not painter.can_diversify:
            raise GenfillError(painter.single)
        check_samples(samples)
    if mask_kind:
        check_params(mask_kind, mask_params or {})  # an unknown kind or keyword fails before any work
    integer("dilate", dilate, 0, 4096)
    with guard_inputs():
        jobs = plan_files(inputs, output, mask, generated=bool(mask_kind))
        valid_seed("seed", seed, margin=len(jobs) - 1)  # image i is filled with seed + i
        if samples is not None:
            outputs = {j.output for j in jobs}
            for j in jobs:
                j.samples = samples_path(j.output)
                if j.samples in outputs:
                    raise GenfillError(f"{j.samples} would be both a fill and the samples picture of {j.output}: "
                                       "rename the input")
        # Every image and mask is an input before the first write: no output may land on any of them.
        for j in jobs:
            note_input(j.source)
            if j.mask is not None:
                note_input(j.mask)
        for j in jobs:
            for target in (j.output, j.samples):
                if target is not None:
                    check_not_input(target)
        bar = Progress(len(jobs), "fill", "img", enabled=progress and len(jobs) > 1)
        for i, job in enumerate(_counted(jobs, bar)):
            d = decode_image(job.source)  # the image and its hole are read and checked once
            h, w = d.pixels.shape[:2]
            m = job.mask
            if m is None:
                m = fixed_masks(mask_kind, 1, h, w, seed=seed, start=i, **(mask_params or {}))[0, 0].numpy() > 0.5
            try:
                hole = decode_mask(m, (h, w), mask_resize, dilate)
            except GenfillError as exc:
                raise GenfillError(f"{job.mask or job.source}: {exc}") from exc
            save_fill(painter.fill_decoded(d, hole, seed + i), job.output)
            if samples is not None:
                save_image(painter.samples_decoded(d, hole, samples, seed + i).panel(), job.samples)
            job.hole_ratio = float(hole.mean())
    return jobs


def save_fill(im: Image.Image | np.ndarray, path: Path) -> None:
    """Atomically, in the format the suffix names (JPEG has no alpha: it is dropped there); a uint16 colour
    array (a 16-bit input) stays 16-bit in a PNG or TIFF."""
    if isinstance(im, np.ndarray):
        save_array(path, im)
        return
    fmt = image_format(path)  # the suffix's format, or a clear error (never PNG bytes in a .gif)
    if fmt == "JPEG" and im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())
