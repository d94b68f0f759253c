import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from genfill import losses
from genfill.errors import GenfillError
from genfill.metrics import PSNR_MAX_DB, edge_error, l1, mse, psnr, ssim


def _pair(n=3, c=3, h=32, w=32, noise=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * 2 - 1
    pred = (target + noise * torch.randn(n, c, h, w, generator=g, dtype=torch.float64)).clamp(-1, 1)
    return pred, target


def _mask(n=3, h=32, w=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, h, w, generator=g, dtype=torch.float64) < 0.3).double()


def _ssim_map(pred, target):
    return tm_ssim((pred + 1) / 2, (target + 1) / 2, reduction="none", return_full_image=True, **losses.SSIM_KWARGS)


def _hwc01(x):  # (C,H,W) in [-1, 1] -> HWC in [0, 1] numpy
    return ((x + 1) / 2).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("c", [1, 3])
def test_l1_mse_match_numpy(c):
    pred, target = _pair(c=c)
    p, t = (pred.numpy() + 1) / 2, (target.numpy() + 1) / 2
    np.testing.assert_allclose(l1(pred, target).numpy(), np.abs(p - t).mean(axis=(1, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(mse(pred, target).numpy(), ((p - t) ** 2).mean(axis=(1, 2, 3)), rtol=1e-12)


def test_psnr_matches_skimage():
    pred, target = _pair()
    ours = psnr(pred, target)
    for i in range(len(pred)):
        ref = peak_signal_noise_ratio(_hwc01(target[i]), _hwc01(pred[i]), data_range=1)
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)


def test_psnr_of_identical_images_is_capped():
    _, target = _pair()
    assert torch.all(psnr(target, target) == PSNR_MAX_DB)


@pytest.mark.parametrize("c", [1, 3])
def test_ssim_matches_skimage(c):
    pred, target = _pair(c=c, h=48, w=48)
    ours = ssim(pred, target)
    # The SSIM map away from the 5-pixel border, where the two libraries' padding conventions agree.
    _, full = _ssim_map(pred, target)
    for i in range(len(pred)):
        ref = structural_similarity(
            _hwc01(target[i]), _hwc01(pred[i]), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1, channel_axis=2,
        )
        assert full[i, :, 5:-5, 5:-5].mean().item() == pytest.approx(ref, abs=1e-3)
        # Whole-image value: torchmetrics also averages the reflect-padded border.
        assert ours[i].item() == pytest.approx(ref, abs=1e-2)


def test_masked_metrics_equal_metrics_on_hole_pixels():
    pred, target = _pair()
    m = _mask()
    for i in range(len(pred)):
        hole = m[i, 0].bool()
        d = ((pred[i] - target[i]) / 2)[:, hole]  # [0, 1]-scale differences at hole pixels, all channels
        assert l1(pred, target, m)[i].item() == pytest.approx(d.abs().mean().item(), rel=1e-12)
        e = (d**2).mean().item()
        assert mse(pred, target, m)[i].item() == pytest.approx(e, rel=1e-12)
        assert psnr(pred, target, m)[i].item() == pytest.approx(-10 * np.log10(e), rel=1e-12)


def test_masked_ssim_and_edge_average_their_maps_over_the_hole():
    pred, target = _pair()
    m = _mask()
    _, full = _ssim_map(pred, target)
    grey = lambda x: ((x + 1) / 2 * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    emap = (losses.sobel_magnitude(grey(pred)) - losses.sobel_magnitude(grey(target))).abs()
    for i in range(len(pred)):
        hole = m[i, 0].bool()
        assert ssim(pred, target, m)[i].item() == pytest.approx(full[i][:, hole].mean().item(), rel=1e-10)
        assert edge_error(pred, target, m)[i].item() == pytest.approx(emap[i][:, hole].mean().item(), rel=1e-10)


def test_empty_hole_gives_nan():
    pred, target = _pair(n=2)
    m = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
    m[1, :, :4, :4] = 1
    for fn in (l1, mse, psnr, ssim, edge_error):
        v = fn(pred, target, m)
        assert torch.isnan(v[0]) and torch.isfinite(v[1]), fn.__name__


def test_edge_error_zero_for_identical_and_positive_otherwise():
    pred, target = _pair()
    assert torch.all(edge_error(target, target) == 0)
    assert torch.all(edge_error(pred, target) > 0)


def test_sobel_of_a_unit_ramp_is_one_inside():
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    gx, gy = losses.sobel(ramp)
    assert torch.allclose(gx[..., 1:-1], torch.ones(1)) and torch.all(gy == 0)


def test_losses_are_scalars_with_gradients():
    pred, target = _pair()
    pred = pred.float().requires_grad_()
    target = target.float()
    loss = losses.ssim_loss(pred, target) + losses.edge_loss(pred, target, _mask().float())
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(pred.grad).all()
    assert losses.ssim_loss(target, target).item() == pytest.approx(0, abs=1e-6)


def test_shape_errors_are_genfill_errors():
    pred, target = _pair()
    with pytest.raises(GenfillError):
        l1(pred, target[:, :1])
    with pytest.raises(GenfillError):
        psnr(pred, target, torch.zeros(3, 3, 32, 32))
