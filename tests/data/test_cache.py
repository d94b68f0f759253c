"""The image cache (genfill.data.cache): built once and reused until its source changes, batches in [-1, 1]
with flips and positions, held-out faces drawn lazily; a cache bigger than data.memory_cap_mb is memory-mapped
and streamed in contiguous chunks, training runs from it, and `genfill train --dry-run` says which path it
takes."""

import numpy as np
import pytest
import torch
from PIL import Image

from genfill.cli import main
from genfill.config import DataConfig
from genfill.data.cache import ImageCache, cache_dir, load_cache
from genfill.data.datasets import seeded_split
from genfill.io import load_checkpoint
from genfill.loadconfig import build_config
from genfill.train import train
from genfill.trainplan import plan
from tests.conftest import image_folder


def test_a_cache_over_the_memory_cap_is_memory_mapped_and_trains(make_cfg):
    cap_mb = 0.1  # the tiny cache is 60 x 32 x 32 x 3 = 184 kB
    cfg = make_cfg(data={"memory_cap_mb": cap_mb}, train={"max_steps": 3, "epochs": 1, "sample_every_epoch": False})
    data = load_cache(cfg.data, verbose=False)
    assert data.streamed and isinstance(data.images, np.memmap)
    assert data.images.nbytes > cap_mb * 1e6
    # chunks hold at most half the cap together (READ_AHEAD + 1 of them)
    assert 1 <= data.chunk_images * 32 * 32 * 3 * 5 <= cap_mb * 1e6 / 2
    whole = load_cache(make_cfg().data, verbose=False)
    assert not whole.streamed

    # the chunked epoch order is a permutation, and streamed batches hold exactly the in-memory images
    g = torch.Generator().manual_seed(0)
    order = data.epoch_order("train", g)
    assert sorted(order.tolist()) == list(range(len(data.split("train"))))
    got = torch.cat([x for x, _ in data.iterate("train", 8, shuffle=True, order=order)])
    want = torch.cat([x for x, _ in whole.iterate("train", 8, shuffle=True, order=order)])
    assert torch.equal(got, want)
    assert torch.equal(data.batch(torch.tensor([5, 2, 9])), whole.batch(torch.tensor([5, 2, 9])))

    res = train(cfg, device="cpu", verbose=False)
    assert res.step == 3 and np.isfinite(res.last_val["loss"])
    assert "memory-mapped" in plan(cfg, device="cpu")["cache"]


def test_dry_run_prints_the_plan_and_trains_nothing(make_cfg, tmp_path, capsys, monkeypatch):
    cfg = make_cfg()
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun --nproc_per_node 2
    path = tmp_path / "c.yaml"
    from genfill.config import save_config

    save_config(cfg, path)
    main(["train", "--config", str(path), "--dry-run", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "world_size       2" in out and "global_batch     8" in out and "per_rank_batch   4" in out
    assert "steps_per_epoch  6" in out and "in host memory" in out
    assert not cfg.run_dir.exists()


def test_cache_built_once_and_reused(tmp_path, monkeypatch):
    cfg = DataConfig(name="folder", root=str(image_folder(tmp_path)), size=16, cache_dir=str(tmp_path / "c"))
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


# ---- issue 12's probe: a cache just built trains like one read back ----------------------------------


def test_same_seed_same_weights_whether_or_not_the_cache_was_just_built(tmp_path, cache_root):
    from tests.conftest import tiny_raw

    def run(name):
        raw = tiny_raw(tmp_path / "runs", tmp_path / "fresh-cache", name=name)
        cfg = build_config(raw)
        train(cfg, verbose=False)
        return load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["model"]

    built, cached = run("builds-the-cache"), run("cache-exists")
    for k in built:
        assert torch.equal(built[k], cached[k]), k
