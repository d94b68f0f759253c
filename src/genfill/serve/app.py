"""The FastAPI app behind `genfill serve`: one static page and a small JSON API over `genfill.load(...).fill`.

Routes
    GET  /                 the page (static/index.html)
    GET  /healthz          {"status": "ok", "methods": n, "queues": {device: pending}}
    GET  /api/models       the methods to fill with, the built-in face count and the limits
    GET  /api/faces/{i}    built-in test face i (PNG, 64x64, drawn once by the faces64 DCGAN)
    POST /api/fill         multipart: image, mask (white = hole), method [, mask_resize, dilate, seed] -> PNG
                           of the image's own size and mode; headers X-Fill-Seconds, X-Queue-Seconds

Every error a client can cause is a 4xx JSON `{"error": "..."}`: 413 for a request over the upload limit or
an image over the pixel limit (checked from the header, before any pixel is decoded: the decompression-bomb
guard), 415 for a file that is not an image, 422 for a mask of another size (unless mask_resize), a mask with
no hole and other bad inputs, 400 for an unknown method, 503 when a device's queue is full, 504 when a fill
does not finish within the timeout (queue wait included).

A `sampler` run is listed twice: `NAME` fills with one sample (the request's seed picks it) and `NAME mean`
with its mean fill (the best PSNR, blurry).

Fills that need a device run one at a time per device (one worker thread each, so a GPU is never shared by
two fills and the CPU is not oversubscribed); classical peers run on the CPU's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from genfill.api import Inpainter, decode_mask, from_model, load
from genfill.data.faces64 import draw_faces, weights_path
from genfill.errors import GenfillError, did_you_mean
from genfill.peers import PEERS
from genfill.resolve import set_blend
from genfill.validate import integer, number

try:  # the `serve` extra; FastAPI resolves the route signatures' annotations, so these live at module level
    import python_multipart  # noqa: F401  (FastAPI's form parser)
    import uvicorn
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise GenfillError(f"genfill serve needs {exc.name}: pip install 'genfill[serve]'") from exc

from genfill.serve.middleware import BodyLimit, RequestLog  # noqa: E402  (after the serve extra's check)

STATIC = Path(__file__).parent / "static"
FACE_SEED = 99  # the page's built-in faces: drawn with a seed the default configs do not train on
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024  # the whole request body
    max_pixels: int = 40_000_000  # per image (and per mask): width x height
    timeout_s: float = 120.0  # one fill, its wait in the queue included
    max_pending: int = 16  # fills queued or running per device before 503

    def __post_init__(self) -> None:  # numbers from any caller: finite, positive, integers that fit
        integer("max_upload_bytes", self.max_upload_bytes, 1)
        integer("max_pixels", self.max_pixels, 1)
        number("timeout_s", self.timeout_s, 0, low_open=True)
        integer("max_pending", self.max_pending, 1, 1_000_000)


class ServeError(Exception):
    """An error a client caused: becomes `{"error": message}` with this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# ---------------------------------------------------------------- methods


def method_name(spec: str) -> str:
    """A short name for the page: a peer's own name, a run's folder name, `run/best` for a checkpoint."""
    p = Path(spec)
    if p.is_file():
        return f"{p.parent.parent.name}/{p.stem}" if p.parent.name == "checkpoints" else p.stem
    return p.resolve().name or spec


def load_methods(specs: Sequence[str], peers: bool = False, device: str = "auto", blend: str | None = None
                 ) -> dict[str, Inpainter]:
    """name -> Inpainter for each run, checkpoint, export or peer name in `specs`, then every classical peer
    when `peers`. `blend` makes every sampler draw with that exemplar blend (at least one must take it).
    Raises GenfillError for one that does not load (a missing run names its path)."""
    wanted = list(specs) + [p for p in PEERS if peers and p not in specs]
    if not wanted:
        raise GenfillError("nothing to serve: give -c RUN_OR_EXPORT (repeatable) and/or --peers")
    out: dict[str, Inpainter] = {}
    blended = False
    for spec in wanted:
        if spec not in PEERS and not Path(spec).exists():
            raise GenfillError(f"run not found: {spec}{did_you_mean(spec, PEERS)} (a run directory, a checkpoint, "
                               f"an export, or a peer: {', '.join(PEERS)})")
        name, n = method_name(spec), 2
        while name in out:
            name, n = f"{method_name(spec)}-{n}", n + 1
        out[name] = load(spec, device=device)
        model = out[name].model
        if blend is not None:  # the Inpainter fills through the model: its blend is the model's
            blended = set_blend(model, blend) or blended
        if model is not None and model.kind == "sampler":  # its mean fill too, as a method of its own
            out[f"{name} mean"] = from_model(model, f"{name} mean", mean=True)
    if blend is not None and not blended:
        raise GenfillError(f"--blend {blend} picks how a sampler draws; none of {', '.join(out)} is a sampler")
    return out


