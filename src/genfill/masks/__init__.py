"""Hole masks for inpainting: (N,1,H,W) float32, values exactly 0.0 or 1.0, **1 = hole**, 0 = known.

Every kind is a batched torch generator registered in ``MASK_KINDS``; draw masks with

    make_masks("thin", 16, 256, 256, generator=g)        # random, for training
    fixed_masks("thick", 100, 256, 256, seed=0)          # the same holes for every model, forever
    load_mask_file("hole.png", size=(256, 256))          # a user's own mask

Kinds (parameters and their defaults are in each generator's docstring and in ``MASK_KINDS[k].defaults``):

    square    one size x size square, `margin` px from every edge (seed 002's 32 px / 16 px masks)
    box       1..max_boxes random axis-aligned rectangles
    center    one centred rectangle covering `ratio` of each side
    freeform  DeepFill v2 free-form brush strokes
    thin, medium, thick   LaMa's irregular masks (strokes; medium/thick sometimes LaMa's boxes instead)
    mixed     per sample, one kind drawn uniformly from a list
    file      a mask image on disk, repeated n times

Hole ratios. ``MaskKind.bounds(h, w, **params)`` gives bounds that *every* mask obeys (derived from the
geometry and the ``max_area`` caps, not measured) and ``MaskKind.ratio_range`` is that pair at 256x256
with default parameters. The measured spread (1st..99th percentile of 1000 masks per kind, by
``python benchmarks/mask_stats.py``) is in ``benchmarks/results/mask_stats.md``.

The stroke kinds' guaranteed lower bound is one pixel: LaMa's smallest stroke (one 10 px segment, 5 px
brush at 256) is that small by design. At 64x64 the default square has one place only, the centre.

Randomness: all draws go through one ``torch.Generator`` living on the output's device, so nothing touches
torch's global RNG. ``fixed_masks`` gives each index its own CPU generator seeded from
(kind, seed, index), which makes mask i independent of the batch it is drawn in and of the device.

The package, one job per module: ``kinds`` (the registry, parameter checks, the public draws), ``raster``
(segments, boxes and the area cap, batched on any device), ``shapes`` (square, box, center, freeform),
``lama`` (thin, medium, thick), ``mixed``, ``files`` (mask images), ``bank`` (the training mask bank).
"""

from __future__ import annotations

# Importing the kinds' modules registers them, in this order (`mask_kinds()` lists them so).
from genfill.masks import shapes, lama, mixed, files  # noqa: F401  isort: skip
from genfill.masks.bank import ROLL_KINDS, MaskBank, draw_bank, mask_bank
from genfill.masks.files import load_mask_file
from genfill.masks.kinds import (MASK_KINDS, REFERENCE_SIDE, MaskKind, check_mask, check_params, fixed_masks,
                                 hole_ratio, make_masks, mask_kinds, masks_at)

__all__ = [
    "MASK_KINDS",
    "REFERENCE_SIDE",
    "ROLL_KINDS",
    "MaskBank",
    "MaskKind",
    "check_mask",
    "check_params",
    "draw_bank",
    "fixed_masks",
    "hole_ratio",
    "load_mask_file",
    "make_masks",
    "mask_bank",
    "mask_kinds",
    "masks_at",
]
