import numpy as np
import pytest
import torch

from genfill.errors import GenfillError
from genfill.peers import PEERS


def _images(c):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, c, 24, 24, generator=g) * 2 - 1
    m = torch.zeros(2, 1, 24, 24)
    m[0, :, 5:12, 6:14] = 1
    m[1, :, 15:20, 2:22] = 1
    return x, m


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_keeps_known_pixels_and_fills_holes(name, c):
    x, m = _images(c)
    out = PEERS[name](x, m)
    assert out.shape == x.shape and out.dtype == x.dtype
    known = (m == 0).expand_as(x)
    assert torch.equal(out[known], x[known])
    hole = out[~known]
    assert torch.isfinite(hole).all() and hole.min() >= -1 and hole.max() <= 1


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_with_empty_mask_is_identity(name):
    x, _ = _images(3)
    assert torch.equal(PEERS[name](x, torch.zeros(2, 1, 24, 24)), x)


@pytest.mark.parametrize("name", ["telea", "ns", "biharmonic"])
def test_smooth_gradient_is_filled_closely(name):
    h = w = 32
    yy, xx = torch.meshgrid(torch.linspace(-0.8, 0.8, h), torch.linspace(-0.8, 0.8, w), indexing="ij")
    x = torch.stack([xx, yy, (xx + yy) / 2]).unsqueeze(0)
    m = torch.zeros(1, 1, h, w)
    m[..., 14:18, 14:18] = 1
    hole = m.expand_as(x) > 0
    err = (PEERS[name](x, m) - x).abs()[hole]
    mean_err = (PEERS["mean"](x, m) - x).abs()[hole]
    # Measured on this 4x4 hole ([-1, 1] units): Telea max 0.060 / mean 0.024, NS 0.041 / 0.016,
    # biharmonic ~1e-8 (exact on a linear ramp), mean fill 0.077 / 0.045. One 8-bit level is 0.008.
    assert err.max().item() < 0.08
    assert err.mean().item() < 0.03
    assert err.mean().item() < 0.6 * mean_err.mean().item()


def test_mean_fill_uses_known_pixel_mean():
    x, m = _images(3)
    out = PEERS["mean"](x, m)
    for i in range(2):
        expected = x[i][:, m[i, 0] == 0].mean(1)
        np.testing.assert_allclose(out[i][:, m[i, 0] == 1].numpy(), expected[:, None].expand(-1, int(m[i].sum())).numpy(), rtol=1e-5)


def test_bad_mask_shape():
    x, m = _images(3)
    with pytest.raises(GenfillError):
        PEERS["telea"](x, m[:, :, :10])


def test_peer_names_are_defined_once():
    from genfill.config import PEER_NAMES
    from genfill.peers import PEERS

    assert tuple(PEERS) == PEER_NAMES


def _quadratic(side: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A quadratic surface (biharmonic: its discrete bilaplacian is 0) in [-0.8, 0.8], and a 12x12 hole."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side, dtype=torch.float64),
                            torch.linspace(0, 1, side, dtype=torch.float64), indexing="ij")
    f = (xx - 0.3) ** 2 + 0.5 * (yy - 0.6) ** 2 + 0.3 * xx * yy
    f = (f - f.min()) / (f.max() - f.min()) * 1.6 - 0.8
    x = torch.stack([f, f.flip(0), f.t()])[None].float()
    m = torch.zeros(1, 1, side, side)
    m[..., 10:22, 8:20] = 1
    return x, m


def test_biharmonic_is_exact_on_a_quadratic_surface():
    """Only the biharmonic peer reproduces a quadratic inside the hole (to float precision)."""
    x, m = _quadratic()
    assert ((PEERS["biharmonic"](x, m) - x).abs() * m).max().item() < 1e-4
    for name in ("telea", "ns", "mean"):
        assert ((PEERS[name](x, m) - x).abs() * m).max().item() > 0.05, name


def test_telea_is_opencv_fast_marching_and_uses_its_radius():
    """Telea's fill depends on its neighbourhood radius (no other peer has one) and is cv2.INPAINT_TELEA."""
    import cv2

    from genfill.peers import telea

    x, m = _quadratic()
    r1, r3, r8 = telea(x, m, radius=1), telea(x, m, radius=3), telea(x, m, radius=8)
    assert (r1 - r8).abs().max().item() > 0.05 and (r3 - r8).abs().max().item() > 0.02
    assert torch.equal(PEERS["telea"](x, m), r3)  # the default radius is 3
    u8 = ((x[0].permute(1, 2, 0).double() + 1) / 2 * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    ref = cv2.inpaint(u8, m[0, 0].to(torch.uint8).numpy(), 8, cv2.INPAINT_TELEA)
    ref = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert torch.allclose(r8 * m, ref * m, atol=1e-5)
    assert (PEERS["telea"](x, m) - PEERS["ns"](x, m)).abs().max().item() > 0.02
