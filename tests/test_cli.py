"""Every CLI command in-process on tiny data, and every kind of bad input: one line, exit code 2."""

import pytest
import torch
import yaml
from PIL import Image

from genfill.cli import main


@pytest.fixture
def tiny_run(make_cfg, tmp_path):
    """A trained tiny VAE run (2 steps) and the YAML it came from."""
    from genfill.config import to_dict
    from genfill.train import train

    cfg = make_cfg()
    train(cfg, verbose=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    return cfg.run_dir, path


def _face(path, size=40):
    from genfill.data.faces64 import draw_faces

    Image.fromarray(draw_faces(1, seed=9)[0].numpy()).resize((size, size)).save(path)
    return path


def one_line_error(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("genfill: error: ") and pattern in err, err


def test_train_command(tmp_path, make_cfg, capsys):
    from genfill.config import to_dict

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_dict(make_cfg())))
    assert main(["train", "--config", str(path), "--set", "name=cli", "--quiet"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert (tmp_path / "runs" / "cli" / "checkpoints" / "best.pt").is_file()
    assert main(["train", "--config", str(path), "--set", "name=cli", "--resume", "--quiet"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["train", "--config", str(path), "--set", "name=cli", "--set", "train.max_steps=3",
                 "--set", "train.epochs=2", "--resume", "--quiet"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out


def test_fill_with_mask_kind_and_mask_file(tiny_run, tmp_path, capsys):
    import numpy as np

    run, _ = tiny_run
    img = _face(tmp_path / "face.png", 40)
    out = tmp_path / "out.png"
    assert main(["fill", str(img), "-c", str(run), "--mask-kind", "square", "--mask-param", "size=10",
                 "-o", str(out)]) == 0
    assert Image.open(out).size == (40, 40)  # the image's own size, not the model's 32
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (10, 10, 30, 30))
    mask.save(tmp_path / "mask.png")
    (tmp_path / "sub").mkdir()
    _face(tmp_path / "sub" / "other.jpg", 40)
    assert main(["fill", str(img), str(tmp_path / "sub"), "-c", str(run), "--mask", str(tmp_path / "mask.png"),
                 "-o", str(tmp_path / "many"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["face.png", "other.png"]
    assert "hole 25.0%" in capsys.readouterr().out
    # every known pixel is the input's own
    filled, src = np.array(Image.open(tmp_path / "many" / "face.png")), np.array(Image.open(img))
    hole = np.array(mask) > 127
    assert (filled[~hole] == src[~hole]).all() and (filled[hole] != src[hole]).any()
    # a classical peer through the same path, no checkpoint
    assert main(["fill", str(img), "--method", "telea", "--mask", str(tmp_path / "mask.png"),
                 "-o", str(tmp_path / "telea.png")]) == 0
    assert (np.array(Image.open(tmp_path / "telea.png"))[~hole] == src[~hole]).all()


def test_fill_methods(tiny_run, tmp_path, capsys):
    """--method reaches the model: latent optimisation gives another fill than encoding, with the known
    pixels of the input either way."""
    import numpy as np

    run, _ = tiny_run
    img = _face(tmp_path / "f.png", 32)
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    mask.save(tmp_path / "m.png")
    src, hole = np.array(Image.open(img)), np.array(mask) > 127
    outs = {}
    for method in ("encode", "optimize"):
        out = tmp_path / f"{method}.png"
        assert main(["fill", str(img), "-c", str(run), "--mask", str(tmp_path / "m.png"), "--method", method,
                     "-o", str(out)]) == 0
        assert f"-> {out} (hole 25.0%)" in capsys.readouterr().out
        outs[method] = np.array(Image.open(out))
        assert outs[method].shape == src.shape and (outs[method][~hole] == src[~hole]).all()
    assert (outs["encode"][hole] != outs["optimize"][hole]).any()


def test_sample_and_interpolate(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    assert main(["sample", "-c", str(run), "-n", "100", "-o", str(tmp_path / "grid.png")]) == 0
    w, h = Image.open(tmp_path / "grid.png").size
    assert w == h == 10 * 34 + 2  # 10x10 grid of 32 px faces with 2 px gaps
    assert main(["interpolate", "-c", str(run), "-o", str(tmp_path / "m1.png")]) == 0
    assert "test images" in capsys.readouterr().out
    m1 = Image.open(tmp_path / "m1.png")
    assert m1.size[0] > m1.size[1] and (m1.size[1] - 2) % 34 == 0 and len(set(m1.getdata())) > 100
    assert main(["interpolate", "-c", str(run), "--random", "--rows", "2", "--steps", "5",
                 "-o", str(tmp_path / "m2.png")]) == 0
    assert Image.open(tmp_path / "m2.png").size == (5 * 34 + 2, 2 * 34 + 2)
    a, b = _face(tmp_path / "a.png"), _face(tmp_path / "b.png")
    assert main(["interpolate", "-c", str(run), str(a), str(b), "-o", str(tmp_path / "m3.png")]) == 0
    assert "image files" in capsys.readouterr().out
    assert Image.open(tmp_path / "m3.png").size[1] == 34 + 2  # one row between the two files


def test_demo_command_writes_a_complete_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # A small mask bank: the default 32k-mask bank is drawn once per machine, which is the demo's business
    # but not this test's.
    small = ["--set", "masks.bank_size=256"]
    assert main(["demo", "--minutes", "0.03", "--count", "60", "--quiet", *small]) == 0
    index = tmp_path / "runs" / "demo" / "index.html"
    assert index.is_file()
    from tests.conftest import check_report_structure
    from genfill.demo import DEMO_MASKS

    text = check_report_structure(index, list(DEMO_MASKS), ["genfill sampler", "genfill sampler mean",
                                                             "OpenCV Telea", "biharmonic", "PatchMatch"])
    assert "Best distortion (PSNR dB)</b> per mask kind" in text and "Best perception (LPIPS)" in text and 'href="demo.json"' in text
    # a second demo keeps the first one
    assert main(["demo", "--minutes", "0.01", "--count", "60", "--quiet", *small]) == 0
    assert len([p for p in (tmp_path / "runs").iterdir() if p.name.startswith("demo")]) == 2


def test_bad_inputs_give_one_line_errors(tiny_run, tmp_path, capsys):
    run, cfg_path = tiny_run
    img = _face(tmp_path / "face.png", 40)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    Image.new("L", (20, 20), 255).save(tmp_path / "small_mask.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("train: {learning_rate: 1}\n")
    bad_kind = tmp_path / "kind.yaml"
    bad_kind.write_text("model: {kind: diffusion}\n")
    empty_data = tmp_path / "emptydata.yaml"
    empty_data.write_text(f"data: {{name: folder, root: {tmp_path / 'empty'}}}\nout_dir: {tmp_path / 'r'}\n")
    cases = [
        (["fill", str(tmp_path / "missing.png"), "-c", str(run), "-o", str(tmp_path / "o.png")], "image not found"),
        (["fill", str(tmp_path / "corrupt.jpg"), "-c", str(run), "--mask-kind", "thick", "-o", str(tmp_path / "o.png")],
         "cannot read image"),
        (["fill", str(img), "-c", str(run), "-o", str(tmp_path / "o.png")], "no mask for"),
        (["fill", str(img), "-o", str(tmp_path / "o.png"), "--mask-kind", "thick"], "give -c CHECKPOINT"),
        (["fill", str(tmp_path / "empty"), "-c", str(run), "--mask-kind", "thick", "-o", str(tmp_path / "o")],
         "no images in folder"),
        (["fill", str(img), "-c", str(run), "--mask", str(tmp_path / "small_mask.png"), "-o", str(tmp_path / "o.png")],
         "small_mask.png"),
        (["fill", str(img), "-c", str(tmp_path / "nope.pt"), "--mask-kind", "thick", "-o", str(tmp_path / "o.png")],
         "checkpoint not found"),
        (["fill", str(img), "-c", str(tmp_path / "junk.pt"), "--mask-kind", "thick", "-o", str(tmp_path / "o.png")],
         "not a readable genfill"),
        (["fill", str(img), "-c", str(run), "--mask-kind", "blob", "-o", str(tmp_path / "o.png")], "blob"),
        (["fill", str(img), "-c", str(run), "--mask-kind", "thick", "--method", "magic", "-o", str(tmp_path / "o.png")], "fill method"),
        (["train", "--config", str(bad_key)], "unknown config key train.learning_rate"),
        (["train", "--config", str(bad_kind)], "unknown model kind 'diffusion'"),
        (["train", "--config", str(empty_data), "--quiet"], "no images"),
        (["train", "--config", str(tmp_path / "none.yaml")], "config file not found"),
        (["train", "--config", str(cfg_path), "--set", "model.kind=beta_vae", "--resume", "--quiet"],
         "holds a vae model"),
        (["sample", "-c", str(run), "-n", "0"], "-n must be at least 1"),
    ]
    for argv, pattern in cases:
        one_line_error(capsys, argv, pattern)
    assert not (tmp_path / "o.png").exists()  # nothing half-written


def test_debug_shows_traceback(tmp_path):
    from genfill.errors import GenfillError

    with pytest.raises(GenfillError):
        main(["--debug", "sample", "-c", str(tmp_path / "nope.pt")])
