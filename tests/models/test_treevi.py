"""TreeVI posterior: tree building, the path-product covariance, the entropy/KL, and the VAE that uses it."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from genfill.models import build_model, load_model
from genfill.models.treevi import (TreePosterior, build_tree, chain_edges, mst_edges, tree_entropy, tree_factor,
                                   tree_kl_per_image, tree_sample)
from genfill.train import train

TINY_TREEVI = {"kind": "vae", "channels": [8, 16], "latent_dim": 8, "posterior": "treevi"}


def _path_corr(edges: torch.Tensor, gamma: torch.Tensor, n: int) -> torch.Tensor:
    """Reference: corr[d, i, j] = product of gamma[:, e] over the edges on the i-j path (walked by hand)."""
    nbrs: dict[int, list[tuple[int, int]]] = {i: [] for i in range(n)}
    for e, (a, b) in enumerate(edges.tolist()):
        nbrs[a].append((b, e))
        nbrs[b].append((a, e))
    d = gamma.shape[1]
    corr = torch.ones(d, n, n, dtype=gamma.dtype)
    for i in range(n):
        prod = {i: torch.ones(d, dtype=gamma.dtype)}  # depth-first from i
        stack = [i]
        while stack:
            u = stack.pop()
            for v, e in nbrs[u]:
                if v not in prod:
                    prod[v] = prod[u] * gamma[e]
                    stack.append(v)
        assert len(prod) == n, "not connected"
        for j in range(n):
            corr[:, i, j] = prod[j]
    return corr


def _random_case(n: int, d: int, tree: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.7
    edges = build_tree(mu, tree)
    gamma = (torch.rand(n - 1, d, generator=g, dtype=torch.float64) * 2 - 1) * 0.95
    return mu, logvar, edges, gamma


def _is_spanning_tree(edges: torch.Tensor, n: int) -> bool:
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        if ra == rb:
            return False  # a cycle
        parent[ra] = rb
    return len(edges) == n - 1 and len({find(i) for i in range(n)}) == 1


# ---- the tree


@pytest.mark.parametrize("n", [1, 2, 7, 33])
@pytest.mark.parametrize("tree", ["mst", "chain"])
def test_tree_spans_the_batch_parents_first(n, tree):
    edges = build_tree(torch.randn(n, 4, generator=torch.Generator().manual_seed(n)), tree)
    assert edges.shape == (n - 1, 2)
    assert _is_spanning_tree(edges, n)
    seen = {0}
    for par, child in edges.tolist():  # every parent is placed before its children (root 0)
        assert par in seen and child not in seen
        seen.add(child)


@pytest.mark.parametrize("seed", range(6))
def test_mst_matches_brute_force_minimum(seed):
    n = 6
    pts = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    dist = torch.cdist(pts, pts)
    all_edges = list(itertools.combinations(range(n), 2))
    best = min(sum(dist[a, b].item() for a, b in sub) for sub in itertools.combinations(all_edges, n - 1)
               if _is_spanning_tree(torch.tensor(sub), n))
    got = sum(dist[a, b].item() for a, b in mst_edges(pts).tolist())
    assert got == pytest.approx(best, rel=1e-6)


def test_chain_is_the_batch_order():
    assert chain_edges(4).tolist() == [[0, 1], [1, 2], [2, 3]]


# ---- the distribution


@pytest.mark.parametrize("tree", ["mst", "chain"])
def test_sample_covariance_matches_path_products(tree):
    # 200k draws of a 5-node tree in one latent dimension: the draws are the columns of 200k identical,
    # independent dimensions, so one call draws them all.
    n, draws = 5, 200_000
    mu, logvar, edges, gamma = _random_case(n, 1, tree, seed=3)
    sigma = (0.5 * logvar).exp()[:, 0]
    z = tree_sample(mu.expand(n, draws), logvar.expand(n, draws), edges, gamma.expand(n - 1, draws),
                    generator=torch.Generator().manual_seed(0))
    emp = torch.cov(z)  # (n, n) over the draws
    analytic = sigma[:, None] * sigma[None, :] * _path_corr(edges, gamma, n)[0]
    assert torch.allclose(z.mean(1), mu[:, 0], atol=4 * sigma.max().item() / draws ** 0.5)
    scale = sigma[:, None] * sigma[None, :]
    assert torch.allclose(emp / scale, analytic / scale, atol=0.012), (emp, analytic)


@pytest.mark.parametrize("tree", ["mst", "chain"])
@pytest.mark.parametrize("seed", range(4))
def test_factor_gives_path_product_correlation(tree, seed):
    n, d = 9, 3
    _, _, edges, gamma = _random_case(n, d, tree, seed)
    L = tree_factor(edges, gamma, n)
    assert torch.allclose(L @ L.transpose(1, 2), _path_corr(edges, gamma, n), atol=1e-12)
    order = [0] + edges[:, 1].tolist()  # topological order: L is lower triangular in it
    assert torch.equal(L[:, order][:, :, order].triu(1), torch.zeros(d, n, n, dtype=L.dtype))


@pytest.mark.parametrize("tree", ["mst", "chain"])
@pytest.mark.parametrize("seed", range(5))
def test_entropy_and_kl_equal_dense_gaussian(tree, seed):
    n, d = 7, 3
    mu, logvar, edges, gamma = _random_case(n, d, tree, seed)
    sigma = (0.5 * logvar).exp()
    corr = _path_corr(edges, gamma, n)
    cov = sigma.t()[:, :, None] * corr * sigma.t()[:, None, :]  # (d, n, n)
    dense = MultivariateNormal(mu.t(), covariance_matrix=cov)
    assert tree_entropy(logvar, edges, gamma).item() == pytest.approx(dense.entropy().sum().item(), abs=1e-4)
    prior = MultivariateNormal(torch.zeros(d, n, dtype=mu.dtype), covariance_matrix=torch.eye(n).expand(d, n, n))
    kl = tree_kl_per_image(mu, logvar, edges, gamma)
    assert kl.shape == (n,)
    assert kl.sum().item() == pytest.approx(kl_divergence(dense, prior).sum().item(), abs=1e-4)


def test_posterior_starts_mean_field_and_learns_correlations():
    torch.manual_seed(0)
    post = TreePosterior(latent_dim=4, tree="mst")
    mu, logvar = torch.randn(6, 4), torch.randn(6, 4) * 0.3
    z, kl = post(mu, logvar)
    mf = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    assert torch.allclose(kl, mf)  # gamma = 0 at initialisation: exactly mean-field
    with torch.no_grad():
        post.edge.weight.normal_()
    edges = mst_edges(mu)
    gamma = post.edge_gamma(mu, edges)
    assert gamma.abs().max() < 0.99 and gamma.abs().min() > 0
    assert torch.allclose(gamma, post.edge_gamma(mu, edges.flip(1)))  # symmetric in the endpoints
    z, kl = post(mu.requires_grad_(), logvar)
    (z.sum() + kl.sum()).backward()
    assert post.edge.weight.grad.abs().sum() > 0 and mu.grad is not None
    assert post.epoch_stats()["mean_abs_gamma"] > 0 and post.epoch_stats() == {}


# ---- the VAE with `posterior: treevi`


def test_treevi_vae_trains_fills_samples_and_round_trips(make_cfg, tiny_data, tree="mst"):
    cfg = make_cfg(model={**TINY_TREEVI, "tree": tree}, train={"max_steps": 3})
    result = train(cfg, verbose=False)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"recon", "kl"} <= set(rows[0]) and "mean_abs_gamma" in rows[-1]
    model, ckpt = load_model(result.run_dir / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "vae" and model.tree_posterior is not None and model.tree_posterior.tree == tree
    x = tiny_data.batch(tiny_data.split("val")[:4])
    m = torch.zeros_like(x[:, :1])
    m[..., 8:20, 8:20] = 1
    filled = model.fill(x, m)
    assert torch.equal(filled * (1 - m), x * (1 - m))
    assert model(x, m).pred.shape == x.shape
    assert torch.equal(model(x, m).pred, model(x, m).pred)  # eval: the means, deterministic
    assert model.sample(3, torch.Generator().manual_seed(0)).shape == (3, *x.shape[1:])
    z = model.encode(x)
    assert z.shape == (4, 8) and model.decode(z).shape == x.shape
    again = build_model({**TINY_TREEVI, "tree": tree}, 32, 3)
    again.load_state_dict(model.state_dict())
    again.eval()
    assert torch.allclose(again.fill(x, m), filled)


@pytest.mark.parametrize("tree", ["mst", "chain"])
def test_treevi_vae_kl_is_the_tree_kl_in_training(tree):
    torch.manual_seed(0)
    model = build_model({**TINY_TREEVI, "norm": "none", "tree": tree}, 32, 3).train()
    with torch.no_grad():
        model.tree_posterior.edge.weight.normal_()
    x, m = torch.rand(5, 3, 32, 32) * 2 - 1, torch.zeros(5, 1, 32, 32)
    mu, logvar = model.stats(x, m)
    edges = build_tree(mu, tree)
    want = tree_kl_per_image(mu, logvar, edges, model.tree_posterior.edge_gamma(mu, edges)).mean()
    assert model(x, m).parts["kl"].item() == pytest.approx(want.item(), rel=1e-5)
    model(x, m).loss.backward()  # the edge network learns through the joint draw and the KL
    assert model.tree_posterior.edge.weight.grad.abs().sum() > 0
    mf = model.eval()(x, m).parts["kl"]  # eval: mean-field KL of the means' posterior, below the tree's
    assert mf.item() < want.item()


def test_treevi_config_errors(make_cfg):
    from genfill.errors import GenfillError

    with pytest.raises(GenfillError, match="tree"):
        build_model({**TINY_TREEVI, "tree": "star"}, 32, 3)
    with pytest.raises(GenfillError, match="posterior"):
        build_model({**TINY_TREEVI, "posterior": "flow"}, 32, 3)
    with pytest.raises(GenfillError, match="tree_max_corr"):
        build_model({**TINY_TREEVI, "tree_max_corr": 1.0}, 32, 3)
