"""The sampler's stroke refiner (genfill.models.strokes, `stroke_width > 0`): an untrained one changes nothing,
a trained one corrects the mean fill only in thin strokes, its training terms (seeded strokes, gradients to the
refiner alone), its error size sizing hybrid's thin-stroke shift, checkpoints, export, and bad settings."""

from __future__ import annotations

import pytest
import torch

from genfill.errors import GenfillError
from genfill.models import build_model, load_model, save_model
from genfill.models.sampler import thin_part
from genfill.models.strokes import SCALE_UNIT
from genfill.pixels import composite

SIZE = 32
TINY = {"kind": "sampler", "widths": [8, 16], "smooth_iters": 5, "noise_channels": 2, "w_perceptual": 0.0,
        "w_adv": 0.0, "train_samples": 0, "exemplars": 40, "exemplar_k": 3, "exemplar_key": 8, "stroke_width": 8}


def model_with(images: torch.Tensor, **kw):
    torch.manual_seed(0)
    model = build_model({**TINY, **kw}, SIZE, 3)
    model.exemplars.index(torch.arange(len(images)), lambda idx: images[idx], len(images),
                          torch.Generator().manual_seed(0))
    return model


def images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1) * 0.5


def holes(n: int) -> torch.Tensor:
    """A 16 px square (wide: no thin part inside) and a 2 px stroke across the image (all thin part)."""
    m = torch.zeros(n, 1, SIZE, SIZE)
    m[:, :, 8:24, 8:24] = 1
    m[:, :, 28:30, :] = 1
    return m


def perturb(module: torch.nn.Module, seed: int = 1, size: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(size * torch.randn(p.shape, generator=g))


def test_thin_part_is_one_in_2px_strokes_and_zero_in_wide_holes_and_outside():
    m = holes(1)
    t = thin_part(m)[0, 0]
    assert t[28:30, :].min() == 1 and t[12:20, 12:20].max() == 0 and t[:6, :].max() == 0
    assert t[30:, :].max() == 0 and t.max() <= 1 and t.min() >= 0


def test_an_untrained_refiner_leaves_the_mean_fill_and_says_its_unit_scale():
    x, m = images(2, 3), holes(2)
    model = model_with(images(30, 1)).eval()
    fill, scale = model.mean_fill(x, m)
    assert torch.equal(fill, model.mean_pass(x, m))
    assert torch.allclose(scale, torch.full_like(scale, SCALE_UNIT))
    assert torch.equal(model.fill(x, m, mean=True), composite(x, m, model.mean_pass(x, m)))


def test_a_trained_refiner_corrects_thin_strokes_only_and_its_scale_varies():
    x, m = images(2, 3), holes(2)
    model = model_with(images(30, 1)).eval()
    perturb(model.strokes)
    with torch.no_grad():
        fill, scale = model.mean_fill(x, m)
        raw = model.mean_pass(x, m)
    moved = (fill - raw).abs()
    assert moved[:, :, 28:30, :].amax() > 1e-3  # the stroke
    assert moved[:, :, 12:20, 12:20].amax() == 0  # deep in the square
    assert moved[:, :, :6, :].amax() == 0  # known pixels
    assert scale.std() > 1e-3 and scale.min() > 0
    samples = model.fill_samples(x, m, 3, torch.Generator().manual_seed(4))
    known = (1 - m).bool().expand_as(x)
    assert all(torch.equal(s[known], x[known]) for s in samples)


def test_training_adds_the_stroke_terms_seeded_and_only_the_refiner_learns_from_them():
    x, m = images(4, 3), holes(4)
    model = model_with(images(30, 1)).train()
    torch.manual_seed(7)
    out = model(x, m)
    parts = out.parts
    assert {"psnr_loss", "stroke_l1", "stroke_nll"} <= set(parts)
    want = parts["psnr_loss"] + parts["stroke_l1"] + 0.1 * parts["stroke_nll"]
    assert torch.allclose(out.loss, want, rtol=1e-6, atol=1e-6)
    # the same seed draws the same strokes (a fresh model: its generator is seeded from torch.initial_seed())
    again = model_with(images(30, 1)).train()
    torch.manual_seed(7)
    assert torch.equal(again(x, m).parts["stroke_l1"], parts["stroke_l1"])
    # the stroke terms alone: gradients reach the refiner, not the U-Net (its mean pass is an input there)
    only = model_with(images(30, 1), w_mean=0.0).train()
    torch.manual_seed(7)
    only(x, m).loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in only.net.parameters())
    assert only.strokes.out.weight.grad.abs().max() > 0


