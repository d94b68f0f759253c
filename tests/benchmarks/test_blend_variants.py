"""benchmarks/blend_variants.py: each probe of the sampler's residual blend draws what its docstring says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genfill.models import build_model
from tests.benchmarks import benchmark_module

SIZE = 32
TINY = {"kind": "sampler", "widths": [8, 16], "smooth_iters": 5, "noise_channels": 2, "w_perceptual": 0.0,
        "w_adv": 0.0, "train_samples": 0, "exemplars": 40, "exemplar_k": 3, "exemplar_key": 8,
        "exemplar_blend": "residual"}


@pytest.fixture(scope="module")
def bv():
    return benchmark_module("blend_variants")


def smooth(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=(SIZE, SIZE), mode="bilinear",
                         align_corners=False)


@pytest.fixture(scope="module")
def setup():
    model = build_model(TINY, SIZE, 3)
    imgs = smooth(30, 1)
    model.exemplars.index(torch.arange(30), lambda i: imgs[i], 30, torch.Generator().manual_seed(0))
    x, m = smooth(2, 4), torch.zeros(2, 1, SIZE, SIZE)
    m[:, :, 8:24, 8:24] = 1
    return model.eval(), x, m, model.mean_pass(x, m).detach()


def draw(bv, model, name, x, m, mean, reps=2, seed=3):
    return bv.variant_fn(name)(model, x, m, mean, reps, torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_scale_and_clip_run_from_the_mean_fill_to_the_residual_blend(bv, setup):
    model, x, m, mean = setup
    own = model.residual_samples(x, m, mean, 2, torch.Generator().manual_seed(3))
    assert torch.equal(draw(bv, model, "scale:1", x, m, mean), own)
    assert torch.equal(draw(bv, model, "scale:0", x, m, mean), mean.repeat(2, 1, 1, 1))
    assert torch.equal(draw(bv, model, "mean", x, m, mean), mean.repeat(2, 1, 1, 1))
    assert torch.equal(draw(bv, model, "clip:0", x, m, mean), mean.repeat(2, 1, 1, 1))
    half = draw(bv, model, "clip:0.5", x, m, mean) - mean.repeat(2, 1, 1, 1)
    assert 0 < half.abs().amax() <= (own - mean.repeat(2, 1, 1, 1)).abs().amax() + 1e-6


@torch.no_grad()
def test_lum_adds_the_same_detail_to_every_channel(bv, setup):
    model, x, m, mean = setup
    d = draw(bv, model, "lum", x, m, mean) - mean.repeat(2, 1, 1, 1)
    inside = d.abs() < 0.99 - mean.repeat(2, 1, 1, 1).abs()  # where the clamp to [-1, 1] did not act
    same = (d - d[:, :1]).abs() < 1e-6
    assert d.abs().amax() > 0 and bool(same[inside].all())


@torch.no_grad()
def test_ring_and_shift_draw_stored_faces_never_the_query(bv, setup):
    model, x, m, mean = setup
    stored = model.exemplars.stored(slice(None))
    faces = bv.ring_faces(model, x, m, 3, torch.Generator().manual_seed(1), pool=30, shift=0, ring=3)
    assert faces.shape == (6, 3, SIZE, SIZE)
    assert all(bool(((stored - f).abs().amax((1, 2, 3)) < 1e-6).any()) for f in faces)
    query = torch.cat([stored[:1], x[1:]])  # a stored face as its own query is never drawn for it
    again = bv.ring_faces(model, query, m, 4, torch.Generator().manual_seed(1), pool=30, shift=0, ring=3)
    assert (again[0::2] - stored[:1]).abs().amax((1, 2, 3)).min() > 1e-3
    moved = bv.ring_faces(model, x, m, 2, torch.Generator().manual_seed(1), pool=8, shift=1, ring=2)
    shifts = [bv.shifted(stored, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert all(any(bool(((s - f).abs().amax((1, 2, 3)) < 1e-6).any()) for s in shifts) for f in moved)
    sample = draw(bv, model, "ring:30", x, m, mean)
    assert sample.shape == (4, 3, SIZE, SIZE) and not torch.equal(sample, mean.repeat(2, 1, 1, 1))


def test_shifted_moves_by_whole_pixels_and_a_bad_name_is_refused(bv):
    img = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(bv.shifted(img, 1, 0)[0, 0, 1:], img[0, 0, :3])  # out[p] = in[p - d]
    assert torch.equal(bv.shifted(img, 0, -1)[0, 0, :, :3], img[0, 0, :, 1:])
    with pytest.raises(SystemExit, match="unknown variant"):
        bv.variant_fn("paste")


@torch.no_grad()
def test_match_scales_the_detail_to_the_queries_own_surroundings(bv, setup):
    """match:S: where x is flat around the hole there is no detail to match (the mean fill); the energy is a
    local RMS of what the blur removes, zero for a flat image and growing with x's contrast."""
    model, x, m, mean = setup
    flat = torch.full_like(x, 0.3)
    flat_mean = model.mean_pass(flat, m)
    # a flat x's energy is float32 rounding (~3e-8 of 0.3), its gain that over c's energy floored at 1e-4, times
    # |r| <= 2: at most ~1e-3 from the mean fill; a residual's own detail is ~1e-1
    got = draw(bv, model, "match:3", flat, m, flat_mean)
    assert torch.allclose(got, flat_mean.repeat(2, 1, 1, 1), rtol=0, atol=1e-3)
    known = 1 - m
    checker = ((torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None]) % 2).float().expand(1, 3, -1, -1) - 0.5
    e1, e2 = bv.detail_energy(checker, known[:1], 3.0), bv.detail_energy(2 * checker, known[:1], 3.0)
    assert bv.detail_energy(flat[:1], known[:1], 3.0).abs().amax() < 1e-5 and e1.amin() > 0.1
    assert torch.allclose(e2, 2 * e1, rtol=1e-4)  # energy is linear in contrast
    d = draw(bv, model, "match:3", x, m, mean) - mean.repeat(2, 1, 1, 1)
    assert d.abs().amax() > 0


