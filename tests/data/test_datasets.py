import numpy as np
import pytest
import torch
from PIL import Image

from genfill.config import DataConfig
from genfill.data.cache import ImageCache, cache_dir, load_cache
from genfill.data.datasets import load_source, seeded_split
from genfill.data.faces64 import draw_faces
from genfill.errors import GenfillError
from tests.conftest import bomb_png_header


def _folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "a.jpg")
    rgba = Image.new("RGBA", (32, 32), (0, 0, 255, 0))  # fully transparent -> white
    rgba.save(root / "sub" / "b.png")
    Image.new("L", (20, 20), 100).save(root / "c.bmp")
    Image.new("RGB", (16, 16), (0, 255, 0)).save(root / "sub" / "d.webp")
    (root / "broken.png").write_bytes(b"not a png at all")
    (root / "notes.txt").write_text("ignored")
    return root


def test_folder_source_modes_and_unreadable(tmp_path, capsys):
    cfg = DataConfig(name="folder", root=str(_folder(tmp_path)), size=16, cache_dir=str(tmp_path / "c"))
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
    cfg = DataConfig(name="folder", root=str(_folder(tmp_path)), size=8, channels=1)
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


def test_faces64_deterministic_with_prefix_property():
    a = draw_faces(6, seed=3)
    b = draw_faces(4, seed=3)
    assert a.shape == (6, 64, 64, 3) and a.dtype == torch.uint8
    assert torch.equal(a[:4], b)
    assert not torch.equal(a, draw_faces(6, seed=4))
    assert a.float().std() > 20  # real pictures, not a flat colour


def test_faces64_checksum_is_verified(monkeypatch, tmp_path):
    import genfill.data.faces64 as f64

    fake = tmp_path / "weights.tar"
    fake.write_bytes(b"tampered")
    monkeypatch.setattr(f64, "weights_path", lambda: fake)
    with pytest.raises(GenfillError, match="SHA-256"):
        f64.load_generator()


def test_seeded_split_partitions():
    s = seeded_split(100, 0)
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert sorted(allidx.tolist()) == list(range(100))
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (80, 10, 10)
    assert all(np.array_equal(s[k], seeded_split(100, 0)[k]) for k in s)


def test_cache_built_once_and_reused(tmp_path, monkeypatch):
    cfg = DataConfig(name="folder", root=str(_folder(tmp_path)), size=16, cache_dir=str(tmp_path / "c"))
    first = load_cache(cfg, verbose=False)
    assert (cache_dir(cfg) / "meta.json").is_file()
    import genfill.data.cache as cache_mod

    monkeypatch.setattr(cache_mod, "load_source", lambda *a, **k: pytest.fail("decoded twice"))
    again = load_cache(cfg, verbose=False)
    assert torch.equal(first.images, again.images)
    # a new file changes the key: a new cache
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / "e.png")
    monkeypatch.undo()
    assert len(load_cache(cfg, verbose=False)) == 5


def test_batches_range_flip_and_positions():
    imgs = torch.arange(4 * 2 * 3 * 3, dtype=torch.uint8).view(4, 2, 3, 3) * 2
    cache = ImageCache(imgs, {"train": np.array([0, 1, 2, 3]), "val": np.array([3]), "test": np.array([2])})
    x = cache.batch(torch.tensor([1]))
    assert x.shape == (1, 3, 2, 3) and x.min() >= -1 and x.max() <= 1
    flipped = cache.batch(torch.tensor([1]), flip=torch.tensor([True]))
    assert torch.equal(flipped, x.flip(3))
    seen = torch.cat([p for _, p in cache.iterate("train", 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == [0, 1, 2, 3]
    assert [len(b) for b, _ in cache.iterate("train", 3, shuffle=False, drop_last=True)] == [3]


def test_lazy_heldout_faces_equal_the_full_caches(tmp_path):
    """Scoring n faces draws only those n (no cache is built), and they are the full cache's first n test
    faces, pixel for pixel, in the same order: the same split, the same faces, so the same fixed holes."""
    import numpy as np

    from genfill.config import DataConfig
    from genfill.data.cache import cache_dir, load_cache, load_heldout

    cfg = DataConfig(name="faces64", size=32, count=600, seed=3, cache_dir=str(tmp_path))
    n = int((seeded_split(600, 3)["test"] < 250).sum()) + 2  # the first test faces span two noise chunks
    lazy = load_heldout(cfg, "test", n, verbose=False)
    assert not (cache_dir(cfg) / "meta.json").exists()  # nothing was built
    assert len(lazy.split("test")) == n and lazy.key == cache_dir(cfg).name
    full = load_cache(cfg, verbose=False)
    ids = full.split("test")[:n]
    assert ids.max() >= 250
    np.testing.assert_array_equal(lazy.images.numpy(), full.images[ids].numpy())
    # once the cache exists it is used as it is
    assert len(load_heldout(cfg, "test", n, verbose=False)) == len(full)


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
