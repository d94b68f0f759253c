"""The ASGI middlewares of `genfill serve`: the upload limit (`BodyLimit`: 413 before a body over the limit is
parsed) and the request log (`RequestLog`: one line per request). Pure ASGI, so streamed bodies and the
limit's early 413 are timed, sized and refused the same way."""

from __future__ import annotations

import time
from typing import Callable

from starlette.responses import JSONResponse


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n} B" if n < 1000 else f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"


class RequestLog:
    """One line per request (method, path, status, bytes in and out, seconds), as a pure ASGI middleware so
    streamed bodies and the upload limit's early 413 are timed and sized the same way."""

    def __init__(self, app, say: Callable[[str], None]) -> None:
        self.app, self.say = app, say

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, seen = time.perf_counter(), {"status": 500, "out": 0}
        length = dict(scope.get("headers") or []).get(b"content-length")

        async def send_logged(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            size_in = _size(int(length)) if length and length.isdigit() else "-"
            self.say(f"{time.strftime('%H:%M:%S')} {scope.get('method', '?')} {scope.get('path', '')} "
                     f"{seen['status']} in {size_in} out {_size(seen['out'])} {time.perf_counter() - t0:.2f} s")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before it is parsed (Content-Length is
    checked first; a chunked body is counted as it arrives)."""

    class TooLarge(Exception):
        pass

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    def _reply(self):
        mb = self.limit / (1024 * 1024)
        return JSONResponse({"error": f"upload too large: the limit is {mb:.3g} MB (genfill serve --max-upload-mb)"},
                            status_code=413)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await self._reply()(scope, receive, send)
        seen, started, over = 0, False, False

        async def counted_receive():
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise BodyLimit.TooLarge
            return msg

        async def tracked_send(msg):
            # The form parser turns any error while reading into its own 400: once over the limit, the
            # app's reply is replaced by the 413.
            nonlocal started
            if over:
                if msg["type"] == "http.response.start" and not started:
                    started = True
                    await self._reply()(scope, receive, send)
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyLimit.TooLarge:
            if not started:
                await self._reply()(scope, receive, send)
