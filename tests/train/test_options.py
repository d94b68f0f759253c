"""train.schedule / lr_warmup_steps, train.ema and train.accumulate: values by hand, what is saved, resume."""

import copy
import json
import math

import pytest
import torch

from genfill.config import TrainConfig
from genfill.ema import EMA, ema_decay
from genfill.errors import GenfillError
from genfill.io import load_checkpoint
from genfill.models import build_model, load_model
from genfill.models.blocks import gaussian_kl
from genfill.runs import lr_factor
from genfill.train import train, train_step, validate


def test_constant_schedule_with_warmup():
    tc = TrainConfig(schedule="constant", lr_warmup_steps=4)
    assert [lr_factor(tc, s, 100) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(TrainConfig(), 0, 100) == 1.0


def test_cosine_schedule_values():
    tc = TrainConfig(schedule="cosine", lr_warmup_steps=0)
    assert lr_factor(tc, 0, 10) == 1.0
    assert lr_factor(tc, 5, 10) == pytest.approx(0.5, abs=1e-12)
    assert lr_factor(tc, 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(tc, 50, 10) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0
    warm = TrainConfig(schedule="cosine", lr_warmup_steps=2)
    assert lr_factor(warm, 0, 12) == 0.5  # warm-up first
    assert lr_factor(warm, 1, 12) == 1.0  # the cosine starts after the warm-up
    assert lr_factor(warm, 7, 12) == pytest.approx(0.5, abs=1e-12)  # half of the 10 cosine steps
    # a time budget that runs out first sets the pace: 3/4 of the time gone
    assert lr_factor(warm, 2, 12, time_frac=0.75) == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))


def test_train_applies_the_schedule(make_cfg):
    cfg = make_cfg(train={"max_steps": 6, "epochs": 2, "schedule": "cosine", "lr_warmup_steps": 2, "lr": 1e-3,
                          "log_every": 1, "sample_every_epoch": False})
    train(cfg, verbose=False)
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["lr"]) for r in rows if r["split"] == "train"]
    assert [s for s, _ in logged] == [1, 2, 3, 4, 5, 6]
    for step, lr in logged:
        assert lr == pytest.approx(1e-3 * lr_factor(cfg.train, step - 1, 6), rel=1e-12)


