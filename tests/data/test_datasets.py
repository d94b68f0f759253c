"""Image sources (genfill.data.datasets): a folder of images in any mode, CelebA's official layout and split,
the seeded train/val/test split, and what is skipped and why."""

import numpy as np
import pytest
from PIL import Image

from genfill.config import DataConfig
from genfill.data.datasets import load_source, seeded_split
from genfill.errors import GenfillError
from tests.conftest import bomb_png_header, image_folder


def test_folder_source_modes_and_unreadable(tmp_path, capsys):
    cfg = DataConfig(name="folder", root=str(image_folder(tmp_path)), size=16, cache_dir=str(tmp_path / "c"))
    src = load_source(cfg)
    assert src.images.shape == (4, 16, 16, 3) and src.images.dtype == np.uint8
    assert src.info["skipped"] == 1 and "broken.png" in src.info["skipped_examples"][0]
    assert "skipped 1 unreadable" in capsys.readouterr().err
    by_name = dict(zip(["a", "c", "b", "d"], src.images))  # sorted paths: a.jpg, c.bmp, sub/b.png, sub/d.webp
    assert (by_name["b"] == 255).all()  # transparent RGBA composited on white
    assert (by_name["c"] == 100).all()  # grey stays grey (replicated to RGB)
    assert by_name["a"][..., 0].min() > 240 and by_name["a"][..., 1].max() < 15  # red jpg
    assert sum(len(v) for v in src.splits.values()) == 4


def test_folder_grey_channel(tmp_path):
    cfg = DataConfig(name="folder", root=str(image_folder(tmp_path)), size=8, channels=1)
    src = load_source(cfg)
    assert src.images.shape == (4, 8, 8, 1)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenfillError, match="no images"):
        load_source(DataConfig(name="folder", root=str(tmp_path / "empty")))
    with pytest.raises(GenfillError, match="not a directory"):
        load_source(DataConfig(name="folder", root=str(tmp_path / "nope")))
    with pytest.raises(GenfillError, match="data.root is required"):
        load_source(DataConfig(name="folder"))
    with pytest.raises(GenfillError, match="unknown dataset"):
        load_source(DataConfig(name="cifar"))


def _celeba(tmp_path, n=10):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    lines = []
    for i in range(1, n + 1):
        name = f"{i:06d}.jpg"
        im = Image.new("RGB", (178, 218), (0, 0, 0))  # black bands top and bottom (20 px each)
        im.paste(Image.new("RGB", (178, 178), (200, 200, 200)), (0, 20))
        im.save(root / "img_align_celeba" / name, quality=95)
        lines.append(f"{name} {0 if i <= 6 else (1 if i <= 8 else 2)}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def test_celeba_official_layout_split_and_crop(tmp_path):
    cfg = DataConfig(name="celeba", root=str(_celeba(tmp_path)), size=32)
    src = load_source(cfg)
    assert src.images.shape == (10, 32, 32, 3)
    assert [len(src.splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert src.splits["test"].tolist() == [8, 9]  # official split, not a random one
    assert src.images.min() > 180  # the 178x178 centre crop removes the black bands


def test_celeba_bad_layout(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(GenfillError, match="not a CelebA root"):
        load_source(DataConfig(name="celeba", root=str(tmp_path / "x")))
    root = _celeba(tmp_path, 3)
    (root / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(GenfillError, match="line 1"):
        load_source(DataConfig(name="celeba", root=str(root)))


def test_seeded_split_partitions():
    s = seeded_split(100, 0)
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert sorted(allidx.tolist()) == list(range(100))
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (80, 10, 10)
    assert all(np.array_equal(s[k], seeded_split(100, 0)[k]) for k in s)


# ---- issue 12's probe of a folder holding a decompression bomb and a 16-bit file ---------------------


def test_folder_dataset_counts_and_skips_bombs_and_reads_16_bit(tmp_path):
    from genfill.config import DataConfig
    from genfill.data.datasets import load_source

    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(5):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    (root / "bomb.png").write_bytes(bomb_png_header(30000, 30000))
    Image.fromarray(np.full((16, 16), 200 * 257, dtype=np.uint16)).save(root / "z16.png")
    src = load_source(DataConfig(name="folder", root=str(root), size=8, cache_dir=str(tmp_path / "c")))
    assert src.info["found"] == 7 and src.info["skipped"] == 1 and "bomb.png" in src.info["skipped_examples"][0]
    assert src.images[-1].min() == src.images[-1].max() == 200  # the 16-bit file, scaled, not clipped to 255
