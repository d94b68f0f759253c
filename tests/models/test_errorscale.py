"""The sampler's error-size head (genfill.models.errorscale): its loss is minimised by the mean |error|, it
learns where the mean fill errs without touching the mean pass's training, and the hybrid blend sizes its
thin-stroke spread by it."""

from __future__ import annotations

import pytest
import torch

from genfill.errors import GenfillError
from genfill.models import build_model, load_model, save_model
from genfill.models import sampler as sampler_module
from genfill.models.errorscale import laplace_nll
from tests.models.test_exemplars import SIZE, TINY, smooth_images, store

HEAD = {**TINY, "train_samples": 0, "w_adv": 0.0, "exemplar_blend": "hybrid", "scale_width": 8}


def head_model(**kw):
    torch.manual_seed(0)
    return build_model({**HEAD, **kw}, SIZE, 3)


def test_laplace_nll_is_least_at_the_mean_absolute_error_and_counts_only_hole_values():
    g = torch.Generator().manual_seed(0)
    err = torch.randn(2, 3, 16, 16, generator=g) * 0.2
    m = torch.zeros(2, 1, 16, 16)
    m[:, :, 4:12, 4:12] = 1
    target = float(err[m.expand_as(err).bool()].abs().mean())
    grid = torch.linspace(0.05, 0.4, 351)
    nll = torch.stack([laplace_nll(torch.full_like(err, float(b)), err, m) for b in grid])
    assert abs(float(grid[nll.argmin()]) - target) < 1.5e-3  # d/db (|e|/b + log b) = 0 at b = mean |e|
    outside = err.clone()
    outside[:, :, :4] = 9.0  # known pixels' values never count
    assert torch.equal(laplace_nll(torch.full_like(err, 0.2), outside, m), laplace_nll(torch.full_like(err, 0.2), err, m))


def test_the_head_does_not_change_how_the_mean_pass_trains():
    """Same weights, same batch: the mean pass's gradients with the head equal those without it (the head reads
    the mean fill detached); the head gets gradients of its own and logs scale_nll."""
    x = smooth_images(4, 1)
    m = torch.zeros(4, 1, SIZE, SIZE)
    m[:, :, 10:22, 6:26] = 1
    with_head, without = head_model(), head_model(scale_width=0)
    without.load_state_dict({k: v for k, v in with_head.state_dict().items() if not k.startswith("error_scale.")})
    grads = []
    for model in (with_head, without):
        model.train()
        out = model(x, m)
        out.loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if k.startswith("net.")})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(torch.allclose(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7) for k in grads[0])
    assert "scale_nll" not in out.parts  # `without` has no head
    assert "scale_nll" in with_head(x, m).parts
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in with_head.error_scale.parameters())


