"""Images and masks at their own bit depth and orientation (issue 26): a 16-bit PNG in gives a 16-bit PNG out
with every known pixel bit-identical; 16-bit and float masks are thresholded at their own depth; EXIF
orientation is applied the same way to the image, the mask and so the output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from genfill.cli import main
from genfill.errors import GenfillError
from genfill.imageread import read_image
from tests.conftest import bomb_png_header, one_line_error, save_face


def _rgb16(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    """uint16 RGB whose low bytes all differ from their high bytes (an 8-bit round trip cannot keep them)."""
    return np.random.default_rng(seed).integers(0, 65536, (h, w, 3), dtype=np.uint16)


def _write_png16(path, a: np.ndarray) -> None:
    import cv2

    assert cv2.imwrite(str(path), a[:, :, ::-1])  # OpenCV writes BGR


def _read_png16(path) -> np.ndarray:
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert a is not None and a.dtype == np.uint16, (None if a is None else a.dtype)
    return a[:, :, ::-1]


def _box_mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[5:11, 7:15] = True
    return m


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_in_gives_16bit_png_out(tmp_path, capsys, channels):
    a = _rgb16()
    if channels == 4:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 60000, np.uint16)], axis=2)
    _write_png16(tmp_path / "x.png", a)
    hole = _box_mask(*a.shape[:2])
    Image.fromarray((hole * 255).astype(np.uint8)).save(tmp_path / "m.png")
    # biharmonic fills in floating point (Telea works on 8 bits inside OpenCV), so the hole shows 16 bits too
    assert main(["fill", str(tmp_path / "x.png"), "--mask", str(tmp_path / "m.png"), "--method", "biharmonic",
                 "-o", str(tmp_path / "out.png"), "--quiet"]) == 0
    out = _read_png16(tmp_path / "out.png")
    assert out.shape == a.shape
    np.testing.assert_array_equal(out[~hole], a[~hole])  # every known pixel, all 16 bits
    assert not np.array_equal(out[hole], a[hole])  # and the hole was filled
    assert (out[hole] % 257 != 0).any()  # at 16 bits, not an 8-bit fill scaled up


def test_16bit_colour_through_the_api_is_a_uint16_array(tmp_path):
    import genfill

    a = _rgb16(seed=1)
    _write_png16(tmp_path / "x.png", a)
    hole = _box_mask(*a.shape[:2])
    out = genfill.load("telea").fill(tmp_path / "x.png", hole)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint16 and out.shape == a.shape
    np.testing.assert_array_equal(out[~hole], a[~hole])


def test_16bit_grey_png_stays_16bit(tmp_path, capsys):
    g = np.random.default_rng(2).integers(0, 65536, (20, 28), dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g.png")
    hole = _box_mask(20, 28)
    Image.fromarray((hole * 255).astype(np.uint8)).save(tmp_path / "m.png")
    assert main(["fill", str(tmp_path / "g.png"), "--mask", str(tmp_path / "m.png"), "--method", "telea",
                 "-o", str(tmp_path / "out.png"), "--quiet"]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.dtype.itemsize == 2 or Image.open(tmp_path / "out.png").mode.startswith("I")
    np.testing.assert_array_equal(out.astype(np.int64)[~hole], g.astype(np.int64)[~hole])


def test_16bit_grey_mask_is_thresholded_at_16_bits(tmp_path):
    """A 31 % grey region in a 16-bit mask is not a hole (PIL's convert("L") clips it to white); only the
    pixels brighter than mid-grey at 16 bits are."""
    from genfill.api import decode_mask

    m = np.zeros((40, 40), np.uint16)
    m[:, :20] = int(0.31 * 65535)  # 50 % of the image, 31 % grey: known
    m[2:10, 22:30] = 65535  # 4 % of the image: the hole
    m[12:14, 22:30] = 32767  # just under mid-grey: known
    m[16:18, 22:30] = 32768  # just over: hole
    Image.fromarray(m).save(tmp_path / "m16.png")
    assert Image.open(tmp_path / "m16.png").mode.startswith("I")
    want = m > 32767
    for mask in (tmp_path / "m16.png", Image.open(tmp_path / "m16.png")):
        np.testing.assert_array_equal(decode_mask(mask, (40, 40)), want)
    # An array is no picture: it must say 0/1 (or 0/65535) itself; greys are refused, not guessed (issue 25).
    with pytest.raises(GenfillError, match="0 and 65535"):
        decode_mask(m, (40, 40))
    np.testing.assert_array_equal(decode_mask(want.astype(np.uint16) * 65535, (40, 40)), want)


def test_float_tiff_mask_with_ones_is_a_hole(tmp_path):
    from genfill.api import decode_mask
    from genfill.masks import load_mask_file

    m = np.zeros((24, 24), np.float32)
    m[4:12, 6:18] = 1.0
    Image.fromarray(m, mode="F").save(tmp_path / "m.tif")
    assert Image.open(tmp_path / "m.tif").mode == "F"
    np.testing.assert_array_equal(decode_mask(tmp_path / "m.tif", (24, 24)), m > 0.5)
    np.testing.assert_array_equal(load_mask_file(tmp_path / "m.tif")[0, 0].numpy() > 0.5, m > 0.5)


def _exif_jpeg(path, a: np.ndarray, orientation: int) -> None:
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, format="JPEG", quality=100, subsampling=0, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [6, 3, 8, 5])
def test_exif_orientation_is_applied_to_image_mask_and_output(tmp_path, capsys, orientation):
    """A photo stored sideways with EXIF orientation 6 (and the others): the fill comes out upright (as every
    viewer shows the input), the same size as the upright photo, the hole where the user painted it on the
    upright photo, and no orientation tag left to turn it again."""
    from PIL import ImageOps

    rng = np.random.default_rng(3)
    stored = np.kron(rng.integers(0, 256, (6, 10, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 24x40, blocky
    _exif_jpeg(tmp_path / "p.jpg", stored, orientation)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "p.jpg")))
    h, w = upright.shape[:2]
    hole = np.zeros((h, w), bool)
    hole[h // 4 : h // 4 + 6, w // 3 : w // 3 + 5] = True
    Image.fromarray((hole * 255).astype(np.uint8)).save(tmp_path / "m.png")  # painted on the upright photo
    assert main(["fill", str(tmp_path / "p.jpg"), "--mask", str(tmp_path / "m.png"), "--method", "telea",
                 "-o", str(tmp_path / "out.png"), "--quiet"]) == 0
    out_im = Image.open(tmp_path / "out.png")
    assert out_im.getexif().get(0x0112, 1) == 1
    out = np.asarray(out_im)
    assert out.shape == upright.shape
    np.testing.assert_array_equal(out[~hole], upright[~hole])


def test_exif_orientation_of_a_16bit_array_matches_pil():
    """The uint16 path turns pixels exactly as PIL's exif_transpose does for each of the 8 orientations."""
    from genfill.imageread import _orient_array, _orient_pil

    a = np.arange(4 * 7 * 3, dtype=np.uint8).reshape(4, 7, 3)
    for orientation in range(1, 9):
        want = np.asarray(_orient_pil(Image.fromarray(a), orientation))
        np.testing.assert_array_equal(_orient_array(a, orientation), want, err_msg=str(orientation))


# ---- issue 12's probes of the one guarded reader -----------------------------------------------------


def test_decompression_bomb_is_a_clear_error(tmp_path, tiny_run_dir, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png_header(30000, 30000))
    assert len(bomb.read_bytes()) < 80
    with pytest.raises(GenfillError, match="over the limit"):
        read_image(bomb)
    one_line_error(capsys, ["fill", str(bomb), "-c", str(tiny_run_dir), "--mask-kind", "square", "-o",
                            str(tmp_path / "o.png")], "limit")
    face = save_face(tmp_path / "face.png", 40)
    one_line_error(capsys, ["fill", str(face), "-c", str(tiny_run_dir), "--mask", str(bomb), "-o",
                            str(tmp_path / "o.png")], "limit")
    assert read_image(face, max_pixels=1600).size == (40, 40)  # the limit is a setting
    with pytest.raises(GenfillError, match="over the limit"):
        read_image(face, max_pixels=1599)


def test_sixteen_bit_png_reads_as_its_grey_not_white(tmp_path):
    a = np.full((10, 10), 128 * 257, dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    grey = np.asarray(read_image(tmp_path / "g16.png", 1))
    rgb = np.asarray(read_image(tmp_path / "g16.png", 3))
    assert (grey == 128).all() and (rgb == 128).all()
