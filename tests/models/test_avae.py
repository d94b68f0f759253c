"""AVAE (arXiv 2012.11551): each network gets exactly its own loss terms, every term moves, and the model
speaks the shared interface (train, fill, sample, encode/decode, load_model)."""

from __future__ import annotations

import json

import pytest
import torch

from genfill.errors import GenfillError
from genfill.models import build_model, composite, load_model
from genfill.train import train

TINY_AVAE = {"kind": "avae", "channels": [8, 16], "latent_dim": 8, "d_channels": [8, 16]}


def _batch(tiny_data, n=8):
    x = tiny_data.batch(tiny_data.split("train")[:n])
    m = torch.zeros_like(x[:, :1])
    m[..., 8:22, 6:20] = 1
    return x, m


def _grads(module) -> float:
    return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)


def test_one_training_step_through_the_shared_loop(make_cfg):
    result = train(make_cfg(model=TINY_AVAE, train={"max_steps": 1}), verbose=False)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_row = next(r for r in rows if r["split"] == "train")
    assert {"recon", "kl", "lat", "d", "d_real", "d_fake", "adv"} <= set(train_row)
    assert result.step == 1 and "psnr" in result.last_val


@pytest.mark.parametrize("inpaint", ["masked", "whole"])
def test_each_loss_term_trains_only_its_own_networks(tiny_data, inpaint):
    torch.manual_seed(0)
    model = build_model({**TINY_AVAE, "inpaint": inpaint}, 32, 3).train()
    x, m = _batch(tiny_data)
    enc = [model.encoder, model.to_stats]
    out = model(x, m)

    # recon + KL: encoder and VAE decoder, never the generator
    model.zero_grad()
    (out.parts["recon"] + out.parts["kl"]).backward(retain_graph=True)
    assert all(_grads(e) > 0 for e in enc) and _grads(model.decoder) > 0
    assert _grads(model.generator) == 0 and _grads(model.gen_in) == 0

    # lat: the generator only; the encoder is a fixed judge (its weights get no gradient)
    model.zero_grad()
    out.parts["lat"].backward(retain_graph=True)
    assert _grads(model.generator) > 0 and _grads(model.gen_in) > 0
    assert all(_grads(e) == 0 for e in enc) and _grads(model.decoder) == 0

    # adversarial: the generator (D's gradients from it are discarded by the loop)
    model.zero_grad()
    model.g_adv_loss(x, m, out.fake)[0].backward()
    assert _grads(model.generator) > 0 and all(_grads(e) == 0 for e in enc) and _grads(model.decoder) == 0

    # discriminator step on the detached fake: the discriminator only
    model.zero_grad()
    model.d_loss(x, m, out.fake.detach())[0].backward()
    assert _grads(model.discriminator) > 0 and _grads(model.generator) == 0 and all(_grads(e) == 0 for e in enc)


@pytest.mark.parametrize("gan_loss", ["logit", "nonsaturating"])
def test_every_loss_part_moves_and_both_critic_and_encoder_learn(tiny_data, gan_loss):
    """The trainer's two steps written out by hand on one fixed batch: every logged part changes."""
    torch.manual_seed(0)
    model = build_model({**TINY_AVAE, "gan_loss": gan_loss}, 32, 3).train()
    opt = torch.optim.Adam(model.generator_parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    x, m = _batch(tiny_data)
    before = {name: [p.detach().clone() for p in mod.parameters()]
              for name, mod in [("encoder", model.encoder), ("discriminator", model.discriminator),
                                ("generator", model.generator), ("decoder", model.decoder)]}
    history = []
    for _ in range(4):
        out = model(x, m)
        d, d_parts = model.d_loss(x, m, out.fake.detach())
        opt_d.zero_grad()
        d.backward()
        opt_d.step()
        adv, g_parts = model.g_adv_loss(x, m, out.fake)
        opt.zero_grad()
        (out.loss + adv).backward()
        opt.step()
        history.append({k: v.item() for k, v in {**out.parts, **d_parts, **g_parts}.items()})
    for key in ("recon", "kl", "lat", "d", "adv"):
        values = [h[key] for h in history]
        assert len(set(values)) > 1, (key, values)
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    for name, old in before.items():
        new = dict(model.named_children())[name].parameters()
        assert any(not torch.equal(a, b) for a, b in zip(old, new)), f"{name} did not change"


def test_interface_fill_sample_encode_decode_and_round_trip(make_cfg, tiny_data):
    result = train(make_cfg(model=TINY_AVAE, train={"max_steps": 2}), verbose=False)
    model, ckpt = load_model(result.run_dir / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "avae" and model.discriminator is not None
    x, m = _batch(tiny_data, 4)
    filled = model.fill(x, m)
    assert filled.shape == x.shape and torch.equal(filled * (1 - m), x * (1 - m))
    assert torch.allclose(filled, composite(x, m, model(x, m).pred))  # eval pred = G(mean, xi = 0)
    assert torch.equal(model.fill(x, m), filled)  # deterministic by default
    g = torch.Generator().manual_seed(1)
    assert not torch.equal(model.fill(x, m, diverse=True, generator=g), filled)
    dec = model.fill(x, m, method="decoder")
    assert not torch.equal(dec, filled) and torch.equal(dec * (1 - m), x * (1 - m))
    s1 = model.sample(3, torch.Generator().manual_seed(0))
    assert s1.shape == (3, 3, 32, 32) and s1.abs().max() <= 1
    assert torch.equal(s1, model.sample(3, torch.Generator().manual_seed(0)))
    z = model.encode(x)
    assert z.shape == (4, *model.latent_shape()) and model.decode(z).shape == x.shape
    again = build_model(TINY_AVAE, 32, 3)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.eval().fill(x, m), filled)
    # the generator, encoder and decoder train under the main optimiser; the discriminator under its own
    ids = {id(p) for p in model.generator_parameters()}
    assert all(id(p) not in ids for p in model.discriminator.parameters())
    assert all(id(p) in ids for p in [*model.generator.parameters(), *model.encoder.parameters()])


def test_config_errors():
    with pytest.raises(GenfillError, match="gan_loss"):
        build_model({**TINY_AVAE, "gan_loss": "hinge"}, 32, 3)
    with pytest.raises(GenfillError, match="fill method"):
        build_model(TINY_AVAE, 32, 3).fill(torch.zeros(1, 3, 32, 32), torch.zeros(1, 1, 32, 32), method="x")