def test_the_head_learns_where_the_mean_fill_errs():
    """Images flat on the left half and striped on the right: the mean pass cannot know the stripes' phase under a
    stroke, so its error is large on the right and small on the left. After training the head only (the mean
    pass frozen), its predicted size under a new stroke is several times larger on the striped side."""
    g = torch.Generator().manual_seed(4)

    def images(n):
        x = torch.full((n, 3, SIZE, SIZE), -0.2) + 0.05 * torch.randn(n, 3, 1, 1, generator=g)
        phase = torch.randint(0, 2, (n, 1, 1, 1), generator=g)
        stripes = ((torch.arange(SIZE)[None, None, :, None] + phase) % 2).float()
        x[:, :, :, SIZE // 2:] += 0.6 * stripes.expand(n, 3, SIZE, SIZE // 2)
        return x

    def strokes(n):
        m = torch.zeros(n, 1, SIZE, SIZE)
        rows = torch.randint(4, SIZE - 6, (n,), generator=g)
        for i, r in enumerate(rows.tolist()):
            m[i, :, r:r + 2, 2:-2] = 1
        return m

    model = head_model()
    opt = torch.optim.Adam(model.error_scale.parameters(), 3e-3)
    model.train()
    for _ in range(60):
        out = model(images(16), strokes(16))
        opt.zero_grad()
        out.parts["scale_nll"].backward()
        opt.step()
    x, m = images(8), strokes(8)
    with torch.no_grad():
        size = model.error_scale(x, m, model.mean_pass(x, m))
        err = (model.mean_pass(x, m) - x).abs()
    hole = m.expand_as(size).bool()
    left, right = hole.clone(), hole.clone()
    left[..., SIZE // 2:], right[..., :SIZE // 2 + 2] = False, False
    assert float(err[right].mean()) > 3 * float(err[left].mean())  # the setting: the right side is where it errs
    assert float(size[right].mean()) > 3 * float(size[left].mean())


def test_hybrid_shifts_thin_strokes_by_the_heads_size_and_keeps_wide_holes_residual():
    model = head_model()
    imgs = smooth_images(30, 1) + 0.1 * torch.randn(30, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    store(model, imgs.clamp(-1, 1))
    model.eval()
    x = smooth_images(2, 5)
    m = torch.zeros(2, 1, SIZE, SIZE)
    m[0, :, 8:24, 8:24] = 1
    m[1, :, 15:17, :] = 1  # a 2 px stroke
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    samples = model.fill_samples(x, m, 3, g())
    assert torch.equal(samples * (1 - m), x.expand_as(samples) * (1 - m))
    mean = model.fill(x, m, mean=True)
    with torch.no_grad():
        size = sampler_module.HYBRID_SCALE_GAIN * model.error_scale(x, m, model.mean_pass(x, m))
    ratio = ((samples[:, 1] - mean[1]) / size[1])[:, :, 15:17, 2:-2]  # away from the clamp at the image's edge
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-3)  # one normal per sample
    z = ratio[:, 0, 0, 0]
    assert (z[0] - z[1]).abs() > 1e-3 and (z[1] - z[2]).abs() > 1e-3
    residual = build_model({**HEAD, "exemplar_blend": "residual"}, SIZE, 3)
    residual.load_state_dict(model.state_dict())
    residual.eval()
    same = residual.fill_samples(x, m, 3, g())
    assert torch.equal(samples[:, 0, :, 10:22, 10:22], same[:, 0, :, 10:22, 10:22])  # wide: residual


def test_head_round_trips_in_checkpoints_and_config_is_checked(tmp_path):
    model = head_model()
    store(model, smooth_images(30, 1))
    with torch.no_grad():
        for p in model.error_scale.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(tmp_path / "m.pt", model)
    back, _ = load_model(tmp_path / "m.pt")
    x, m = smooth_images(2, 5), torch.zeros(2, 1, SIZE, SIZE)
    m[:, :, 15:17] = 1
    with torch.no_grad():
        assert torch.equal(back.error_scale(x, m, x), model.error_scale(x, m, x))
    assert head_model(scale_width=0).error_scale is None
    with pytest.raises(GenfillError, match="scale_width"):
        build_model({**TINY, "scale_width": 8}, SIZE, 3)  # trained sample passes
    with pytest.raises(GenfillError, match="scale_width"):
        head_model(scale_width=-1)


def test_a_trained_run_with_a_head_logs_its_loss_and_exports_it(tmp_path):
    """Through the training loop: scale_nll is logged, the head's weights move, and the safetensors export fills
    with the head exactly as the run does (hybrid samples, whose thin strokes read it)."""
    import json

    import numpy as np

    from genfill.loadconfig import build_config
    from genfill.data.cache import ImageCache
    from genfill.export import export_model, load_export
    from genfill.train import train

    images = ((smooth_images(48, 11) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    splits = {"train": np.arange(0, 40), "val": np.arange(40, 44), "test": np.arange(44, 48)}
    data = ImageCache(images, splits)
    cfg = build_config({"name": "head", "out_dir": str(tmp_path), "masks": {"kind": "thin"},
                        "data": {"name": "faces64", "size": SIZE, "count": 48},
                        "model": HEAD, "train": {"max_steps": 3, "batch_size": 4, "epochs": 1}})
    res = train(cfg, device="cpu", verbose=False, data=data)
    logged = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("scale_nll" in row for row in logged if row.get("split") == "train")
    model, _ = load_model(res.run_dir, "cpu")
    fresh = head_model()
    assert any(not torch.equal(a, b) for a, b in zip(model.error_scale.state_dict().values(),
                                                     fresh.error_scale.state_dict().values()))
    x = data.batch(torch.as_tensor(splits["test"]))
    m = torch.zeros(4, 1, SIZE, SIZE)
    m[:, :, 15:17] = 1
    export_model(res.run_dir, tmp_path / "exp")
    exported, _ = load_export(tmp_path / "exp")
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(exported.fill_samples(x, m, 3, g()), model.fill_samples(x, m, 3, g()))
