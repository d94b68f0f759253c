"""Mask files (genfill.masks.files): a mask image is thresholded at mid-grey, in any colour mode or format, at
its own size or resized on request, and the `file` kind repeats it; a missing or broken file is one clear line."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from genfill.errors import GenfillError
from genfill.masks import load_mask_file, make_masks


def test_file_mask_threshold_is_mid_grey(tmp_path):
    grey = torch.tensor([[0, 127, 128, 255]], dtype=torch.uint8).repeat(3, 1)  # 3x4
    path = tmp_path / "m.png"
    Image.fromarray(grey.numpy(), mode="L").save(path)
    m = load_mask_file(path, size=(3, 4))
    assert m.shape == (1, 1, 3, 4) and m.dtype == torch.float32
    assert m[0, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert torch.equal(load_mask_file(path), m)  # size=None keeps the file's size


def test_file_mask_colour_and_jpeg(tmp_path):
    rgb = torch.zeros(8, 8, 3, dtype=torch.uint8)
    rgb[:4] = 255  # white top half = hole
    Image.fromarray(rgb.numpy(), mode="RGB").save(tmp_path / "m.jpg", quality=95)
    m = load_mask_file(tmp_path / "m.jpg", size=(8, 8))
    assert m[0, 0, :4].all() and not m[0, 0, 4:].any()


def test_file_mask_size_mismatch(tmp_path):
    path = tmp_path / "m.png"
    Image.new("L", (20, 10), 255).save(path)  # PIL sizes are (W, H): this is 10x20 (HxW)
    with pytest.raises(GenfillError, match=r"m\.png is 10x20 .* 32x32"):
        load_mask_file(path, size=(32, 32))
    resized = load_mask_file(path, size=(32, 32), resize=True)
    assert resized.shape == (1, 1, 32, 32) and resized.all()


def test_file_mask_missing_or_broken(tmp_path):
    with pytest.raises(GenfillError, match="nothere.png"):
        load_mask_file(tmp_path / "nothere.png", size=(8, 8))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(GenfillError, match="junk.png"):
        load_mask_file(tmp_path / "junk.png")


def test_file_kind_repeats_the_file(tmp_path):
    path = tmp_path / "m.png"
    img = torch.zeros(16, 16, dtype=torch.uint8)
    img[2:5, 3:9] = 200
    Image.fromarray(img.numpy(), mode="L").save(path)
    masks = make_masks("file", 3, 16, 16, path=str(path))
    assert masks.shape == (3, 1, 16, 16) and (masks.flatten(1).sum(1) == 18).all()
    with pytest.raises(GenfillError, match="'path'"):
        make_masks("file", 1, 16, 16)
