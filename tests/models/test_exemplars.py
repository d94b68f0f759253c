"""The sampler's exemplars (genfill.models.exemplars): lookup by known pixels, never the query itself, seam
correction, the depth ramp, the bank in checkpoints, and samples built on them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genfill.errors import GenfillError
from genfill.models import build_model, load_model, save_model
from genfill.models.exemplars import ExemplarBank, depth_weight, detail_energy, hole_depth, latin_draws

SIZE = 32
TINY = {"kind": "sampler", "widths": [8, 16], "smooth_iters": 5, "noise_channels": 2, "w_perceptual": 0.0,
        "d_base": 8, "d_layers": 2, "exemplars": 40, "exemplar_k": 3, "exemplar_key": 8}


def smooth_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=(SIZE, SIZE), mode="bilinear",
                         align_corners=False)


def square_hole(n: int) -> torch.Tensor:
    m = torch.zeros(n, 1, SIZE, SIZE)
    m[:, :, 8:24, 8:24] = 1
    return m


def store(model, images: torch.Tensor):
    """`model` with all of `images` stored as its exemplars (the training-start index, seeded)."""
    model.exemplars.index(torch.arange(len(images)), lambda idx: images[idx], len(images),
                          torch.Generator().manual_seed(0))
    return model


def bank_of(images: torch.Tensor, k: int = 3) -> ExemplarBank:
    bank = ExemplarBank(3, SIZE, k=k, key_size=8)
    bank.index(torch.arange(len(images)), lambda idx: images[idx], len(images), torch.Generator().manual_seed(0))
    return bank


def test_lookup_finds_the_images_that_share_the_known_pixels_and_never_the_query_itself():
    """Stored: 30 random smooth images plus three that agree with the query outside the hole (and differ
    inside it) and the query itself. Every draw is one of the three; the query is never returned."""
    others = smooth_images(30, 1)
    x = smooth_images(1, 2)
    m = square_hole(1)
    twins = torch.stack([x[0] * (1 - m[0]) + m[0] * v for v in (-0.5, 0.0, 0.5)])
    bank = bank_of(torch.cat([others, twins, x]))
    drawn = bank.neighbours(x, m, reps=60, generator=torch.Generator().manual_seed(1))
    hole_values = drawn[:, :, 8:24, 8:24].mean((1, 2, 3))
    quantum = 1 / 127.5  # stored as uint8
    assert all(min(abs(v - t) for t in (-0.5, 0.0, 0.5)) < quantum for v in hole_values.tolist())
    assert len({round(v, 2) for v in hole_values.tolist()}) == 3  # all three are drawn
    assert (drawn - x).abs().mean((1, 2, 3)).min() > 0.05  # never the query
    mirrored = bank_of(torch.cat([others, twins, x.flip(-1)]))
    assert (mirrored.neighbours(x, m, 20, torch.Generator().manual_seed(1)) - x.flip(-1)).abs().mean((1, 2, 3)).min() > 0.05


def test_draws_follow_the_generator():
    bank = bank_of(smooth_images(30, 1))
    x, m = smooth_images(2, 5), square_hole(2)
    a = bank.neighbours(x, m, 4, torch.Generator().manual_seed(7))
    b = bank.neighbours(x, m, 4, torch.Generator().manual_seed(7))
    c = bank.neighbours(x, m, 4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_seam_correction_keeps_detail_and_matches_the_border():
    """An exemplar that is the truth plus a constant offset is corrected exactly back to the truth; detail
    inside the hole (a checkerboard) survives the correction."""
    x, m = smooth_images(1, 3), square_hole(1)
    assert torch.allclose(ExemplarBank.corrected(x, m, (x + 0.3).clamp(-2, 2)), x.clamp(-1, 1), atol=1e-4)
    checker = ((torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None]) % 2).float() * 0.4 - 0.2
    c = (x + checker).clamp(-1, 1)
    fixed = ExemplarBank.corrected(x, m, c)
    inside = (slice(None), slice(None), slice(12, 20), slice(12, 20))
    assert torch.allclose(fixed[inside] - fixed[inside].mean(), c[inside] - c[inside].mean(), atol=0.1)
    # known pixels: c + (x - c), exact up to float32 rounding of values within [-2, 2] (2 ulp of 2)
    assert torch.allclose(fixed * (1 - m), x * (1 - m), rtol=0, atol=4.8e-7)


def test_depth_weight_ramps_from_the_border_inwards():
    m = square_hole(1)
    w = depth_weight(m, (1.0, 4.0))[0, 0]
    assert w[0, 0] == 0 and w[8, 8] == 0  # known; the hole's first ring (1 px deep)
    assert w[9, 9] == pytest.approx(1 / 3) and w[10, 10] == pytest.approx(2 / 3) and w[16, 16] == 1
    thin = torch.zeros(1, 1, SIZE, SIZE)
    thin[:, :, :, 15:17] = 1  # a 2-px stroke: no pixel is deeper than 1
    assert depth_weight(thin, (1.0, 4.0)).max() == 0


def test_sampler_stores_training_images_at_start_and_its_samples_draw_on_them(tmp_path):
    from genfill.config import DataConfig
    from genfill.loadconfig import build_config
    from genfill.train import train
    from genfill.data.cache import ImageCache
    import numpy as np

    images = ((smooth_images(48, 11) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    splits = {"train": np.arange(0, 40), "val": np.arange(40, 44), "test": np.arange(44, 48)}
    data = ImageCache(images, splits)
    cfg = build_config({"name": "ex", "out_dir": str(tmp_path), "data": {"name": "faces64", "size": SIZE, "count": 48},
                        "model": TINY, "train": {"max_steps": 2, "batch_size": 4, "epochs": 1}})
    res = train(cfg, device="cpu", verbose=False, data=data)
    model, _ = load_model(res.run_dir, "cpu")
    assert len(model.exemplars) == 40
    stored = model.exemplars.stored(slice(None))
    train_imgs = data.batch(torch.as_tensor(splits["train"]))
    assert torch.allclose(stored.sort(0).values, train_imgs.sort(0).values, atol=1e-6)
    x, m = data.batch(torch.as_tensor(splits["test"])), square_hole(4)
    k = model.fill_samples(x, m, 4, torch.Generator().manual_seed(0))
    assert torch.equal(k * (1 - m), x.expand_as(k) * (1 - m))
    assert (k[0] - k[1]).abs().amax() > 0.05  # different exemplars -> different fills
    torch.manual_seed(5)
    a = model.fill(x, m)
    torch.manual_seed(5)
    assert torch.equal(a, model.fill(x, m))
    save_model(tmp_path / "m.pt", model)
    again, _ = load_model(tmp_path / "m.pt", "cpu")
    assert torch.equal(again.exemplars.images, model.exemplars.images)
    torch.manual_seed(5)
    assert torch.equal(again.fill(x, m), a)
    # the export carries the bank (safetensors); ONNX is refused before anything is written
    from genfill.export import export_model, load_export

    export_model(res.run_dir, tmp_path / "exp")
    exported, _ = load_export(tmp_path / "exp")
    torch.manual_seed(5)
    assert torch.equal(exported.fill(x, m), a)
    with pytest.raises(GenfillError, match="exemplars has no ONNX export"):
        export_model(res.run_dir, tmp_path / "exp2", onnx=True)
    assert not (tmp_path / "exp2").exists()


def test_bad_exemplar_settings_are_refused():
    for bad in ({"exemplars": -1}, {"exemplar_k": 0}, {"exemplar_ramp": [3, 1]}, {"exemplar_ramp": [1]}):
        with pytest.raises(GenfillError, match="exemplar"):
            build_model({**TINY, **bad}, SIZE, 3)


def test_untrained_sample_passes_are_the_mean_fill_moved_to_exemplars_and_training_moves_only_the_mean():
    """train_samples 0: a training step runs the mean pass alone; a sample is the mean fill moved towards
    the exemplar fill by depth (so a thin stroke gets the mean fill itself); validation's loss is the mean
    pass's."""
    model = build_model({**TINY, "train_samples": 0, "w_adv": 0.0}, SIZE, 3)
    imgs = smooth_images(30, 1)
    store(model, imgs)
    x, m = smooth_images(2, 4), square_hole(2)
    m[1, :, 2:4, :] = 1  # image 1 also has a 2-px stroke: no pixel of it is 2 px deep
    model.train()
    out = model(x, m)
    assert set(out.parts) == {"psnr_loss"} and out.fake is None and model.discriminator is None
    model.eval()
    with torch.no_grad():
        for p in model.net.parameters():  # a network whose mean pass differs from the classical fill
            p.add_(0.01 * torch.randn_like(p))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    samples = model.fill_samples(x, m, 2, g())
    mean = model.fill(x, m, mean=True)
    assert (mean - model.base_fill(x, m)).abs().amax() > 1e-3
    stroke = (slice(1, 2), slice(None), slice(2, 4), slice(None))
    assert torch.equal(samples[0][stroke], mean[stroke]) and torch.equal(samples[1][stroke], mean[stroke])
    assert (samples[0] - mean)[:, :, 12:20, 12:20].abs().amax() > 0.05  # deep in the square: the exemplar
    u = latin_draws(3, 2, g())  # fill_samples picks its faces first (`latin_draws` over exemplar_k): row 0
    ex = model.exemplars.corrected(x, m, model.exemplars.neighbours(x, m, 1, None, u[:1]))
    beta = depth_weight(m, (2.0, 5.0))
    assert torch.allclose(samples[0], (mean + beta * (ex - mean)).clamp(-1, 1) * m + x * (1 - m), atol=1e-6)
    ev = model(x, m)
    assert torch.equal(ev.loss, ev.parts["mean_psnr_loss"]) and not torch.equal(ev.loss, ev.parts["psnr_loss"])
    with pytest.raises(GenfillError, match="train_samples"):
        build_model({**TINY, "train_samples": 0, "exemplars": 0, "w_adv": 0.0}, SIZE, 3)
    with pytest.raises(GenfillError, match="train_samples"):
        build_model({**TINY, "train_samples": 0}, SIZE, 3)  # w_adv 1: nothing for a discriminator to judge


