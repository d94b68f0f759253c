"""FID/KID per mask kind with cached Inception features (genfill.metrics.fid_cache): a second evaluation of
one protocol computes only what changed and scores the same; any change of the protocol (seed, mask
parameters, data, more images) recomputes; the bootstrap spread and the fast KID agree with their
definitions. A cheap random projection stands in for Inception; it counts the images it sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genfill.errors import GenfillError
from genfill.evaljob import parse_masks
from genfill.evaluate import evaluate_methods
from genfill.metrics import fid
from genfill.peers import PEERS


class CountingFeatures:
    """(N,C,H,W) -> (N, 8) by a fixed random projection in float32, returned as float64 (as Inception's
    float32 outputs are); `seen` counts images."""

    cache_id = "test-projection-8"

    def __init__(self, size: int = 32, channels: int = 3):
        g = torch.Generator().manual_seed(0)
        self.proj = torch.randn(channels * size * size, 8, generator=g)
        self.seen = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return (x.flatten(1).float().cpu() @ self.proj).double()


def _shift(x, m):
    """A deterministic 'model' that is not a peer (its features are never cached)."""
    return m * (x * 0.5) + (1 - m) * x


def _run(data, folder, feats, masks="thin,square", n=6, seed=5, methods=None):
    methods = methods or {"model": _shift, "biharmonic": PEERS["biharmonic"]}
    return evaluate_methods(methods, data, parse_masks(masks, data.size), n=n, seed=seed, fid=True,
                            feature_cache=folder, features=feats, verbose=False)


def _fids(res):
    return {name: {k: v["fid"] for k, v in r.extras["by_mask"].items()} for name, r in res.items()}


def test_second_evaluation_reads_real_and_peer_features_from_the_cache(tiny_data, tmp_path):
    first = CountingFeatures()
    a = _run(tiny_data, tmp_path, first)
    assert first.seen == 6 + 2 * (2 * 6)  # the test images once, then 2 methods x 2 kinds x 6 fills
    second = CountingFeatures()
    b = _run(tiny_data, tmp_path, second)
    assert second.seen == 2 * 6  # only the model's fills: the test images and the peer's fills are cached
    assert _fids(a) == _fids(b)  # float32 storage of float32 network outputs loses nothing here
    inc = b["biharmonic"].extras["inception"]
    assert inc["cached_images"] == 12 and inc["images"] == 0 and inc["real_cached"]
    assert b["model"].extras["inception"]["images"] == 12


@pytest.mark.parametrize("change", [{"seed": 6}, {"masks": "thin,square,thick"}, {"n": 6, "square": 12}])
def test_a_changed_protocol_recomputes_the_peers_features(tiny_data, tmp_path, change):
    _run(tiny_data, tmp_path, CountingFeatures())
    feats = CountingFeatures()
    if "square" in change:  # other mask parameters under the same kind name
        masks = {"thin": {}, "square": {"size": change["square"], "margin": 4}}
        res = evaluate_methods({"model": _shift, "biharmonic": PEERS["biharmonic"]}, tiny_data, masks, n=6, seed=5,
                               fid=True, feature_cache=tmp_path, features=feats, verbose=False)
        assert feats.seen == 2 * 2 * 6 - 6  # thin's peer features reused; square's recomputed; test images reused
        fresh = CountingFeatures()
        ref = evaluate_methods({"biharmonic": PEERS["biharmonic"]}, tiny_data, masks, n=6, seed=5, fid=True,
                               features=fresh, verbose=False)  # no cache at all
        assert res["biharmonic"].extras["by_mask"]["square"]["fid"] == pytest.approx(
            ref["biharmonic"].extras["by_mask"]["square"]["fid"], rel=1e-9)
        return
    kw = {k: v for k, v in change.items()}
    _run(tiny_data, tmp_path, feats, **kw)
    kinds = len(kw.get("masks", "thin,square").split(","))
    if "seed" in kw:  # other holes: every fill is new, the test images are the same
        assert feats.seen == 2 * kinds * 6
    else:  # a new kind: its fills only
        assert feats.seen == 2 * 6 + (kinds - 1) * 6


def test_fewer_images_reuse_a_prefix_and_more_images_recompute(tiny_data, tmp_path):
    _run(tiny_data, tmp_path, CountingFeatures(), n=4)
    more = CountingFeatures()
    _run(tiny_data, tmp_path, more, n=6)
    assert more.seen == 6 + 2 * 2 * 6  # 4 cached rows cannot serve 6 images
    fewer = CountingFeatures()
    res = _run(tiny_data, tmp_path, fewer, n=3)
    assert fewer.seen == 2 * 3  # the first 3 of 6 cached rows: only the model's fills
    assert res["biharmonic"].extras["inception"]["cached_images"] == 6


def test_other_data_or_network_never_reads_the_cache(tiny_data, tmp_path):
    from genfill.data.cache import ImageCache

    _run(tiny_data, tmp_path, CountingFeatures())
    other = ImageCache(tiny_data.images, tiny_data.splits, tiny_data.info, key=tiny_data.key + "-other")
    feats = CountingFeatures()
    _run(other, tmp_path, feats)
    assert feats.seen == 6 + 2 * 2 * 6
    renamed = CountingFeatures()
    renamed.cache_id = "another-network"
    _run(tiny_data, tmp_path, renamed)
    assert renamed.seen == 6 + 2 * 2 * 6


def test_a_damaged_cache_file_is_recomputed(tiny_data, tmp_path):
    a = _run(tiny_data, tmp_path, CountingFeatures())
    for f in tmp_path.glob("*.npy"):
        f.write_bytes(b"not a numpy file")
    feats = CountingFeatures()
    b = _run(tiny_data, tmp_path, feats)
    assert feats.seen == 6 + 2 * 2 * 6 and _fids(a) == _fids(b)
    assert all(np.load(f).shape == (6, 8) for f in tmp_path.glob("*.npy"))  # rewritten whole


def test_without_a_cache_folder_nothing_is_written(tiny_data, tmp_path):
    feats = CountingFeatures()
    _run(tiny_data, None, feats)
    _run(tiny_data, None, feats)
    assert feats.seen == 2 * (6 + 2 * 2 * 6) and not list(tmp_path.iterdir())


# ---------------------------------------------------------------- the bootstrap and KID


def _sets(n=60, d=16, shift=0.0, seed=0):
    g = np.random.default_rng(seed)
    real = g.normal(size=(n, d))
    fake = real + g.normal(scale=0.5, size=(n, d)) + shift
    return fake, real


def test_bootstrap_point_values_and_spread():
    fake, real = _sets()
    out = fid.fid_kid_bootstrap(fake, real, rounds=50, seed=1)
    assert out["fid"] == pytest.approx(fid.fid_from_features(fake, real), rel=1e-12)
    kid_full, spread = fid.kid_from_features(fake, real, subsets=3)
    assert out["kid"] == pytest.approx(kid_full, rel=1e-9) and spread == 0.0  # one subset = the whole sets
    assert out["fid_std"] > 0 and out["fid_lo"] < out["fid_hi"]
    assert out["fid_hi"] > out["fid"]  # resamples repeat images, which pushes FID up: never only below it
    assert out["kid_lo"] <= out["kid_hi"]
    again = fid.fid_kid_bootstrap(fake, real, rounds=50, seed=1)
    assert again == out  # the same seed draws the same resamples
    far = fid.fid_kid_bootstrap(*_sets(shift=1.0), rounds=50, seed=1)
    assert far["fid_lo"] > out["fid_hi"]  # a clearly worse method is outside the spread


def test_bootstrap_rejects_unpaired_sets():
    fake, real = _sets()
    with pytest.raises(GenfillError, match="paired"):
        fid.fid_kid_bootstrap(fake[:10], real, rounds=10)


def test_kid_from_precomputed_kernels_equals_the_direct_sum(monkeypatch):
    fake, real = _sets(n=40)
    fast = fid.kid_from_features(fake, real, subsets=20, subset_size=25, seed=3)
    monkeypatch.setattr(fid, "_KID_PRECOMPUTE_MAX", 0)
    slow = fid.kid_from_features(fake, real, subsets=20, subset_size=25, seed=3)
    assert fast[0] == pytest.approx(slow[0], rel=1e-9) and fast[1] == pytest.approx(slow[1], rel=1e-9)


def test_a_peer_seen_under_this_protocol_is_not_filled_again(tiny_data, tmp_path, monkeypatch):
    """With its features and per-image scores on disk, a peer's records are replayed, the same as computed,
    without calling it; another seed, a damaged score file or FID features missing make it fill again."""
    calls, telea = [], PEERS["telea"]

    def counted(x, m):
        calls.append(len(x))
        return telea(x, m)

    monkeypatch.setitem(PEERS, "telea", counted)  # a peer by identity: its results may be cached
    methods = {"model": _shift, "telea": counted}
    a = _run(tiny_data, tmp_path, CountingFeatures(), methods=methods)
    assert sum(calls) == 2 * 6
    b = _run(tiny_data, tmp_path, CountingFeatures(), methods=methods)
    assert sum(calls) == 2 * 6  # replayed
    assert b["telea"].records == a["telea"].records and b["telea"].images == a["telea"].images == 12
    assert b["telea"].replayed_seconds == pytest.approx(a["telea"].seconds) and b["telea"].seconds == 0
    assert b["telea"].ms_per_image == pytest.approx(a["telea"].ms_per_image)
    assert _fids(a) == _fids(b)
    nofid = evaluate_methods(methods, tiny_data, parse_masks("thin,square", tiny_data.size), n=6, seed=5,
                             feature_cache=tmp_path, verbose=False)
    assert sum(calls) == 2 * 6 and nofid["telea"].records == a["telea"].records  # --no-fid replays too
    _run(tiny_data, tmp_path, CountingFeatures(), methods=methods, seed=6)
    assert sum(calls) == 4 * 6  # another protocol
    for f in tmp_path.glob("*.scores.json"):
        f.write_text("{not json")
    c = _run(tiny_data, tmp_path, CountingFeatures(), methods=methods)
    assert sum(calls) == 6 * 6 and c["telea"].records == a["telea"].records  # recomputed, same numbers
    for f in tmp_path.glob("*.npy"):
        f.unlink()  # features gone: the fills are needed for Inception again
    _run(tiny_data, tmp_path, CountingFeatures(), methods=methods)
    assert sum(calls) == 8 * 6
