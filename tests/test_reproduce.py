from genfill.loadconfig import build_config
from genfill.reproduce import _link_earlier_runs


def test_a_later_model_finds_the_run_this_preset_trained_earlier(tmp_path):
    root = tmp_path / "runs" / "reproduce"
    vq = build_config({"name": "vqvae-faces64", "out_dir": str(root), "model": {"kind": "vqvae"}})
    prior = build_config({"name": "vqvae-prior-faces64", "out_dir": str(root),
                          "model": {"kind": "vqvae_prior", "vqvae": "runs/vqvae-faces64"}})
    _link_earlier_runs(prior, [vq])
    assert prior.model["vqvae"] == str(root / "vqvae-faces64")
    other = build_config({"name": "p2", "out_dir": str(root),
                          "model": {"kind": "vqvae_prior", "vqvae": "elsewhere/my-vq"}})
    _link_earlier_runs(other, [vq])
    assert other.model["vqvae"] == "elsewhere/my-vq"  # not trained here: left alone