def test_ema_by_hand():
    """decay 0.9: d_1 = min(0.9, 2/11), d_2 = min(0.9, 3/12) = 0.25, and from step 80 on, 0.9 itself."""
    assert ema_decay(0.9, 1) == pytest.approx(2 / 11) and ema_decay(0.9, 2) == 0.25
    assert ema_decay(0.9, 80) == 0.9 and ema_decay(0.9, 79) == pytest.approx(80 / 89)
    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ema = EMA(net, 0.9)
    expected = 1.0
    for step, w in ((1, 2.0), (2, 4.0), (3, -1.0)):
        with torch.no_grad():
            net[0].weight.fill_(w)
            net[1].running_mean.fill_(10.0 * step)
        ema.update(net, step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * w
        assert ema.model[0].weight.item() == pytest.approx(expected, rel=1e-6)
        assert ema.model[1].running_mean.item() == 10.0 * step  # buffers are copied, not averaged
    # 1 -> (2/11)*1 + (9/11)*2 = 20/11 -> 0.25*20/11 + 0.75*4 = 38/11 -> (4/13)*38/11 + (9/13)*(-1)
    assert expected == pytest.approx((4 / 13) * (38 / 11) - 9 / 13)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_weights_are_saved_validated_and_loaded(make_cfg):
    cfg = make_cfg(train={"max_steps": 4, "epochs": 1, "ema": 0.9, "lr": 1e-2, "sample_every_epoch": False})
    res = train(cfg, verbose=False)
    ckpt = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")
    assert ckpt["model_live"] is not None
    differs = [k for k in ckpt["model"] if ckpt["model"][k].is_floating_point()
               and not torch.equal(ckpt["model"][k], ckpt["model_live"][k])]
    assert differs  # four steps at lr 1e-2 move the live weights away from their average
    model, _ = load_model(cfg.run_dir / "checkpoints" / "last.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k
    # the logged validation is the average's: scoring the loaded model again gives the same numbers
    from genfill.data.cache import load_cache

    again = validate(model, load_cache(cfg.data, verbose=False), cfg, torch.device("cpu"))
    assert again["loss"] == pytest.approx(res.last_val["loss"], rel=1e-5)
    live = build_model(cfg.model, 32, 3)
    live.load_state_dict(ckpt["model_live"])
    other = validate(live, load_cache(cfg.data, verbose=False), cfg, torch.device("cpu"))
    assert other["loss"] != pytest.approx(res.last_val["loss"], rel=1e-5)


def test_resume_is_exact_with_ema_and_cosine(make_cfg, monkeypatch):
    """A run killed after epoch 1 and resumed with the same config ends exactly where an uninterrupted run
    ends: the live weights, their average, the schedule's position."""
    import genfill.train as train_mod

    opts = {"epochs": 2, "max_steps": None, "sample_every_epoch": False, "ema": 0.95, "schedule": "cosine",
            "lr_warmup_steps": 3, "lr": 3e-3}
    straight = make_cfg(name="straight", train=opts)
    train(straight, verbose=False)

    class Killed(Exception):
        pass

    def killed(run_dir):  # plot_curves runs after the epoch's checkpoints: die there
        raise Killed

    killed_run = make_cfg(name="killed", train=opts)
    monkeypatch.setattr(train_mod, "plot_curves", killed)
    with pytest.raises(Killed):
        train(killed_run, verbose=False)
    monkeypatch.undo()
    assert load_checkpoint(killed_run.run_dir / "checkpoints" / "last.pt")["step"] == 6
    train(killed_run, resume=True, verbose=False)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(killed_run.run_dir / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 12
    for key in ("model", "model_live", "optim"):
        if key == "optim":
            assert a[key]["param_groups"][0]["lr"] == b[key]["param_groups"][0]["lr"]
            continue
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)


def _tiny(kind_spec: dict, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(kind_spec, 32, 3)


@pytest.mark.parametrize("spec", [
    {"kind": "vae", "channels": [8, 16], "latent_dim": 8, "norm": "none"},
    {"kind": "gan", "base": 4, "crop_size": 16, "d_base": 4, "d_norm": "none"},
])
def test_accumulating_micro_batches_equals_one_big_batch(spec, monkeypatch, tiny_data):
    """k = 2 and 4 micro-batches give the one-batch gradients. SGD at lr 1 turns the step into minus the
    gradient, so the weights compare the gradients themselves (Adam would divide them away). The two only
    sum the same fp32 terms in another order: a few ulps of the largest term, so 1e-4 of each tensor's
    largest update (over 100 ulps) is generous; a missing 1/k would be off by 100 %."""
    from genfill.models.vae import VAE

    # The VAE's reparameterisation noise is drawn per micro-batch; use the mean so that only the
    # accumulation is compared, not the random stream.
    monkeypatch.setattr(VAE, "posterior_sample", lambda self, mu, logvar: (mu, gaussian_kl(mu, logvar)))
    x = tiny_data.batch(tiny_data.split("train")[:8])
    m = torch.zeros_like(x[:, :1])
    for i in range(8):
        m[i, :, 4 + i : 14 + i, 6:18] = 1

    def step(k: int):
        model = _tiny(spec).train()
        opt = torch.optim.SGD(model.generator_parameters(), lr=1.0)
        opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=1.0) if model.discriminator else None
        before = copy.deepcopy(model.state_dict())
        loss, parts = train_step(model, model, opt, opt_d, x, m, 1.0, False, None, accumulate=k)
        return loss, parts, {n: before[n] - v for n, v in model.state_dict().items() if v.is_floating_point()}

    loss1, parts1, grads1 = step(1)
    for k in (2, 4):
        loss_k, parts_k, grads_k = step(k)
        assert loss_k.item() == pytest.approx(loss1.item(), rel=1e-5)
        assert parts_k.keys() == parts1.keys()
        for name, g in grads1.items():
            tol = 1e-4 * g.abs().max().item() + 1e-12
            assert (grads_k[name] - g).abs().max().item() <= tol, (k, name)
    assert any(g.abs().max() > 0 for g in grads1.values())


@pytest.mark.parametrize("bad, match", [
    ({"schedule": "linear"}, "train.schedule"),
    ({"lr_warmup_steps": -1}, "lr_warmup_steps"),
    ({"ema": 1.0}, "train.ema"),
    ({"ema": -0.1}, "train.ema"),
    ({"accumulate": 3}, "accumulate"),  # batch 8
    ({"accumulate": 0}, "accumulate"),
])
def test_bad_training_options_are_named(make_cfg, bad, match):
    with pytest.raises(GenfillError, match=match):
        make_cfg(train=bad)
