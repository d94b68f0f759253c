"""The unet family: shapes and options, known pixels kept, the on-device harmonic fill, gated and Fourier
convolutions, the loss formula with its warm-up, the frozen perceptual net, presets, training and compile."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from genfill.config import resolve_config
from genfill.loadconfig import load_config, load_pretrain_config
from genfill.errors import GenfillError
from genfill.losses import adversarial_g_loss, hole_weighted_l1, perceptual_loss
from genfill.models import build_model, composite, load_model
from genfill.io import load_checkpoint, save_checkpoint
from genfill.models import save_model
from genfill.models.blocks import FFCBlock, GatedConv2d
from genfill.models.unet import UNet, UNetConfig, _laplace, biharmonic_fill, harmonic_fill

TINY = {"kind": "unet", "widths": [8, 16], "blocks": 1}


def _batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    m = torch.zeros(n, 1, size, size)
    m[:, :, 8:20, 10:22] = 1
    m[1, :, 2:4, :] = 1  # a thin stroke too
    return x, m


def _perturb_output(model):
    """Give the zero-initialised output conv weights, so the net's correction is not zero."""
    with torch.no_grad():
        for p in model.net.out[-1].parameters():
            p.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("opts", [
    {}, {"prior": "biharmonic", "smooth_iters": 5}, {"gated": True}, {"context": "dilated"}, {"context": "ffc", "context_blocks": 1}, {"attention": True},
    {"prior": "none"}, {"norm": "batch", "widths": [8, 16, 32]}, {"gated": True, "context": "ffc", "blocks": 2},
    {"unshuffle": 2}, {"unshuffle": 4, "widths": [8]},
])
def test_forward_fill_predict(opts):
    model = _perturb_output(build_model({**TINY, **opts}, 32, 3))
    x, m = _batch()
    out = model(x, m)
    assert out.pred.shape == x.shape and out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    pred = model.predict(x, m)
    assert pred.abs().max() <= 1
    filled = model.fill(x, m)
    keep = (m == 0).expand_as(x)
    assert torch.equal(filled[keep], x[keep])  # known pixels exactly, not approximately
    assert torch.equal(filled, composite(x, m, pred))
    assert not torch.equal(filled[~keep], x[~keep])


@pytest.mark.parametrize("factor", [2, 3])
def test_unshuffle_stem_runs_no_conv_at_full_resolution_at_any_multiple_of_its_factor(factor):
    """`unshuffle: f`: every conv sees at most H/f x W/f; sizes that are multiples of f * 2^(levels-1) run
    as they are (forward and backward shapes), others are padded and cropped, and known pixels stay exact."""
    model = _perturb_output(build_model({**TINY, "widths": [8, 16, 32], "unshuffle": factor}, 32, 3))
    assert model.size_multiple == factor * 4
    seen = []
    for conv in model.net.modules():
        if isinstance(conv, torch.nn.Conv2d):
            conv.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[-2:]))
    for h, w in [(factor * 4, factor * 4), (factor * 8, factor * 12), (factor * 4 + 3, factor * 8 - 1)]:
        seen.clear()
        g = torch.Generator().manual_seed(h * w)
        x = torch.rand(2, 3, h, w, generator=g) * 2 - 1
        m = (torch.rand(2, 1, h, w, generator=g) > 0.6).float()
        out = model(x, m)
        out.loss.backward()
        assert out.pred.shape == x.shape and model.net.stem.weight.grad.shape == model.net.stem.weight.shape
        padded = (-h % model.size_multiple + h, -w % model.size_multiple + w)
        assert max(s[0] for s in seen) == padded[0] // factor and max(s[1] for s in seen) == padded[1] // factor
        keep = (m == 0).expand_as(x)
        filled = model.fill(x, m)
        assert torch.equal(filled[keep], x[keep]) and not torch.equal(filled[~keep], x[~keep])


def test_unshuffle_1_is_the_older_net_and_old_checkpoints_predict_as_saved(tmp_path):
    """A config or checkpoint without `unshuffle` is the older net: the same parameters, the same draws from
    the seed, and a checkpoint saved before the key existed predicts exactly what the saved model did."""
    torch.manual_seed(3)
    old = _perturb_output(build_model({**TINY, "widths": [8, 16, 32]}, 32, 3)).eval()
    torch.manual_seed(3)
    explicit = _perturb_output(build_model({**TINY, "widths": [8, 16, 32], "unshuffle": 1}, 32, 3)).eval()
    assert old.cfg.unshuffle == 1 and old.size_multiple == 4
    sd, sd1 = old.state_dict(), explicit.state_dict()
    assert list(sd) == list(sd1) and all(torch.equal(sd[k], sd1[k]) for k in sd)
    save_model(tmp_path / "new.pt", old)
    ckpt = load_checkpoint(tmp_path / "new.pt")
    del ckpt["model_config"]["unshuffle"]
    ckpt.pop("path", None)
    save_checkpoint(tmp_path / "old.pt", ckpt)
    loaded = load_model(tmp_path / "old.pt")[0]
    x, m = _batch()
    assert loaded.cfg.unshuffle == 1 and torch.equal(loaded.predict(x, m), old.predict(x, m))


