"""`genfill serve`'s JSON API through FastAPI's test client: every route, every limit as a 4xx JSON error, the
per-device queue (one fill at a time, a timeout, a bound), and the command's start-up and its one-line errors."""

from __future__ import annotations

import io
import re
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="genfill serve needs the serve extra: pip install 'genfill[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the serve extra)")

from fastapi.testclient import TestClient  # noqa: E402

from genfill.api import Inpainter  # noqa: E402
from genfill.cli import main  # noqa: E402
from genfill.loadconfig import build_config  # noqa: E402
from genfill.serve.app import Limits, create_app, load_methods  # noqa: E402

from tests.conftest import tiny_raw  # noqa: E402


@pytest.fixture(scope="module")
def run32(tmp_path_factory, cache_root) -> Path:
    """A tiny VAE trained for 2 steps on 32x32 faces: a real model behind the API."""
    from genfill.train import train

    cfg = build_config(tiny_raw(tmp_path_factory.mktemp("runs"), cache_root))
    train(cfg, verbose=False)
    return cfg.run_dir


@pytest.fixture(scope="module")
def client(run32):
    with TestClient(create_app(load_methods([str(run32)], peers=True, device="cpu"))) as c:
        yield c


def png(a: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    (a if isinstance(a, Image.Image) else Image.fromarray(a)).save(buf, format=fmt)
    return buf.getvalue()


def photo(h: int = 70, w: int = 90) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], 2)
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


def hole(h: int = 70, w: int = 90) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[20:40, 30:60] = 255
    return m


def post(client, image=None, mask=None, method="telea", **data):
    files = {"image": ("photo.png", png(photo()) if image is None else image),
             "mask": ("mask.png", png(hole()) if mask is None else mask)}
    return client.post("/api/fill", files=files, data={"method": method, **data})


def error(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["error"]


# ---------------------------------------------------------------- routes


def test_models_healthz_page_and_unknown_routes(client, run32):
    info = client.get("/api/models").json()
    names = [m["name"] for m in info["models"]]
    assert names == [run32.name, "telea", "ns", "biharmonic", "patchmatch", "mean"]
    model = info["models"][0]
    assert model["kind"] == "model" and model["size"] == 32 and model["device"] == "cpu"
    assert info["models"][1]["kind"] == "peer" and info["models"][1]["size"] is None
    assert info["limits"]["max_upload_bytes"] == 20 * 1024 * 1024 and info["faces"] == 8

    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["methods"] == 6

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="overlay"' in page.text and "/api/fill" in page.text

    assert "not found: /nope" in error(client.get("/nope"), 404)
    assert error(client.get("/api/fill"), 405)


def test_faces_are_64px_pngs_and_an_unknown_face_is_404(client):
    r = client.get("/api/faces/3")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    face = Image.open(io.BytesIO(r.content))
    assert face.size == (64, 64) and face.mode == "RGB"
    assert r.content == client.get("/api/faces/3").content  # drawn once, the same every time
    assert "no built-in face 8" in error(client.get("/api/faces/8"), 404)
    assert error(client.get("/api/faces/x"), 422)


@pytest.mark.parametrize("method", ["model", "telea"])
def test_fill_is_the_photo_size_and_changes_only_the_hole(client, run32, method):
    name = run32.name if method == "model" else method
    img, m = photo(), hole() > 0
    r = post(client, method=name, seed=3)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-method"] == name
    assert float(r.headers["x-fill-seconds"]) >= 0 and float(r.headers["x-queue-seconds"]) >= 0
    out = np.asarray(Image.open(io.BytesIO(r.content)))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[~m] == img[~m]).all()
    assert (out[m] != img[m]).any()
    # seeded: the same request gives the same fill
    assert post(client, method=name, seed=3).content == r.content


def test_fill_keeps_the_mode_of_a_grey_jpeg_and_of_an_rgba_png(client):
    grey = Image.fromarray(photo()[:, :, 0])
    r = post(client, image=png(grey, "JPEG"))
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).mode == "L"
    rgba = Image.fromarray(np.concatenate([photo(), np.full((70, 90, 1), 255, np.uint8)], 2), "RGBA")
    r = post(client, image=png(rgba))
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).mode == "RGBA"


