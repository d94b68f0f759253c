"""Batched windows: fill_native / fill_many give the same fills in batches as one window at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genfill.api import decode_mask, from_model
from genfill.errors import GenfillError
from genfill.inpaint import fill_native, fill_native_many, hole_regions
from genfill.models import build_model


def _holes(h: int, w: int) -> np.ndarray:
    """A big blob and a thin stroke (each coarse + refine) and two small blobs, all far enough apart to be
    regions of their own at 300 x 400."""
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
