"""benchmarks/throughput.py in its quickest mode on the CPU: the JSON holds every measurement, with sane values."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(throughput, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "cpu.json"
    settings = replace(throughput.default_settings(torch.device("cpu"), quick=True), size=32, matmul_n=64,
                       fill_batches=(1, 4), fill_repeats=2)
    returned = throughput.run("cpu", families=["vae-faces64", "vqvae-faces64"], out=out, settings=settings,
                              command="pytest", verbose=False)
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(returned["rows"]))  # what was returned is what was written
    return saved


def test_every_family_asked_for_is_measured(results):
    assert [(r["family"], r["size"], r["batch"]) for r in results["rows"]] == [
        ("vae-faces64", 32, 4), ("vqvae-faces64", 32, 4)]
    assert results["skipped"] == []
    assert results["command"] == "pytest" and results["torch"] == torch.__version__ and results["date"]
    assert results["device_slug"].startswith("cpu")


def test_throughput_fields_are_sane(results):
    assert results["bf16_matmul_tflops"] > 0
    for r in results["rows"]:
        assert r["eager"]["images_per_s"] > 0 and r["fast"]["images_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["fast"]["images_per_s"] / r["eager"]["images_per_s"])
        assert r["flops_per_step"] > 0 and r["tflops"] > 0 and r["share_of_bf16_matmul"] > 0
        assert r["eager"]["peak_memory_mb"] is None  # CUDA only
        epoch = r["epoch"]  # train() itself: its own clock, the images it trained after its first step
        assert epoch["timed_images"] == r["batch"] * epoch["timed_steps"]
        assert epoch["images_per_s"] == pytest.approx(epoch["timed_images"] / epoch["measured_s"])
        assert epoch["epoch_s_extrapolated"] == pytest.approx(162_770 / epoch["images_per_s"])
        assert epoch["path"] == "eager" and epoch["masks"] == "bank of 1024"  # what train() does on a CPU
        assert epoch["loop_over_step"] == pytest.approx(epoch["images_per_s"] / r["eager"]["images_per_s"])
        assert 0 < epoch["data_masks_share"] < 1
        assert set(r["fill_ms"]) == {"1", "4"} and all(v > 0 for v in r["fill_ms"].values())


def test_loss_agreement_measures_the_models_loss(throughput):
    """The eager loss it reports is the loss of the family's model at its initial weights on that batch."""
    (fam,), _ = throughput.discover(["vae-faces64"])
    cfg = fam.cfg
    spec = throughput.model_spec(fam, 32, None)
    x, m = throughput.synthetic_batch(cfg, 32, 4, torch.device("cpu"))
    a = throughput.loss_agreement(spec, cfg, 32, x, m)
    model = throughput.fresh_model(spec, 32, 3).train()
    torch.manual_seed(1)
    assert a["eager_loss"] == pytest.approx(float(model(x, m).loss.detach()), rel=1e-5)
    # The CPU fast path is fp32 (channels_last only): it reorders sums, which moved this loss by 7e-5 relative
    # at one thread, but it must stay far inside what bf16 would do (rounding 2^-8 = 4e-3 per value).
    assert a["ok"] and a["fast_loss"] == pytest.approx(a["eager_loss"], rel=2.0 ** -8 / 4)


def test_loss_agreement_flags_a_fast_path_that_changes_the_loss(throughput, monkeypatch):
    (fam,), _ = throughput.discover(["vae-faces64"])
    spec = throughput.model_spec(fam, 32, None)
    x, m = throughput.synthetic_batch(fam.cfg, 32, 4, torch.device("cpu"))
    real = throughput.TrainPath.step

    def skewed(self, x, m):
        loss, parts = real(self, x, m)
        return (loss * 1.2 if self.fast else loss), parts

    monkeypatch.setattr(throughput.TrainPath, "step", skewed)
    a = throughput.loss_agreement(spec, fam.cfg, 32, x, m)
    assert not a["ok"] and a["rel_diff"] == pytest.approx(0.2, abs=2.0 ** -8 / 4)  # fp32 reordering, as above


def test_train_throughput_times_the_steps(throughput):
    """images/s is what a step of known duration gives: a 40 ms step at batch 4 is at most 100 images/s."""
    import time as _time

    class SlowPath:
        def step(self, x, m):
            _time.sleep(0.04)

    settings = replace(throughput.default_settings(torch.device("cpu"), quick=True), warmup=0, steps=3)
    x = torch.zeros(4, 3, 8, 8)
    res = throughput.train_throughput(SlowPath(), x, x[:, :1], settings)
    assert 20 < res["images_per_s"] <= 100 and 40 <= res["step_ms"] < 200  # sleep never returns early


def test_cpu_fill_has_telea_and_the_models(results):
    cpu = results["cpu_fill_64"]
    assert cpu["threads"] == 2 and cpu["size"] == 64
    assert cpu["telea"]["median_ms"] > 0
    assert set(cpu["models"]) == {"vae-faces64", "vqvae-faces64"}
    assert all(t["min_ms"] <= t["median_ms"] for t in cpu["models"].values())


def test_table_prints_every_row(throughput, results):
    text = throughput.table(results)
    assert "vae-faces64" in text and "telea" in text and "EXTRAPOLATED" in text


def test_unknown_family_is_reported_not_measured(throughput):
    families, skipped = throughput.discover(["vae-faces64", "no-such-family"])
    assert [f.name for f in families] == ["vae-faces64"]
    assert skipped[0]["family"] == "no-such-family"


def test_prior_family_gets_a_fresh_vqvae_of_its_size(throughput, tmp_path):
    (fam,), _ = throughput.discover(["vqvae-prior-faces64"])
    spec = throughput.model_spec(fam, 16, tmp_path)
    model = throughput.fresh_model(spec, 16, 3)
    assert model.kind == "vqvae_prior" and model.vqvae.image_size == 16
    assert Path(spec["vqvae"]).is_file()
