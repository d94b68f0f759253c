"""The page of `genfill serve` in a real browser: the system's Chromium driven by Playwright (never a downloaded
browser). Open a photo, paint a stroke with the mouse, fill with a model and a peer, download both fills and
the mask, and check each fill: the photo's size, unchanged outside the painted hole, changed inside.

Skipped, saying why, where Playwright or Chromium is missing (`.ci/run` installs Debian's chromium when it
can). GENFILL_SERVE_RUN=runs/x serves that run instead of the tiny one trained here, and
GENFILL_SERVE_SCREENSHOT=path.png keeps the screenshot taken after the fill.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="genfill serve needs the serve extra: pip install 'genfill[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the page test needs playwright (the browser extra)")

from genfill.config import build_config  # noqa: E402
from genfill.serve.app import bind, create_app, load_methods, make_server, url_of  # noqa: E402

from conftest import tiny_raw  # noqa: E402

CHROMIUM = next((p for p in (os.environ.get("GENFILL_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium, or set "
                                                         "GENFILL_CHROMIUM=/path/to/chrome); no browser is downloaded")
WAIT_MS = 60_000  # the longest any one step may take (a fill on a busy CPU included)


@pytest.fixture(scope="module")
def server(tmp_path_factory, cache_root):
    """`genfill serve` (the same app and uvicorn server as the command) on a free localhost port, in a thread."""
    run = os.environ.get("GENFILL_SERVE_RUN")
    if not run:
        from genfill.train import train

        cfg = build_config(tiny_raw(tmp_path_factory.mktemp("runs"), cache_root))
        train(cfg, verbose=False)
        run = str(cfg.run_dir)
    painters = load_methods([run, "telea", "ns"], device="cpu")
    sock = bind("127.0.0.1", 0)
    uv = make_server(create_app(painters))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "uvicorn did not start"
    yield url_of(sock), list(painters)[0]
    uv.should_exit = True
    thread.join(10)
    sock.close()


def face_photo(path: Path) -> np.ndarray:
    """A 200x160 photo (not the model's size, not square): a built-in face scaled up and cropped."""
    from genfill.data.faces64 import draw_faces

    face = Image.fromarray(draw_faces(1, seed=5)[0].numpy()).resize((200, 200), Image.BICUBIC)
    photo = face.crop((0, 10, 200, 170))
    photo.save(path)
    return np.asarray(photo)


def test_paint_fill_with_a_model_and_a_peer_and_download(server, tmp_path):
    url, model = server
    photo = face_photo(tmp_path / "photo.png")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768}, accept_downloads=True)
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)

            # the methods come from /api/models; tick the model and telea only
            page.wait_for_selector(f'#methods input[value="{model}"]')
            for box in page.locator("#methods input").all():
                box.set_checked(box.get_attribute("value") in (model, "telea"))
            assert page.locator("#faces img").count() == 8

            # open the photo through the file picker
            page.set_input_files("#file", str(tmp_path / "photo.png"))
            page.wait_for_selector("#stage:not([hidden])")
            assert page.inner_text("#dims") == "200×160"

            # paint a stroke across the face with the mouse
            page.locator("#size").evaluate("(el) => { el.value = 40; el.dispatchEvent(new Event('input')); }")
            box = page.locator("#overlay").bounding_box()
            y = box["y"] + box["height"] * 0.45
            page.mouse.move(box["x"] + box["width"] * 0.25, y)
            page.mouse.down()
            for i in range(1, 11):
                page.mouse.move(box["x"] + box["width"] * (0.25 + 0.05 * i), y + 3 * (i % 2), steps=2)
            page.mouse.up()
            painted = page.evaluate("holeFraction()")
            assert 0.02 < painted < 0.4

            # keyboard: undo empties the hole, redo brings it back; ] grows the brush
            page.keyboard.press("Control+z")
            assert page.evaluate("holeFraction()") == 0
            page.keyboard.press("Control+Shift+z")
            assert page.evaluate("holeFraction()") == painted
            page.keyboard.press("]")
            assert page.input_value("#size") == "50"

            # fill with both; wait for both results
            page.click("#fill")
            page.wait_for_function("document.querySelectorAll('.result:not([data-state=pending])').length === 2")
            cards = page.locator(".result")
            assert [cards.nth(i).get_attribute("data-state") for i in range(2)] == ["done", "done"], \
                page.inner_text("#results")
            assert [cards.nth(i).get_attribute("data-method") for i in range(2)] == [model, "telea"]
            for i in range(2):
                assert re.match(r"\d+\.\d\d s", page.locator(".result .time").nth(i).inner_text())
            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot))
            if os.environ.get("GENFILL_SERVE_SCREENSHOT"):
                Path(os.environ["GENFILL_SERVE_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, os.environ["GENFILL_SERVE_SCREENSHOT"])

            # the mask the page sent (Save mask), and each fill (Download)
            with page.expect_download() as dl:
                page.click("#save-mask")
            assert dl.value.suggested_filename == "photo_mask.png"
            dl.value.save_as(tmp_path / "mask.png")
            hole = np.asarray(Image.open(tmp_path / "mask.png").convert("L")) > 127
            assert hole.shape == (160, 200) and abs(hole.mean() - painted) < 1e-6
            for i, name in enumerate([model, "telea"]):
                with page.expect_download() as dl:
                    cards.nth(i).locator("a", has_text="Download").click()
                target = tmp_path / dl.value.suggested_filename
                dl.value.save_as(target)
                out = np.asarray(Image.open(target))
                assert out.shape == photo.shape, name
                assert (out[~hole] == photo[~hole]).all(), f"{name} changed pixels outside the hole"
                assert (np.abs(out[hole].astype(int) - photo[hole]).sum(axis=-1) > 0).mean() > 0.3, \
                    f"{name} left the hole (mostly) unchanged"

            # a mask file of another size is scaled (nearest); the eraser takes hole away; clear empties it
            small = np.zeros((80, 100), np.uint8)
            small[20:40, 25:75] = 255  # 1/8 of the photo once scaled to 200x160
            Image.fromarray(small).save(tmp_path / "small_mask.png")
            page.set_input_files("#mask-file", str(tmp_path / "small_mask.png"))
            page.wait_for_function("holeFraction() === 0.125")
            page.click("#eraser")
            box = page.locator("#overlay").bounding_box()  # smaller now: the photo shares its row with the fills
            page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.375)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.375, steps=8)
            page.mouse.up()
            assert 0 < page.evaluate("holeFraction()") < 0.1
            page.click("#clear")
            assert page.evaluate("holeFraction()") == 0

            # a built-in face opens at its own 64x64
            page.locator("#faces img").nth(2).click()
            page.wait_for_function("document.getElementById('dims').textContent === '64×64'")
            assert page.locator(".result").count() == 0
            assert errors == []
        finally:
            browser.close()