def test_odd_sizes_are_padded_and_cropped():
    model = build_model({**TINY, "widths": [8, 16, 32]}, 30, 3).eval()
    x, m = _batch(size=30)
    assert model.predict(x, m).shape == x.shape


def test_untrained_net_returns_the_harmonic_fill():
    """The output conv starts at zero, so an untrained model fills exactly like the classical prior."""
    model = build_model(TINY, 32, 3).eval()
    x, m = _batch()
    assert torch.equal(model.predict(x, m), harmonic_fill(x, m, model.cfg.prior_iters).clamp(-1, 1))


def test_harmonic_fill_reproduces_a_linear_ramp():
    """Linear functions are harmonic: the fill of a hole in a ramp is the ramp (up to Jacobi convergence)."""
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    m = torch.zeros(1, 1, 32, 32)
    m[:, :, 6:26, 4:28] = 1
    f = harmonic_fill(ramp, m, iters=200)
    assert torch.equal(f[(m == 0).expand_as(f)], ramp[(m == 0).expand_as(f)])
    # One pixel step of the ramp is 2/31 = 0.065; the fill must be far closer than that.
    assert (f - ramp).abs().max() < 0.01
    assert (harmonic_fill(ramp, m, iters=0) - ramp).abs().max() > 0.01  # no sweeps: the test can fail


def test_biharmonic_fill_continues_curvature_that_harmonic_flattens():
    """x^2 is biharmonic but not harmonic: across a thin hole the thin-plate steps recover it."""
    col = torch.linspace(-1, 1, 32) ** 2
    img = col.view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    m = torch.zeros(1, 1, 32, 32)
    m[:, :, 4:28, 12:17] = 1  # a 5-pixel-wide stroke across the bottom of the parabola
    harm = (harmonic_fill(img, m, 100) - img).abs().max()
    bih = biharmonic_fill(img, m, 100, 400)
    assert torch.equal(bih[(m == 0).expand_as(bih)], img[(m == 0).expand_as(bih)])
    assert (bih - img).abs().max() < harm / 4


def test_gated_conv_is_features_times_sigmoid_gate():
    conv = GatedConv2d(3, 4)
    x = torch.randn(2, 3, 8, 8)
    full = conv.conv(x)
    assert torch.allclose(conv(x), full[:, :4] * torch.sigmoid(full[:, 4:]))


def test_ffc_block_sees_the_whole_image():
    """A change in one corner reaches the opposite corner in one FFC block (a 3x3 conv would not)."""
    torch.manual_seed(0)
    block = FFCBlock(8, "none", "silu").eval()
    x = torch.randn(1, 8, 16, 16)
    y = x.clone()
    y[..., 0, 0] += 1
    assert (block(x) - block(y))[..., -1, -1].abs().max() > 1e-6


def test_loss_is_the_weighted_sum_of_its_parts():
    model = _perturb_output(build_model({**TINY, "hole_weight": 3.0, "w_l1": 2.0, "w_perceptual": 0.5,
                                         "loss_warmup_steps": 1}, 32, 3))
    x, m = _batch()
    d = (model.predict(x, m) - x).abs()
    expect_l1 = (d * (1 + 2.0 * m)).mean()
    assert torch.allclose(hole_weighted_l1(model.predict(x, m), x, m, 3.0), expect_l1)
    first = model(x, m)  # step 0 < loss_warmup_steps: the perceptual term is logged but weighs 0
    assert torch.allclose(first.parts["l1"], expect_l1)
    assert first.loss == 2.0 * first.parts["l1"]
    second = model(x, m)
    perc = perceptual_loss(composite(x, m, second.pred), x)
    assert torch.allclose(second.parts["perceptual"], perc)
    assert second.loss == 2.0 * second.parts["l1"] + 0.5 * second.parts["perceptual"]
    assert second.parts["perceptual"] > 0


