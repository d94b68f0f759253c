"""The patchmatch peer: exemplar fill that continues a texture (where a smooth fill blurs), seeded and
deterministic, shape/channel contract shared with the other peers (tests/test_peers.py)."""

import math

import torch

from genfill.peers import PEERS, biharmonic, patchmatch


def _checker(h: int = 48, w: int = 48, period: int = 8) -> torch.Tensor:
    """A periodic texture in [-0.8, 0.8]: a product of sines, period `period` px in both directions."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    t = 0.8 * torch.sin(2 * math.pi * xx / period) * torch.cos(2 * math.pi * yy / period)
    return torch.stack([t, -t, 0.5 * t]).unsqueeze(0)


def _hole(h: int = 48, w: int = 48, top: int = 18, size: int = 12) -> torch.Tensor:
    m = torch.zeros(1, 1, h, w)
    m[..., top:top + size, top:top + size] = 1
    return m


def test_patchmatch_continues_a_periodic_texture_far_better_than_a_smooth_fill():
    x, m = _checker(), _hole()
    hole = m.expand_as(x) > 0
    err_pm = (patchmatch(x, m) - x).abs()[hole].mean().item()
    err_smooth = (biharmonic(x, m) - x).abs()[hole].mean().item()
    # The texture's mean |value| is ~0.35; the biharmonic fill of a 12 px hole over 1.5 periods is close to
    # the mean (a blur), while copied patches reproduce the periodic pattern up to 8-bit rounding and
    # a phase slip at the seams: demand a fill at least 4x closer than the smooth one and under one tenth of
    # the texture's amplitude.
    assert err_smooth > 0.15
    assert err_pm < err_smooth / 4
    assert err_pm < 0.08


def test_patchmatch_is_deterministic_and_keeps_known_pixels():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 40, 40, generator=g) * 2 - 1
    m = torch.zeros(2, 1, 40, 40)
    m[0, :, 8:24, 10:30] = 1
    m[1, :, 20:36, 4:12] = 1
    a, b = patchmatch(x, m), patchmatch(x, m)
    assert torch.equal(a, b)
    known = (m == 0).expand_as(x)
    assert torch.equal(a[known], x[known])
    # Each image is filled on its own: the first image's fill does not depend on the second one.
    assert torch.equal(patchmatch(x[:1], m[:1]), a[:1])


def test_patchmatch_fills_only_from_the_image_itself():
    """Exemplar fill copies known pixels: a two-colour image is filled with those two colours only."""
    levels = torch.full((1, 3, 32, 32), 51.0)  # two 8-bit levels, so the 8-bit round trip is exact
    levels[..., :, 16:] = 178.0
    x = levels / 127.5 - 1
    m = _hole(32, 32, 10, 10)
    out = patchmatch(x, m)
    vals = set(torch.unique(((out + 1) * 127.5).round()[m.expand_as(x) > 0]).tolist())
    assert vals == {51.0, 178.0}  # both sides continue into the hole, nothing in between


def test_patchmatch_greyscale_and_all_hole():
    x = _checker()[:, :1]
    m = _hole()
    out = patchmatch(x, m)
    assert out.shape == x.shape and torch.isfinite(out).all()
    full = torch.ones(1, 1, 48, 48)
    assert torch.equal(patchmatch(x, full), torch.zeros_like(x))  # nothing known: mid-grey, as the mean peer


def test_patchmatch_is_a_registered_peer():
    from genfill.config import PEER_NAMES

    assert PEERS["patchmatch"] is patchmatch and "patchmatch" in PEER_NAMES