def test_the_cpu_sampler_preset_trains_the_unet_presets_network():
    """sampler-faces64's mean pass is unet-faces64's network and prior (so the demo's mean fill costs and
    fills as the unet does): every key the two families share has the same value."""
    from genfill.config import resolve_config
    from genfill.loadconfig import load_config
    from genfill.models.sampler import SamplerConfig
    from genfill.models.unet import UNetConfig

    unet = load_config(resolve_config("unet-faces64")).model
    sampler = load_config(resolve_config("sampler-faces64")).model
    shared = set(UNetConfig.__dataclass_fields__) & set(SamplerConfig.__dataclass_fields__) - {"loss_warmup_steps"}
    assert {k: sampler.get(k) for k in shared if k in unet} == {k: unet[k] for k in shared if k in unet}
    assert sampler["exemplars"] > 0 and sampler["train_samples"] == 0


def test_hole_depth_and_detail_energy():
    """hole_depth counts chessboard rings from the known border (1, 2, 3, 2, 1 across a 5 px stroke; 0 outside);
    detail_energy is 0 on a smooth image, grows with the amplitude of fine detail, and inside a hole reads the
    known pixels around it (the textured side of a stroke, not the flat side)."""
    m = torch.zeros(1, 1, SIZE, SIZE)
    m[..., 10:15, :] = 1
    assert hole_depth(m, 5)[0, 0, 8:17, 7].tolist() == [0, 0, 1, 2, 3, 2, 1, 0, 0]
    assert hole_depth(m, 1)[0, 0, 12, 7] == 3  # counted up to cap + 2
    flat = torch.full((1, 3, SIZE, SIZE), 0.3)
    assert detail_energy(flat, 1 - m, 3.0).abs().max() < 1e-5
    checker = ((torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None]) % 2).float().expand(1, 3, SIZE, SIZE)
    a, b = (detail_energy(v * checker, 1 - m, 3.0) for v in (0.1, 0.2))
    assert a.min() > 0.02 and torch.allclose(b, 2 * a, atol=1e-5)
    half = flat.clone()
    half[..., SIZE // 2:] += 0.2 * checker[..., SIZE // 2:]  # texture on the right only
    e = detail_energy(half, 1 - m, 3.0)[0, 0, 12]
    assert e[:6].max() < 1e-3 < 0.05 < e[-6:].min()


def test_hybrid_samples_are_residual_in_wide_holes_and_a_detail_scaled_shift_in_thin_strokes():
    """exemplar_blend hybrid: where the hole is wide (a pixel 3 or more deep within 2 px) a sample is exactly
    the residual blend's for the same generator; in a stroke 1-2 px wide it is the mean fill shifted by
    HYBRID_GAIN x x's detail energy x one normal draw per sample: the same shift on every channel, none where
    x's surroundings are flat, a different one per sample; seeded, known pixels exact."""
    from genfill.models import sampler as sampler_module

    cfg = {**TINY, "train_samples": 0, "w_adv": 0.0}
    hybrid = build_model({**cfg, "exemplar_blend": "hybrid"}, SIZE, 3)
    imgs = smooth_images(30, 1) + 0.1 * torch.randn(30, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    store(hybrid, imgs.clamp(-1, 1))
    residual = build_model({**cfg, "exemplar_blend": "residual"}, SIZE, 3)
    residual.load_state_dict(hybrid.state_dict())
    checker = ((torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None]) % 2).float()
    x = torch.full((2, 3, SIZE, SIZE), 0.1)
    x[:, :, :, SIZE // 2:] += 0.3 * checker[:, SIZE // 2:]  # detail on the right half only, flat on the left
    m = square_hole(2)
    m[1] = 0
    m[1, :, 15:17, :] = 1  # image 1: one 2 px stroke across the image, 1 deep everywhere
    hybrid.eval(), residual.eval()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    samples = hybrid.fill_samples(x, m, 3, g())
    assert torch.equal(samples, hybrid.fill_samples(x, m, 3, g()))
    assert torch.equal(samples * (1 - m), x.expand_as(samples) * (1 - m))
    same = residual.fill_samples(x, m, 3, g())
    # every sample (fill_samples draws the K faces up front, `latin_draws`); every pixel of the 16 px square,
    # its border ring too, lies within 2 px of one 3 deep
    deep = (slice(None), slice(0, 1), slice(None), slice(8, 24), slice(8, 24))
    assert torch.equal(samples[deep], same[deep])
    shift = (samples[:, 1] - hybrid.fill(x, m, mean=True)[1])[:, :, 15:17]  # (3, C, 2, W): the stroke
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)  # one shift for every channel
    energy = detail_energy(x[1:], 1 - m[1:], sampler_module.HYBRID_WINDOW)[0, 0, 15:17]
    ratio = shift[:, 0, :, -8:] / (sampler_module.HYBRID_GAIN * energy[:, -8:])  # the textured side
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-4)  # z: one draw per sample
    z = ratio[:, 0, 0]
    assert (z[0] - z[1]).abs() > 1e-3 and (z[1] - z[2]).abs() > 1e-3 and z.abs().max() > 0.05
    assert shift[:, :, :, :6].abs().max() < 2e-3  # flat surroundings: next to no shift
    torch.manual_seed(5)  # the single seeded fill draws its own normal: one shift for the whole stroke too
    single = (hybrid.fill(x, m) - hybrid.fill(x, m, mean=True))[1, :, 15:17, -8:] / (
        sampler_module.HYBRID_GAIN * energy[:, -8:])
    assert torch.allclose(single, single[:1, :1, :1].expand_as(single), atol=1e-4) and single.abs().max() > 1e-3
    assert (samples[0] - same[0])[1, :, 15:17].abs().amax() > 0.01  # not the residual blend in the stroke
    assert hybrid.cfg.exemplar_blend == "hybrid"
    with pytest.raises(GenfillError, match="exemplar_blend: hybrid"):
        build_model({**TINY, "exemplar_blend": "hybrid"}, SIZE, 3)  # trained sample passes: seam only


