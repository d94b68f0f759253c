"""Batched windows: fill_native / fill_many give the same fills in batches as one window at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genfill.api import decode_mask, from_model
from genfill.errors import GenfillError
import torch.nn.functional as F
from scipy import ndimage

from genfill import inpaint
from genfill.inpaint import bicubic_crop, fill_native, fill_native_many, harmonic_thin, hole_regions, split_thin
from genfill.models import build_model


def _holes(h: int, w: int) -> np.ndarray:
    """A big blob (coarse + refine), a 1 px stroke and two small blobs (thin: narrower than a 9 px disk, so
    filled without a window), all far enough apart to be regions of their own at 300 x 400."""
    m = np.zeros((h, w), bool)
    m[30:110, 40:120] = True
    m[h - 20, w - 150 : w - 70] = True
    m[5:9, w - 12 : w - 6] = True
    m[h - 9 : h - 5, 5:11] = True
    return m


def _content_fill(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """A batch-invariant fill that depends on each window's content: the mean of its known pixels plus a
    ramp, so a window pasted in the wrong place or filled from the wrong input shows."""
    known = 1 - m
    mean = (x * known).sum((1, 2, 3), keepdim=True) / known.sum((1, 2, 3), keepdim=True).clamp_min(1)
    ramp = torch.linspace(-0.3, 0.3, x.shape[-1]).view(1, 1, 1, -1)
    return m * (mean + ramp).clamp(-1, 1) + known * x


@pytest.fixture(scope="module")
def unet32():
    torch.manual_seed(0)
    model = build_model({"kind": "unet", "widths": [8, 16], "prior": "biharmonic", "smooth_iters": 10}, 32, 3)
    torch.nn.init.normal_(model.net.out[-1].weight, std=0.1)  # a non-zero correction on top of the prior
    return model.eval()


def test_batched_windows_equal_one_at_a_time():
    calls = []

    def counted(x, m):
        calls.append(x.shape[0])
        return _content_fill(x, m)

    x = torch.rand(3, 300, 400) * 2 - 1
    hole = _holes(300, 400)
    assert len(hole_regions(hole)) == 4
    one = fill_native(x, hole, counted, 32, batch=1)
    windows = len(calls)
    assert windows > 4 and set(calls) == {1}  # coarse windows and refine cells
    calls.clear()
    many = fill_native(x, hole, counted, 32)
    assert torch.equal(one, many)
    assert len(calls) == 2 and sum(calls) == windows  # one model call per stage
    keep = torch.from_numpy(~hole)
    assert torch.equal(many[:, keep], x[:, keep]) and not torch.equal(many, x)


def test_fill_native_many_batches_across_images_with_the_same_result():
    xs = [torch.rand(3, 150, 200) * 2 - 1, torch.rand(3, 30, 20) * 2 - 1, torch.rand(3, 300, 400) * 2 - 1]
    holes = [_holes(150, 200), np.zeros((30, 20), bool), _holes(300, 400)]
    holes[1][5:15, 5:12] = True
    alone = [fill_native(x, h, _content_fill, 32, batch=1) for x, h in zip(xs, holes)]
    together = fill_native_many(xs, holes, _content_fill, 32, batch=5)
    for a, b in zip(alone, together):
        assert torch.equal(a, b)


def test_unet_windows_in_batches_match_one_at_a_time_and_fill_many(unet32):
    x = torch.rand(3, 150, 200) * 2 - 1
    hole = _holes(150, 200)
    fill = lambda a, b: unet32.fill(a, b)  # noqa: E731
    one = fill_native(x, hole, fill, 32, batch=1)
    many = fill_native(x, hole, fill, 32)
    # The same windows; only the convolutions' fp32 summation order may differ with the batch size: a few
    # ulps of values in [-1, 1] per layer, far below a grey level (1/127.5).
    assert (one - many).abs().max() < 1e-4
    painter = from_model(unet32)
    photos = [np.random.default_rng(i).integers(0, 256, (150, 200, 3), dtype=np.uint8) for i in range(2)]
    masks = [hole, np.flipud(hole).copy()]
    together = painter.fill_many(photos, masks)
    for photo, mask, got in zip(photos, masks, together):
        alone = painter.fill(photo, mask)
        assert np.abs(alone.astype(int) - got.astype(int)).max() <= 1
        assert (got[~mask] == photo[~mask]).all() and (got[mask] != photo[mask]).any()


@pytest.mark.parametrize("mask, text", [
    (np.full((8, 8), 0.5, np.float32), "exactly 0 (known) or 1"),
    (np.where(np.eye(8, dtype=bool), 255.0, 0.0), "exactly 0 (known) or 1"),
    (np.where(np.eye(8, dtype=bool), 128, 0).astype(np.uint8), "0 and 1 or 0 and 255"),
])
def test_masks_that_are_not_0_1_are_refused(mask, text):
    with pytest.raises(GenfillError, match=text.replace("(", r"\(").replace(")", r"\)")):
        decode_mask(mask, (8, 8))


def test_0_1_masks_of_every_dtype_mean_the_same_hole():
    hole = np.eye(8, dtype=bool)
    for m in (hole, hole.astype(np.uint8), hole.astype(np.uint8) * 255, hole.astype(np.float32),
              torch.from_numpy(hole).float()[None, None]):
        assert (decode_mask(m, (8, 8)) == hole).all()


def _counted(calls: list):
    def fill(x, m):
        calls.append((x.shape[0], m.sum((1, 2, 3)).tolist()))
        return _content_fill(x, m)

    return fill


def test_thin_strokes_across_a_big_photo_go_through_no_window():
    calls = []
    yy, xx = torch.meshgrid(torch.arange(300.0), torch.arange(400.0), indexing="ij")
    x = torch.stack([yy / 150 - 1, xx / 200 - 1, (yy + xx) / 350 - 1])  # smooth ramps: harmonic is exact
    hole = np.zeros((300, 400), bool)
    hole[100:103, 10:390] = True  # a 3 px stroke across the photo
    hole[20:290, 250] = True  # a 1 px scratch crossing it
    assert not split_thin(hole)[0].any()
    out = fill_native(x, hole, _counted(calls), 32)
    assert calls == []  # no window, shrunk or not
    keep = torch.from_numpy(~hole)
    assert torch.equal(out[:, keep], x[:, keep])
    # A harmonic fill of a linear ramp is the ramp; 10 sweeps after the peel leave it within a fraction of
    # the ramp's step across the 3 px stroke (3 steps of 1/150), where nearest-known or a constant would not.
    err = (out - x)[:, torch.from_numpy(hole)].abs().max()
    assert err < 1.5 / 150


def test_split_thin_is_the_opening_by_a_disk():
    rng = np.random.default_rng(0)
    for _ in range(3):
        hole = ndimage.binary_dilation(rng.random((90, 120)) < 0.01, iterations=int(rng.integers(3, 8)))
        hole[40:43, :] = True  # a stroke to the border: beyond the image counts as hole
        core = ndimage.distance_transform_edt(hole) > inpaint.THIN
        assert core.any()  # (the transform of a mask with no core at all is undefined)
        wide = hole & (ndimage.distance_transform_edt(~core) <= inpaint.THIN)
        got_wide, got_thin = split_thin(hole)
        assert (got_wide == wide).all() and (got_thin == hole & ~wide).all()
        assert got_wide.any() and got_thin.any()


def test_harmonic_thin_obeys_the_maximum_principle_and_converges():
    rng = np.random.default_rng(1)
    img = rng.uniform(-1, 1, (3, 40, 50)).astype(np.float32)
    thin = np.zeros((40, 50), bool)
    thin[10:14, 3:47] = True
    thin[0:40, 30] = True  # touches the border (clamped)
    out = img.copy()
    harmonic_thin(out, thin, sweeps=3000)
    assert (out[:, ~thin] == img[:, ~thin]).all()
    lo, hi = img[:, ~thin].min(), img[:, ~thin].max()
    assert lo <= out[:, thin].min() and out[:, thin].max() <= hi
    # converged: every thin pixel is the mean of its 4 neighbours (clamped at the border)
    p = np.pad(out, ((0, 0), (1, 1), (1, 1)), mode="edge")
    avg = (p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]) / 4
    assert np.abs(avg - out)[:, thin].max() < 1e-4


def test_big_wide_region_is_refined_in_the_fewest_even_cells_and_thin_parts_add_no_window():
    calls = []
    x = torch.rand(3, 300, 400) * 2 - 1
    hole = np.zeros((300, 400), bool)
    hole[100:200, 100:190] = True  # ~100 x 90: coarse, then ceil(100 / 48) x ceil(92 / 48) = 3 x 2 cells at S = 32
    hole[150:153, :] = True  # a stroke through it to both borders: thin, no window of its own
    out = fill_native(x, hole, _counted(calls), 32, batch=1)
    assert len(calls) == 1 + 6
    cell_holes = [s[0] for _, s in calls[1:]]
    # In a 96 px window shrunk 3x, n native px cover ceil(n / 3) or one more model px: an S x S cell (32 px)
    # at most 12 x 12, a cell of the cap (48 px) at most 17 x 17; these 6 cells (33-34 x 46 px: the wide box
    # is 100 x 92, the stroke's junctions adding a column each side) lie in between.
    assert all(12 * 12 < h <= 17 * 17 for h in cell_holes), cell_holes
    many = fill_native(x, hole, _content_fill, 32)  # the result does not depend on the batch
    assert torch.equal(out, many)
    keep = torch.from_numpy(~hole)
    assert torch.equal(out[:, keep], x[:, keep]) and (out[:, torch.from_numpy(hole)] != x[:, torch.from_numpy(hole)]).all()


def test_bicubic_crop_is_torchs_bicubic_cropped():
    a = torch.rand(3, 21, 17) * 2 - 1
    for size, box in (((64, 51), (5, 7, 40, 30)), ((63, 50), (0, 0, 63, 50)), ((21, 17), (3, 4, 9, 10))):
        full = F.interpolate(a[None], size=size, mode="bicubic", align_corners=False)[0]
        got = bicubic_crop(a, size, box)
        # the same weights and taps; only fp32 summation order differs (a few ulps of values in [-1, 1])
        assert (got - full[:, box[0] : box[2], box[1] : box[3]]).abs().max() < 1e-5


def test_thin_fill_of_an_image_not_filled_in_place_is_the_same():
    # float64 (or an accelerator's tensor) cannot share numpy's float32 memory: the thin part goes through a
    # float32 copy and back, and must come out as the in-place path's, to float32 rounding
    x = torch.rand(3, 120, 150) * 2 - 1
    hole = np.zeros((120, 150), bool)
    hole[60:62, 5:145] = True
    a = fill_native(x, hole, _content_fill, 32)
    b = fill_native(x.double(), hole, _content_fill, 32)
    assert b.dtype == torch.float64 and (a.double() - b).abs().max() < 1e-6
    assert (a[:, torch.from_numpy(hole)] != x[:, torch.from_numpy(hole)]).all()