def test_adversarial_term_after_warm_up():
    model = build_model({**TINY, "w_adv": 0.25, "loss_warmup_steps": 1, "adversarial": "bce"}, 32, 3)
    assert model.discriminator is not None
    x, m = _batch()
    fake = composite(x, m, model(x, m).pred)  # step 1 counted after this forward
    model.steps.zero_()
    adv0, parts0 = model.g_adv_loss(x, m, fake)
    assert adv0 == 0 and parts0["adv"] > 0
    model.steps.fill_(1)
    adv1, parts1 = model.g_adv_loss(x, m, fake)
    assert torch.allclose(adv1, 0.25 * adversarial_g_loss(model.discriminator(fake), "bce"))
    assert build_model(TINY, 32, 3).discriminator is None  # no adversarial weight: no discriminator


def test_perceptual_net_is_frozen_and_not_part_of_the_model():
    model = build_model({**TINY, "w_perceptual": 1.0}, 32, 3)
    net = model.frozen_lpips()
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    assert not any(k.startswith(("_frozen", "_lpips")) for k in model.state_dict())
    ids = {id(p) for p in net.parameters()}
    assert not ids & {id(p) for p in model.parameters()}
    before = [p.clone() for p in net.parameters()]
    opt = torch.optim.Adam(model.generator_parameters(), lr=1e-2)
    x, m = _batch()
    model(x, m).loss.backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert model.net.out[-1].weight.grad.abs().sum() > 0  # the gradient reached the generator
    model.to(torch.float64)
    assert next(net.parameters()).dtype == torch.float64  # moves with the model


@pytest.mark.parametrize("bad", [{"prior": "poisson"}, {"context": "fft"}, {"widths": []}, {"norm": "layer"},
                                 {"hole_weight": -1.0}, {"adversarial": "wgan"}, {"unshuffle": 0}])
def test_bad_config_is_a_genfill_error(bad):
    with pytest.raises(GenfillError):
        build_model({**TINY, **bad}, 32, 3)


def test_presets_load():
    cpu = load_config(resolve_config("unet-faces64"))
    assert cpu.model["kind"] == "unet" and cpu.train.compile is False
    gpu = load_config(resolve_config("unet-faces64-gpu"))
    assert gpu.model["kind"] == "unet" and gpu.train.batch_size >= 256 and gpu.train.compile and gpu.train.fast
    assert gpu.train.amp and gpu.train.schedule == "cosine" and gpu.train.ema > 0 and gpu.train.lr_warmup_steps > 0
    # The SSL presets pretrain unet-faces64's encoder: their nets must be the preset's, or the weights do not fit.
    for ssl in ("ssl-simclr-faces64", "ssl-byol-faces64", "ssl-barlow-faces64"):
        assert load_pretrain_config(resolve_config(ssl)).model == cpu.model, ssl


