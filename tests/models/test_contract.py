"""The one model contract, checked for every registered family (as diffusers' model tests do through a mixin):
a new family gets all of it by registering in genfill.models.REGISTRY. TINY only shrinks a family for speed;
a family missing there is tested with its default config."""

from __future__ import annotations

import pytest
import torch

from genfill.errors import GenfillError
from genfill.models import REGISTRY, build_model, load_model, save_model
from genfill.pixels import composite

SIZE, CHANNELS = 32, 3
TINY_VQ = {"channels": [8, 16], "res_blocks": 1, "res_channels": 8, "codebook_size": 16, "code_dim": 4}
TINY = {
    "vae": {"channels": [8, 16], "latent_dim": 8},
    "beta_vae": {"channels": [8, 16], "latent_dim": 8},
    "avae": {"channels": [8, 16], "latent_dim": 8, "d_channels": [8, 16]},
    "vqvae": TINY_VQ,
    "vqvae_prior": {"dim": 8, "layers": 2, "kernel": 3, "head": 16},
    "gan": {"base": 8, "d_base": 8, "crop_size": 16},
    "unet": {"widths": [8, 16], "prior": "biharmonic", "smooth_iters": 5},
    "sampler": {"widths": [8, 16], "smooth_iters": 5, "noise_channels": 2, "w_perceptual": 0.0, "d_base": 8,
                "d_layers": 2},
}
# Variants whose prediction takes another path: the whole-image VAE and the tree posterior.
EXTRA = {"vae-whole": ("vae", {"channels": [8, 16], "latent_dim": 8, "inpaint": "whole"}),
         "vae-treevi": ("vae", {"channels": [8, 16], "latent_dim": 8, "posterior": "treevi"}),
         "gan-whole": ("gan", {"base": 8, "d_base": 8, "variant": "whole"})}
CASES = {**{kind: (kind, TINY.get(kind, {})) for kind in REGISTRY}, **EXTRA}


@pytest.fixture(scope="module")
def vqvae_checkpoint(tmp_path_factory):
    """An untrained tiny VQ-VAE checkpoint, for the families that build on one (the prior)."""
    path = tmp_path_factory.mktemp("contract") / "vqvae.pt"
    torch.manual_seed(0)
    save_model(path, build_model({"kind": "vqvae", **TINY_VQ}, SIZE, CHANNELS))
    return str(path)


@pytest.fixture(params=sorted(CASES))
def model(request, vqvae_checkpoint):
    kind, keywords = CASES[request.param]
    spec = {"kind": kind, **keywords}
    if kind == "vqvae_prior":
        spec["vqvae"] = vqvae_checkpoint
    torch.manual_seed(0)
    return build_model(spec, SIZE, CHANNELS).eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, CHANNELS, SIZE, SIZE, generator=g) * 2 - 1
    m = torch.zeros(3, 1, SIZE, SIZE)
    m[0, :, 8:20, 8:20] = 1
    m[1, :, 2:30, 20:26] = 1
    m[2, :, 16:, :] = 1
    return x, m


def test_registry_covers_every_family():
    assert all(cls.kind == kind for kind, cls in REGISTRY.items())
    assert set(TINY) <= set(REGISTRY)


def test_forward_output_shape_range_and_loss(model, batch):
    x, m = batch
    for mode in (True, False):
        model.train(mode)
        out = model(x, m)
        assert out.pred.shape == x.shape
        assert out.pred.abs().max() <= 1 + 1e-6
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert all(v.dim() == 0 and torch.isfinite(v) for v in out.parts.values())
    model.eval()


def test_fill_keeps_known_pixels_exactly_and_stays_in_range(model, batch):
    x, m = batch
    filled = model.fill(x, m)
    assert filled.shape == x.shape and filled.abs().max() <= 1 + 1e-6
    known = (1 - m).bool().expand_as(x)
    assert torch.equal(filled[known], x[known])


def test_predict_is_fills_hole_and_eval_forwards_pred(model, batch):
    x, m = batch
    pred = model.predict(x, m)
    assert pred.shape == x.shape
    assert torch.allclose(model.fill(x, m), composite(x, m, pred), atol=1e-6)
    with torch.no_grad():  # genfill eval takes fills and loss parts from one eval-mode forward pass
        assert torch.allclose(model(x, m).pred, pred, atol=1e-6)


def test_checkpoint_round_trip(model, batch, tmp_path):
    x, m = batch
    save_model(tmp_path / "m.pt", model, note="extra keys ride along")
    again, ckpt = load_model(tmp_path / "m.pt")
    assert ckpt["kind"] == model.kind and ckpt["note"] == "extra keys ride along"
    assert type(again) is type(model) and again.num_parameters() == model.num_parameters()
    assert torch.equal(again.fill(x, m), model.fill(x, m))


def test_capability_flags_are_honest(model):
    g = torch.Generator().manual_seed(0)
    if model.can_sample:
        s = model.sample(2, g)
        assert s.shape == (2, CHANNELS, SIZE, SIZE) and s.abs().max() <= 1 + 1e-6
    else:
        with pytest.raises(GenfillError):
            model.sample(2, g)
    x = torch.rand(2, CHANNELS, SIZE, SIZE) * 2 - 1
    if model.can_interpolate:
        z = model.encode(x)
        assert z.shape == (2, *model.latent_shape())
        assert model.decode(0.5 * z[:1] + 0.5 * z[1:]).shape == (1, CHANNELS, SIZE, SIZE)
    else:
        with pytest.raises(GenfillError):
            model.encode(x)



def test_fill_samples_draw_k_different_seeded_fills_that_keep_known_pixels(model, batch):
    """Every family that says it can draw several fills does (K different ones, known pixels exact, the
    same for the same seed); every other one refuses in one line naming those that can."""
    x, m = batch
    k = 3
    if not model.can_diversify:
        with pytest.raises(GenfillError) as err:
            model.fill_samples(x, m, k, torch.Generator().manual_seed(0))
        msg = str(err.value)
        assert "\n" not in msg and "draws one fill" in msg
        assert all(kind in msg for kind, cls in REGISTRY.items() if cls.can_diversify)
        return
    s = model.fill_samples(x, m, k, torch.Generator().manual_seed(0))
    assert s.shape == (k, *x.shape) and s.abs().max() <= 1 + 1e-6
    known = (1 - m).bool().expand_as(x)
    hole = m.bool().expand_as(x)
    for i in range(k):
        assert torch.equal(s[i][known], x[known])
        for j in range(i + 1, k):
            for n in range(len(x)):
                assert not torch.equal(s[i, n][hole[n]], s[j, n][hole[n]]), (i, j, n)
    assert torch.equal(s, model.fill_samples(x, m, k, torch.Generator().manual_seed(0)))
    assert not torch.equal(s, model.fill_samples(x, m, k, torch.Generator().manual_seed(1)))
