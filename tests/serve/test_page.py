"""The page of `genfill serve` in a real browser: the system's Chromium driven by Playwright (never a downloaded
browser). Open a photo, paint a stroke with the mouse, fill with a model and a peer, download both fills and
the mask, and check each fill: the photo's size, unchanged outside the painted hole, changed inside.

Skipped, saying why, where Playwright or Chromium is missing (`.ci/run` installs Debian's chromium when it
can). GENFILL_SERVE_RUN=runs/x serves that run instead of the tiny one trained here,
GENFILL_SERVE_SCREENSHOT=path.png keeps the screenshot taken after the fill, and GENFILL_SERVE_SHOTS=docs/images
keeps the desktop (1280x900) and phone (390x844) screenshots of the real-size test as serve_page.png and
serve_page_phone.png.
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

from genfill.loadconfig import build_config  # noqa: E402
from genfill.serve.app import bind, create_app, load_methods, make_server, url_of  # noqa: E402

from tests.conftest import tiny_raw  # noqa: E402

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


@pytest.fixture(scope="module")
def browser():
    """The system's Chromium, headless, once for the module."""
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str, model: str, errors: list[str], **options):
    """A new page on `url` with the methods loaded and only `model` and telea ticked; page errors go to `errors`."""
    page = browser.new_page(**options)
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    # the methods come from /api/models; tick the model and telea only
    page.wait_for_selector(f'#methods input[value="{model}"]')
    for box in page.locator("#methods input").all():
        box.set_checked(box.get_attribute("value") in (model, "telea"))
    return page


def test_paint_fill_with_a_model_and_a_peer_and_download(server, browser, tmp_path):
    url, model = server
    photo = face_photo(tmp_path / "photo.png")
    errors: list[str] = []
    page = open_page(browser, url, model, errors, viewport={"width": 1366, "height": 768},
                     accept_downloads=True)
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
    page.locator("#size").evaluate("(el) => { el.value = 10; el.dispatchEvent(new Event('input')); }")
    page.locator("#stage").scroll_into_view_if_needed()  # the page scrolled to the fills
    box = page.locator("#overlay").bounding_box()
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


