"""The built-in faces (genfill.data.faces64): drawn deterministically, a prefix of a longer draw, and the
generator's weights checked by SHA-256 before use."""

import pytest
import torch

from genfill.data.faces64 import draw_faces
from genfill.errors import GenfillError


def test_faces64_deterministic_with_prefix_property():
    a = draw_faces(6, seed=3)
    b = draw_faces(4, seed=3)
    assert a.shape == (6, 64, 64, 3) and a.dtype == torch.uint8
    assert torch.equal(a[:4], b)
    assert not torch.equal(a, draw_faces(6, seed=4))
    assert a.float().std() > 20  # real pictures, not a flat colour


def test_faces64_checksum_is_verified(monkeypatch, tmp_path):
    import genfill.data.faces64 as f64

    fake = tmp_path / "weights.tar"
    fake.write_bytes(b"tampered")
    monkeypatch.setattr(f64, "weights_path", lambda: fake)
    with pytest.raises(GenfillError, match="SHA-256"):
        f64.load_generator()
