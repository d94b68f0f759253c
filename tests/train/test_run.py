import json

import pytest
import torch

from genfill.errors import GenfillError
from genfill.io import load_checkpoint
from genfill.models import load_model
from genfill.train import train


def test_train_writes_a_complete_run(make_cfg):
    cfg = make_cfg(train={"max_steps": 3, "epochs": 2})
    res = train(cfg, verbose=False)
    run = cfg.run_dir
    assert res.step == 3
    for name in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl", "curves.png",
                 "samples/epoch001.png"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "val"}
    assert {"loss", "recon", "kl", "psnr"} <= set(rows[-1])
    assert not list(run.rglob("*.tmp"))  # atomic writes leave no temp files


def test_checkpoint_round_trip_rebuilds_the_same_model(make_cfg, tiny_data):
    cfg = make_cfg()
    train(cfg, verbose=False)
    model, ckpt = load_model(cfg.run_dir / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "vae" and ckpt["run_config"]["data"]["size"] == 32
    x = tiny_data.batch(tiny_data.split("test"))
    m = torch.zeros_like(x[:, :1])
    m[..., 8:20, 8:20] = 1
    again, _ = load_model(cfg.run_dir)  # a run directory works too
    assert torch.equal(model.fill(x, m), again.fill(x, m))
    # plain torch.load with weights_only=True: nothing but tensors and plain values inside
    torch.load(cfg.run_dir / "checkpoints" / "last.pt", weights_only=True)


def test_resume_continues_from_saved_step(make_cfg):
    cfg = make_cfg(train={"max_steps": 2, "epochs": 1})
    train(cfg, verbose=False)
    with pytest.raises(GenfillError, match="already holds a run"):
        train(cfg, verbose=False)
    cfg2 = make_cfg(train={"max_steps": 5, "epochs": 3})
    res = train(cfg2, resume=True, verbose=False)
    ckpt = load_checkpoint(cfg2.run_dir / "checkpoints" / "last.pt")
    # 48 training images in batches of 8: step 5 is inside the first epoch, 40 images into its order
    assert res.step == 5 and ckpt["step"] == 5 and ckpt["epoch"] == 0 and ckpt["epoch_seen"] == 40
    steps = [json.loads(line)["step"] for line in (cfg2.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 5  # the log continues, it does not restart at 0


def test_resume_equals_uninterrupted_training(make_cfg, tmp_path):
    """Stopping after epoch 1 and resuming gives the same weights as training 2 epochs straight."""
    straight = make_cfg(name="straight", train={"epochs": 2, "max_steps": None, "sample_every_epoch": False})
    train(straight, verbose=False)
    part = make_cfg(name="part", train={"epochs": 1, "max_steps": None, "sample_every_epoch": False})
    train(part, verbose=False)
    rest = make_cfg(name="part", train={"epochs": 2, "max_steps": None, "sample_every_epoch": False})
    train(rest, resume=True, verbose=False)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(rest.run_dir / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_resume_needs_a_run_and_the_same_kind(make_cfg):
    with pytest.raises(GenfillError, match="nothing to resume"):
        train(make_cfg(), resume=True, verbose=False)
    train(make_cfg(), verbose=False)
    with pytest.raises(GenfillError, match="holds a vae model"):
        train(make_cfg(model={"kind": "beta_vae", "channels": [8, 16], "latent_dim": 8}), resume=True,
              verbose=False)


def test_nan_loss_stops_with_the_step(make_cfg, nan_vae):
    with pytest.raises(GenfillError, match="at step 1"):
        train(make_cfg(), verbose=False)


def test_kl_warmup_and_grad_clip_run(make_cfg):
    res = train(make_cfg(train={"kl_warmup_steps": 10, "grad_clip": 0.5, "max_steps": 2}), verbose=False)
    assert res.step == 2


def test_device_choice():
    from genfill.device import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(GenfillError, match="no CUDA"):
            pick_device("cuda")
    with pytest.raises(GenfillError, match="unknown device"):
        pick_device("tpu")


def test_fast_path_computes_the_same_function(make_cfg, tiny_data):
    """bf16 autocast + channels_last (the fast path, forced on CPU) tracks the fp32 path. The tolerance is the
    bf16 rounding measured on this CPU (native bf16 or emulated: they round differently), not a constant."""
    from genfill.models import build_model
    from genfill.train import autocast

    steps, lr = 4, 1e-3
    base = dict(epochs=1, max_steps=steps, sample_every_epoch=False, lr=lr, log_every=1)
    slow = make_cfg(name="fp32", train={**base, "fast": False})
    fast = make_cfg(name="fast", train={**base, "fast": True})

    # The measured rounding: one forward at the initial weights, fp32 vs bf16 autocast + channels_last.
    torch.manual_seed(slow.train.seed)
    model = build_model(slow.model, 32, 3).eval()
    x = tiny_data.batch(tiny_data.split("val"))
    m = torch.zeros_like(x[:, :1])
    m[..., 8:20, 8:20] = 1
    with torch.no_grad():
        l32 = model(x, m).loss.item()
        model = model.to(memory_format=torch.channels_last)
        with autocast(torch.device("cpu"), True):
            l16 = model(x.contiguous(memory_format=torch.channels_last), m).loss.float().item()
    rounding = max(abs(l16 - l32) / abs(l32), 2.0**-8)  # at least bf16's unit roundoff

    r_slow, r_fast = train(slow, verbose=False), train(fast, verbose=False)

    def losses(cfg):
        rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["split"] == "train"]

    a_losses, b_losses = losses(slow), losses(fast)
    assert len(a_losses) == len(b_losses) == steps
    # Step 1 sees identical weights and batch: only rounding differs. Later steps add the drift of weights
    # updated from bf16 gradients, a few roundings more per step.
    for i, (la, lb) in enumerate(zip(a_losses, b_losses)):
        assert abs(la - lb) <= 4 * (i + 1) * rounding * abs(la), (i, la, lb, rounding)
    assert abs(r_slow.last_val["loss"] - r_fast.last_val["loss"]) <= 4 * steps * rounding * abs(r_slow.last_val["loss"])
    # Weights: Adam moves each weight by about lr per step whatever the gradient's size, so a gradient near
    # zero whose sign bf16 flips moves the two runs up to 2 * lr apart per step; that, plus bf16 rounding of
    # the weights themselves, is the bound (the old fixed 0.05 * scale + 2e-3 failed at 0.0040 = steps * lr).
    a = load_checkpoint(slow.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(fast.run_dir / "checkpoints" / "last.pt")["model"]
    for k in a:
        if a[k].is_floating_point():
            diff = (a[k] - b[k]).abs().max().item()
            assert diff <= 2 * steps * lr * 1.05 + rounding * a[k].abs().max().item(), (k, diff)


# ---- issue 12's probes of resume and run state -------------------------------------------------------


def test_resume_with_a_changed_model_or_data_shape_says_so(make_cfg):
    train(make_cfg(), verbose=False)
    with pytest.raises(GenfillError, match="model.latent_dim"):
        train(make_cfg(model={"kind": "vae", "channels": [8, 16], "latent_dim": 12}), resume=True, verbose=False)
    with pytest.raises(GenfillError, match="data.size"):
        train(make_cfg(data={"size": 16}), resume=True, verbose=False)


def test_resume_of_a_finished_run_trains_nothing(make_cfg):
    cfg = make_cfg(train={"epochs": 3, "max_steps": 3})
    train(cfg, verbose=False)
    last = cfg.run_dir / "checkpoints" / "last.pt"
    log = (cfg.run_dir / "metrics.jsonl").read_text()
    for _ in range(2):
        res = train(cfg, resume=True, verbose=False)
        assert res.step == 3 and not res.last_val
    assert load_checkpoint(last)["step"] == 3 and (cfg.run_dir / "metrics.jsonl").read_text() == log


def test_nan_on_the_first_step_says_no_checkpoint_exists(make_cfg, nan_vae):
    with pytest.raises(GenfillError, match="no checkpoint was written"):
        train(make_cfg(), verbose=False)


def test_torn_metrics_line_stale_temps_and_no_duplicate_rows(make_cfg):
    cfg = make_cfg(train={"epochs": 3, "max_steps": 3})
    train(cfg, verbose=False)
    run = cfg.run_dir
    with open(run / "metrics.jsonl", "a") as fh:  # rows logged after the checkpoint, then a kill mid-line
        fh.write(json.dumps({"step": 4, "epoch": 0, "split": "train", "loss": 1.0}) + "\n")
        fh.write('{"step": 5, "epoch": 0, "spl')
    stale = run / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(make_cfg(train={"epochs": 3, "max_steps": 8}), resume=True, verbose=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["split"] == "train"]
    assert steps == list(range(1, 9))
    assert not stale.exists() and (run / "curves.png").is_file()


def test_resume_after_max_steps_mid_epoch_equals_a_straight_run(make_cfg):
    straight = make_cfg(name="straight", train={"epochs": 2, "max_steps": 9})
    train(straight, verbose=False)
    train(make_cfg(name="part", train={"epochs": 2, "max_steps": 4}), verbose=False)
    rest = make_cfg(name="part", train={"epochs": 2, "max_steps": 9})
    train(rest, resume=True, verbose=False)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(rest.run_dir / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
