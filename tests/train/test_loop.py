"""What the training loop promises from the outside: best.pt holds the best validation epoch, validation
reads the validation split, the KL warm-up scale rises per step, and a checkpoint never unpickles code."""

from __future__ import annotations

import pickle  # noqa: F401 (the malicious checkpoint below is a pickle)

import pytest
import torch

import genfill.train as train_mod
from genfill.data.cache import ImageCache
from genfill.errors import GenfillError
from genfill.io import load_checkpoint
from genfill.models import load_model
from genfill.train import train, validate


def test_best_pt_holds_the_best_validation_epoch(make_cfg, monkeypatch):
    """A scripted validation sequence: epoch 2 is the best, epochs 3 and 4 are worse."""
    losses = iter([3.0, 1.0, 2.0, 1.5])
    weights = []

    def scripted(model, data, cfg, device, split="val"):
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"loss": next(losses), "psnr": 10.0}

    monkeypatch.setattr(train_mod, "validate", scripted)
    cfg = make_cfg(train={"epochs": 4, "max_steps": None, "sample_every_epoch": False})
    res = train(cfg, verbose=False)
    assert res.epoch == 4 and res.best_val == 1.0
    best = load_checkpoint(cfg.run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")
    assert best["epoch"] == 2 and best["best_val"] == 1.0
    assert last["epoch"] == 4 and last["best_val"] == 1.0
    for k, v in best["model"].items():
        assert torch.equal(v, weights[1][k]), k  # the weights validated at epoch 2
    assert any(not torch.equal(v, weights[1][k]) for k, v in last["model"].items())
    model, ckpt = load_model(cfg.run_dir)  # what `genfill fill -c RUN` loads: the best epoch
    assert ckpt["epoch"] == 2


def test_best_pt_is_not_rewritten_when_validation_gets_worse(make_cfg, monkeypatch):
    losses = iter([1.0, 2.0])
    monkeypatch.setattr(train_mod, "validate", lambda *a, **k: {"loss": next(losses)})
    cfg = make_cfg(train={"epochs": 2, "max_steps": None, "sample_every_epoch": False})
    train(cfg, verbose=False)
    assert load_checkpoint(cfg.run_dir / "checkpoints" / "best.pt")["epoch"] == 1


def test_validation_reads_the_validation_split(make_cfg, tiny_data, monkeypatch):
    splits = []
    real = ImageCache.heldout_batches

    def spy(self, mask_kinds, n, seed, split="test", *args, **kwargs):
        splits.append(split)
        return real(self, mask_kinds, n, seed, split, *args, **kwargs)

    monkeypatch.setattr(ImageCache, "heldout_batches", spy)
    cfg = make_cfg(train={"epochs": 2, "max_steps": None})
    train(cfg, verbose=False, data=tiny_data)
    assert splits and set(splits) == {"val"}


def test_validate_scores_validation_images_not_test_images(make_cfg, tiny_data):
    """validate() on an oracle-like model: its numbers change when only the val images change."""
    from genfill.models import build_model

    cfg = make_cfg()
    torch.manual_seed(0)
    model = build_model(cfg.model, tiny_data.size, tiny_data.channels)
    a = validate(model, tiny_data, cfg, torch.device("cpu"))
    assert a["loss"] == pytest.approx(validate(model, tiny_data, cfg, torch.device("cpu"), split="val")["loss"])
    assert a["loss"] != pytest.approx(validate(model, tiny_data, cfg, torch.device("cpu"), split="test")["loss"], rel=1e-6)


def test_kl_warmup_scale_rises_per_step(make_cfg, monkeypatch):
    scales = []
    real = train_mod.train_step

    def spy(model, forward, opt, opt_d, x, m, kl_scale, *args, **kwargs):
        scales.append(kl_scale)
        return real(model, forward, opt, opt_d, x, m, kl_scale, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", spy)
    cfg = make_cfg(train={"max_steps": 6, "epochs": 1, "kl_warmup_steps": 4, "sample_every_epoch": False})
    train(cfg, verbose=False)
    assert scales == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_no_kl_warmup_means_full_kl_from_the_first_step(make_cfg, monkeypatch):
    scales = []
    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step",
                        lambda *a, **k: (scales.append(a[6]), real(*a, **k))[1])
    cfg = make_cfg(train={"max_steps": 2, "epochs": 1, "kl_warmup_steps": 0, "sample_every_epoch": False})
    train(cfg, verbose=False)
    assert scales == [1.0, 1.0]


class _Marker:
    """Unpickling this writes a file: what a malicious checkpoint would do instead."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "kind": "vae", "model": {}, "payload": _Marker(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(GenfillError, match="not a readable genfill checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(GenfillError):
        load_model(path)
    assert not marker.exists()


def test_plain_checkpoint_still_loads(tmp_path):
    from genfill.models import build_model, save_model

    torch.manual_seed(0)
    model = build_model({"kind": "vae", "channels": [8], "latent_dim": 4}, 16, 3)
    save_model(tmp_path / "ok.pt", model)
    ckpt = load_checkpoint(tmp_path / "ok.pt")
    assert ckpt["kind"] == "vae" and all(torch.equal(v, model.state_dict()[k]) for k, v in ckpt["model"].items())
