"""Several fills of one hole and per-pixel uncertainty: the metrics (diversity, coverage of a central
interval, correlation with the error) against predictors whose answer is known, and the user's paths
(`fill --samples K`, `.fill(samples=K)`, `eval --samples K`, the unet's learned scale)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import genfill
from genfill.cli import main
from genfill.errors import GenfillError
from genfill.metrics.uncertainty import (check_samples, coverage, diversity, half_width, nominal_coverage, pearson,
                                         sample_interval, scale_interval, spread)

N, C, H, W = 4, 3, 32, 32  # 12,288 values per synthetic test


def _synthetic(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(N, C, H, W, generator=g) * 2 - 1
    sigma = 0.02 + 0.3 * torch.rand(N, C, H, W, generator=g)
    return g, mu, sigma, torch.ones(N, 1, H, W)


def _tolerance(p: float, n: int) -> float:
    """Four binomial standard errors of a share p measured over n independent values."""
    return 4 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("dist", ["gaussian", "laplace"])
def test_a_calibrated_predictor_covers_90_percent_and_a_halved_scale_clearly_less(dist):
    g, mu, scale, m = _synthetic()
    if dist == "gaussian":
        truth = mu + scale * torch.randn(mu.shape, generator=g)
    else:  # Laplace(0, b) = b * (E1 - E2) with E1, E2 ~ Exp(1)
        e = -torch.log(torch.rand(2, *mu.shape, generator=g))
        truth = mu + scale * (e[0] - e[1])
    n = truth.numel()
    covered, total = coverage(*scale_interval(mu, scale, dist), truth, m)
    share = float(covered.sum() / total.sum())
    assert abs(share - 0.9) < _tolerance(0.9, n), share
    covered, total = coverage(*scale_interval(mu, scale / 2, dist), truth, m)
    halved = float(covered.sum() / total.sum())
    # Gaussian: P(|z| < 1.645/2) = 0.59; Laplace: 1 - 10^-0.5 = 0.68
    expected = math.erf(half_width(0.9) / 2 / math.sqrt(2)) if dist == "gaussian" else 1 - 10 ** -0.5
    assert abs(halved - expected) < _tolerance(expected, n), halved
    assert halved < 0.9 - 10 * _tolerance(0.9, n)


def test_sampled_intervals_cover_what_a_calibrated_sampler_covers_at_that_k():
    g, mu, sigma, m = _synthetic(1)
    truth = mu + sigma * torch.randn(mu.shape, generator=g)
    k = 40
    draws = mu + sigma * torch.randn(k, *mu.shape, generator=g)
    covered, total = coverage(*sample_interval(draws), truth, m)
    share = float(covered.sum() / total.sum())
    # nominal_coverage is the uniform-gap approximation; on Gaussian draws it is off by about 0.002 at K = 40
    assert abs(share - nominal_coverage(k)) < _tolerance(nominal_coverage(k), truth.numel()) + 0.005, share
    narrow = mu + 0.5 * sigma * torch.randn(k, *mu.shape, generator=g)
    covered, total = coverage(*sample_interval(narrow), truth, m)
    assert float(covered.sum() / total.sum()) < share - 0.2


def test_correlation_is_one_when_the_scale_is_the_error_and_near_zero_when_unrelated():
    g, mu, sigma, m = _synthetic(2)
    sign = torch.randint(0, 2, mu.shape, generator=g).float() * 2 - 1
    truth = mu + sign * sigma  # |error| is exactly sigma at every value
    u = sigma.mean(1, keepdim=True)
    err = (truth - mu).abs().mean(1, keepdim=True)
    assert torch.allclose(pearson(u, err, m), torch.ones(N), atol=1e-5)
    unrelated = torch.rand(u.shape, generator=g)
    r = pearson(unrelated, err, m)
    assert (r.abs() < 4 / math.sqrt(H * W)).all(), r  # 4 standard errors of r under independence
    hole = torch.zeros(N, 1, H, W)
    hole[:, :, :8] = 1  # only hole pixels count: the rest of the map is noise
    noisy_u = torch.where(hole.bool(), u, torch.rand(u.shape, generator=g))
    assert torch.allclose(pearson(noisy_u, err, hole), torch.ones(N), atol=1e-5)


def test_diversity_is_zero_for_identical_fills_and_positive_otherwise():
    from genfill.metrics.lpips import get_lpips

    lp = get_lpips("alexnet")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    same = x.expand(4, *x.shape)
    assert torch.equal(diversity(same, lp), torch.zeros(2))
    assert torch.equal(spread(same), torch.zeros(2, 1, 32, 32))
    differ = same.clone()
    differ[1, 0, :, 8:20, 8:20] = 1.0  # one fill of the first image differs
    d = diversity(differ, lp)
    assert d[0] > 0 and d[1] == 0
    l1 = lambda a, b: (a - b).abs().flatten(1).mean(1)  # noqa: E731
    assert diversity(differ, l1)[0] == pytest.approx(3 / 6 * l1(differ[1, :1], same[0, :1]).item())


@pytest.mark.parametrize("k", [0, -1, 1, 65, 10**6, 2.5, True, "3"])
def test_bad_k_is_a_one_line_error(k):
    with pytest.raises(GenfillError, match="--samples must be a whole number from 2 to 64"):
        check_samples(k)
    assert check_samples(2) == 2 and check_samples(64) == 64


# ---------------------------------------------------------------- the user's paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_root):
    """A VAE and a unet trained for 2 steps on 32x32 faces."""
    from tests.conftest import tiny_raw
    from genfill.loadconfig import build_config
    from genfill.train import train

    root = tmp_path_factory.mktemp("plural")
    out = {}
    for name, model in {"vae": None, "unet": {"kind": "unet", "widths": [8, 16], "uncertainty": True}}.items():
        cfg = build_config(tiny_raw(root / "runs", cache_root, model, name=name))
        train(cfg, verbose=False)
        out[name] = cfg.run_dir
    return out


def _photo(tmp_path, h=40, w=56):
    a = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    hole = np.zeros((h, w), bool)
    hole[10:24, 20:40] = True
    Image.fromarray(a).save(tmp_path / "p.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "p_mask.png")
    return a, hole


def test_api_samples_give_k_different_fills_at_native_size_keeping_known_pixels(runs, tmp_path):
    a, hole = _photo(tmp_path)
    painter = genfill.load(runs["vae"], device="cpu")
    assert painter.can_diversify
    fills = painter.fill(a, hole, samples=3, seed=5)
    assert len(fills) == 3 and all(f.shape == a.shape and f.dtype == a.dtype for f in fills)
    for f in fills:
        assert np.array_equal(f[~hole], a[~hole])
    assert not np.array_equal(fills[0][hole], fills[1][hole]) and not np.array_equal(fills[1][hole], fills[2][hole])
    again = painter.fill(a, hole, samples=3, seed=5)
    assert all(np.array_equal(p, q) for p, q in zip(fills, again))
    res = painter.fill_samples(a, hole, 3, seed=5)
    assert res.uncertainty.shape == hole.shape and (res.uncertainty[~hole] == 0).all()
    assert (res.uncertainty[hole] > 0).mean() > 0.9
    assert res.panel().shape == (3, 2 + 40 + 2, 2 + 5 * (56 + 2))  # input, 3 fills, heat map
    many = painter.fill_many([a, a], hole, samples=2, seed=1)
    assert len(many) == 2 and all(len(fs) == 2 for fs in many)
    with pytest.raises(GenfillError, match="draws one fill per hole"):
        genfill.load("telea").fill(a, hole, samples=3)
    with pytest.raises(GenfillError, match="draws one fill per hole"):
        genfill.load(runs["unet"], device="cpu").fill(a, hole, samples=3)


def _one_line_error(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and pattern in err, err


def test_cli_fill_samples_writes_the_picture_next_to_the_fill(runs, tmp_path, capsys):
    a, hole = _photo(tmp_path)
    out = tmp_path / "out" / "f.png"
    assert main(["fill", str(tmp_path / "p.png"), "-c", str(runs["vae"]), "--samples", "3", "--seed", "2",
                 "-o", str(out), "--quiet"]) == 0
    assert "3 fills + uncertainty" in capsys.readouterr().out
    pic = np.asarray(Image.open(out.parent / "f_samples.png"))
    assert pic.shape == (2 + 40 + 2, 2 + 5 * (56 + 2), 3)
    filled = np.asarray(Image.open(out))
    assert np.array_equal(filled[~hole], a[~hole])
    first = pic[2 : 2 + 40, 2 + 58 : 2 + 58 + 56]  # the first of the K fills
    assert np.array_equal(first[~hole], a[~hole])
    heat = pic[2 : 2 + 40, 2 + 4 * 58 : 2 + 4 * 58 + 56]
    assert heat[hole].max() > 0 and heat[~hole].max() == 0  # black outside the hole
    for k in ("0", "-1", "1000"):
        _one_line_error(capsys, ["fill", str(tmp_path / "p.png"), "-c", str(runs["vae"]), "--samples", k,
                                 "-o", str(tmp_path / "bad.png")], "--samples must be")
    _one_line_error(capsys, ["fill", str(tmp_path / "p.png"), "--method", "telea", "--samples", "3",
                             "-o", str(tmp_path / "bad.png")], "the telea peer draws one fill")
    _one_line_error(capsys, ["fill", str(tmp_path / "p.png"), "-c", str(runs["unet"]), "--samples", "3",
                             "-o", str(tmp_path / "bad.png")], "a unet model draws one fill per hole")
    assert not (tmp_path / "bad.png").exists()


def test_eval_samples_reports_diversity_quality_and_calibration(runs, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["eval", "-c", str(runs["vae"]), "-c", str(runs["unet"]), "-c", "telea", "--samples", "3",
                 "-n", "4", "--masks", "square,thick", "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Several" not in printed and "coverage 90%" in printed and "telea: the telea peer draws one fill" in printed
    doc = json.loads((out / "eval.json").read_text())
    vae, unet, telea = (doc["methods"][k] for k in ("vae", "unet", "telea"))
    assert vae["plural"]["k"] == 3 and vae["plural"]["nominal_coverage"] == pytest.approx(0.9 * 2 / 4)
    for kind in ("square", "thick"):
        cal = vae["plural"]["by_mask"][kind]
        assert 0 <= cal["coverage90"] <= 1 and -1 <= cal["unc_corr"] <= 1
        s = vae["summary"]["mask"][kind]
        assert s["diversity"] > 0
        assert s["psnr_best"] >= s["psnr_meank"] and s["lpips_best"] <= s["lpips_meank"]
    # the unet's own learned scale is calibrated as a Laplace interval, with one fill
    assert unet["plural"]["source"] == "scale" and unet["plural"]["nominal_coverage"] == 0.9
    assert set(unet["plural"]["by_mask"]) == {"square", "thick"}
    assert "diversity" not in unet["summary"]["all"]
    assert telea["plural"] == {"k": 1, "note": "the telea peer draws one fill per hole; several fills (--samples) "
                               "come from: avae, beta_vae, sampler, vae, vqvae_prior"}
    rows = (out / "plural.csv").read_text().splitlines()
    assert rows[0].startswith("method,mask,K,diversity") and len(rows) == 1 + 2 + 2
    page = (out / "report.html").read_text()
    assert "Several fills and uncertainty" in page and "plural.csv" in page
    assert vae["plural"]["picture"] == "plural_vae.png" and "plural_vae.png" in page
    pic = Image.open(out / "plural_vae.png")  # one row per mask kind: input, 3 fills, heat map
    assert pic.size == (2 + 5 * (32 + 2), 2 + 2 * (32 + 2)) and "picture" not in unet["plural"]
    assert "diversity" in (out / "records.csv").read_text().splitlines()[0]


def test_unet_uncertainty_learns_a_laplace_scale_by_its_nll_and_exports(tmp_path):
    from genfill.export import export_model
    from genfill.losses import laplace_nll
    from genfill.models import build_model, save_model

    torch.manual_seed(0)
    plain = build_model({"kind": "unet", "widths": [8, 16]}, 32, 3)
    model = build_model({"kind": "unet", "widths": [8, 16], "uncertainty": True, "w_nll": 0.5}, 32, 3)
    assert plain.net.out[-1].out_channels == 3 and model.net.out[-1].out_channels == 6  # default: unchanged
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 8:20, 8:20] = 1
    torch.nn.init.normal_(model.net.out[-1].weight, std=0.1)
    model.train()
    out = model(x, m)
    assert "nll" not in plain(x, m).parts
    pred, log_b = model.predict_with_scale(x, m)
    assert torch.allclose(out.parts["nll"], laplace_nll(pred, log_b, x, m))
    assert torch.allclose(out.loss, out.parts["l1"] + 0.5 * out.parts["nll"])
    v = (x - pred).abs() * torch.exp(-log_b) + log_b
    assert torch.allclose(out.parts["nll"], (v * m).sum() / (m.sum() * 3))
    # the fill itself is trained by the L1 alone: the nll's gradient reaches the scale channels only
    model.zero_grad()
    out.parts["nll"].backward()
    w = model.net.out[-1].weight.grad
    assert w[:3].abs().max() == 0 and w[3:].abs().max() > 0
    model.eval()
    b = model.fill_scale(x, m)
    assert b.shape == x.shape and (b > 0).all() and plain.fill_scale(x, m) is None
    save_model(tmp_path / "u.pt", model)
    res = export_model(tmp_path / "u.pt", tmp_path / "exp", onnx=True)
    assert res.onnx_max_abs <= 1e-3  # the fill and the scale
    from genfill.export import onnx_session

    assert [o.name for o in onnx_session(tmp_path / "exp" / "model.onnx").get_outputs()] == ["filled", "scale"]
    again = genfill.load(tmp_path / "exp", device="cpu").model
    assert torch.equal(again.fill_scale(x, m), b)
    u = model.uncertainty_map(x, m)  # the heat map's values: the Laplace std sqrt(2) b in [0, 1] units
    assert torch.allclose(u, (math.sqrt(2) * b / 2).mean(1, keepdim=True) * m)


def test_vqvae_prior_keeps_the_codes_of_known_cells():
    from genfill.models.pixelcnn import VQVAEPrior

    class Stub(VQVAEPrior):
        def __init__(self):  # only the pieces fill_codes and hole_codes use
            torch.nn.Module.__init__(self)

    prior = Stub()
    prior.cfg = type("C", (), {"temperature": 1.0})()
    prior.pixelcnn = lambda codes: torch.zeros(codes.shape[0], 16, *codes.shape[1:])  # uniform over 16 codes
    prior.vqvae = type("V", (), {"code_grid": lambda self: (4, 4)})()
    m = torch.zeros(2, 1, 16, 16)
    m[0, :, 5:9, 0:3] = 1  # touches cells (1,0) and (2,0)
    redraw = prior.hole_codes(m)
    assert redraw[0].nonzero().tolist() == [[1, 0], [2, 0]] and not redraw[1].any()
    codes = torch.full((2, 4, 4), 99)
    out = prior.fill_codes(codes, redraw, torch.Generator().manual_seed(0))
    assert torch.equal(out[~redraw], codes[~redraw]) and (out[redraw] < 16).all()
