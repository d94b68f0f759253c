"""A cache bigger than data.memory_cap_mb is memory-mapped and streamed in contiguous chunks; training runs
from it; `genfill train --dry-run` says which path it takes."""

import numpy as np
import torch

from genfill.cli import main
from genfill.data.cache import load_cache
from genfill.io import load_checkpoint
from genfill.loadconfig import build_config
from genfill.train import train
from genfill.trainplan import plan


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
