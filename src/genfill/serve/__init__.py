"""`genfill serve`: a web page to paint a hole on a photo and compare fills, and the JSON API behind it.

    genfill serve -c runs/vae-faces64 --peers        # http://127.0.0.1:8000, this computer only

`app.py` holds the FastAPI app (`create_app`), the per-device queue and the upload limits; `static/index.html`
is the page (plain HTML/JS, a canvas, no build step). Every fill goes through `genfill.load(...).fill`, so
the page fills at the photo's own size. Needs the `serve` extra: `pip install 'genfill[serve]'`.
"""
