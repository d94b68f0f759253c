"""The training mask bank: what it holds matches make_masks, sampling is binary, seeded and ratio-preserving,
and a bank is drawn once per (kind, params, size, seed, count)."""

import math
from pathlib import Path

import pytest
import torch

import genfill.masks.bank as bank_mod
from genfill.masks import MASK_KINDS, MaskBank, draw_bank, hole_ratio, make_masks, mask_bank
from genfill.errors import GenfillError

SIDE = 32


@pytest.mark.parametrize("kind", ["thick", "mixed", "box"])
def test_bank_holds_what_make_masks_draws(kind):
    """Packing to bits and back is exact: a bank of one chunk is make_masks' output for the same seed."""
    bank = draw_bank(kind, 100, SIDE, SIDE, seed=3)
    want = make_masks(kind, 100, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    assert torch.equal(bank.masks(), want)
    assert bank.packed.dtype == torch.uint8 and bank.packed.shape == (100, SIDE, SIDE // 8)


def test_any_width_packs_exactly():
    """A width that is not a multiple of 8 (padding bits), a non-square size (no transpose)."""
    bank = draw_bank("thin", 50, 20, 28, seed=1)
    assert torch.equal(bank.masks(), make_masks("thin", 50, 20, 28, generator=torch.Generator().manual_seed(1)))
    m = bank.sample(64, torch.Generator().manual_seed(0))
    assert m.shape == (64, 1, 20, 28)
    assert set(m.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", ["mixed", "thick", "thin", "box"])
def test_sampled_masks_are_binary_in_range_and_match_make_masks(kind):
    """Sampled masks are (n,1,H,W) float 0/1 within the kind's guaranteed ratio bounds, and their mean hole
    ratio agrees with make_masks' within 4 standard errors. The bank's own N masks are one sample of the
    kind and n draws from them add their own spread, so the sampled mean has variance s^2 (1/N + 1/n);
    an independent make_masks sample of n adds s^2 / n. A wrong transform or a packing error shifts the
    mean by far more. A two-sample Kolmogorov-Smirnov test (alpha 0.001) compares the whole distribution."""
    n_bank, n = 2048, 2048
    bank = draw_bank(kind, n_bank, SIDE, SIDE, seed=0)
    got = bank.sample(n, torch.Generator().manual_seed(1))
    assert got.shape == (n, 1, SIDE, SIDE) and got.dtype == torch.float32
    assert set(got.unique().tolist()) <= {0.0, 1.0}
    lo, hi = MASK_KINDS[kind].bounds(SIDE, SIDE)
    r = hole_ratio(got).double()
    assert r.min() >= lo - 1e-9 and r.max() <= hi + 1e-9

    ref = hole_ratio(make_masks(kind, n, SIDE, SIDE, generator=torch.Generator().manual_seed(99))).double()
    s2 = ref.var().item()
    se = math.sqrt(s2 * (1 / n_bank + 1 / n) + s2 / n)
    assert abs(r.mean().item() - ref.mean().item()) <= 4 * se, (r.mean(), ref.mean(), se)

    grid = torch.cat([r, ref]).unique()
    cdf = lambda v: torch.searchsorted(v.sort().values, grid, right=True).double() / len(v)  # noqa: E731
    d = (cdf(r) - cdf(ref)).abs().max().item()
    n_eff = n_bank * n / (n_bank + n)  # the bank is the smaller independent sample behind `r`
    assert d <= math.sqrt(-math.log(0.001 / 2) / 2) / math.sqrt(n_eff), d


def _dihedral(m: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for t in (m, m.transpose(-1, -2)):
        out += [t, t.flip(-1), t.flip(-2), t.flip(-1, -2)]
    return out


def _one_mask_bank(rollable: bool) -> tuple[MaskBank, torch.Tensor]:
    m = torch.zeros(1, 1, 16, 16)
    m[..., 2:9, 3:5] = 1  # an L: no symmetry, so its 8 dihedral images are distinct
    m[..., 7:9, 3:12] = 1
    packed = bank_mod._pack_bits(m)
    return MaskBank(packed, torch.tensor([rollable]), 16, 16), m


def test_transforms_are_the_eight_symmetries_and_keep_the_ratio():
    bank, m = _one_mask_bank(rollable=False)
    images = _dihedral(m[0])
    assert len({tuple(t.flatten().tolist()) for t in images}) == 8
    got = bank.sample(200, torch.Generator().manual_seed(0))
    seen = set()
    for s in got:
        match = [i for i, t in enumerate(images) if torch.equal(s, t)]
        assert match, "a sample that is no symmetry of the bank mask"
        seen.add(match[0])
    assert seen == set(range(8))  # P(one of 8 never drawn in 200) < 8 (7/8)^200 ~ 2e-11
    assert torch.equal(hole_ratio(got), hole_ratio(m).expand(200))


def test_rollable_masks_are_rolled_and_keep_the_ratio():
    bank, m = _one_mask_bank(rollable=True)
    got = bank.sample(100, torch.Generator().manual_seed(0))
    assert torch.equal(hole_ratio(got), hole_ratio(m).expand(100))
    rolls = {tuple(torch.roll(t, (dy, dx), (-2, -1)).flatten().tolist())
             for t in _dihedral(m[0]) for dy in range(16) for dx in range(16)}
    plain = {tuple(t.flatten().tolist()) for t in _dihedral(m[0])}
    keys = [tuple(s.flatten().tolist()) for s in got]
    assert all(k in rolls for k in keys)
    assert sum(k not in plain for k in keys) > 50  # 8 of the 256 shifts are no roll at all


def test_stroke_kinds_roll_and_box_kinds_do_not():
    bank = draw_bank("mixed", 600, SIDE, SIDE, seed=0, kinds=["thin", "square"])
    thin = hole_ratio(draw_bank("thin", 10, SIDE, SIDE).masks())
    assert 0.3 < bank.rollable.float().mean() < 0.7
    assert not draw_bank("square", 10, SIDE, SIDE, size=8, margin=2).rollable.any()
    assert draw_bank("thin", 10, SIDE, SIDE).rollable.all() and len(thin) == 10
    # a rolled square would break its margin: sampled squares keep it
    sq = draw_bank("square", 50, SIDE, SIDE, seed=0, size=8, margin=4).sample(500, torch.Generator().manual_seed(0))
    border = torch.ones(SIDE, SIDE, dtype=torch.bool)
    border[4:-4, 4:-4] = False
    assert sq[:, 0, border].sum() == 0


def test_determinism_per_seed():
    a = draw_bank("mixed", 300, SIDE, SIDE, seed=5)
    b = draw_bank("mixed", 300, SIDE, SIDE, seed=5)
    c = draw_bank("mixed", 300, SIDE, SIDE, seed=6)
    assert torch.equal(a.packed, b.packed) and not torch.equal(a.packed, c.packed)
    s1 = a.sample(64, torch.Generator().manual_seed(1))
    s2 = b.sample(64, torch.Generator().manual_seed(1))
    s3 = a.sample(64, torch.Generator().manual_seed(2))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)


def test_cache_is_reused_and_keyed(tmp_path, monkeypatch):
    first = mask_bank("thick", 200, SIDE, SIDE, seed=0, cache_dir=tmp_path)
    files = list((tmp_path / "masks").iterdir())
    assert len(files) == 1 and not list(tmp_path.rglob("*.tmp"))

    def no_draw(*args, **kwargs):
        raise AssertionError("the cached bank was drawn again")

    monkeypatch.setattr(bank_mod, "draw_bank", no_draw)
    again = mask_bank("thick", 200, SIDE, SIDE, seed=0, cache_dir=tmp_path)
    assert torch.equal(first.packed, again.packed) and torch.equal(first.rollable, again.rollable)
    monkeypatch.undo()
    for change in ({"seed": 1}, {"count": 100}, {"max_width": 50}):
        kw = {"seed": 0, "count": 200, **change}
        mask_bank("thick", kw.pop("count"), SIDE, SIDE, cache_dir=tmp_path, **kw)
    assert len(list((tmp_path / "masks").iterdir())) == 4


def test_damaged_cache_file_is_redrawn(tmp_path):
    bank = mask_bank("thin", 50, SIDE, SIDE, seed=0, cache_dir=tmp_path)
    path = next((tmp_path / "masks").iterdir())
    path.write_bytes(b"not a bank")
    again = mask_bank("thin", 50, SIDE, SIDE, seed=0, cache_dir=tmp_path)
    assert torch.equal(bank.packed, again.packed)


def test_bad_requests_are_genfill_errors():
    with pytest.raises(GenfillError, match="at least one mask"):
        draw_bank("thin", 0, SIDE, SIDE)
    with pytest.raises(GenfillError, match="unknown mask kind"):
        draw_bank("blob", 10, SIDE, SIDE)
    with pytest.raises(GenfillError, match="unknown parameter"):
        draw_bank("thin", 10, SIDE, SIDE, brush=3)
    bank = draw_bank("thin", 10, SIDE, SIDE)
    if torch.cuda.is_available():
        with pytest.raises(GenfillError, match="generator"):
            bank.sample(2, torch.Generator("cuda"))


def test_training_draws_its_masks_from_the_cached_bank(make_cfg):
    cfg = make_cfg(masks={"kind": "thin", "params": {}, "bank_size": 256})
    from genfill.train import train

    train(cfg, verbose=False)
    files = list((Path(cfg.data.cache_dir) / "masks").glob("thin-32x32-256-*"))
    assert len(files) == 1
    no_bank = make_cfg(name="nobank", masks={"kind": "thin", "params": {}, "bank_size": 0})
    assert train(no_bank, verbose=False).step == 2
    with pytest.raises(GenfillError, match="bank_size"):
        make_cfg(masks={"kind": "thin", "params": {}, "bank_size": -1})