def describe(name: str, painter: Inpainter) -> dict[str, Any]:
    """What the page shows for a method: its family (the model kind, or "classical") and its run (folder)."""
    model = getattr(painter, "model", None)
    family = getattr(model, "kind", None) if model is not None else "classical"
    return {"name": name, "kind": "model" if painter.size else "peer", "size": painter.size,
            "channels": painter.channels, "device": str(painter.device), "family": family or "model",
            "run": name if painter.size else None}


FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" '
           'fill="#1d2330"/><rect x="6" y="6" width="20" height="20" rx="3" fill="#3b5bdb"/><circle cx="16" '
           'cy="16" r="6" fill="#ff2d6f"/></svg>')


# ---------------------------------------------------------------- one queue per device


class DeviceQueues:
    """One worker thread per device: jobs on a device run one at a time, in arrival order. `run` waits at
    most `timeout_s` (queue included); a job that times out while queued is dropped, one already running
    finishes in the background (torch cannot be interrupted) and the next job waits for it."""

    def __init__(self, timeout_s: float, max_pending: int) -> None:
        self.timeout_s, self.max_pending = timeout_s, max_pending
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def pending(self) -> dict[str, int]:
        with self._lock:
            return dict(self._pending)

    def _done(self, device: str) -> None:
        with self._lock:
            self._pending[device] -= 1

    async def run(self, device: str, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._pending.get(device, 0) >= self.max_pending:
                raise ServeError(503, f"busy: {self.max_pending} fills are already waiting for {device}; "
                                      "try again shortly")
            pool = self._pools.get(device)
            if pool is None:
                pool = self._pools[device] = ThreadPoolExecutor(1, thread_name_prefix=f"genfill-{device}")
            self._pending[device] = self._pending.get(device, 0) + 1
        future = pool.submit(fn)
        future.add_done_callback(lambda _: self._done(device))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except asyncio.TimeoutError:
            future.cancel()  # drops it if it has not started
            raise ServeError(504, f"the fill took longer than {self.timeout_s:g} s (waiting in the queue "
                                  "included); try a smaller image or hole, or raise --timeout") from None

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- uploads


def open_upload(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """Bytes -> a loaded PIL image, upright (EXIF orientation applied, as a browser shows it). The pixel
    count is checked from the header before anything is decoded."""
    if not data:
        raise ServeError(422, f"{what}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            w, h = im.size
            if w * h > max_pixels:
                raise ServeError(413, f"{what}: {w}x{h} is {w * h / 1e6:.1f} MP, over the limit of "
                                      f"{max_pixels / 1e6:.1f} MP (genfill serve --max-pixels)")
            im.load()
            im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as exc:
        raise ServeError(413, f"{what}: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ServeError(415, f"{what}: not an image genfill can read ({', '.join(IMAGE_FORMATS)})") from exc
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        im = im.convert("RGB")
    elif im.mode in ("La", "PA"):
        im = im.convert("RGBA" if im.mode == "PA" else "LA")
    return im


def to_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- the app


class Faces:
    """The built-in test faces, drawn once on first use (needs gan-face-generate's DCGAN weights)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._png: list[bytes] | None = None
        self._lock = threading.Lock()

    def available(self) -> int:
        if self.count <= 0:
            return 0
        try:
            weights_path()
        except GenfillError:
            return 0
        return self.count

    def png(self, i: int) -> bytes:
        if not 0 <= i < self.available():
            raise ServeError(404, f"no built-in face {i}: there are {self.available()} (0..{self.available() - 1})")
        with self._lock:
            if self._png is None:
                faces = draw_faces(self.count, seed=FACE_SEED).numpy()
                self._png = [to_png(Image.fromarray(f)) for f in faces]
        return self._png[i]


def create_app(painters: dict[str, Inpainter], limits: Limits = Limits(), faces: int = 8,
               log: Callable[[str], None] | None = None):
    """The app serving `painters` (name -> Inpainter, e.g. from `load_methods`) under `limits`; `log` gets one
    line per request (`genfill serve` prints them)."""
    queues = DeviceQueues(limits.timeout_s, limits.max_pending)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        queues.shutdown()

    app = FastAPI(title="genfill serve", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=limits.max_upload_bytes)
    if log is not None:
        app.add_middleware(RequestLog, say=log)  # added last: outermost, so it sees the limit's 413s too
    app.state.painters, app.state.limits, app.state.queues = painters, limits, queues
    _add_error_handlers(app)
    _add_page_routes(app, painters, limits, queues, Faces(faces))
    _add_fill_route(app, painters, limits, queues)
    return app


def _add_error_handlers(app) -> None:
    """Every error a client can cause as `{"error": message}` with its status (module docstring)."""

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        message = exc.detail if exc.status_code != 404 else f"not found: {request.url.path}"
        return JSONResponse({"error": str(message)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            field = str(e["loc"][-1]) if e.get("loc") else "request"
            parts.append(f"missing form field {field!r}" if e.get("type") == "missing" else f"{field}: {e['msg']}")
        return JSONResponse({"error": "; ".join(parts) or "bad request"}, status_code=422)


def _add_page_routes(app, painters: dict[str, Inpainter], limits: Limits, queues: DeviceQueues,
                     face_store: Faces) -> None:
    """The page, its icon, the health check, the method list and the built-in faces."""

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/favicon.svg", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "methods": len(painters), "queues": queues.pending()}

    @app.get("/api/models")
    async def models():
        return {"models": [describe(n, p) for n, p in painters.items()], "faces": face_store.available(),
                "limits": asdict(limits)}

    @app.get("/api/faces/{i}")
    async def face(i: int):
        png = await run_in_threadpool(face_store.png, i)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def decode_uploads(image_bytes: bytes, mask_bytes: bytes, limits: Limits, mask_resize: bool,
                   dilate: int) -> tuple[Image.Image, np.ndarray]:
    """The uploaded photo (upright, any mode) and its hole as an (H,W) bool array at the photo's size."""
    im = open_upload(image_bytes, "image", limits.max_pixels)
    m = open_upload(mask_bytes, "mask", limits.max_pixels)
    try:
        hole = decode_mask(m, (im.height, im.width), resize=mask_resize, dilate=dilate)
    except GenfillError as exc:
        raise ServeError(422, str(exc).replace("mask_resize=True (CLI: --mask-resize)", "mask_resize=true")) from exc
    return im, np.array(hole)  # a writable copy: torch.from_numpy warns on read-only arrays


def _add_fill_route(app, painters: dict[str, Inpainter], limits: Limits, queues: DeviceQueues) -> None:
    @app.post("/api/fill")
    async def fill(image: UploadFile = File(..., description="the photo (PNG, JPEG, WebP, BMP, GIF, TIFF)"),
                   mask: UploadFile = File(..., description="the hole: white (> mid-grey) = hole"),
                   method: str = Form(..., description="a name from GET /api/models"),
                   mask_resize: bool = Form(False, description="scale a mask of another size (nearest)"),
                   dilate: int = Form(0, ge=0, le=64, description="grow the hole by this many pixels"),
                   seed: int = Form(0)):
        painter = painters.get(method)
        if painter is None:
            raise ServeError(400, f"unknown method {method!r}: choose one of {', '.join(painters)}")
        image_bytes, mask_bytes = await image.read(), await mask.read()
        im, hole = await run_in_threadpool(decode_uploads, image_bytes, mask_bytes, limits, mask_resize, dilate)
        queued = time.perf_counter()
        times: dict[str, float] = {}

        def job() -> bytes:
            start = time.perf_counter()
            times["queue"] = start - queued
            try:
                out = painter.fill(im, hole, seed=seed)
            except GenfillError as exc:
                raise ServeError(422, str(exc)) from exc
            times["fill"] = time.perf_counter() - start
            return to_png(out)

        png = await queues.run(str(painter.device), job)
        return Response(png, media_type="image/png", headers={
            "X-Fill-Seconds": f"{times['fill']:.3f}", "X-Queue-Seconds": f"{times['queue']:.3f}",
            "X-Method": method, "Cache-Control": "no-store"})


# ---------------------------------------------------------------- running it


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one. A port in use is a GenfillError."""
    if not 0 <= port <= 65535:
        raise GenfillError(f"--port {port}: a port is 0..65535 (0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise GenfillError(f"cannot resolve --host {host}: {exc.strerror}") from exc
    family = infos[0][0]
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise GenfillError(f"port {port} on {host} is in use: stop what uses it or pick another with "
                               "--port") from exc
        raise GenfillError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def is_local(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
    except (OSError, ValueError):
        return False


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app, log_level: str = "warning"):
    """A uvicorn server for `app`; `server.run(sockets=[bind(...)])` serves until `server.should_exit`."""
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2))


def serve(specs: Sequence[str], peers: bool = False, host: str = "127.0.0.1", port: int = 8000,
          device: str = "auto", limits: Limits = Limits(), say: Callable[[str], None] | None = None,
          blend: str | None = None) -> None:
    """`genfill serve`: bind first (a port in use fails before any model loads), load, then serve until
    Ctrl+C. `blend`: every sampler's exemplar blend (`load_methods`)."""
    say = say or (lambda line: print(line, flush=True))
    sock = bind(host, port)
    try:
        painters = load_methods(specs, peers, device, blend)
        app = create_app(painters, limits, log=say)
    except BaseException:
        sock.close()
        raise
    for d in (describe(n, p) for n, p in painters.items()):
        where = f"{d['size']}x{d['size']} windows on {d['device']}" if d["kind"] == "model" else "classical, cpu"
        say(f"  {d['name']:24s} {where}")
    url = url_of(sock)
    if is_local(host):
        say(f"genfill serve: {url}  (bound to {host}: only this computer can open it; --host 0.0.0.0 to share)")
    else:
        say(f"genfill serve: {url}  (bound to {host}: anyone who can reach this machine can use it and its "
            "models; there is no login)")
    say("Ctrl+C stops it")
    make_server(app).run(sockets=[sock])