def test_exif_orientation_is_applied_as_the_browser_shows_the_photo(client):
    """A phone photo stored 90x70 with 'rotate 90' in its EXIF shows as 70x90: the mask painted on it is
    70x90 and the fill comes back upright at 70x90."""
    stored = Image.fromarray(photo(70, 90))
    exif = stored.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif.tobytes())
    r = post(client, image=buf.getvalue(), mask=png(hole(90, 70)))
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == (70, 90)


def test_a_mask_of_another_size_is_refused_or_resized_when_asked(client):
    small = hole()[::2, ::2]  # 45x35
    assert "mask is 45x35 but the image is 90x70: pass mask_resize=true" in error(post(client, mask=png(small)), 422)
    r = post(client, mask=png(small), mask_resize="true")
    assert r.status_code == 200
    out, img, m = np.asarray(Image.open(io.BytesIO(r.content))), photo(), hole() > 0
    assert out.shape == img.shape and (out[~m] == img[~m]).all()  # nearest: the same hole, twice the size


@pytest.mark.parametrize("case, status, says", [
    ("unknown method", 400, "unknown method 'nope': choose one of"),
    ("not an image", 415, "image: not an image genfill can read"),
    ("mask not an image", 415, "mask: not an image"),
    ("empty image", 422, "image: the file is empty"),
    ("no hole", 422, "mask has no hole"),
    ("all hole", 422, "mask covers the whole image"),
    ("missing mask", 422, "missing form field 'mask'"),
    ("missing method", 422, "missing form field 'method'"),
    ("dilate too big", 422, "dilate"),
])
def test_bad_requests_are_4xx_json_errors(client, case, status, says):
    args = {
        "unknown method": dict(method="nope"),
        "not an image": dict(image=b"GIF89a but not really"),
        "mask not an image": dict(mask=b"\x89PNG\r\n\x1a\n broken"),
        "empty image": dict(image=b""),
        "no hole": dict(mask=png(np.zeros((70, 90), np.uint8))),
        "all hole": dict(mask=png(np.full((70, 90), 255, np.uint8))),
        "dilate too big": dict(dilate="65"),
    }.get(case, {})
    if case.startswith("missing"):
        files = {"image": ("p.png", png(photo()))}
        data = {"method": "telea"} if case == "missing mask" else {}
        if case == "missing method":
            files["mask"] = ("m.png", png(hole()))
        r = client.post("/api/fill", files=files, data=data)
    else:
        r = post(client, **args)
    assert says in error(r, status)