def test_the_refiners_scale_learns_the_size_of_its_error():
    """A few Adam steps on the stroke terms move b from its unit 0.05 to the corrected fill's mean absolute error
    on the strokes (the Laplace NLL's minimiser; here ~0.27, random images): the NLL falls and, on strokes it has
    not seen, b's mean is within a factor 1.5 of that error."""
    x = images(8, 3)
    model = model_with(images(30, 1)).train()
    opt = torch.optim.Adam(model.strokes.parameters(), lr=1e-2)
    torch.manual_seed(0)
    first = None
    for _ in range(30):
        parts = model.stroke_loss(x)
        loss = parts["stroke_l1"] + 0.1 * parts["stroke_nll"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(parts["stroke_nll"].detach()) if first is None else first
    last = float(model.stroke_loss(x)["stroke_nll"].detach())
    assert last < first - 1.0
    m = model.stroke_holes(x)  # fresh strokes: b's mean there is the corrected fill's mean absolute error
    with torch.no_grad():
        mean = model.mean_pass(x, m)
        correction, b = model.strokes(x, m, mean)
    t = thin_part(m).expand_as(x) > 0.5
    size, err = float(b[t].mean()), float((mean + correction - x).abs()[t].mean())
    assert err > 3 * SCALE_UNIT and 0.67 < size / err < 1.5


def test_hybrid_shifts_thin_strokes_by_stroke_gain_times_the_refiners_scale():
    x, m = images(2, 3), holes(2)
    model = model_with(images(30, 1), exemplar_blend="hybrid", stroke_gain=1.5).eval()
    perturb(model.strokes)
    with torch.no_grad():
        fill, scale = model.mean_fill(x, m)
    samples = model.fill_samples(x, m, 3, torch.Generator().manual_seed(4))
    stroke = (slice(None), slice(None), slice(28, 30), slice(None))
    ratio = (samples[(slice(None),) + stroke] - fill[stroke]) / (1.5 * scale[stroke])  # (K, N, C, 2, W): z
    z = ratio[:, :, :1, :1, :1]
    assert torch.allclose(ratio, z.expand_as(ratio), atol=1e-4)  # one normal per sample and image
    assert (z[0] - z[1]).abs().min() > 1e-3


def test_checkpoint_round_trip_and_no_onnx_export(tmp_path):
    from genfill.export import export_model, load_export

    x, m = images(2, 3), holes(2)
    model = model_with(images(30, 1)).eval()
    perturb(model.strokes)
    save_model(tmp_path / "m.pt", model)
    back, _ = load_model(tmp_path / "m.pt", "cpu")
    assert torch.equal(back.fill(x, m, mean=True), model.fill(x, m, mean=True))
    assert any(k.startswith("strokes.") for k in back.state_dict())
    export_model(tmp_path / "m.pt", tmp_path / "exp")
    again, _ = load_export(tmp_path / "exp")
    assert torch.equal(again.fill(x, m, mean=True), model.fill(x, m, mean=True))
    plain = build_model({**TINY, "train_samples": 2, "exemplars": 0}, SIZE, 3)  # ONNX-able but for the refiner
    save_model(tmp_path / "p.pt", plain)
    with pytest.raises(GenfillError, match="stroke refiner has no ONNX export"):
        export_model(tmp_path / "p.pt", tmp_path / "exp2", onnx=True)
    assert model_with(images(30, 1), stroke_width=0).strokes is None


def test_the_refiner_trains_at_its_own_learning_rate():
    """param_groups: the refiner's parameters in a group of their own with lr_scale = stroke_lr, every other trained
    parameter in the first (and no parameter twice); set_lr gives each group the schedule's lr times its scale;
    without a refiner, one group of every generator parameter."""
    from genfill.runs import set_lr

    model = model_with(images(30, 1), stroke_lr=3.0)
    rest, strokes = model.param_groups()
    assert strokes["lr_scale"] == 3.0 and "lr_scale" not in rest
    assert {id(p) for p in strokes["params"]} == {id(p) for p in model.strokes.parameters()}
    assert len(rest["params"]) + len(strokes["params"]) == len(model.generator_parameters())
    opt = torch.optim.Adam(model.param_groups(), lr=1.0)
    set_lr(opt, 2e-4)
    assert [g["lr"] for g in opt.param_groups] == [2e-4, pytest.approx(6e-4)]
    plain = model_with(images(30, 1), stroke_width=0)
    (only,) = plain.param_groups()
    assert len(only["params"]) == len(plain.generator_parameters()) and "lr_scale" not in only


@pytest.mark.parametrize("bad", [{"stroke_width": -1}, {"stroke_gain": -0.5}, {"w_stroke": -1.0}, {"stroke_lr": 0.0}])
def test_bad_stroke_settings_are_refused(bad):
    with pytest.raises(GenfillError, match="stroke|loss weights"):
        build_model({**TINY, **bad}, SIZE, 3)