def big_photo(path: Path, size=(720, 540)) -> np.ndarray:
    """A photo larger than the stage, so zoom and pan matter: a built-in face scaled up."""
    from genfill.data.faces64 import draw_faces

    face = Image.fromarray(draw_faces(1, seed=7)[0].numpy()).resize((size[0], size[0]), Image.BICUBIC)
    photo = face.crop((0, (size[0] - size[1]) // 2, size[0], (size[0] + size[1]) // 2))
    photo.save(path)
    return np.asarray(photo)


def _stroke(page, y_frac=0.55, x0=0.3, x1=0.7):
    box = page.locator("#overlay").bounding_box()
    y = box["y"] + box["height"] * y_frac
    page.mouse.move(box["x"] + box["width"] * x0, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * x1, y, steps=8)
    page.mouse.up()


def _image_point(page, x, y):
    """The photo pixel under the screen point (x, y)."""
    box = page.locator("#overlay").bounding_box()
    w, h = page.evaluate("[state.W, state.H]")
    return (x - box["x"]) * w / box["width"], (y - box["y"]) * h / box["height"]


def _fill_and_wait(page, total):
    page.click("#fill")
    page.wait_for_function(f"document.querySelectorAll('.result').length === {total} && "
                           "!document.querySelector('.result[data-state=pending]')")


def _shot(page, name):
    folder = os.environ.get("GENFILL_SERVE_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def test_zoom_pan_brush_in_image_pixels_compare_and_kept_attempts(server, browser, tmp_path):
    url, model = server
    photo = big_photo(tmp_path / "big.png")
    errors: list[str] = []
    page = open_page(browser, url, model, errors, viewport={"width": 1280, "height": 900})
    # the model is labelled by family and run, the peer as classical
    labels = page.locator("#methods label").all_inner_texts()
    assert any(" · " in t and "classical" not in t for t in labels) and any("classical" in t for t in labels)

    # a file the browser cannot read: the error shows over the page, not only in the sidebar
    (tmp_path / "notes.png").write_text("not an image")
    page.set_input_files("#file", str(tmp_path / "notes.png"))
    page.wait_for_selector("#alert:not([hidden])")
    assert "cannot show this file" in page.inner_text("#alert")
    page.click("#alert-close")

    page.set_input_files("#file", str(tmp_path / "big.png"))
    page.wait_for_selector("#stage:not([hidden])")
    fit = page.evaluate("view.s")
    assert fit < 1  # 720x540 does not fit the stage at 100 %

    # wheel zoom keeps the photo pixel under the pointer in place
    stage = page.locator("#stage").bounding_box()
    mx, my = stage["x"] + stage["width"] * 0.4, stage["y"] + stage["height"] * 0.6
    before = _image_point(page, mx, my)
    page.mouse.move(mx, my)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"view.s > {fit} * 1.5")
    after = _image_point(page, mx, my)
    assert abs(after[0] - before[0]) < 1.5 and abs(after[1] - before[1]) < 1.5
    # + and - zoom by 1.25 around the centre, 0 fits again
    s = page.evaluate("view.s")
    page.keyboard.press("+")
    assert page.evaluate("view.s") == pytest.approx(s * 1.25)
    page.keyboard.press("-")
    assert page.evaluate("view.s") == pytest.approx(s)
    page.keyboard.press("0")
    assert page.evaluate("view.s") == pytest.approx(fit)

    # pan: a middle-button drag and a drag with space held move the photo and paint nothing
    page.keyboard.press("+")
    x0 = page.evaluate("[view.x, view.y]")
    page.mouse.move(mx, my)
    page.mouse.down(button="middle")
    page.mouse.move(mx - 60, my - 30, steps=4)
    page.mouse.up(button="middle")
    x1 = page.evaluate("[view.x, view.y]")
    assert x1[0] == pytest.approx(x0[0] - 60, abs=1) and x1[1] == pytest.approx(x0[1] - 30, abs=1)
    page.keyboard.down("Space")
    page.mouse.move(mx, my)
    page.mouse.down()
    page.mouse.move(mx + 40, my + 20, steps=4)
    page.mouse.up()
    page.keyboard.up("Space")
    x2 = page.evaluate("[view.x, view.y]")
    assert x2[0] == pytest.approx(x1[0] + 40, abs=1) and x2[1] == pytest.approx(x1[1] + 20, abs=1)
    assert page.evaluate("holeFraction()") == 0

    # the brush is in photo pixels: a dot of 30 px covers the same photo area at any zoom
    page.locator("#size").evaluate("(el) => { el.value = 30; el.dispatchEvent(new Event('input')); }")
    areas = []
    for zoom_keys in ("0", "++"):
        page.keyboard.press("0")
        for k in zoom_keys.replace("0", ""):
            page.keyboard.press(k)
        page.mouse.click(stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2)
        areas.append(page.evaluate("holeFraction()") * photo.shape[0] * photo.shape[1])
        page.click("#clear")
    disc = np.pi * 15 ** 2
    assert all(abs(a - disc) < 0.15 * disc for a in areas), areas  # the rim's anti-aliasing, no more

    # two fills: both kept, newest first, labelled by attempt
    page.keyboard.press("0")
    _stroke(page)
    _fill_and_wait(page, 2)
    _stroke(page, y_frac=0.3)
    _fill_and_wait(page, 4)
    cards = page.locator(".result")
    assert [cards.nth(i).get_attribute("data-attempt") for i in range(4)] == ["2", "2", "1", "1"]
    assert [cards.nth(i).get_attribute("data-state") for i in range(4)] == ["done"] * 4
    widths = [page.locator(".result .compare").nth(i).bounding_box()["width"] for i in range(4)]
    assert min(widths) >= 400, widths  # a useful size on a 1280 px screen
    first, second = page.locator(".result").nth(0).bounding_box(), page.locator(".result").nth(1).bounding_box()
    assert second["x"] > first["x"] + first["width"] - 1 and abs(second["y"] - first["y"]) < 1  # side by side
    # the picture shows one before/after divider: telea's latest fill left of it, the original right of it
    page.locator(".result .ba").nth(1).evaluate("(el) => { el.value = 55; el.dispatchEvent(new Event('input')); }")
    _shot(page, "serve_page.png")

    # the before/after slider: fill left of the divider, original right of it
    cmp_ = page.locator(".result .compare").nth(3)
    rng = page.locator(".result .ba").nth(3)

    def at(v):
        rng.evaluate(f"(el) => {{ el.value = {v}; el.dispatchEvent(new Event('input')); }}")
        path = tmp_path / f"cmp{v}.png"
        cmp_.screenshot(path=str(path))
        return np.asarray(Image.open(path).convert("RGB")).astype(int)

    fill_only, orig_only, half = at(100), at(0), at(50)
    assert np.abs(fill_only - orig_only).max() > 40  # the hole differs
    w = half.shape[1]
    left, right = slice(0, w // 2 - 4), slice(w // 2 + 4, w)
    assert np.abs(half[:, left] - fill_only[:, left]).max() <= 2
    assert np.abs(half[:, right] - orig_only[:, right]).max() <= 2

    page.click("#clear-results")
    assert page.locator(".result").count() == 0

    # a phone: the cards stack, each as wide as the screen allows
    phone = open_page(browser, url, model, errors, viewport={"width": 390, "height": 844},
                      device_scale_factor=1)
    phone.set_input_files("#file", str(tmp_path / "big.png"))
    phone.wait_for_selector("#stage:not([hidden])")
    phone.locator("#stage").scroll_into_view_if_needed()
    _stroke(phone)
    _fill_and_wait(phone, 2)
    a, b = phone.locator(".result").nth(0).bounding_box(), phone.locator(".result").nth(1).bounding_box()
    assert abs(a["x"] - b["x"]) < 1 and b["y"] >= a["y"] + a["height"]  # stacked
    assert 330 <= a["width"] <= 390 and a["x"] >= 0 and a["x"] + a["width"] <= 390  # not clipped
    phone.locator(".result").nth(0).scroll_into_view_if_needed()
    _shot(phone, "serve_page_phone.png")
    assert errors == []