def test_train_and_reload(make_cfg):
    from genfill.train import train

    cfg = make_cfg(model={**TINY, "w_adv": 0.1}, train={"max_steps": 3})
    res = train(cfg, verbose=False)
    assert res.step == 3
    model, ckpt = load_model(cfg.run_dir / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "unet" and int(model.steps) == 3
    x, m = _batch()
    keep = (m == 0).expand_as(x)
    assert torch.equal(model.fill(x, m)[keep], x[keep])


def _inductor_works() -> str | None:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "torch.compile on CPU (inductor) needs a C compiler and none is on PATH"
    return None


@pytest.mark.skipif(_inductor_works() is not None, reason=str(_inductor_works()))
def test_compile_on_cpu_matches_eager():
    torch.manual_seed(0)
    model = _perturb_output(build_model({**TINY, "gated": True, "context": "ffc", "context_blocks": 1}, 16, 3))
    x, m = _batch(size=16)
    eager = model(x, m)
    model.steps.zero_()
    compiled = torch.compile(model)(x, m)
    assert torch.allclose(compiled.pred, eager.pred, atol=1e-4)  # fp32 op reordering, well under 1/255
    assert torch.allclose(compiled.loss, eager.loss, rtol=1e-4)
    compiled.loss.backward()
    assert model.net.stem.weight.grad is not None


def test_cg_thin_plate_fill_matches_a_dense_solve():
    """The CG solver reaches the exact minimiser of sum |laplace u|^2 with the known pixels fixed (solved
    densely here), and the gradient-step solver approaches the same fill more slowly."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 12, 12, generator=g)
    m = torch.zeros(2, 1, 12, 12)
    m[0, :, 3:8, 4:9] = 1
    m[1, :, 2:10, 6:8] = 1
    cg = biharmonic_fill(img, m, iters=10, smooth_iters=200)
    for i in range(2):
        n = 144
        lap = torch.zeros(n, n, dtype=torch.float64)  # the replicate-border 5-point Laplacian as a matrix
        for k in range(n):
            e = torch.zeros(n, dtype=torch.float64)
            e[k] = 1
            lap[:, k] = _laplace(e.view(1, 1, 12, 12)).flatten()
        a = lap.T @ lap
        hole = m[i].flatten().bool()
        known = img[i].flatten().double()
        u_hole = torch.linalg.solve(a[hole][:, hole], -a[hole][:, ~hole] @ known[~hole])
        assert (cg[i].flatten()[hole].double() - u_hole).abs().max() < 1e-4
        assert torch.equal(cg[i].flatten()[~hole], img[i].flatten()[~hole])
    descent = biharmonic_fill(img, m, iters=10, smooth_iters=40, solver="descent")
    cg40 = biharmonic_fill(img, m, iters=10, smooth_iters=40)
    exact = biharmonic_fill(img, m, iters=10, smooth_iters=400)
    assert (cg40 - exact).abs().max() < (descent - exact).abs().max()


def test_old_unet_checkpoints_keep_their_solver(tmp_path):
    """A checkpoint saved before `solver` existed loads with the gradient-step solver it was trained with."""
    model = UNet(UNetConfig(widths=[8, 16], prior="biharmonic"), 16, 3)
    save_model(tmp_path / "new.pt", model)
    ckpt = load_checkpoint(tmp_path / "new.pt")
    del ckpt["model_config"]["solver"]
    ckpt.pop("path", None)
    save_checkpoint(tmp_path / "old.pt", ckpt)
    assert load_model(tmp_path / "old.pt")[0].cfg.solver == "descent"
    assert load_model(tmp_path / "new.pt")[0].cfg.solver == "cg"


@pytest.mark.parametrize("kind", ["unet", "sampler"])
def test_old_checkpoints_keep_their_loss_warm_up(kind, tmp_path):
    """A checkpoint (or export) saved when the perceptual/adversarial warm-up was `model.warmup_steps` loads with
    it as `loss_warmup_steps`: the same gate, the same weights, the same fill."""
    from genfill.export import export_model, load_export

    torch.manual_seed(0)
    model = build_model({"kind": kind, "widths": [8, 16], "smooth_iters": 5, "loss_warmup_steps": 2}, 32, 3)
    save_model(tmp_path / "new.pt", model)
    ckpt = load_checkpoint(tmp_path / "new.pt")
    ckpt["model_config"]["warmup_steps"] = ckpt["model_config"].pop("loss_warmup_steps")  # the old name
    ckpt.pop("path", None)
    save_checkpoint(tmp_path / "old.pt", ckpt)
    old, _ = load_model(tmp_path / "old.pt")
    assert old.cfg.loss_warmup_steps == 2 and old.cfg == model.cfg
    gate = old.adv_gate if kind == "unet" else old.gate
    x, m = _batch(2, 32)
    old.train()
    opened = []
    for _ in range(3):
        opened.append(float(gate()))
        old(x, m)
    assert opened == [0.0, 0.0, 1.0]  # shut for the first 2 training forwards, as before the rename
    export_model(tmp_path / "old.pt", tmp_path / "exp")  # its config.json keeps the checkpoint's old name
    assert "warmup_steps" in json.loads((tmp_path / "exp" / "config.json").read_text())["model_config"]
    again, _ = load_export(tmp_path / "exp")
    assert again.cfg.loss_warmup_steps == 2
    model.eval()
    assert torch.equal(load_model(tmp_path / "old.pt")[0].predict(x, m), model.predict(x, m))


def test_psnr_loss_is_minus_the_mean_psnr_that_eval_reports():
    from genfill.evaluate import score
    from genfill.losses import psnr_loss
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    m = (torch.rand(3, 1, 16, 16, generator=g) > 0.7).float()
    pred = (x + 0.2 * torch.randn(3, 3, 16, 16, generator=g)).clamp(-1, 1)
    psnr = score(composite(x, m, pred), x, m)["psnr"]
    assert torch.allclose(psnr_loss(pred, x, m), -psnr.mean(), atol=1e-3)
    assert psnr_loss(x, x, m) < -90  # perfect fill: capped by eps, not inf


def test_the_residual_lives_in_the_hole_only():
    """Known pixels of predict() are the base fill's (the image itself), so their L1 cannot pull the hole's
    correction towards zero."""
    model = UNet(UNetConfig(widths=[8, 16], prior="biharmonic", smooth_iters=5), 16, 3)
    torch.nn.init.normal_(model.net.out[-1].weight, std=0.5)  # an output that is far from zero
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    m = torch.zeros(2, 1, 16, 16)
    m[:, :, 4:9, 4:9] = 1
    pred = model.predict(x, m)
    keep = (m == 0).expand_as(x)
    assert torch.equal(pred[keep], x[keep])
    assert (pred - model.base_fill(x, m))[~keep].abs().max() > 0.01
