"""genfill.augment: the SSL views keep shape and range, follow their generator, and each transform does what
its name says."""

import pytest
import torch

from genfill.augment import (AugmentConfig, augment, colour_jitter, crop_boxes, flip, gaussian_blur, greyscale,
                             resized_crop, solarize, two_views)
from genfill.errors import GenfillError


def images(n=4, c=3, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [3, 1])
def test_views_keep_shape_and_range_and_follow_the_generator(channels):
    x = images(c=channels)
    cfg = AugmentConfig(blur=(1.0, 1.0), solarize=(0.5, 0.5), grey=0.5)
    a1, a2 = two_views(x, cfg, gen(1))
    b1, b2 = two_views(x, cfg, gen(1))
    c1, _ = two_views(x, cfg, gen(2))
    for v in (a1, a2):
        assert v.shape == x.shape and v.dtype == x.dtype
        assert v.min() >= -1 and v.max() <= 1
    assert torch.equal(a1, b1) and torch.equal(a2, b2)  # same seed, same views
    assert not torch.allclose(a1, c1)  # another seed, other views
    assert not torch.allclose(a1, a2)  # the two views differ
    assert not torch.allclose(a1, x)


def test_the_identity_recipe_returns_the_images():
    """No crop (scale 1, ratio 1), no flip, no jitter/grey/blur/solarize: the view is the image."""
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=0.0, jitter=0.0, grey=0.0,
                        blur=(0.0, 0.0), solarize=(0.0, 0.0))
    x = images()
    assert torch.allclose(augment(x, cfg, gen(0)), x, atol=1e-5)


def test_crop_of_the_identity_box_is_the_identity_and_a_box_crops_a_ramp():
    x = images()
    box = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).repeat(4, 1)
    assert torch.allclose(resized_crop(x, box), x, atol=1e-5)
    # A horizontal ramp whose value at a pixel centre is its position (fraction of the width): bilinear
    # sampling reproduces it exactly, so the crop of [cx - w/2, cx + w/2] is the ramp over that interval.
    w_px = 32
    pos = (torch.arange(w_px) + 0.5) / w_px
    ramp = pos.view(1, 1, 1, -1).expand(1, 3, w_px, w_px).contiguous()
    cx, w = 0.4, 0.5
    out = resized_crop(ramp, torch.tensor([[cx, 0.5, w, 1.0]]))
    expected = cx - w / 2 + w * pos
    assert torch.allclose(out[0, 0, 5], expected, atol=1e-5)
    assert torch.allclose(out[0, :, :, 7], out[0, :, :1, 7].expand(3, w_px))  # full height: rows unchanged


def test_crop_boxes_lie_inside_the_image_with_the_asked_area():
    boxes = crop_boxes(500, (0.2, 0.6), (3 / 4, 4 / 3), gen(0))
    cx, cy, w, h = boxes.unbind(1)
    assert (cx - w / 2 >= -1e-6).all() and (cx + w / 2 <= 1 + 1e-6).all()
    assert (cy - h / 2 >= -1e-6).all() and (cy + h / 2 <= 1 + 1e-6).all()
    area = w * h
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 0.6 + 1e-5
    assert (w / h).min() >= 3 / 4 - 1e-5 and (w / h).max() <= 4 / 3 + 1e-5


def test_flip_mirrors_the_chosen_images_only():
    x = images()
    which = torch.tensor([True, False, True, False])
    y = flip(x, which)
    assert torch.equal(y[0], x[0].flip(-1)) and torch.equal(y[2], x[2].flip(-1))
    assert torch.equal(y[1], x[1]) and torch.equal(y[3], x[3])


def test_greyscale_gives_equal_channels_of_the_luma():
    x = (images() + 1) / 2
    which = torch.tensor([True, True, False, False])
    y = greyscale(x, which)
    assert torch.equal(y[0, 0], y[0, 1]) and torch.equal(y[0, 1], y[0, 2])
    luma = 0.299 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2]
    assert torch.allclose(y[0, 0], luma, atol=1e-6)
    assert torch.equal(y[2:], x[2:])


def test_colour_jitter_factors():
    x = (images(n=2) + 1) / 2 * 0.5 + 0.25  # in [0.25, 0.75]: no clamping below
    on = torch.tensor([True, True])
    one, zero = torch.ones(2), torch.zeros(2)
    assert torch.allclose(colour_jitter(x, on, one, one, one, zero), x, atol=1e-5)  # neutral factors
    half = colour_jitter(x, on, 0.5 * one, one, one, zero)
    assert torch.allclose(half, x * 0.5, atol=1e-6)  # brightness scales
    grey = colour_jitter(x, on, one, one, zero, zero)  # saturation 0: every pixel its luma
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-6)
    flat = colour_jitter(x, on, one, zero, one, zero)  # contrast 0: the mean luma everywhere
    assert flat.flatten(1).std(1).max() < 1e-5
    hue = colour_jitter(x, on, one, one, one, 0.25 * one)  # a hue turn keeps the luma, changes the colour
    luma = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    assert not torch.allclose(hue, x, atol=1e-2)
    inside = (hue > 0.001) & (hue < 0.999)  # where nothing was clamped
    assert torch.allclose(luma(hue)[inside.all(1)], luma(x)[inside.all(1)], atol=1e-4)
    assert torch.equal(colour_jitter(x, ~on, 0.5 * one, one, one, zero), x)  # not chosen: untouched


def test_blur_smooths_keeps_constants_and_skips_the_unchosen():
    x = (images(n=3, size=32) + 1) / 2
    x[2] = 0.3
    which = torch.tensor([True, False, True])
    y = gaussian_blur(x, which, torch.tensor([1.5, 1.5, 1.5]), 7)
    assert y[0].var() < 0.5 * x[0].var()  # noise loses most of its variance
    assert abs(y[0].mean() - x[0].mean()) < 0.01
    assert torch.equal(y[1], x[1])
    assert torch.allclose(y[2], x[2], atol=1e-6)  # a constant image stays constant
    wider = gaussian_blur(x, which, torch.tensor([0.8, 0.8, 0.8]), 7)
    assert y[0].var() < wider[0].var()  # a bigger sigma smooths more


def test_solarize_inverts_above_the_threshold():
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4)
    assert torch.allclose(solarize(x, torch.tensor([True])), torch.tensor([0.1, 0.49, 0.5, 0.1]).view(1, 1, 1, 4))
    assert torch.equal(solarize(x, torch.tensor([False])), x)


def test_bad_recipes_and_a_generator_on_another_device_are_errors():
    with pytest.raises(GenfillError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.5, 0.2))
    with pytest.raises(GenfillError, match="blur_kernel"):
        AugmentConfig(blur_kernel=4)
    with pytest.raises(GenfillError, match="blur"):
        AugmentConfig(blur=(1.5, 0.0))
    if torch.cuda.is_available():
        with pytest.raises(GenfillError, match="generator"):
            augment(images(), AugmentConfig(), torch.Generator("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_views_on_the_gpu_wait_for_nothing():
    """No host sync: every random draw and choice stays on the device."""
    x = images(n=8, size=32).cuda()
    g = torch.Generator("cuda").manual_seed(0)
    two_views(x, AugmentConfig(), g)  # warm-up (lazy CUDA init may sync)
    torch.cuda.set_sync_debug_mode("error")
    try:
        v1, v2 = two_views(x, AugmentConfig(blur=(1.0, 1.0), solarize=(0.5, 0.5)), g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert v1.shape == x.shape
