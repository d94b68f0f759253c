from pathlib import Path

import pytest
import torch

from genfill.loadconfig import load_config
from genfill.errors import GenfillError
from genfill.models import REGISTRY, build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# Pinned parameter counts of the seed presets (seed 003's matches its README's layers exactly:
# convs 1->32->64 k4, fc 2304->2x20, fc 20->2304, deconvs 64->32->1).
PRESETS = {
    "seed000-celeba": (582_435, 256, [256, 64, 16, 4]),  # k6 s4 p1 x3 -> 4x4x64, latent 128
    "seed003-faces24": (207_273, 24, [24, 12, 6]),  # 24x24 grey -> 6x6x64, latent 20
    "seed004-celeba": (2_354_467, 64, [64, 32, 16, 8, 4]),  # 4 convs k3 s2, latent 128
    "vae-faces64": (4_531_555, 64, [64, 32, 16, 8, 4]),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_seed_presets_build_run_one_step_and_pin_parameters(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    count, size, sizes = PRESETS[name]
    model = build_model(cfg.model, cfg.data.size, cfg.data.channels)
    print(f"{name}: {model.num_parameters():,} parameters")
    assert model.num_parameters() == count
    assert cfg.data.size == size and model.encoder.sizes == sizes
    x = torch.rand(2, cfg.data.channels, size, size) * 2 - 1
    m = torch.zeros(2, 1, size, size)
    m[..., size // 4 : size // 2, size // 4 : size // 2] = 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model(x, m)
    assert out.pred.shape == x.shape and out.pred.abs().max() <= 1
    assert set(out.parts) == {"recon", "kl"} and torch.isfinite(out.loss)
    out.loss.backward()
    opt.step()


def _tiny(**kw):
    spec = {"kind": "vae", "channels": [8, 16], "latent_dim": 6, **kw}
    return build_model(spec, 16, 3)


@pytest.mark.parametrize("inpaint", ["masked", "whole"])
@pytest.mark.parametrize("output,likelihood", [("tanh", "mse"), ("sigmoid", "mse"), ("sigmoid", "bce")])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_vae_flag_combinations(inpaint, output, likelihood, reduction):
    model = _tiny(inpaint=inpaint, output=output, likelihood=likelihood, reduction=reduction, norm="group",
                  activation="silu")
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    m = (torch.rand(3, 1, 16, 16) > 0.7).float()
    out = model(x, m, kl_scale=0.5)
    assert torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    for method in ("auto", "encode", "optimize"):
        filled = model.fill(x, m, method=method, steps=3)
        assert torch.equal(filled * (1 - m), x * (1 - m))  # known pixels untouched
    assert model.sample(4).shape == (4, 3, 16, 16)
    z = model.encode(x)
    assert z.shape == (3, 6) and model.decode(z).shape == x.shape


def test_hole_weight_weighs_the_hole():
    torch.manual_seed(0)
    model = _tiny(hole_weight=1.0).eval()
    heavy = _tiny(hole_weight=5.0).eval()
    heavy.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:8, 4:8] = 1
    assert heavy(x, m).parts["recon"] > model(x, m).parts["recon"]


def test_latent_optimisation_fits_known_pixels_better():
    torch.manual_seed(0)
    model = _tiny(inpaint="whole").eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:10, 4:10] = 1
    mu, _ = model.stats(x, m)
    z = model._optimize_latent(mu, x, m, steps=50, lr=0.05)

    def fit(z):
        return ((model.decode(z) - x).pow(2) * (1 - m)).mean()

    assert fit(z) < fit(mu)


@pytest.mark.parametrize("bad, msg", [
    ({"likelihood": "bce"}, "bce needs output: sigmoid"),
    ({"output": "relu"}, "model.output"),
    ({"inpaint": "both"}, "model.inpaint"),
    ({"activation": "swish"}, "unknown activation"),
    ({"norm": "layer"}, "unknown norm"),
    ({"channels": []}, "at least one conv"),
])
def test_bad_vae_configs(bad, msg):
    with pytest.raises(GenfillError, match=msg):
        _tiny(**bad)


def test_too_small_image_is_a_clear_error():
    with pytest.raises(GenfillError, match="too small"):
        build_model({"kind": "vae", "channels": [8, 8, 8, 8, 8, 8]}, 16, 3)


def test_beta_vae_is_registered_with_beta_4():
    model = build_model({"kind": "beta_vae", "channels": [8], "latent_dim": 4}, 8, 3)
    assert model.cfg.beta == 4.0 and "beta_vae" in REGISTRY