@torch.no_grad()
def test_band_shifts_every_channel_by_the_detail_energy_times_one_draw(bv, setup):
    """band:S:0:G: in the hole, sample - mean = G e z with e x's detail energy and z one normal per sample, the
    same on every channel; with L > 0 z varies over the image instead; zero gain is the mean fill."""
    model, x, m, mean = setup
    mr = m.repeat(2, 1, 1, 1)
    d = (draw(bv, model, "band:3:0:0.5", x, m, mean) - mean.repeat(2, 1, 1, 1)) * mr
    e = bv.detail_energy(x.repeat(2, 1, 1, 1), 1 - mr, 3.0)
    z = d[:, :1] / (0.5 * e).clamp_min(1e-6)
    inside = (mr > 0) & (e > 1e-3)
    first = z[0][inside[0]]
    assert torch.allclose(first, first[:1].expand_as(first), atol=1e-3) and first.abs()[0] > 1e-3
    assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-6)
    field = (draw(bv, model, "band:3:4:0.5", x, m, mean) - mean.repeat(2, 1, 1, 1))[:, :1] / (0.5 * e).clamp_min(1e-6)
    assert field[0][inside[0]].std() > 0.05  # a blurred normal field: z differs across the hole
    assert torch.equal(draw(bv, model, "band:3:0:0", x, m, mean), mean.repeat(2, 1, 1, 1))
    floor = (draw(bv, model, "band:3:0:0:0.05", x, m, mean) - mean.repeat(2, 1, 1, 1)) * mr  # F z alone
    hole = floor[0][mr[0].expand_as(floor[0]) > 0]
    assert torch.allclose(hole, hole[:1].expand_as(hole), atol=1e-6) and 0 < hole.abs()[0] < 0.5
    colour = (draw(bv, model, "bandc:3:0:0:0.05", x, m, mean) - mean.repeat(2, 1, 1, 1)) * mr  # a draw per channel
    per = colour[0][:, mr[0, 0] > 0]  # (C, hole pixels): one value per channel
    assert torch.allclose(per, per[:, :1].expand_as(per), atol=1e-6)
    assert per[:, 0].unique().numel() == 3 and bool((per[:, 0].abs() < 0.5).all())


@torch.no_grad()
def test_hyb_is_the_models_hybrid_blend_with_its_numbers_and_puts_them_back(bv, setup):
    from genfill.models import sampler as sampler_module

    model, x, m, mean = setup
    shipped = model.hybrid_samples(x, m, mean, 2, torch.Generator().manual_seed(3))
    saved = sampler_module.HYBRID_DEPTH, sampler_module.HYBRID_GAIN
    lo, hi = saved[0]
    assert torch.equal(draw(bv, model, f"hyb:{lo}:{hi - lo}:{saved[1]}", x, m, mean), shipped)
    other = draw(bv, model, "hyb:3:2:0.2", x, m, mean)
    assert not torch.equal(other, shipped) and (sampler_module.HYBRID_DEPTH, sampler_module.HYBRID_GAIN) == saved


@torch.no_grad()
def test_warp_and_self_are_the_mean_fill_at_zero_gain_and_move_it_otherwise(bv, setup):
    model, x, m, mean = setup
    for name in ("warp:0", "self:4:0"):
        assert torch.allclose(draw(bv, model, name, x, m, mean), mean.repeat(2, 1, 1, 1), atol=1e-6)
    for name in ("warp:1", "warp:0.5:0.5", "self:4:1"):
        d = draw(bv, model, name, x, m, mean) - mean.repeat(2, 1, 1, 1)
        assert d.abs().amax() > 1e-3 and (d * (1 - m.repeat(2, 1, 1, 1))).abs().amax() == 0


