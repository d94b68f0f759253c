"""Mask generators (genfill.masks: kinds, shapes, raster): shapes, binary values, documented hole ratios,
determinism, user errors. Mask files are in test_files.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genfill.masks import (
    MASK_KINDS,
    check_params,
    fixed_masks,
    hole_ratio,
    make_masks,
    mask_kinds,
)
from genfill.errors import GenfillError

GENERATED = [k for k in mask_kinds() if k != "file"]
RANDOM = [k for k in GENERATED if MASK_KINDS[k].random]
# Default square is 32 px, so square and mixed (which holds square) need images of at least 32 px.
MIN_SIDE = {"square": 32, "mixed": 32}
FEW = settings(max_examples=25, deadline=None)


def sizes(kind: str):
    side = st.integers(min_value=MIN_SIDE.get(kind, 16), max_value=96)
    return st.tuples(st.integers(1, 4), side, side, st.integers(0, 2**31 - 1))


def assert_valid(masks: torch.Tensor, kind: str, n: int, h: int, w: int) -> None:
    assert masks.shape == (n, 1, h, w)
    assert masks.dtype == torch.float32
    assert ((masks == 0) | (masks == 1)).all()
    lo, hi = MASK_KINDS[kind].bounds(h, w)
    ratio = hole_ratio(masks)
    assert (ratio >= lo - 1e-9).all() and (ratio <= hi + 1e-9).all(), (kind, ratio.tolist(), (lo, hi))


def test_registry_lists_every_kind_with_ratio_range():
    assert set(mask_kinds()) == {"square", "box", "center", "freeform", "thin", "medium", "thick", "mixed", "file"}
    for kind in mask_kinds():
        lo, hi = MASK_KINDS[kind].ratio_range
        assert 0.0 <= lo <= hi <= 1.0
        assert MASK_KINDS[kind].summary  # first docstring line, for `genfill masks --list` and the like


@pytest.mark.parametrize("kind", GENERATED)
def test_random_masks_valid_at_any_size(kind):
    @FEW
    @given(sizes(kind))
    def check(args):
        n, h, w, seed = args
        g = torch.Generator("cpu").manual_seed(seed)
        assert_valid(make_masks(kind, n, h, w, generator=g, device="cpu"), kind, n, h, w)

    check()


@pytest.mark.parametrize("kind", GENERATED)
def test_fixed_masks_deterministic_and_prefix_stable(kind):
    @settings(max_examples=6, deadline=None)
    @given(sizes(kind), st.integers(0, 3))
    def check(args, start):
        n, h, w, seed = args
        full = fixed_masks(kind, n + start, h, w, seed=seed)
        assert_valid(full, kind, n + start, h, w)
        assert torch.equal(full, fixed_masks(kind, n + start, h, w, seed=seed))
        assert torch.equal(full[:n], fixed_masks(kind, n, h, w, seed=seed))
        assert torch.equal(full[start:], fixed_masks(kind, n, h, w, seed=seed, start=start))

    check()


@pytest.mark.parametrize("kind", RANDOM)
def test_seeds_change_the_masks(kind):
    # 96 px: at 64 px the default square (32 px, 16 px margin) has exactly one place, the centre.
    a = fixed_masks(kind, 8, 96, 96, seed=1)
    b = fixed_masks(kind, 8, 96, 96, seed=2)
    assert not torch.equal(a, b)
    assert len({m.numpy().tobytes() for m in a}) > 1  # indices differ from each other too
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    assert not torch.equal(make_masks(kind, 8, 96, 96, generator=g1), make_masks(kind, 8, 96, 96, generator=g2))


@pytest.mark.parametrize("kind", RANDOM)
def test_same_generator_seed_same_masks(kind):
    a = make_masks(kind, 6, 48, 40, generator=torch.Generator().manual_seed(7))
    b = make_masks(kind, 6, 48, 40, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_generator_none_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make_masks("thin", 4, 32, 32)
    assert torch.equal(torch.rand(3), expected)


def test_fixed_masks_differ_per_kind():
    # The seed hash includes the kind, so two kinds with one seed are not secretly correlated draws.
    assert not torch.equal(fixed_masks("medium", 4, 64, 64, seed=0), fixed_masks("thick", 4, 64, 64, seed=0))


@FEW
@given(st.integers(32, 96), st.integers(32, 96), st.integers(1, 32), st.integers(0, 40), st.integers(0, 2**31 - 1))
def test_square_is_exact_and_respects_margin(h, w, size, margin, seed):
    size = min(size, h, w)
    masks = make_masks("square", 3, h, w, generator=torch.Generator().manual_seed(seed), size=size, margin=margin)
    for m in masks[:, 0]:
        assert m.sum() == size * size
        rows = m.any(dim=1).nonzero().flatten()
        cols = m.any(dim=0).nonzero().flatten()
        assert len(rows) == size and len(cols) == size  # one solid square
        my, mx = min(margin, (h - size) // 2), min(margin, (w - size) // 2)
        assert rows[0] >= my and rows[-1] <= h - 1 - my
        assert cols[0] >= mx and cols[-1] <= w - 1 - mx


def test_square_default_is_seed002_protocol():
    # 32 px square, 16 px from every edge: at 64 px that leaves one place, the centre.
    at64 = fixed_masks("square", 5, 64, 64)
    assert (at64[:, :, 16:48, 16:48] == 1).all() and at64.sum() == 5 * 32 * 32
    masks = fixed_masks("square", 300, 96, 96)
    assert (masks.flatten(1).sum(1) == 32 * 32).all()
    assert masks[:, :, :16].sum() == 0 and masks[:, :, -16:].sum() == 0
    assert masks[..., :16].sum() == 0 and masks[..., -16:].sum() == 0
    # Both extreme rows (16 and 96-16-32 = 48) are reachable: the placement spans the allowed range.
    tops = {int(m[0].any(1).nonzero()[0]) for m in masks}
    assert min(tops) == 16 and max(tops) == 48


def test_square_larger_than_image_is_an_error():
    with pytest.raises(GenfillError, match="size 40"):
        make_masks("square", 1, 32, 64, size=40)


@pytest.mark.parametrize("h,w,ratio", [(64, 64, 0.5), (63, 80, 0.5), (16, 16, 0.25), (50, 30, 1.0)])
def test_center_exact_area_and_centred(h, w, ratio):
    m = make_masks("center", 2, h, w, ratio=ratio)[0, 0]
    side_h, side_w = round(ratio * h), round(ratio * w)
    assert m.sum() == side_h * side_w
    rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
    assert abs(rows[0] - (h - 1 - rows[-1])) <= 1 and abs(cols[0] - (w - 1 - cols[-1])) <= 1


@pytest.mark.parametrize("kind", ["thin", "medium", "thick", "freeform"])
def test_stroke_kinds_scale_with_image(kind):
    # LaMa's pixel sizes are for 256 px and scale with min(H, W) / 256, so the mean hole ratio of the same
    # 60 fixed masks is the same at 64 and 128 px: measured 0.987 .. 1.011; unscaled strokes give 1.16 .. 1.35.
    small = hole_ratio(fixed_masks(kind, 60, 64, 64)).mean()
    large = hole_ratio(fixed_masks(kind, 60, 128, 128)).mean()
    assert 0.96 < small / large < 1.05, kind


def test_max_area_caps_every_mask():
    g = torch.Generator().manual_seed(0)
    masks = make_masks("thick", 64, 64, 64, generator=g, max_area=0.2)
    assert (hole_ratio(masks) <= 0.2).all() and (hole_ratio(masks) > 0).all()


def test_mixed_draws_from_its_kinds():
    only_center = make_masks("mixed", 5, 64, 64, kinds=["center"])
    assert torch.equal(only_center, make_masks("center", 5, 64, 64))
    g = torch.Generator().manual_seed(3)
    masks = make_masks("mixed", 64, 64, 64, generator=g, kinds=["center", "square"], kind_params={"square": {"size": 8}})
    areas = set(masks.flatten(1).sum(1).tolist())
    assert areas == {32.0 * 32, 8.0 * 8}  # both members appear, each with its own parameters


def test_mixed_rejects_bad_members():
    with pytest.raises(GenfillError, match="unknown mask kind 'nope'"):
        make_masks("mixed", 1, 64, 64, kinds=["thin", "nope"])
    with pytest.raises(GenfillError, match="unknown parameter 'width'"):
        make_masks("mixed", 1, 64, 64, kinds=["square"], kind_params={"square": {"width": 3}})
    with pytest.raises(GenfillError, match="size 32"):
        make_masks("mixed", 1, 16, 16)


def test_empty_batch():
    for kind in GENERATED:
        assert make_masks(kind, 0, 64, 64).shape == (0, 1, 64, 64)
        assert fixed_masks(kind, 0, 64, 64).shape == (0, 1, 64, 64)


# ---- user errors ---------------------------------------------------------------------------------


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(GenfillError, match="unknown mask kind 'circle'.*square.*thick"):
        make_masks("circle", 1, 32, 32)
    with pytest.raises(GenfillError, match="unknown mask kind"):
        fixed_masks("circle", 1, 32, 32)
    with pytest.raises(GenfillError, match="unknown mask kind"):
        check_params("circle", {})


def test_unknown_param_is_named():
    with pytest.raises(GenfillError, match="unknown parameter 'sise'.*valid parameters: size, margin"):
        make_masks("square", 1, 64, 64, sise=3)
    with pytest.raises(GenfillError, match="'max_len'"):
        check_params("freeform", {"max_len": 3})
    check_params("thick", {"max_len": 3, "box_prob": 0.0})  # valid keys pass


@pytest.mark.parametrize(
    "n,h,w", [(-1, 8, 8), (1, 0, 8), (1, 8, 0), (1.5, 8, 8), (1, 8, True)]
)
def test_bad_sizes(n, h, w):
    with pytest.raises(GenfillError):
        make_masks("box", n, h, w)


@pytest.mark.parametrize(
    "kind,params",
    [("box", {"min_frac": 0.6, "max_frac": 0.5}), ("center", {"ratio": 0}), ("thin", {"max_area": 1.5}),
     ("freeform", {"min_width": -1}), ("square", {"margin": -1})],
)
def test_bad_param_values(kind, params):
    with pytest.raises(GenfillError, match=kind):
        make_masks(kind, 1, 64, 64, **params)


def test_generator_device_must_match():
    g = torch.Generator("cpu")
    with pytest.raises(GenfillError, match="generator is on cpu"):
        make_masks("box", 1, 8, 8, generator=g, device="meta")


def test_errors_are_one_line():
    for call in (lambda: make_masks("circle", 1, 8, 8), lambda: make_masks("square", 1, 64, 64, sise=3)):
        with pytest.raises(GenfillError) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["square", "thick", "box"])
def test_masks_at_equals_fixed_masks_for_any_indices(kind):
    from genfill.masks import masks_at

    ref = fixed_masks(kind, 6, 48, 48, seed=7)
    assert torch.equal(masks_at(kind, range(6), 48, 48, seed=7), ref)
    assert torch.equal(masks_at(kind, [4, 1, 4], 48, 48, seed=7), ref[[4, 1, 4]])