def test_upload_size_limit_by_content_length_and_by_counting_a_chunked_body(run32):
    app = create_app({"telea": Inpainter("telea", lambda x, m: x, None, None)}, Limits(max_upload_bytes=50_000))
    with TestClient(app) as c:
        big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)  # ~120 kB as PNG
        assert "upload too large: the limit is 0.0477 MB" in error(post(c, image=png(big)), 413)

        def chunks():  # no Content-Length: the middleware counts what arrives
            for _ in range(10):
                yield b"x" * 10_000

        r = c.post("/api/fill", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert "upload too large" in error(r, 413)
        assert post(c).status_code == 200  # a small request still goes through


def test_one_log_line_per_request_and_a_favicon(run32):
    lines: list[str] = []
    app = create_app(load_methods([str(run32), "telea"], device="cpu"), Limits(max_upload_bytes=50_000),
                     log=lines.append)
    with TestClient(app) as c:
        info = c.get("/api/models").json()["models"]
        assert info[0]["family"] == "vae" and info[0]["run"] == run32.name  # the page labels family and run
        assert info[1]["family"] == "classical" and info[1]["run"] is None
        icon = c.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
        assert 'rel="icon" href="/favicon.svg"' in c.get("/").text and c.get("/favicon.svg").status_code == 200
        lines.clear()
        assert post(c, method="telea").status_code == 200
        big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
        assert post(c, image=png(big)).status_code == 413
        assert c.get("/nope").status_code == 404
    assert len(lines) == 3, lines
    ok, too_big, missing = lines
    assert " POST /api/fill 200 in " in ok and re.search(r"in \d+(\.\d)? k?B out \d+(\.\d)? k?B \d+\.\d\d s$", ok), ok
    assert " POST /api/fill 413 in 1" in too_big and " GET /nope 404 " in missing


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header says w x h but whose data is one pixel: what a decompression bomb looks like
    before decoding (the check must refuse it from the header alone)."""
    import struct
    import zlib

    data = bytearray(png(np.zeros((1, 1), np.uint8)))
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    app = create_app({"telea": Inpainter("telea", lambda x, m: x, None, None)}, Limits(max_pixels=10_000))
    with TestClient(app) as c:
        says = error(post(c, image=png_header(3000, 2000)), 413)
        assert says == "image: 3000x2000 is 6.0 MP, over the limit of 0.0 MP (genfill serve --max-pixels)"
        assert "decompression bomb" in error(post(c, image=png_header(30_000, 30_000)), 413)  # PIL's own guard
        assert "mask: 100x101 is 0.0 MP" in error(post(c, image=png(photo(20, 20)), mask=png(hole(101, 100))), 413)
        small = np.zeros((20, 20), np.uint8)
        small[5:10, 5:10] = 255
        assert post(c, image=png(photo(20, 20)), mask=png(small)).status_code == 200  # under the limit: fine


# ---------------------------------------------------------------- the queue


class Slow(Inpainter):
    """A peer-like inpainter that takes `seconds` per fill and records how many fills overlap."""

    def __init__(self, seconds: float, device: str = "cpu") -> None:
        self.running, self.most = 0, 0
        self.lock = threading.Lock()

        def fill_fn(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(seconds)
            with self.lock:
                self.running -= 1
            return m * (-x) + (1 - m) * x

        super().__init__("slow", fill_fn, None, None, device)


def _parallel(fn, n: int) -> list:
    out: list = [None] * n
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, fn())) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.05)  # in order
    for t in threads:
        t.join(30)
    return out


def test_fills_on_one_device_run_one_at_a_time_in_order():
    slow = Slow(0.3)
    with TestClient(create_app({"slow": slow, "slow2": slow})) as c:
        rs = _parallel(lambda: post(c, method="slow"), 3)
    assert [r.status_code for r in rs] == [200, 200, 200]
    assert slow.most == 1
    waits = sorted(float(r.headers["x-queue-seconds"]) for r in rs)
    assert waits[0] < 0.2 and waits[2] > 0.4  # the third waited for two fills


def test_a_fill_over_the_timeout_is_504_and_a_full_queue_is_503():
    slow = Slow(0.6)
    with TestClient(create_app({"slow": slow}, Limits(timeout_s=0.25, max_pending=2))) as c:
        rs = _parallel(lambda: post(c, method="slow"), 3)
        codes = sorted(r.status_code for r in rs)
        assert codes == [503, 504, 504], [r.text for r in rs]
        assert any("longer than 0.25 s" in r.json()["error"] for r in rs)
        assert any("busy" in r.json()["error"] for r in rs)
        time.sleep(0.8)  # the running fill finishes in the background; the queue drains
        assert c.get("/healthz").json()["queues"] == {"cpu": 0}
    assert slow.most == 1


# ---------------------------------------------------------------- the command


def test_serve_command_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["serve"]) == 2
    assert "nothing to serve: give -c RUN_OR_EXPORT" in capsys.readouterr().err
    assert main(["serve", "-c", str(tmp_path / "no-such-run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genfill: error: run not found:") and err.count("\n") == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--peers", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and err.count("\n") == 1
    assert main(["serve", "--peers", "--port", "70000"]) == 2
    assert "a port is 0..65535" in capsys.readouterr().err


def test_serve_command_starts_on_localhost_and_says_so(tmp_path):
    """The real command in a subprocess: prints its address (localhost only), answers /healthz, stops."""
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "genfill.cli", "serve", "--peers", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines, url = [], None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("genfill serve: http://127.0.0.1:"):
                url = line.split()[2]
        assert url, "".join(lines)
        assert "bound to 127.0.0.1: only this computer can open it" in lines[-1]
        assert any(line.split()[0] == "telea" for line in lines)
        for _ in range(50):  # the socket listens before uvicorn's loop runs: the first answer may take a moment
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("no answer from /healthz")
    finally:
        proc.terminate()
        proc.wait(20)
