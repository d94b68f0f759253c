"""The sampling inpainter (`sampler`): its training step (mean pass, CRPS, LPIPS, PatchGAN + R1), seeded
samples, K different fills that keep known pixels, the mean flag, export round trip and the CLI."""

from __future__ import annotations

import json


import pytest
import torch

from genfill.errors import GenfillError
from genfill.models import build_model, load_model, save_model
from genfill.models.sampler import coherent_noise, crps
from genfill.pixels import composite

SIZE = 32
TINY = {"kind": "sampler", "widths": [8, 16], "smooth_iters": 5, "noise_channels": 2, "w_perceptual": 0.0,
        "d_base": 8, "d_layers": 2}


def tiny(**kw):
    torch.manual_seed(0)
    return build_model({**TINY, **kw}, SIZE, 3)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, SIZE, SIZE, generator=g) * 2 - 1
    m = torch.zeros(4, 1, SIZE, SIZE)
    m[:, :, 8:24, 8:24] = 1
    m[1, :, :, 28:] = 1
    return x, m


def test_crps_is_the_fair_estimator_and_rewards_spread_only_when_calibrated():
    y = torch.zeros(1, 1, 1, 1)
    m = torch.ones(1, 1, 1, 1)
    # samples -1 and +1: mean |X - y| is 1 at y = 0 and 2 at y = 2; the pair term sum_{i!=j} |X_i - X_j| /
    # (2 K (K - 1)) = 4 / 4 = 1 -> 0 and 1
    s = torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1, 1)
    assert crps(s, y, m).item() == pytest.approx(0.0)
    assert crps(s, y + 2, m).item() == pytest.approx(1.0)
    # a point forecast at the truth scores 0; the same spread away from the truth costs more than at it
    assert crps(torch.zeros(2, 1, 1, 1, 1), y, m).item() == 0
    assert crps(s + 3, y, m) > crps(s, y, m)
    # only hole values count
    m0 = torch.zeros(1, 1, 1, 1)
    assert crps(s + 3, y, m0).item() == 0


