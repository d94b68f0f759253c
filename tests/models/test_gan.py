"""Seed 002's GAN inpainter: exact parameter counts, GAN training steps, the context blend, determinism,
resume, and use through fill / evaluate_methods."""

from __future__ import annotations

import json

import pytest
import torch

from genfill.masks import fixed_masks
from genfill.errors import GenfillError
from genfill.evaluate import evaluate_methods
from genfill.io import load_checkpoint
from genfill.losses import adversarial_d_loss, adversarial_g_loss, l1_loss
from genfill.models import build_model, load_model
from genfill.models.gan import crop_boxes, hole_boxes
from genfill.train import train

# Seed 002's per-block counts (README: generator 4.88M, discriminator 35.5K).
SEED_BLOCKS = {"enc1": 39_296, "enc2": 221_440, "enc3": 885_248, "attention": 82_241, "bottleneck": 1_180_160,
               "dec3": 1_769_984, "dec2": 590_080, "dec1": 112_387, "discriminator": 35_553}
SEED_GENERATOR = 4_880_836

TINY = {"kind": "gan", "base": 4, "crop_size": 16, "d_base": 4}


def tiny(variant: str, **kw) -> dict:
    return {**TINY, "variant": variant, **kw}


def test_seed_size_parameter_counts_match_the_seed_exactly():
    model = build_model({"kind": "gan", "base": 64, "variant": "context"}, 200, 3)  # no training
    ours = model.block_parameters()
    print("\nblock          ours        seed 002")
    for name, seed in SEED_BLOCKS.items():
        print(f"{name:12s} {ours[name]:>9,}   {seed:>9,}")
    print(f"{'generator':12s} {model.num_parameters():>9,}   {SEED_GENERATOR:>9,} (4.88M)")
    assert ours == SEED_BLOCKS
    assert model.num_parameters() == SEED_GENERATOR
    # Without the mask channel only enc1 changes (3 input channels): 3*64*9 fewer weights, not the seed's.
    no_mask = build_model({"kind": "gan", "base": 64, "mask_channel": False}, 200, 3).block_parameters()
    assert no_mask["enc1"] == SEED_BLOCKS["enc1"] - 64 * 9
    # The whole-image sibling (base 32) (base 32) pinned; its discriminator is the same.
    whole = build_model({"kind": "gan", "base": 32, "variant": "whole"}, 200, 3)
    print(f"whole-image variant, base 32: generator {whole.num_parameters():,}")
    assert whole.num_parameters() == 1_221_860  # by hand: 10,432 + 55,424 + 221,440 + 20,641 + 295,168 + 442,624 + 147,584 + 28,547
    assert whole.block_parameters()["discriminator"] == SEED_BLOCKS["discriminator"]


@pytest.mark.parametrize("variant,adversarial", [("context", "bce"), ("whole", "hinge")])
def test_one_step_updates_both_networks_then_fills_via_evaluate(make_cfg, tiny_data, variant, adversarial):
    spec = tiny(variant, adversarial=adversarial)
    cfg = make_cfg(model=spec, train={"max_steps": 1, "lr": 2e-4, "betas": [0.5, 0.999],
                                      "sample_every_epoch": False})
    torch.manual_seed(cfg.train.seed)  # train() builds the model right after seeding the same way
    before = build_model(cfg.model, 32, 3).state_dict()
    res = train(cfg, verbose=False)
    assert res.step == 1
    path = res.run_dir / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)
    after = ckpt["model"]
    for prefix in ("generator.", "discriminator."):
        keys = [k for k in after if k.startswith(prefix) and after[k].is_floating_point() and "running" not in k]
        assert any(not torch.equal(before[k], after[k]) for k in keys), f"{prefix} did not move"
    assert ckpt["optim_d"] is not None and ckpt["optim_d"]["state"], "discriminator optimiser not saved"
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_row = next(r for r in rows if r["split"] == "train")
    for key in ("l1", "edge", "ssim", "adv", "d_loss", "d_real", "d_fake"):
        assert key in train_row and train_row[key] == train_row[key], key  # logged and not NaN

    # The checkpoint alone rebuilds the model, which fills under any mask kind through evaluate_methods.
    model, ckpt = load_model(path, expect_kind="gan")
    assert ckpt["num_parameters"] == model.num_parameters()
    kinds = {"square": {"size": 12, "margin": 4}, "thick": {}}
    r = evaluate_methods({"gan": lambda x, m: model.fill(x, m)}, tiny_data, kinds, n=6)["gan"]
    assert len(r.records) == 12
    assert all(rec["l1_hole"] == rec["l1_hole"] for rec in r.records)
    with pytest.raises(GenfillError):
        model.fill(tiny_data.batch(tiny_data.split("test")[:1]), torch.ones(1, 1, 32, 32), method="optimize")


MASK_KINDS = {"square": {"size": 12, "margin": 4}, "box": {}, "center": {}, "freeform": {}, "thin": {},
              "medium": {}, "thick": {}, "mixed": {}}


