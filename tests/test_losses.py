"""Every loss setting a user writes in a config reaches the loss.

The pattern: two models with identical weights that differ in one setting, and each loss checked exactly
against the formula written with that setting. A setting that is silently ignored, or a weight applied to
the wrong term, fails here even when training still runs and the loss still goes down.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from genfill.models import build_model
from genfill.models.blocks import gaussian_kl, reparameterize
from genfill.models.gan import box_tensor
from genfill.models.vqvae import VectorQuantizer

S = 16  # image side


def _batch(n: int = 4, c: int = 3, seed: int = 0, size: int = S) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size, size, generator=g) * 2 - 1
    m = torch.zeros(n, 1, size, size)
    m[:, :, 4:10, 5:12] = 1  # a partial hole: 42 of 256 pixels
    return x, m


def _twins(spec: dict, key: str, a, b, seed: int = 0, size: int = S):
    """Two models of one spec with identical weights, `key` set to a and b."""
    torch.manual_seed(seed)
    one = build_model({**spec, key: a}, size, 3)
    if hasattr(one, "to_stats"):  # a KL far from 0 (mu = logvar = 1.5), so its weight shows in the loss
        with torch.no_grad():
            one.to_stats.bias.fill_(1.5)
    two = build_model({**spec, key: b}, size, 3)
    two.load_state_dict(one.state_dict())
    return one.eval(), two.eval()


def _close(a, b, rel=1e-5):
    return a == pytest.approx(float(b), rel=rel, abs=1e-6)


# ---------------------------------------------------------------------------------------------- VAE family

VAE = {"kind": "vae", "channels": [8, 16], "latent_dim": 4, "norm": "none"}


@pytest.mark.parametrize("kind", ["vae", "beta_vae"])
def test_vae_beta_weights_the_kl(kind):
    x, m = _batch()
    one, two = _twins({**VAE, "kind": kind}, "beta", 1.0, 3.5)
    with torch.no_grad():
        a, b = one(x, m), two(x, m)
    assert _close(a.parts["kl"].item(), b.parts["kl"].item()) and a.parts["kl"].item() > 1
    for out, beta in ((a, 1.0), (b, 3.5)):
        assert _close(out.loss.item(), (out.parts["recon"] + beta * out.parts["kl"]).item())
    assert _close((b.loss - a.loss).item(), 2.5 * a.parts["kl"].item(), rel=1e-3)


def test_beta_vae_default_beta_is_four():
    x, m = _batch()
    model, _ = _twins({**VAE, "kind": "beta_vae"}, "latent_dim", 4, 4)
    with torch.no_grad():
        out = model(x, m)
    assert _close(out.loss.item(), (out.parts["recon"] + 4.0 * out.parts["kl"]).item())


@pytest.mark.parametrize("kl_scale", [0.0, 0.25, 1.0])
def test_vae_kl_scale_multiplies_beta_times_kl(kl_scale):
    x, m = _batch()
    one, _ = _twins(VAE, "beta", 2.0, 2.0)
    with torch.no_grad():
        out = one(x, m, kl_scale=kl_scale)
    assert _close(out.loss.item(), (out.parts["recon"] + 2.0 * kl_scale * out.parts["kl"]).item())


def test_vae_hole_weight_weights_the_hole_error():
    """recon = sum over pixels of err * (1 + (w - 1) m), err the squared error on the [0, 1] scale."""
    x, m = _batch()
    one, two = _twins(VAE, "hole_weight", 1.0, 5.0)
    with torch.no_grad():
        for model, w in ((one, 1.0), (two, 5.0)):
            out = model(x, m)
            err = ((out.pred + 1) / 2 - (x + 1) / 2).pow(2)
            expected = (err * (1 + (w - 1) * m)).flatten(1).sum(1).mean()
            assert _close(out.parts["recon"].item(), expected.item(), rel=1e-4)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_vae_reduction_applies_to_recon_and_kl_alike(reduction):
    """sum: both summed over pixels / latent units; mean: both divided by the pixel count C*H*W."""
    x, m = _batch()
    model, _ = _twins({**VAE, "reduction": reduction}, "beta", 1.0, 1.0)
    with torch.no_grad():
        out = model(x, m)
        mu, logvar = model.stats(x, m)
    pixels = 3 * S * S if reduction == "mean" else 1
    err = ((out.pred + 1) / 2 - (x + 1) / 2).pow(2).flatten(1).sum(1)
    assert _close(out.parts["recon"].item(), (err / pixels).mean().item(), rel=1e-4)
    assert _close(out.parts["kl"].item(), (gaussian_kl(mu, logvar) / pixels).mean().item(), rel=1e-4)


def test_reparameterisation_draws_with_the_std_not_the_variance():
    torch.manual_seed(0)
    for var in (4.0, 0.25):
        mu = torch.full((20000, 2), 0.5)
        logvar = torch.full((20000, 2), math.log(var))
        z = reparameterize(mu, logvar)
        assert z.mean().item() == pytest.approx(0.5, abs=0.03)
        assert z.std().item() == pytest.approx(math.sqrt(var), rel=0.03)


def test_vae_posterior_draw_has_the_encoders_std():
    """In training mode the VAE decodes a draw z ~ N(mu, exp(logvar)); its spread is the std."""
    torch.manual_seed(0)
    model = build_model(VAE, S, 3).train()
    mu = torch.zeros(20000, 4)
    logvar = torch.full((20000, 4), math.log(9.0))
    z, kl = model.posterior_sample(mu, logvar)
    assert z.std().item() == pytest.approx(3.0, rel=0.03)
    assert torch.allclose(kl, gaussian_kl(mu, logvar))
    assert kl[0].item() == pytest.approx(0.5 * 4 * (9.0 - 1 - math.log(9.0)), rel=1e-5)


# ---------------------------------------------------------------------------------------------- VQ-VAE

VQ = {"kind": "vqvae", "channels": [8], "res_blocks": 1, "res_channels": 8, "codebook_size": 8, "code_dim": 4}


@pytest.mark.parametrize("ema", [True, False])
def test_vqvae_commitment_reaches_the_quantiser(ema):
    x, m = _batch()
    one, two = _twins({**VQ, "ema": ema}, "commitment", 0.1, 2.0)
    assert one.quantizer.commitment == 0.1 and two.quantizer.commitment == 2.0
    with torch.no_grad():
        a, b = one(x, m), two(x, m)
    assert _close(a.parts["commit"].item(), b.parts["commit"].item()) and a.parts["commit"].item() > 0
    for out, beta in ((a, 0.1), (b, 2.0)):
        codebook = out.parts.get("codebook", torch.tensor(0.0))
        assert _close(out.parts["vq"].item(), (beta * out.parts["commit"] + codebook).item())
        assert _close(out.loss.item(), (out.parts["recon"] + out.parts["vq"]).item())


def test_vqvae_hole_weight_weights_the_hole_error():
    x, m = _batch()
    one, two = _twins(VQ, "hole_weight", 1.0, 7.0)
    with torch.no_grad():
        for model, w in ((one, 1.0), (two, 7.0)):
            out = model(x, m)
            err = ((out.pred - x) / 2).pow(2)
            assert _close(out.parts["recon"].item(), (err * (1 + (w - 1) * m)).mean().item(), rel=1e-4)


@pytest.mark.parametrize("decay", [0.9, 0.3])
def test_vq_ema_update_by_hand_at_decay(decay):
    """cluster_size <- d * size + (1 - d) * counts; embed_sum <- d * sum + (1 - d) * batch sums; code =
    embed_sum / Laplace-smoothed size. At d = 0.5 swapping d and 1 - d changes nothing, so not 0.5."""
    eps = 0.1
    vq = VectorQuantizer(codebook_size=2, code_dim=2, commitment=0.25, ema=True, decay=decay, eps=eps, dead_after=0)
    init = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    vq.embedding.copy_(init)
    vq.embed_sum.copy_(init)
    z = torch.tensor([[[[0.1, 0.2, 0.9]], [[-0.1, 0.0, 1.2]]]])  # (1, D=2, 1, 3): vectors (0.1,-0.1) (0.2,0) (0.9,1.2)
    vq.train()
    vq(z)
    counts = torch.tensor([2.0, 1.0])
    sums = torch.tensor([[0.3, -0.1], [0.9, 1.2]])
    size = decay * 1.0 + (1 - decay) * counts
    embed_sum = decay * init + (1 - decay) * sums
    total = size.sum()
    smoothed = (size + eps) / (total + 2 * eps) * total
    assert torch.allclose(vq.cluster_size, size, atol=1e-6)
    assert torch.allclose(vq.embed_sum, embed_sum, atol=1e-6)
    assert torch.allclose(vq.embedding, embed_sum / smoothed[:, None], atol=1e-6)


def test_vqvae_decay_reaches_the_quantiser():
    torch.manual_seed(0)
    model = build_model({**VQ, "decay": 0.7, "eps": 0.01, "dead_after": 3}, S, 3)
    assert (model.quantizer.decay, model.quantizer.eps, model.quantizer.dead_after) == (0.7, 0.01, 3)


# ---------------------------------------------------------------------------------------------- GAN

GAN = {"kind": "gan", "variant": "whole", "base": 4, "d_base": 4, "attention_reduction": 2}


def test_gan_hole_weight_weights_the_l1():
    """l1 = sum(|out - x| * w) / sum(w), w = 1 + (hole_weight - 1) m (the whole variant: out = pred)."""
    x, m = _batch()
    one, two = _twins(GAN, "hole_weight", 1.0, 6.0)
    with torch.no_grad():
        a, b = one(x, m), two(x, m)
    assert torch.equal(a.pred, b.pred)
    d = (a.pred - x).abs()
    for out, hw in ((a, 1.0), (b, 6.0)):
        w = (1 + (hw - 1) * m).expand_as(d)
        assert _close(out.parts["l1"].item(), ((d * w).sum() / w.sum()).item(), rel=1e-4)
        p = out.parts
        assert _close(out.loss.item(), (100 * p["l1"] + 10 * p["edge"] + 1 * p["ssim"]).item())
    assert a.parts["l1"].item() != pytest.approx(b.parts["l1"].item(), rel=1e-3)


@pytest.mark.parametrize("key,default", [("w_l1", 100.0), ("w_edge", 10.0), ("w_ssim", 1.0)])
def test_gan_reconstruction_weights(key, default):
    x, m = _batch()
    one, two = _twins(GAN, key, default, 3.0)
    with torch.no_grad():
        a, b = one(x, m), two(x, m)
    part = {"w_l1": "l1", "w_edge": "edge", "w_ssim": "ssim"}[key]
    assert _close((b.loss - a.loss).item(), (3.0 - default) * a.parts[part].item(), rel=1e-4)


@pytest.mark.parametrize("adversarial", ["bce", "hinge"])
def test_gan_w_adv_weights_the_adversarial_term(adversarial):
    x, m = _batch()
    one, two = _twins({**GAN, "adversarial": adversarial}, "w_adv", 1.0, 0.25)
    fake = torch.tanh(x + 0.3)
    with torch.no_grad():
        ga, pa = one.g_adv_loss(x, m, fake)
        gb, pb = two.g_adv_loss(x, m, fake)
        logits = one.discriminator(fake)
    expected = (torch.nn.functional.softplus(-logits).mean() if adversarial == "bce" else -logits.mean())
    assert _close(pa["adv"].item(), expected.item(), rel=1e-4) and _close(pb["adv"].item(), expected.item(), rel=1e-4)
    assert _close(ga.item(), 1.0 * pa["adv"].item()) and _close(gb.item(), 0.25 * pb["adv"].item())


@pytest.mark.parametrize("context", [0, 1, 4])
def test_gan_context_ring_is_exactly_context_pixels(context):
    m = torch.zeros(2, 1, 64, 64)
    m[0, :, 20:30, 24:34] = 1  # a 10x10 hole, rows 20..29, cols 24..33
    m[1, :, 10:12, 40:48] = 1  # 2x8: grown to a square
    boxes = box_tensor(m, context)
    c = context
    assert boxes[0].tolist() == [20 - c, 24 - c, 30 + c, 34 + c]
    t, l, b, r = boxes[1].tolist()
    assert (l, r) == (40 - c, 48 + c) and b - t == r - l  # the long side sets the square
    assert t <= 10 - c and b >= 12 + c


def test_gan_model_uses_its_context_setting():
    m = torch.zeros(1, 1, 32, 32)
    m[..., 10:16, 10:16] = 1
    for ctx in (2, 4, 6):
        model = build_model({**GAN, "variant": "context", "context": ctx, "crop_size": 16}, 32, 3)
        assert model._boxes(m)[0].tolist() == [10 - ctx, 10 - ctx, 16 + ctx, 16 + ctx]


def test_gan_context_ring_is_input_the_generator_sees():
    """With the box exactly crop_size wide there is no resampling: the crop holds the hole plus a ring of
    `context` known pixels, and every pixel outside the hole is the original."""
    torch.manual_seed(0)
    model = build_model({**GAN, "variant": "context", "context": 4, "crop_size": 16}, 32, 3).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    m = torch.zeros(1, 1, 32, 32)
    m[..., 8:16, 12:20] = 1
    seen = {}
    model.generator.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0]))
    with torch.no_grad():
        filled = model.fill(x, m)
    crop = seen["inp"]
    assert crop.shape[-2:] == (16, 16)
    assert torch.allclose(crop[0, :3], (x * (1 - m))[0, :, 4:20, 8:24], atol=1e-6)
    assert torch.equal(filled * (1 - m), x * (1 - m))


# ---------------------------------------------------------------------------------------------- AVAE

AVAE = {"kind": "avae", "channels": [8, 16], "latent_dim": 4, "norm": "none", "d_channels": [8], "d_norm": "none"}


def test_avae_latent_weight_weights_lat():
    x, m = _batch()
    one, two = _twins(AVAE, "latent_weight", 64.0, 2.0)
    with torch.no_grad():
        a, b = one(x, m), two(x, m)
    assert _close(a.parts["lat"].item(), b.parts["lat"].item()) and a.parts["lat"].item() > 0
    for out, lw in ((a, 64.0), (b, 2.0)):
        p = out.parts
        assert _close(out.loss.item(), (p["recon"] + 1.0 * p["kl"] + lw * p["lat"]).item(), rel=1e-4)


def test_avae_beta_and_kl_scale_weight_the_kl():
    x, m = _batch()
    one, two = _twins(AVAE, "beta", 1.0, 3.0)
    with torch.no_grad():
        a, b = one(x, m, kl_scale=0.5), two(x, m, kl_scale=0.5)
    assert _close((b.loss - a.loss).item(), 2.0 * 0.5 * a.parts["kl"].item(), rel=1e-3) and a.parts["kl"].item() > 1


def test_avae_lat_formula():
    """lat = mean over images of sum_j 1/2 (z_j - mu_j)^2 softmax(-logvar)_j, (mu, logvar) = E(G(z))."""
    x, m = _batch()
    torch.manual_seed(0)
    model = build_model(AVAE, S, 3).eval()
    with torch.no_grad():
        out = model(x, m)
        z = model.stats(x, m)[0]
        g = model.generate(z)
        mu, logvar = model.stats(g, m)
        w = torch.softmax(-logvar, dim=1)
        lat = (0.5 * (z - mu).pow(2) * w).sum(1).mean()
    assert _close(out.parts["lat"].item(), lat.item(), rel=1e-4)


# ---------------------------------------------------------------------------------------------- U-Net

UNET = {"kind": "unet", "widths": [8, 16], "norm": "group"}


def test_unet_hole_weight_weights_the_l1():
    """l1 = mean(|pred - x| * (1 + (hole_weight - 1) m)), divided by the pixel count."""
    x, m = _batch()
    one, two = _twins(UNET, "hole_weight", 6.0, 2.0)
    with torch.no_grad():
        a, b = one(x, m), two(x, m)
    d = (a.pred - x).abs()
    for out, hw in ((a, 6.0), (b, 2.0)):
        assert _close(out.parts["l1"].item(), (d * (1 + (hw - 1) * m)).mean().item(), rel=1e-4)
        assert _close(out.loss.item(), out.parts["l1"].item())


def test_unet_w_l1_weights_the_l1():
    x, m = _batch()
    one, two = _twins(UNET, "w_l1", 1.0, 0.5)
    with torch.no_grad():
        a, b = one(x, m), two(x, m)
    assert _close(b.loss.item(), 0.5 * a.loss.item())


def test_unet_perceptual_weight_and_warmup():
    """loss = w_l1 * l1 + [steps >= warmup] * w_perceptual * LPIPS(composite, x); steps count training forwards."""
    x, m = _batch(size=32)
    one, two = _twins({**UNET, "loss_warmup_steps": 2}, "w_perceptual", 0.5, 2.0, size=32)
    for model, wp in ((one, 0.5), (two, 2.0)):
        model.train()
        for step in range(4):
            out = model(x, m)
            p = out.parts
            gate = 1.0 if step >= 2 else 0.0
            assert p["perceptual"].item() > 0
            assert _close(out.loss.item(), (p["l1"] + gate * wp * p["perceptual"]).item(), rel=1e-4), (wp, step)
        assert int(model.steps) == 4
        model.eval()
        model(x, m)
        assert int(model.steps) == 4  # eval forwards do not count


def test_unet_perceptual_term_is_lpips_of_the_composite():
    from genfill.metrics.lpips import get_lpips
    from genfill.pixels import composite

    x, m = _batch(size=32)
    torch.manual_seed(0)
    model = build_model({**UNET, "w_perceptual": 1.0}, 32, 3).eval()
    with torch.no_grad():
        out = model(x, m)
        expected = get_lpips("alexnet", "cpu")(composite(x, m, out.pred), x).mean()
    assert _close(out.parts["perceptual"].item(), expected.item(), rel=1e-4)


@pytest.mark.parametrize("adversarial", ["bce", "hinge"])
def test_unet_w_adv_and_warmup_gate_the_adversarial_term(adversarial):
    x, m = _batch()
    one, two = _twins({**UNET, "loss_warmup_steps": 3, "adversarial": adversarial, "d_base": 4}, "w_adv", 0.1, 0.7)
    fake = torch.tanh(x + 0.3)
    with torch.no_grad():
        logits = one.discriminator(fake)
    adv = torch.nn.functional.softplus(-logits).mean() if adversarial == "bce" else -logits.mean()
    for model, wa in ((one, 0.1), (two, 0.7)):
        model.train()
        for step in range(5):
            with torch.no_grad():
                g, parts = model.g_adv_loss(x, m, fake)
            gate = 1.0 if step >= 3 else 0.0
            assert _close(parts["adv"].item(), adv.item(), rel=1e-4)
            assert _close(g.item(), gate * wa * adv.item(), rel=1e-4), (wa, step)
            model(x, m)  # one training forward: the step counter moves


def test_unet_warmup_counter_is_saved_with_the_weights():
    x, m = _batch()
    torch.manual_seed(0)
    model = build_model({**UNET, "loss_warmup_steps": 1}, S, 3).train()
    model(x, m)
    again = build_model({**UNET, "loss_warmup_steps": 1}, S, 3)
    again.load_state_dict(copy.deepcopy(model.state_dict()))
    assert int(again.steps) == 1 and float(again.adv_gate()) == 1.0


def test_avae_gan_loss_setting_picks_the_generator_loss():
    """logit (the authors'): -mean D(G); nonsaturating: mean softplus(-D(G))."""
    x, m = _batch()
    one, two = _twins(AVAE, "gan_loss", "logit", "nonsaturating")
    fake = torch.tanh(x + 0.3)
    with torch.no_grad():
        logit = one.discriminator(fake)
        a, _ = one.g_adv_loss(x, m, fake)
        b, _ = two.g_adv_loss(x, m, fake)
    assert _close(a.item(), (-logit).mean().item(), rel=1e-4)
    assert _close(b.item(), torch.nn.functional.softplus(-logit).mean().item(), rel=1e-4)