def test_crps_expectation_is_minimised_by_the_true_spread():
    """For y ~ N(0, 1), Gaussian samples with sigma = 1 score lower on average than sigma 0.3 or 3."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1, 1, 200, 200, generator=g)
    m = torch.ones(1, 1, 200, 200)
    score = {s: crps(s * torch.randn(4, 1, 1, 200, 200, generator=g), y, m).item() for s in (0.3, 1.0, 3.0)}
    assert score[1.0] < score[0.3] and score[1.0] < score[3.0]


def test_training_step_runs_every_loss_and_the_discriminator(batch):
    from genfill.config import TrainConfig
    from genfill.train import prepare, train_step

    x, m = batch
    model = tiny(r1_every=1)
    model.train()
    model, forward, opt, opt_d = prepare(model, TrainConfig(lr=1e-3), torch.device("cpu"), False)
    assert opt_d is not None
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    g_before = [p.detach().clone() for p in model.net.parameters()]
    loss, parts = train_step(model, forward, opt, opt_d, x, m, 1.0, False, 1.0)
    assert torch.isfinite(loss)
    for name in ("psnr_loss", "crps", "spread", "adv", "d_loss", "d_real", "d_fake", "r1"):
        assert name in parts and torch.isfinite(parts[name]), name
    assert parts["r1"] > 0  # R1 ran this step (r1_every 1)
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.net.parameters()))
    assert int(model.steps) == 1


def test_perceptual_term_is_logged_when_on(batch):
    x, m = batch
    try:
        model = tiny(w_perceptual=1.0)
    except GenfillError as exc:  # weights not installed here
        pytest.skip(str(exc))
    out = model.train()(x, m)
    assert torch.isfinite(out.parts["perceptual"]) and out.parts["perceptual"] > 0


def test_samples_are_seeded_differ_and_keep_known_pixels(batch):
    x, m = batch
    model = tiny().eval()
    s = model.fill_samples(x, m, 4, torch.Generator().manual_seed(5))
    known = (1 - m).bool().expand_as(x)
    for i in range(4):
        assert torch.equal(s[i][known], x[known])
        for j in range(i):
            assert (s[i] - s[j]).abs().amax() > 0
    assert torch.equal(s, model.fill_samples(x, m, 4, torch.Generator().manual_seed(5)))
    # the default fill: one sample picked by torch.manual_seed, the same for the same seed
    torch.manual_seed(11)
    a = model.fill(x, m)
    b = model.fill(x, m)
    torch.manual_seed(12)
    c = model.fill(x, m)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[known], x[known])


def test_mean_flag_gives_the_deterministic_mean_pass(batch):
    x, m = batch
    model = tiny().eval()
    torch.manual_seed(1)
    mean1 = model.fill(x, m, mean=True)
    torch.manual_seed(2)
    mean2 = model.fill(x, m, mean=True)
    assert torch.equal(mean1, mean2)
    zeros = torch.zeros(len(x), 2, SIZE, SIZE)
    assert torch.equal(mean1, composite(x, m, model.run(x, m, zeros).detach()))
    assert not torch.equal(mean1, model.fill(x, m))  # a sample is not the mean
    with pytest.raises(GenfillError):
        model.fill(x, m, method="decoder")


def test_training_makes_samples_spread_and_mean_beat_samples_on_psnr(batch):
    """A few dozen steps on one batch: the CRPS keeps the noise in use (the samples' spread grows from its
    near-zero start) and the mean pass, trained on PSNR, scores a better PSNR than a sample."""
    from genfill.metrics.basic import psnr

    x, m = batch
    model = tiny(w_adv=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    spreads = []
    for _ in range(40):
        out = model.train()(x, m)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        spreads.append(float(out.parts["spread"]))
    assert spreads[-1] > 10 * spreads[0]
    model.eval()
    s = model.fill_samples(x, m, 4, torch.Generator().manual_seed(0))
    mean = model.fill(x, m, mean=True)
    assert psnr(mean, x).mean() > torch.stack([psnr(si, x) for si in s]).mean()


def test_coherent_noise_is_smooth_with_unit_variance_and_scale_1_is_per_pixel():
    g = torch.Generator().manual_seed(0)
    n, c, h, w = 100, 4, 32, 40  # W not a multiple of the scale: the coarse grid is ceil(W/8)
    z = coherent_noise(n, c, h, w, 8, g, "cpu")
    assert z.shape == (n, c, h, w)
    # neighbours share their coarse draws: the correlation of two horizontal neighbours is the 1-D one of
    # their normalised bilinear weight vectors, 0.97 at the least and 0.985 on average for scale 8 (per-pixel
    # noise: 0); 0.9 leaves room for the estimate's sampling error (~1e-3 over these 500k pairs)
    pairs = torch.stack([z[..., :-1].flatten(), z[..., 1:].flatten()])
    assert torch.corrcoef(pairs)[0, 1] > 0.9
    # every position is N(0, 1): the std over n*c = 400 draws is within 6 standard errors (1/sqrt(2*400))
    # of 1 (without dividing by the upsampling's std, midpoints between coarse points would have 0.5)
    std = z.std(dim=(0, 1))
    assert (std - 1).abs().max() < 6 / (2 * n * c) ** 0.5
    # scale 1 is plain per-pixel noise: the same draws as torch.randn
    z1 = coherent_noise(2, c, h, w, 1, torch.Generator().manual_seed(1), "cpu")
    assert torch.equal(z1, torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(1)))
    # and the model draws it at its noise_scale: a model's sample noise is as smooth
    model = tiny(noise_scale=4)
    zm = model.noise(8, torch.zeros(1, 3, SIZE, SIZE), torch.Generator().manual_seed(2))
    assert torch.corrcoef(torch.stack([zm[..., :-1].flatten(), zm[..., 1:].flatten()]))[0, 1] > 0.8
    with pytest.raises(GenfillError, match="noise_scale"):
        tiny(noise_scale=0)


def test_checkpoint_without_noise_scale_loads_with_per_pixel_noise(tmp_path, batch):
    x, m = batch
    old = tiny(noise_scale=1).eval()
    save_model(tmp_path / "old.pt", old)
    ckpt = torch.load(tmp_path / "old.pt", weights_only=True)
    del ckpt["model_config"]["noise_scale"]  # what a checkpoint written before the key holds
    torch.save(ckpt, tmp_path / "old.pt")
    again, _ = load_model(tmp_path / "old.pt")
    assert again.cfg.noise_scale == 1
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(again.fill_samples(x, m, 2, g()), old.fill_samples(x, m, 2, g()))
    assert build_model({"kind": "sampler"}, SIZE, 3).cfg.noise_scale == 8  # a new model: coherent noise


def test_export_round_trip_and_onnx_with_noise_input(batch, tmp_path):
    from genfill.export import export_model, load_export

    x, m = batch
    model = tiny().eval()
    save_model(tmp_path / "m.pt", model)
    res = export_model(tmp_path / "m.pt", tmp_path / "exp", onnx=True)
    again, _ = load_export(tmp_path / "exp")
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(again.fill_samples(x, m, 2, g()), model.fill_samples(x, m, 2, g()))
    assert res.onnx_max_abs is not None and res.onnx_max_abs < 1e-4
    from genfill.export import onnx_session

    sess = onnx_session(tmp_path / "exp" / "model.onnx")
    names = [i.name for i in sess.get_inputs()]
    assert names == ["image", "mask", "noise"]
    z = model.noise(len(x), x, torch.Generator().manual_seed(4))  # full-resolution coherent noise: the input
    meta = sess.get_modelmeta().custom_metadata_map
    assert f"ceil(H/{model.cfg.noise_scale})" in meta["noise"]  # the metadata says how to draw it
    got = sess.run(None, {"image": x.numpy(), "mask": m.numpy(), "noise": z.numpy()})[0]
    want = composite(x, m, model.run(x, m, z)).detach().numpy()
    assert abs(got - want).max() < 1e-4
    mean = sess.run(None, {"image": x.numpy(), "mask": m.numpy(), "noise": 0 * z.numpy()})[0]
    assert abs(mean - model.fill(x, m, mean=True).numpy()).max() < 1e-4


def test_cli_fill_samples_and_mean(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from genfill.cli import main

    model = tiny().eval()
    save_model(tmp_path / "m.pt", model)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    hole = np.zeros((SIZE, SIZE), np.uint8)
    hole[8:20, 8:20] = 255
    Image.fromarray(hole).save(tmp_path / "mask.png")
    base = ["fill", str(tmp_path / "in.png"), "-c", str(tmp_path / "m.pt"), "--mask", str(tmp_path / "mask.png"), "-q"]
    main([*base, "-o", str(tmp_path / "a.png"), "--samples", "3"])
    panel = np.asarray(Image.open(tmp_path / "a_samples.png"))
    assert panel.shape[1] > 3 * SIZE  # input, 3 fills, heat map side by side
    main([*base, "-o", str(tmp_path / "s1.png"), "--seed", "1"])
    main([*base, "-o", str(tmp_path / "s2.png"), "--seed", "2"])
    main([*base, "-o", str(tmp_path / "m1.png"), "--seed", "1", "--mean"])
    main([*base, "-o", str(tmp_path / "m2.png"), "--seed", "2", "--mean"])
    arr = {k: np.asarray(Image.open(tmp_path / f"{k}.png")).astype(int) for k in ("s1", "s2", "m1", "m2")}
    src = np.asarray(Image.open(tmp_path / "in.png")).astype(int)
    known = hole == 0
    for a in arr.values():
        assert (a[known] == src[known]).all()
    assert (arr["m1"] == arr["m2"]).all()
    assert (arr["s1"] != arr["s2"]).any()
    # --mean on a model without a mean flag: one line, exit code 2
    save_model(tmp_path / "u.pt", build_model({"kind": "unet", "widths": [8, 16]}, SIZE, 3))
    capsys.readouterr()
    code = main(["fill", str(tmp_path / "in.png"), "-c", str(tmp_path / "u.pt"), "--mask", str(tmp_path / "mask.png"),
                 "-o", str(tmp_path / "u.png"), "--mean", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "mean" in err and "\n" not in err


def test_demo_with_the_sampler_shows_mean_and_samples_and_both_winners(tmp_path, monkeypatch):
    from genfill.cli import main

    monkeypatch.chdir(tmp_path)
    small = ["--set", "masks.bank_size=256", "--set", "model.widths=[8,16]", "--set", "model.w_perceptual=0",
             "--set", "model.d_base=8", "--set", "model.d_layers=2"]
    assert main(["demo", "--config", "sampler-faces64", "--minutes", "0.03", "--count", "60", "--quiet", *small]) == 0
    run = tmp_path / "runs" / "demo"
    summary = json.loads((run / "demo.json").read_text())
    assert summary["kind"] == "sampler"
    assert set(summary["winner_lpips"]) == set(summary["winner"])  # a winner per kind on both axes
    text = (run / "index.html").read_text()
    for name in ("genfill sampler mean", "genfill sampler sample 1", "genfill sampler sample 2", "OpenCV Telea",
                 "PatchMatch"):
        assert name in text, name
    # both of ours are scored (the sample and the mean fill), next to the three peers
    assert set(summary["psnr"]["square"]) == {"genfill sampler", "genfill sampler mean", "OpenCV Telea", "biharmonic",
                                              "PatchMatch"}