@pytest.mark.parametrize("kind", sorted(MASK_KINDS))
@pytest.mark.parametrize("context", [0, 4])
def test_context_blend_keeps_every_known_pixel(kind, context):
    torch.manual_seed(0)
    model = build_model(tiny("context", context=context), 32, 3).eval()
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    m = fixed_masks(kind, 6, 32, 32, seed=3, **MASK_KINDS[kind])
    out = model.fill(x, m)
    known = (m == 0).expand_as(x)
    assert torch.equal(out[known], x[known])  # exact, the context ring included
    assert not torch.equal(out[~known], x[~known])  # the hole does take the generator's output
    # Every hole pixel lies inside its image's box, so the pasted prediction covers the whole hole.
    for i, (t, l, b, r) in enumerate(hole_boxes(m, context).tolist()):
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[t:b, l:r] = True
        assert not (m[i, 0].bool() & ~inside).any()


def test_boxes_dilate_by_context_and_crop_exactly_at_crop_size():
    m = torch.zeros(2, 1, 64, 64)
    m[0, :, 16:48, 16:48] = 1  # seed 002's 32x32 hole, 16 px margin
    m[1, :, 0:8, 50:64] = 1  # a corner hole: rows -4..12, cols 46..68 -> squared to 22 and kept inside
    boxes = hole_boxes(m, 4)
    assert boxes.device == m.device and boxes.dtype == torch.long
    assert boxes.tolist() == [[12, 12, 52, 52], [0, 42, 22, 64]]
    x = torch.rand(2, 3, 64, 64)
    crops = crop_boxes(x, boxes, 40)
    torch.testing.assert_close(crops[0], x[0, :, 12:52, 12:52], atol=1e-5, rtol=0)


def test_same_seed_gives_identical_weights(make_cfg):
    states = []
    for name in ("a", "b"):
        cfg = make_cfg(model=tiny("context"), name=name, train={"max_steps": 2, "sample_every_epoch": False})
        res = train(cfg, verbose=False)
        states.append(load_checkpoint(res.run_dir / "checkpoints" / "last.pt")["model"])
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_resume_continues_both_optimisers(make_cfg):
    cfg = make_cfg(model=tiny("whole"), train={"max_steps": 1, "sample_every_epoch": False})
    train(cfg, verbose=False)
    with pytest.raises(GenfillError):
        train(cfg, verbose=False)  # a second fresh run into the same directory is refused
    cfg2 = make_cfg(model=tiny("whole"), train={"max_steps": 2, "epochs": 3, "sample_every_epoch": False})
    res = train(cfg2, resume=True, verbose=False)
    assert res.step == 2
    ckpt = load_checkpoint(res.run_dir / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2
    assert int(ckpt["optim"]["state"][0]["step"]) == 2
    assert int(ckpt["optim_d"]["state"][0]["step"]) == 2


@pytest.mark.parametrize("bad", [{"variant": "crop"}, {"crop_size": 20}, {"adversarial": "wgan"},
                                 {"w_l1": -1.0}, {"base": 0}])
def test_bad_config_is_a_one_line_error(make_cfg, bad):
    with pytest.raises(GenfillError):
        make_cfg(model={**TINY, **bad})


def test_adversarial_and_l1_losses():
    zero = torch.zeros(4, 1, 3, 3)
    ln2 = torch.log(torch.tensor(2.0))
    torch.testing.assert_close(adversarial_d_loss(zero, zero, "bce"), 2 * ln2)
    torch.testing.assert_close(adversarial_g_loss(zero, "bce"), ln2)
    big = torch.full_like(zero, 5.0)
    assert adversarial_d_loss(big, -big, "hinge") == 0  # confident and right: no hinge loss
    assert adversarial_g_loss(big, "hinge") == -5
    pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert l1_loss(pred, target) == 0.25
    assert l1_loss(pred, target, mask, hole_weight=3.0) == 0.5  # 3 / (3 + 1 + 1 + 1)


def test_boxes_match_a_per_image_reference_and_need_no_host():
    """The device computation equals the obvious per-image loop (first/last hole row and column, dilated,
    squared, kept inside); an image without a hole gets the whole image."""
    def reference(mi, context, side):
        rows = mi[0].amax(1).nonzero().flatten().tolist()
        cols = mi[0].amax(0).nonzero().flatten().tolist()
        if not rows:
            return [0, 0, side, side]
        t, b, l, r = rows[0] - context, rows[-1] + 1 + context, cols[0] - context, cols[-1] + 1 + context
        size = min(max(b - t, r - l), side)
        t = min(max(t - (size - (b - t)) // 2, 0), side - size)
        l = min(max(l - (size - (r - l)) // 2, 0), side - size)
        return [t, l, t + size, l + size]

    m = torch.cat([fixed_masks(kind, 4, 32, 32, seed=5) for kind in ("thin", "thick", "box", "freeform")])
    m = torch.cat([m, torch.zeros(1, 1, 32, 32)])
    for context in (0, 4, 8):
        want = [reference(mi, context, 32) for mi in m]
        assert hole_boxes(m, context).tolist() == want
