"""VQ-VAE and its gated PixelCNN prior: quantiser maths by hand, causality, and the two-stage journey."""

from __future__ import annotations

import shutil

import pytest
import torch

from genfill.errors import GenfillError
from genfill.models import build_model, load_model
from genfill.models.pixelcnn import GatedPixelCNN
from genfill.models.vqvae import VectorQuantizer

TINY_VQ = {"kind": "vqvae", "channels": [8, 16], "res_blocks": 1, "res_channels": 8, "codebook_size": 16,
           "code_dim": 4, "dead_after": 5}


@pytest.mark.parametrize("ema", [True, False])
@pytest.mark.parametrize("res_blocks", [0, 1])
def test_straight_through_gradient_reaches_encoder(ema, res_blocks):
    torch.manual_seed(0)
    model = build_model({**TINY_VQ, "ema": ema, "res_blocks": res_blocks}, 16, 3).train()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    m = torch.zeros(4, 1, 16, 16)
    m[:, :, 4:10, 4:10] = 1
    out = model(x, m)
    assert out.pred.shape == x.shape
    out.parts["recon"].backward()  # the reconstruction term alone: its only path to the encoder is the ST copy
    grad = model.encoder_convs.net[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.to_code.weight.grad.abs().sum() > 0


def test_codebook_loss_trains_codebook_without_ema():
    torch.manual_seed(0)
    model = build_model({**TINY_VQ, "ema": False}, 16, 3).train()
    out = model(torch.rand(2, 3, 16, 16) * 2 - 1, torch.zeros(2, 1, 16, 16))
    out.loss.backward()
    assert model.quantizer.embedding.grad.abs().sum() > 0
    assert "codebook" in out.parts


def test_ema_update_matches_hand_computation():
    vq = VectorQuantizer(codebook_size=2, code_dim=2, commitment=0.25, ema=True, decay=0.5, eps=0.5, dead_after=0)
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[0.0, 0.0], [4.0, 4.0]]))
        vq.embed_sum.copy_(vq.embedding)
    # Three vectors as a (1, D=2, 1, 3) map: [1,0] and [0,1] are nearest code 0, [3,5] code 1.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 5.0]]).t().reshape(1, 2, 1, 3)
    vq.train()
    z_q, codes, loss, _ = vq(z)
    assert codes.flatten().tolist() == [0, 0, 1]
    # z_q uses the codebook from before the update; commitment = 0.25 * mean((z - e)^2)
    assert torch.allclose(z_q, torch.tensor([[0.0, 0.0], [0.0, 0.0], [4.0, 4.0]]).t().reshape(1, 2, 1, 3))
    assert loss.item() == pytest.approx(0.25 * (1 + 1 + 1 + 1) / 6)
    # cluster sizes: 0.5 * 1 + 0.5 * [2, 1] = [1.5, 1.0]
    assert torch.allclose(vq.cluster_size, torch.tensor([1.5, 1.0]))
    # sums: 0.5 * [0,0] + 0.5 * [1,1] = [0.5, 0.5];  0.5 * [4,4] + 0.5 * [3,5] = [3.5, 4.5]
    assert torch.allclose(vq.embed_sum, torch.tensor([[0.5, 0.5], [3.5, 4.5]]))
    # Laplace: total 2.5, smoothed = (size + 0.5) / (2.5 + 2 * 0.5) * 2.5 = [10/7, 15/14]
    expected = torch.tensor([[0.5 * 7 / 10, 0.5 * 7 / 10], [3.5 * 14 / 15, 4.5 * 14 / 15]])
    assert torch.allclose(vq.embedding, expected)
    # eval mode quantises only
    vq.eval()
    before = vq.embedding.clone()
    vq(z)
    assert torch.equal(vq.embedding, before)


@pytest.mark.parametrize("ema", [True, False])
def test_dead_codes_restart_from_batch_outputs(ema):
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=4, code_dim=2, ema=ema, decay=0.9, dead_after=3).train()
    with torch.no_grad():
        vq.embedding.data.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
        if ema:
            vq.embed_sum.copy_(vq.embedding)
    z = (torch.randn(2, 2, 3, 3) * 0.1)  # every vector is nearest code 0
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for _ in range(2):
        vq(z)
    assert vq.embedding[1:].min() > 49  # unused twice: not yet dead (Laplace smoothing nudges EMA codes)
    vq(z)
    for k in (1, 2, 3):  # unused three times: restarted at vectors of this batch
        assert (vq.embedding[k] - flat).abs().sum(1).min() < 1e-6
    assert vq.unused_steps.tolist() == [0, 0, 0, 0]
    assert vq.usage_stats()["code_usage"] == 0.25


def test_epoch_stats_report_and_reset():
    model = build_model({**TINY_VQ, "dead_after": 0}, 16, 3).train()
    model(torch.rand(2, 3, 16, 16) * 2 - 1, torch.zeros(2, 1, 16, 16))
    stats = model.epoch_stats()
    assert 1.0 <= stats["code_perplexity"] <= 16
    assert 0 < stats["code_usage"] <= 1
    assert model.epoch_stats() == {}