def test_residual_samples_are_the_mean_fill_plus_the_exemplars_detail_beyond_its_own_mean_fill():
    """exemplar_blend residual: a sample is mean(x) + (c - mean(c)) in the hole, c the drawn exemplar and
    mean(c) the mean pass on c under the same hole; unlike the seam blend it reaches the hole's border (a thin
    stroke gets spread too), K draws differ, the seed repeats them, and known pixels stay exact."""
    model = build_model({**TINY, "train_samples": 0, "w_adv": 0.0, "exemplar_blend": "residual"}, SIZE, 3)
    imgs = smooth_images(30, 1) + 0.1 * torch.randn(30, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    store(model, imgs.clamp(-1, 1))
    x, m = smooth_images(2, 4), square_hole(2)
    m[1, :, 2:4, :] = 1  # a 2-px stroke: the seam blend leaves it the mean fill, the residual does not
    model.eval()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    samples = model.fill_samples(x, m, 3, g())
    assert torch.equal(samples, model.fill_samples(x, m, 3, g()))
    mean = model.fill(x, m, mean=True)
    u = latin_draws(3, 2, g())  # fill_samples picks its K faces first (`latin_draws`), sample 0 by row 0
    c = model.exemplars.neighbours(x, m, 1, None, u[:1])
    mean_c = model.run(c, m, torch.zeros(2, model.cfg.noise_channels, SIZE, SIZE))
    want = (mean + c - mean_c).clamp(-1, 1) * m + x * (1 - m)
    assert torch.allclose(samples[0], want, atol=1e-6)
    stroke = (slice(1, 2), slice(None), slice(2, 4), slice(None))
    assert (samples[0] - mean)[stroke].abs().amax() > 0.02
    assert (samples[0] - samples[1]).abs().amax() > 0.02
    assert torch.equal(samples * (1 - m), x.expand_as(samples) * (1 - m))
    with pytest.raises(GenfillError, match="exemplar_blend"):
        build_model({**TINY, "exemplar_blend": "residual"}, SIZE, 3)  # trained sample passes: seam only
    with pytest.raises(GenfillError, match="exemplar_blend"):
        build_model({**TINY, "train_samples": 0, "w_adv": 0.0, "exemplar_blend": "paste"}, SIZE, 3)


def test_the_cli_offers_every_blend_the_sampler_has():
    """cli.BLENDS (the --blend choices, kept apart so the CLI parses without torch) names the sampler's blends."""
    from genfill import cli
    from genfill.models import sampler

    assert cli.BLENDS == sampler.BLENDS


def test_the_blend_is_switched_at_load_and_the_samples_stay_on(tmp_path, capsys):
    """genfill.load(run, blend=...) / from_model(model, blend=...) / `genfill fill --blend`: the same weights then
    draw as a model configured with that blend does; a bad name, a family without blends and a peer are refused
    in one line."""
    import numpy as np
    from PIL import Image

    from genfill.api import from_model
    from genfill.cli import main

    cfg = {**TINY, "train_samples": 0, "w_adv": 0.0}
    model = build_model(cfg, SIZE, 3)
    imgs = smooth_images(30, 1)
    store(model, imgs)
    model.eval()
    x, m = smooth_images(2, 4), square_hole(2)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    seam = model.fill_samples(x, m, 2, g())
    painter = from_model(model, blend="residual")
    assert model.cfg.exemplar_blend == "residual" and painter.sample_fn is not None
    ref = build_model({**cfg, "exemplar_blend": "residual"}, SIZE, 3)
    ref.load_state_dict(model.state_dict())
    residual = ref.eval().fill_samples(x, m, 2, g())
    assert torch.equal(model.fill_samples(x, m, 2, g()), residual) and not torch.equal(seam, residual)
    with pytest.raises(GenfillError, match="exemplar_blend"):
        from_model(model, blend="paste")
    with pytest.raises(GenfillError, match="sampler's option"):
        from_model(build_model({"kind": "unet", "widths": [8, 16]}, SIZE, 3), blend="residual")
    Image.fromarray((torch.rand(SIZE, SIZE, 3) * 255).byte().numpy()).save(tmp_path / "in.png")
    Image.fromarray((square_hole(1)[0, 0] * 255).byte().numpy()).save(tmp_path / "mask.png")
    model.use_blend("seam")
    save_model(tmp_path / "seam.pt", model)
    save_model(tmp_path / "residual.pt", ref)
    out = {}
    for name, ckpt, extra in (("switched", "seam.pt", ["--blend", "residual"]), ("residual", "residual.pt", []),
                              ("seam", "seam.pt", [])):
        assert main(["fill", str(tmp_path / "in.png"), "-c", str(tmp_path / ckpt), "--mask", str(tmp_path / "mask.png"),
                     "--seed", "1", "-o", str(tmp_path / f"{name}.png"), "-q", *extra]) in (0, None)
        out[name] = torch.from_numpy(np.asarray(Image.open(tmp_path / f"{name}.png")).copy())
    assert torch.equal(out["switched"], out["residual"]) and not torch.equal(out["switched"], out["seam"])
    capsys.readouterr()
    code = main(["fill", str(tmp_path / "in.png"), "--method", "telea", "--mask-kind", "square", "--blend", "residual",
                 "-o", str(tmp_path / "t.png"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--blend" in err and "\n" not in err and not (tmp_path / "t.png").exists()


def test_eval_and_serve_take_the_blend_for_every_sampler_and_say_so(make_cfg, tmp_path, capsys):
    """`genfill eval --blend` / `genfill serve --blend`: a seam checkpoint evaluated with --blend residual scores what
    the residual checkpoint scores, in a row named NAME-residual that eval.json marks, so pictures redrawn from
    the document draw alike; --blend that reaches no sampler is refused in one line."""
    from genfill.cli import main
    from genfill.config import to_dict
    from genfill.evaljob import evaluate_specs, load_eval
    from genfill.resolve import fillers_of
    from genfill.serve.app import load_methods

    data = make_cfg().data
    size = data.size
    cfg = {**TINY, "train_samples": 0, "w_adv": 0.0}
    model = build_model(cfg, size, 3)
    imgs = F.interpolate(smooth_images(30, 1), size=(size, size), mode="bilinear", align_corners=False)
    store(model, imgs)
    save_model(tmp_path / "seam.pt", model.eval())
    ref = build_model({**cfg, "exemplar_blend": "residual"}, size, 3)
    ref.load_state_dict(model.state_dict())
    save_model(tmp_path / "residual.pt", ref.eval())
    kw = dict(data=to_dict(data), masks="square", n=4, lpips=False, fid=False, gallery=0, verbose=False, report=False)
    switched, _ = load_eval(evaluate_specs([str(tmp_path / "seam.pt"), "telea"], tmp_path / "a", blend="residual", **kw))
    plain, _ = load_eval(evaluate_specs([str(tmp_path / "residual.pt"), str(tmp_path / "seam.pt")], tmp_path / "b", **kw))
    assert list(switched["methods"]) == ["seam-residual", "telea"]
    row = switched["methods"]["seam-residual"]
    assert row["blend"] == "residual" and "blend" not in plain["methods"]["residual"]
    assert row["summary"] == plain["methods"]["residual"]["summary"] != plain["methods"]["seam"]["summary"]
    x, m = imgs[:2], square_hole(2)[..., :size, :size]
    fills = fillers_of(switched, "cpu")
    torch.manual_seed(5)
    got = fills["seam-residual"](x, m)
    torch.manual_seed(5)
    assert torch.equal(got, ref.fill(x, m))
    painters = load_methods([str(tmp_path / "seam.pt")], blend="residual")
    assert painters["seam"].model.cfg.exemplar_blend == "residual" and "seam mean" in painters
    with pytest.raises(GenfillError, match="none of telea is a sampler"):
        load_methods(["telea"], blend="residual")
    with pytest.raises(GenfillError, match="none of telea is a sampler"):
        evaluate_specs(["telea"], tmp_path / "c", blend="residual", **kw)
    capsys.readouterr()
    code = main(["eval", "-c", "telea", "--blend", "residual", "-n", "2", "-o", str(tmp_path / "d"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--blend residual" in err and "\n" not in err


def test_samples_of_a_big_photo_spread_its_thin_strokes_as_hybrid_spreads_strokes():
    """fill_samples of an image larger than the model: the thin part of the hole (filled at native size outside
    the model) was the same in every sample. With the hybrid and residual blends sample k now moves it by
    NATIVE_THIN_GAIN x the detail energy around it x z_k (K normals by one Latin-hypercube draw after the
    fills: one in each K-quantile of the normal): no shift
    where the surround is flat, the wide part and the known pixels untouched, the same seed the same samples;
    with seam nothing moves."""
    import numpy as np

    from genfill.api import from_model, shift_thin
    from genfill.inpaint import thin_part
    from genfill.models.sampler import HYBRID_WINDOW, NATIVE_THIN_GAIN

    cfg = {**TINY, "train_samples": 0, "w_adv": 0.0}
    model = build_model(cfg, SIZE, 3)
    imgs = smooth_images(30, 1)
    store(model, imgs)
    model.eval()
    h, w = 40, 96  # larger than SIZE: native fill, thin part by the harmonic fill
    rng = np.random.default_rng(0)
    photo = np.full((h, w, 3), 120, np.uint8)
    photo[:, 48:] = rng.integers(0, 256, (h, 48, 3))  # left half flat, right half textured
    hole = np.zeros((h, w), bool)
    hole[19:22, 4:92] = True  # a 3 px stroke across both halves
    hole[6:30, 60:84] = True  # a wide square on the textured half
    thin = thin_part(hole, SIZE)
    assert thin is not None and thin[20, 10] and not thin[18, 72] and thin_part(hole[:32, :32], SIZE) is None
    mask = hole.astype(np.uint8) * 255
    flat = thin.copy()
    flat[:, 24:] = False  # the stroke's flat stretch, far from the texture and from the varying square
    seam = from_model(model, blend="seam").fill_samples(photo, mask, 4, seed=5).arrays
    assert np.allclose(seam[0][flat], seam[3][flat], atol=1e-5)  # seam: no shift (the square's fill varies)
    assert model.thin_stroke_gain() == 0
    painter = from_model(model, blend="hybrid")
    a, b = painter.fill_samples(photo, mask, 4, seed=5), painter.fill_samples(photo, mask, 4, seed=5)
    assert np.array_equal(a.arrays, b.arrays)
    known = ~hole
    assert all(np.array_equal(np.asarray(f)[known], photo[known]) for f in a.fills)  # the fills as returned
    assert np.allclose(a.arrays[0][flat], a.arrays[3][flat], atol=1e-5)
    textured = thin.copy()
    textured[:, :48] = False
    model.thin_stroke_gain = lambda: 0.0  # the same draws without the shift (z comes after the fills)
    ref = painter.fill_samples(photo, mask, 4, seed=5).arrays
    del model.thin_stroke_gain
    assert np.array_equal(a.arrays[:, ~thin], ref[:, ~thin])
    energy = detail_energy(torch.from_numpy(photo / 255.0).permute(2, 0, 1)[None].float(),
                           torch.from_numpy(known)[None, None].float(), HYBRID_WINDOW)[0, 0].numpy()
    z = (a.arrays - ref)[:, textured].mean(-1) / (NATIVE_THIN_GAIN * energy[textured])  # (4, pixels): one z a sample
    inside = (ref[:, textured] > 0.02).all(-1) & (ref[:, textured] < 0.98).all(-1) & (
        np.abs(a.arrays[:, textured] - 0.5) < 0.48).all(-1)  # where the clip to [0, 1] did not act
    per = [np.median(z[k][inside[k]]) for k in range(4)]
    assert all(np.allclose(z[k][inside[k]], per[k], atol=1e-3) for k in range(4))
    assert len({round(float(v), 2) for v in per}) == 4 and max(abs(v) for v in per) > 0.3
    quarter = sorted(int(4 * 0.5 * (1 + math.erf(float(v) / math.sqrt(2)))) for v in per)
    assert quarter == [0, 1, 2, 3]  # one z in each quarter of the normal: K fills spread evenly
    assert a.uncertainty[textured].mean() > 0.01 and a.uncertainty[flat].max() < 1e-3
    # the shift itself: gain x energy x z on every colour channel, clipped
    arrays = np.full((2, h, w, 3), 0.5, np.float32)
    shift_thin(arrays, photo / 255.0, hole, thin, np.array([0.0, 2.0]), 3)
    assert np.array_equal(arrays[0], np.full((h, w, 3), 0.5, np.float32))
    want = np.clip(0.5 + 2.0 * energy * thin, 0, 1)
    assert np.allclose(arrays[1], want[..., None], atol=1e-6) and want[textured].max() > 0.55
    assert 0 < NATIVE_THIN_GAIN == model.thin_stroke_gain() and build_model(cfg, SIZE, 3).thin_stroke_gain() == 0


def test_k_fills_draw_k_different_faces_each_drawn_as_one_fill_is():
    """fill_samples picks its K faces by one Latin-hypercube draw (`latin_draws`: one uniform in each [j/K,
    (j+1)/K), in random order, per image): K <= exemplar_k fills of an image use K different faces (independent
    draws repeated one in 44 of 50 test faces at K = 6 of 8); each uniform alone is uniform, so the faces
    every slot gets over many images are spread evenly; seeded."""
    u = latin_draws(5, 4000, torch.Generator().manual_seed(0))
    assert u.shape == (5, 4000) and float(u.min()) >= 0 and float(u.max()) < 1
    assert torch.equal((u * 5).floor().sort(0).values, torch.arange(5.0)[:, None].expand(5, 4000))
    for row in u:  # every row alone: about uniform (each fifth of [0, 1) gets 800 +- a few sigma)
        counts = torch.bincount((row * 5).long(), minlength=5)
        assert int((counts - 800).abs().max()) < 120
    assert torch.equal(u, latin_draws(5, 4000, torch.Generator().manual_seed(0)))
    cfg = {**TINY, "train_samples": 0, "w_adv": 0.0, "exemplar_k": 4}
    imgs = smooth_images(30, 1)
    for blend in ("seam", "residual", "hybrid"):
        model = build_model({**cfg, "exemplar_blend": blend}, SIZE, 3)
        store(model, imgs)
        model.eval()
        x, m = smooth_images(6, 4), square_hole(6)
        for k in (4, 3):  # as many fills as faces, and fewer
            s = model.fill_samples(x, m, k, torch.Generator().manual_seed(1))
            for i in range(6):
                assert all(not torch.equal(s[a, i], s[b, i]) for a in range(k) for b in range(a + 1, k)), (blend, k, i)
        s = model.fill_samples(x, m, 8, torch.Generator().manual_seed(1))  # more fills than faces: each face twice
        for i in range(6):
            same = sum(torch.equal(s[a, i], s[b, i]) for a in range(8) for b in range(a + 1, 8))
            assert same == 4, (blend, i, same)  # the square is wide: hybrid is residual there
    # 6 fills of 8 faces, 40 images: stratified over the 8 faces, never a repeat (stratified over K, repeats)
    model = build_model({**cfg, "exemplar_k": 8}, SIZE, 3)
    store(model, imgs)
    x, m = smooth_images(40, 6), square_hole(40)
    s = model.eval().fill_samples(x, m, 6, torch.Generator().manual_seed(2))
    assert not any(torch.equal(s[a, i], s[b, i]) for i in range(40) for a in range(6) for b in range(a + 1, 6))
