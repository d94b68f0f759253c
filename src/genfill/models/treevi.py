"""Tree-structured variational posterior over the images of a batch (TreeVI; Xiao & Su, NeurIPS 2024,
"Reparameterizable Tree-structured Variational Inference for Instance-level Correlation Capturing").

Mean-field VI gives every image its own independent q(z_i|x_i) = N(mu_i, sigma_i^2). TreeVI couples the
latents of the N images of a batch through a tree over the images:

- Per latent dimension d, the standardised latents u_i = (z_i - mu_i) / sigma_i form a Gaussian tree: the
  root is N(0, 1) and every child is u_c = gamma_e u_p + sqrt(1 - gamma_e^2) eps_c along its edge e to its
  parent p. So every marginal stays N(mu_i, sigma_i^2), an edge has correlation gamma_e in (-1, 1), and two
  nodes are correlated by the product of the gammas along their path.
- Equivalently z = mu + sigma * (L @ eps) with L[i, k] = sqrt(1 - gamma_k^2) * prod(gammas on the path from
  k down to i) for every ancestor k of i (gamma_root := 0), so corr = L L^T. `tree_factor` builds L;
  sampling stays reparameterisable.
- Entropy (per dimension): sum_i H(N(mu_i, sigma_i^2)) + 1/2 sum_e log(1 - gamma_e^2); the cross-entropy
  with the N(0, I) prior depends on the marginals only. So KL(q || p) = sum_i KL_mean-field(i)
  - 1/2 sum_e log(1 - gamma_e^2); each edge's term is charged to its child image, giving a per-image KL
  whose sum over the batch is exact.

Choices (the paper leaves them to the application):
- The tree: a minimum spanning tree of the encoder means (Euclidean, detached; Prim's algorithm on the
  batch, rooted at image 0) or, with `tree: chain`, the batch order 0-1-2-...; it is rebuilt every batch.
- The correlations are per latent dimension (a D-vector per edge) and amortised, because trees differ per
  batch: gamma_e = max_corr * tanh(W [mu_p + mu_c, |mu_p - mu_c|] + b), a function of the two endpoint
  means that is symmetric in them. W and b start at zero, so training starts exactly at mean-field.
- At eval time the VAE uses the means, as with the mean-field posterior.

Note: for i.i.d. images and an i.i.d. likelihood the true posterior factorises across images, so the
ELBO's optimum has gamma = 0; the entropy term pulls gamma there and the reconstruction's gradient for
gamma is zero in expectation. `mean_abs_gamma` (logged per epoch) shows how far the learned trees go.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genfill.errors import GenfillError
from genfill.models.blocks import gaussian_kl

TREES = ("mst", "chain")


def mst_edges(points: Tensor) -> Tensor:
    """Minimum spanning tree of `points` (N,D) under Euclidean distance, by Prim's algorithm from node 0.

    Returns (N-1, 2) long tensor of (parent, child) pairs in the order the children joined the tree, so
    every parent appears (as root or as an earlier child) before its children. Computed on the points'
    device with tensor indices only: N - 1 small steps, none of which waits for the device.
    """
    n = points.shape[0]
    if n < 2:
        return torch.zeros(0, 2, dtype=torch.long, device=points.device)
    p = points.detach().float()
    dist = torch.cdist(p, p)
    nodes = torch.arange(n, device=p.device)
    in_tree = nodes == 0
    best = dist[0].clone()  # distance of each node to the tree so far
    link = torch.zeros(n, dtype=torch.long, device=p.device)  # nearest tree node
    parents, children = [], []
    for _ in range(n - 1):
        child = best.masked_fill(in_tree, math.inf).argmin(0, keepdim=True)  # (1,): a tensor, never an int
        parents.append(link.index_select(0, child))
        children.append(child)
        in_tree = in_tree | (nodes == child)
        d = dist.index_select(0, child)[0]
        closer = d < best
        best = torch.where(closer, d, best)
        link = torch.where(closer, child, link)
    return torch.stack([torch.cat(parents), torch.cat(children)], dim=1)


def chain_edges(n: int, device=None) -> Tensor:
    """The path 0-1-...-(n-1) as (n-1, 2) (parent, child) pairs."""
    i = torch.arange(max(n - 1, 0), device=device)
    return torch.stack([i, i + 1], dim=1)


def build_tree(mu: Tensor, tree: str) -> Tensor:
    if tree == "mst":
        return mst_edges(mu)
    if tree == "chain":
        return chain_edges(mu.shape[0], mu.device)
    raise GenfillError(f"model.tree: {tree!r} is not one of {', '.join(TREES)}")


def _tree_system(edges: Tensor, gamma: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The tree as a linear system. With G[child, parent] = gamma_e and s_i = sqrt(1 - gamma^2) of i's edge
    (1 at the root), u = G u + diag(s) eps, i.e. (I - G) u = s * eps. In the order the nodes joined the
    tree (root 0, then the edges' children) every parent comes before its children, so I - G is unit lower
    triangular there. Returns (order, inverse order, I - G (D,N,N) and s (D,N), both in that order)."""
    d = gamma.shape[1]
    order = torch.cat([torch.zeros(1, dtype=torch.long, device=edges.device), edges[:, 1]])
    pos = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=order.device))
    g = torch.zeros(n, n, d, dtype=gamma.dtype, device=gamma.device)
    g = g.index_put((pos[edges[:, 1]], pos[edges[:, 0]]), gamma).permute(2, 0, 1).contiguous()
    system = torch.eye(n, dtype=gamma.dtype, device=gamma.device) - g
    s = torch.ones(n, d, dtype=gamma.dtype, device=gamma.device)
    s = s.index_put((pos[edges[:, 1]],), torch.sqrt(1 - gamma * gamma)).t()
    return order, pos, system, s