def test_pixelcnn_is_causal_and_has_no_blind_spot():
    torch.manual_seed(0)
    k, gh, gw = 6, 4, 5
    net = GatedPixelCNN(k, dim=8, layers=5, kernel=3, head=16).double().eval()
    base = torch.randint(0, k, (1, gh, gw))
    ref = net(base)
    n = gh * gw
    for q in range(n):
        changed = base.clone()
        changed.view(-1)[q] = (changed.view(-1)[q] + 1) % k
        diff = (net(changed) - ref).abs().amax(1).view(-1)  # per position
        assert diff[: q + 1].max() < 1e-12, f"position <= {q} saw the code at {q}"
        # no blind spot: the last position depends on every earlier code
        assert diff[-1] > 1e-9 or q == n - 1, f"the last position is blind to {q}"
    # The first position depends on no input at all.
    other = torch.randint(0, k, (3, gh, gw))
    first = net(other)[:, :, 0, 0]
    assert torch.allclose(first, ref[:, :, 0, 0].expand_as(first), atol=1e-12)


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory, cache_root):
    """One tiny finished VQ-VAE run for the module (tests that delete it copy it first)."""
    from tests.conftest import tiny_raw

    from genfill.loadconfig import build_config
    from genfill.train import train

    cfg = build_config(tiny_raw(tmp_path_factory.mktemp("vqruns"), cache_root, TINY_VQ, name="vq",
                                train={"max_steps": 3, "epochs": 1, "sample_every_epoch": False}))
    res = train(cfg, verbose=False)
    return cfg, res


def test_vqvae_cannot_sample_without_prior_and_interpolates(vq_run):
    cfg, res = vq_run
    assert "code_perplexity" in res.last_val and "code_usage" in res.last_val
    model, _ = load_model(res.run_dir, expect_kind="vqvae")
    with pytest.raises(GenfillError, match="vqvae-prior-faces64"):
        model.sample(2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = model.encode(x)
    assert z.shape == (2, *model.latent_shape())
    assert model.decode(0.5 * z[:1] + 0.5 * z[1:]).shape == (1, 3, 32, 32)
    m = torch.zeros(2, 1, 32, 32)
    m[:, :, 8:20, 8:20] = 1
    filled = model.fill(x, m)
    assert torch.equal(filled * (1 - m), x * (1 - m))


def test_prior_trains_on_a_finished_vqvae_and_checkpoint_is_self_contained(vq_run, make_cfg, tmp_path):
    from genfill.train import train

    vq_dir = tmp_path / "vq"
    shutil.copytree(vq_run[1].run_dir, vq_dir)
    cfg = make_cfg(model={"kind": "vqvae_prior", "vqvae": str(vq_dir), "dim": 8, "layers": 2,
                          "kernel": 3, "head": 16}, name="prior", train={"max_steps": 2, "lr": 1e-2})
    vq_before, _ = load_model(vq_dir)
    res = train(cfg, verbose=False)
    assert res.last_val["bits_per_code"] == pytest.approx(res.last_val["nll"] / 0.6931471805599453)
    # Move the VQ-VAE away: the prior's checkpoint alone must rebuild everything.
    shutil.rmtree(vq_dir)
    moved = tmp_path / "moved"
    shutil.move(str(res.run_dir), moved)
    prior, ckpt = load_model(moved / "checkpoints" / "last.pt")
    assert ckpt["model_config"]["vqvae_spec"]["kind"] == "vqvae"
    # The frozen VQ-VAE is unchanged by the prior's training (no gradient, no EMA updates, no restarts).
    for key, value in vq_before.state_dict().items():
        assert torch.equal(prior.vqvae.state_dict()[key], value), key
    g = torch.Generator().manual_seed(0)
    imgs = prior.sample(3, g, temperature=0.7)
    assert imgs.shape == (3, 3, 32, 32) and imgs.abs().max() <= 1


def test_prior_freezes_vqvae(vq_run):
    _, vq_res = vq_run
    prior = build_model({"kind": "vqvae_prior", "vqvae": str(vq_res.run_dir), "dim": 8, "layers": 2,
                         "kernel": 3, "head": 16}, 32, 3)
    prior.train()
    assert not prior.vqvae.training and prior.pixelcnn.training
    ids = {id(p) for p in prior.generator_parameters()}
    assert not any(id(p) in ids for p in prior.vqvae.parameters())
    assert all(not p.requires_grad for p in prior.vqvae.parameters())
    out = prior(torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32))
    out.loss.backward()
    assert all(p.grad is None for p in prior.vqvae.parameters())


def test_prior_errors(vq_run, tmp_path):
    _, vq_res = vq_run
    with pytest.raises(GenfillError, match="model.vqvae"):
        build_model({"kind": "vqvae_prior"}, 32, 3)
    with pytest.raises(GenfillError, match="32px"):
        build_model({"kind": "vqvae_prior", "vqvae": str(vq_res.run_dir)}, 16, 3)
    with pytest.raises(GenfillError, match="not found|no checkpoint"):
        build_model({"kind": "vqvae_prior", "vqvae": str(tmp_path / "nothing")}, 32, 3)


def test_resblock_keeps_its_input_for_the_skip():
    from genfill.models.blocks import VQResBlock

    block = VQResBlock(3, 4, "relu")
    torch.nn.init.zeros_(block.net[-1].weight)
    torch.nn.init.zeros_(block.net[-1].bias)
    x = torch.randn(2, 3, 5, 5)  # negative values must survive (an in-place first ReLU would clip them)
    assert torch.equal(block(x.clone()), x)


@pytest.mark.parametrize("hole_weight", [1.0, 3.0])
def test_hole_weighted_mse_by_hand(hole_weight):
    from genfill.losses import hole_weighted_mse

    pred = torch.zeros(1, 1, 1, 2)
    x = torch.tensor([[[[1.0, -1.0]]]])  # errors on the [0, 1] scale: 0.5 each, squared 0.25
    m = torch.tensor([[[[1.0, 0.0]]]])
    assert hole_weighted_mse(pred, x, m, hole_weight).item() == pytest.approx((0.25 * hole_weight + 0.25) / 2)