@torch.no_grad()
def test_local_pairs_find_the_stored_face_a_query_was_cut_from(bv, setup):
    """A query that is a stored face moved by 1 px, with a thin stroke missing: every stroke pixel's best pair
    is that face at that shift, whose value is the truth; the draws keep known pixels out and stay among a
    pixel's own top pairs."""
    model, _, _, _ = setup
    stored = model.exemplars.stored(slice(None))
    x = bv.shifted(stored[5:6], 1, 0)
    m = torch.zeros(1, 1, SIZE, SIZE)
    m[:, :, 14:16, 4:28] = 1  # a 2 px stroke
    pairs = bv.local_pairs(model.exemplars, x, m, radius=2, shift=1, pool=40, top=3)
    hole = m[0, 0].bool()
    assert torch.allclose(pairs.values[0, 0][:, hole], x[0][:, hole], atol=1e-5)
    face = torch.div(pairs.idx[0, 0][hole], 9, rounding_mode="floor")
    assert face.unique().numel() == 1 and int(pairs.idx[0, 0][hole][0] % 9) == 7  # (dy, dx) = (1, 0)
    draws = pairs.draw(4, torch.Generator().manual_seed(0))
    assert draws.shape == (4, 3, SIZE, SIZE) and bool((draws[:, :, ~hole] == 0).all())
    allowed = pairs.values[0][:, :, hole]  # (top, C, holes)
    assert all(bool(((allowed - d[:, hole]).abs().amax(1) < 1e-6).any(0).all()) for d in draws)
    assert not torch.equal(draws[0], draws[1])  # a new score per sample


@torch.no_grad()
def test_local_and_sharp_change_only_the_hole(bv, setup):
    model, x, m, mean = setup
    for name in ("local:1:1:10:3:0", "local:1:1:10:3:1:0.5", "sharp:0.5:1", "sharp:0.5:1:scale:1"):
        s = draw(bv, model, name, x, m, mean)
        assert torch.equal(s * (1 - m.repeat(2, 1, 1, 1)), mean.repeat(2, 1, 1, 1) * (1 - m.repeat(2, 1, 1, 1)))
        assert not torch.equal(s, mean.repeat(2, 1, 1, 1))
    assert torch.equal(draw(bv, model, "sharp:0:1", x, m, mean), mean.repeat(2, 1, 1, 1))
    assert torch.equal(draw(bv, model, "local:1:1:10:3:0:0", x, m, mean), mean.repeat(2, 1, 1, 1))


# float32 rounding of mean + shift, then minus mean: a few ulps of values in [-1, 1] (ulp(1) = 1.2e-7)
ULPS = 1e-6


@torch.no_grad()
def test_oracle_moves_each_hole_pixel_by_its_own_error_times_one_draw_per_sample(bv, setup):
    """oracle:G reads the truth: sample r = mean + G |mean - x| z_r in the hole (z_r one normal per sample, the
    variant's draw from draw()'s seeded generator), nothing outside it; oracle:G:S blurs that size by S px first;
    G = 0 is the mean fill."""
    model, x, m, mean = setup
    reps = 3
    y = mean.repeat(reps, 1, 1, 1)
    d = draw(bv, model, "oracle:1", x, m, mean, reps=reps) - y
    z = torch.randn(reps * len(x), generator=torch.Generator().manual_seed(3)).view(-1, 1, 1, 1)
    want = (mean - x).abs().repeat(reps, 1, 1, 1) * z * m.repeat(reps, 1, 1, 1)
    unclamped = (y + want).abs() < 1
    assert torch.allclose(d[unclamped], want[unclamped], rtol=1e-5, atol=ULPS)
    assert want.abs().amax() > 0.05 and unclamped.float().mean() > 0.9  # the check above covers most values
    hole = m.repeat(reps, 1, 1, 1).expand_as(d).bool()
    assert torch.equal(d[~hole], torch.zeros_like(d[~hole]))
    assert torch.equal(draw(bv, model, "oracle:0", x, m, mean, reps=reps), y.clamp(-1, 1))
    blurred = draw(bv, model, "oracle:1:2", x, m, mean, reps=reps) - y
    assert not torch.allclose(blurred, d) and torch.equal(blurred[~hole], torch.zeros_like(blurred[~hole]))


