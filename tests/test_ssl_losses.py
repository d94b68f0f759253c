import math

import torch

from genfill.ssl_losses import barlow_twins, byol_loss, ema_update, nt_xent


def test_nt_xent_hand_computed():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each anchor: positive cos 1, negatives cos 0 and 0 (other sample's two views) -> t = 1
    expected = -math.log(math.e / (math.e + 2))
    assert abs(nt_xent(z1, z2, temperature=1.0).item() - expected) < 1e-6


def test_byol_normalised_mse_and_ema():
    p = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[0.0, 3.0]])
    assert abs(byol_loss(p, z).item() - 2.0) < 1e-6  # orthogonal -> 2
    assert abs(byol_loss(p, 5 * p).item()) < 1e-6
    online, target = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    online.weight.data.fill_(1.0); target.weight.data.fill_(0.0)
    ema_update(target, online, tau=0.9)
    assert abs(target.weight.item() - 0.1) < 1e-6


def test_barlow_on_and_off_diagonal():
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # standardised: both dims identical -> C = all ones
    assert abs(barlow_twins(z, z, lambd=0.5).item() - 0.5 * 2) < 1e-4  # on 0, off 2 entries of 1
    z2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # C = [[1,-1],[-1,1]] for (z, z2)? dim0 vs z2 dims
    c_on = barlow_twins(z, z2, lambd=0.0).item()
    assert abs(c_on - 4.0) < 1e-4  # C_11 = -1 -> (1-(-1))^2 = 4, C_00 = 1 -> 0