def tree_factor(edges: Tensor, gamma: Tensor, n: int) -> Tensor:
    """L with corr = L L^T for the tree `edges` (E,2) (parent, child; parents first, rooted at node 0) and
    edge correlations `gamma` (E,D): returns (D, N, N), row i holding sqrt(1 - gamma_k^2) * prod(path
    gammas) at ancestors k. L = (I - G)^-1 diag(s) (see _tree_system), by one triangular solve."""
    order, pos, system, s = _tree_system(edges, gamma, n)
    eye = torch.eye(n, dtype=gamma.dtype, device=gamma.device).expand_as(system)
    inv = torch.linalg.solve_triangular(system, eye, upper=False, unitriangular=True)
    return (inv * s[:, None, :])[:, pos][:, :, pos]


def tree_sample(mu: Tensor, logvar: Tensor, edges: Tensor, gamma: Tensor,
                generator: torch.Generator | None = None) -> Tensor:
    """z = mu + sigma * (L @ eps), (N,D); eps ~ N(0, I) independent per image and dimension. L @ eps is
    one triangular solve with a vector per dimension (D N^2 work, on the device, no host sync)."""
    n, d = mu.shape
    order, pos, system, s = _tree_system(edges, gamma, n)
    eps = torch.randn(d, n, 1, dtype=mu.dtype, device=mu.device, generator=generator)
    u = torch.linalg.solve_triangular(system, s[..., None] * eps[:, order], upper=False, unitriangular=True)
    u = u[:, pos].squeeze(-1).t()  # (N,D) standardised, tree-correlated across images
    return mu + (0.5 * logvar).exp() * u


def tree_entropy(logvar: Tensor, edges: Tensor, gamma: Tensor) -> Tensor:
    """Entropy of the tree Gaussian (a scalar over all images and dimensions)."""
    node = 0.5 * (math.log(2 * math.pi) + 1.0 + logvar).sum()
    return node + 0.5 * torch.log1p(-gamma.pow(2)).sum()


def tree_kl_per_image(mu: Tensor, logvar: Tensor, edges: Tensor, gamma: Tensor) -> Tensor:
    """KL(q_tree || N(0, I)) split over images, (N,): the mean-field KL of each image minus 1/2 sum_d
    log(1 - gamma^2) of the edge to its parent. Sums to the exact joint KL."""
    kl = gaussian_kl(mu, logvar)
    if len(edges):
        edge_term = -0.5 * torch.log1p(-gamma.float().pow(2)).sum(1)  # (E,)
        kl = kl.index_add(0, edges[:, 1], edge_term.to(kl.dtype))
    return kl


class TreePosterior(nn.Module):
    """The amortised edge correlations and the sampling/KL of the tree posterior; `forward(mu, logvar)`
    returns (z, kl_per_image) like VAE.posterior_sample."""

    def __init__(self, latent_dim: int, tree: str = "mst", max_corr: float = 0.99) -> None:
        super().__init__()  # tree and max_corr are checked with the model's config (VAEConfig)
        self.tree = tree
        self.max_corr = max_corr
        self.edge = nn.Linear(2 * latent_dim, latent_dim)
        nn.init.zeros_(self.edge.weight)
        nn.init.zeros_(self.edge.bias)
        self._abs_gamma_sum, self._abs_gamma_n = 0.0, 0

    def edge_gamma(self, mu: Tensor, edges: Tensor) -> Tensor:
        """(E,D) correlations in (-max_corr, max_corr), symmetric in each edge's two endpoints."""
        a, b = mu[edges[:, 0]], mu[edges[:, 1]]
        return self.max_corr * torch.tanh(self.edge(torch.cat([a + b, (a - b).abs()], dim=1)))

    def forward(self, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
        mu32, logvar32 = mu.float(), logvar.float()
        edges = build_tree(mu32, self.tree)
        gamma = self.edge_gamma(mu32, edges).float()
        if len(edges):
            self._abs_gamma_sum = self._abs_gamma_sum + gamma.detach().abs().mean()  # no host sync
            self._abs_gamma_n += 1
        z = tree_sample(mu32, logvar32, edges, gamma)
        return z.to(mu.dtype), tree_kl_per_image(mu32, logvar32, edges, gamma)

    def epoch_stats(self) -> dict[str, float]:
        """Mean |gamma| over the batches since the last call (then reset)."""
        if not self._abs_gamma_n:
            return {}
        out = {"mean_abs_gamma": float(self._abs_gamma_sum) / self._abs_gamma_n}
        self._abs_gamma_sum, self._abs_gamma_n = 0.0, 0
        return out