@torch.no_grad()
def test_oracleimg_spreads_each_image_by_the_rule_scaled_to_its_own_rms_error(bv, setup):
    """oracleimg:1: sample r of image i = mean + s_i e z_r, e the detail energy (3 px), s_i such that the RMS of
    s_i e over image i's hole is the RMS of its actual error there, z_r the variant's seeded draw."""
    model, x, m, mean = setup
    reps = 2
    y = mean.repeat(reps, 1, 1, 1)
    d = draw(bv, model, "oracleimg:1", x, m, mean, reps=reps) - y
    e = bv.detail_energy(x, 1 - m, 3.0)
    z = torch.randn(reps * len(x), generator=torch.Generator().manual_seed(3))
    for i in range(len(x)):
        hole = m[i].expand_as(x[i]).bool()
        rms_err = ((mean[i] - x[i])[hole].double() ** 2).mean().sqrt()
        size = e[i].expand_as(x[i])[hole].double()
        s_i = float(rms_err / (size ** 2).mean().sqrt())
        for r in range(reps):
            want = (s_i * float(z[r * len(x) + i]) * size).float()
            got = d[r * len(x) + i][hole]
            unclamped = (y[r * len(x) + i][hole] + want).abs() < 1
            assert torch.allclose(got[unclamped], want[unclamped], rtol=1e-4, atol=ULPS)
            assert want.abs().amax() > 1e-3


@torch.no_grad()
def test_nbrsize_shifts_by_the_nearest_faces_mean_error_size_times_one_draw_per_sample(bv, setup):
    """nbrsize:G: sample r = mean + G s z_r in the hole, s the mean over x's k nearest stored faces c of
    |c - mean pass of c| under the same hole, z_r the variant's seeded draw; G = 0 is the mean fill."""
    model, x, m, mean = setup
    reps, k = 2, model.exemplars.k
    y = mean.repeat(reps, 1, 1, 1)
    d = draw(bv, model, "nbrsize:1", x, m, mean, reps=reps) - y
    faces = model.exemplars.neighbours(x, m, k, None, ((torch.arange(k) + 0.5) / k)[:, None].expand(k, len(x)))
    assert len({round(float(f.sum()), 3) for f in faces[::len(x)]}) == k  # image 0's k faces, each once
    size = (faces - model.mean_pass(faces, m.repeat(k, 1, 1, 1))).abs().view(k, *x.shape).mean(0)
    z = torch.randn(reps * len(x), generator=torch.Generator().manual_seed(3)).view(-1, 1, 1, 1)
    want = size.repeat(reps, 1, 1, 1) * z * m.repeat(reps, 1, 1, 1)
    unclamped = (y + want).abs() < 1
    assert torch.allclose(d[unclamped], want[unclamped], rtol=1e-5, atol=ULPS)
    assert want.abs().amax() > 0.01 and unclamped.float().mean() > 0.9
    assert torch.equal(draw(bv, model, "nbrsize:0", x, m, mean, reps=reps), y.clamp(-1, 1))


@torch.no_grad()
def test_hybs_is_hybrid_with_the_refiners_scale_at_that_gain_and_raw_takes_the_refiner_out(bv, tmp_path):
    """hybs:G draws the model's hybrid blend with its stroke refiner's error size at stroke_gain G (and puts the
    gain back); a variant name ending in /raw loads the run with its stroke refiner removed; a run without one is
    refused by hybs."""
    from genfill.models import save_model

    model = build_model({**TINY, "exemplar_blend": "hybrid", "stroke_width": 4}, SIZE, 3)
    imgs = smooth(30, 1)
    model.exemplars.index(torch.arange(30), lambda i: imgs[i], 30, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for p in model.strokes.parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=g))
    model.eval()
    x, m = smooth(2, 4), torch.zeros(2, 1, SIZE, SIZE)
    m[:, :, 8:24, 8:24] = 1
    m[:, :, 28:30, :] = 1  # a 2 px stroke: the refiner's part
    fill, scale = model.mean_fill(x, m)
    shipped = model.hybrid_samples(x, m, fill, 2, torch.Generator().manual_seed(3), None, scale)
    assert torch.equal(draw(bv, model, "hybs:1", x, m, fill), shipped)
    other = draw(bv, model, "hybs:2", x, m, fill)
    assert not torch.equal(other, shipped) and model.cfg.stroke_gain == 1.0
    base = fill.repeat(2, 1, 1, 1)
    twice, once = (other - base)[:, :, 28:30], (shipped - base)[:, :, 28:30]
    free = (base[:, :, 28:30] + 2 * once).abs() < 0.999  # in the stroke where the clamp to [-1, 1] did not act
    assert free.float().mean() > 0.5 and torch.allclose(twice[free], 2 * once[free], atol=1e-5)
    save_model(tmp_path / "run" / "checkpoints" / "best.pt", model)
    assert bv.filler_for(str(tmp_path / "run"), "mean/raw").model.strokes is None
    kept = bv.filler_for(str(tmp_path / "run"), "mean")
    assert kept.model.strokes is not None and kept.name == "mean"
    with pytest.raises(SystemExit, match="stroke refiner"):
        draw(bv, build_model(TINY, SIZE, 3).eval(), "hybs:1", x, m, fill)
