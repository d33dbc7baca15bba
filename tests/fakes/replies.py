"""How the fake writes an answer, on both origins.

`Replies` adds the headers every Hub answer carries (request id, rate limits, warnings; the
CDN's cache header), writes Hub-shaped errors (``X-Error-Code``/``X-Error-Message``, JSON on
API routes), JSON with weak ETags and 304s, redirects with the Hub's bodies, file bodies
honouring one ``Range`` (200/206/304/416), gzip for text when the client accepts it, and the
statuses a `Fault` forces. Bodies go out through `wire.pump`, which applies the fault plan.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from aiohttp import web

from .content import Content
from .origins import FakeOrigins
from .wire import PLAN, REC, Fault, RequestRecord, flip, pump

__all__ = ["Replies"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSATISFIABLE = (-1, -1)
#: Redirect bodies as the Hub's Express server writes them.
_REDIRECT_TEXT = {302: "Found", 307: "Temporary Redirect"}


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` half-open, None to ignore the header, `_UNSATISFIABLE` for 416."""
    match = _RANGE.match(value.strip()) if value else None
    if match is None:  # absent, multi-range or garbage: RFC 9110 allows ignoring it
        return None
    first, last = match.groups()
    if first == "":
        if last == "":
            return None
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        if last != "" and int(last) < start:
            return None
        end = size if last == "" else min(int(last) + 1, size)
    return (start, end) if start < end else _UNSATISFIABLE


def _accepts_gzip(header: str) -> bool:
    for token in header.split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class Replies(FakeOrigins):
    """Response writing for every route of both origins (a base of `FakeHub`, which sets
    the attributes below in its ``__init__``)."""

    compress: bool
    gzip_min_size: int
    ratelimit_headers: bool
    warning: str | None
    block_size: int
    _ratelimit: dict[tuple[str, int], int]

    async def fault_reply(self, request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
        """What the Hub answers for a status a `Fault` forces (429 with ``Retry-After``)."""
        headers: dict[str, str] = {}
        if status == 429:
            headers["Retry-After"] = str(retry_after)
            message = "You have been rate-limited; you can retry this action in about 5 minutes."
            return await self._error(request, status, None, message, api=True, headers=headers)
        if status == 500:
            return await self._error(
                request, status, None, "Internal Error - We're working hard to fix this as soon as possible!", api=True
            )
        html = f"<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>\n"
        return await self._send(request, status, {"Content-Type": "text/html"}, html.encode())

    def _origin_headers(self, request: web.Request, status: int, headers: dict[str, str]) -> None:
        """Headers the Hub adds to every answer (request id, rate limits, warnings)."""
        record: RequestRecord = request[REC]
        if record.origin == "cdn":
            headers.setdefault("X-Cache", "Miss from cloudfront")
            return
        headers.setdefault("X-Powered-By", "huggingface-moon")
        headers.setdefault("X-Request-Id", "Root=1-" + hashlib.sha1(str(id(record)).encode()).hexdigest()[:24])
        headers.setdefault("Vary", "Origin, Accept")
        headers.setdefault(
            "Access-Control-Expose-Headers",
            "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,"
            "Content-Range,X-Linked-Size,X-Linked-ETag,X-Xet-Hash",
        )
        if self.warning:
            headers["X-HF-Warning"] = self.warning
        if self.ratelimit_headers:
            bucket, quota = ("resolvers", 3000) if "/resolve" in record.path else ("api", 1000)
            now = int(self._now())
            window = now // 300
            with self._lock:
                used = self._ratelimit[(bucket, window)] = self._ratelimit.get((bucket, window), 0) + 1
            left = 0 if status == 429 else max(0, quota - used)
            headers["RateLimit"] = f'"{bucket}";r={left};t={300 - now % 300}'
            headers["RateLimit-Policy"] = f'"fixed window";"{bucket}";q={quota};w=300'

    async def _send(
        self,
        request: web.Request,
        status: int,
        headers: dict[str, str],
        body: bytes | Content = b"",
        *,
        start: int = 0,
        end: int | None = None,
        gzip_ok: bool = False,
    ) -> web.StreamResponse:
        """Write one response, applying the request's fault plan to the body."""
        plan: Fault = request[PLAN]
        content = Content.of(body)
        end = content.size if end is None else end
        headers = dict(headers)
        self._origin_headers(request, status, headers)
        chunks: Iterable[bytes] = content.iter_range(start, end, self.block_size)
        length: int | None = end - start  # None: no Content-Length (chunked gzip)
        body_length = end - start
        corrupt = plan.corrupt
        if (
            gzip_ok
            and self.compress
            and status == 200
            and request.method == "GET"
            and end - start >= self.gzip_min_size
            and _accepts_gzip(request.headers.get("Accept-Encoding", ""))
        ):
            raw = content.read(start, end)
            payload = gzip.compress(flip(raw) if corrupt else raw, mtime=0)
            chunks, length, body_length, corrupt = [payload], None, len(payload), False
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = headers.get("Vary", "Origin") + ", Accept-Encoding"
        response = web.StreamResponse(status=status, headers=headers)
        record: RequestRecord = request[REC]
        record.status = status  # before the client can see the answer
        if request.method != "HEAD" and status not in (204, 304):
            record.body_length = body_length
        if length is not None:
            declared = length + (plan.wrong_length if plan.wrong_length_header else 0)
            response.headers["Content-Length"] = str(max(0, declared))
        await response.prepare(request)
        if request.method == "HEAD" or status in (204, 304):
            await response.write_eof()
            return response
        await pump(request, response, chunks, length, plan, corrupt, self._count_sent)
        return response

    async def _error(
        self,
        request: web.Request,
        status: int,
        code: str | None,
        message: str,
        *,
        api: bool,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """A Hub error: ``X-Error-Code`` (when the Hub sends one), ``X-Error-Message``, and a
        JSON ``{"error": ...}`` body on API routes or the bare message on file routes."""
        out = {"X-Error-Message": message, **(headers or {})}
        if code is not None:
            out["X-Error-Code"] = code
        if api:
            out["Content-Type"] = "application/json; charset=utf-8"
            return await self._send(request, status, out, json.dumps({"error": message}).encode())
        out["Content-Type"] = "text/plain; charset=utf-8"
        return await self._send(request, status, out, message.encode())

    async def _json(
        self, request: web.Request, obj: object, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        body = json.dumps(obj, separators=(",", ":")).encode()
        etag = f'W/"{len(body):x}-{base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]}"'
        out = {"Content-Type": "application/json; charset=utf-8", "ETag": etag, **(headers or {})}
        if request.headers.get("If-None-Match") == etag:
            return await self._send(request, 304, out)
        return await self._send(request, 200, out, body, gzip_ok=True)

    async def _redirect(
        self, request: web.Request, status: int, location: str, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        text = f"{_REDIRECT_TEXT.get(status, 'Redirect')}. Redirecting to {location}"
        out = {"Location": location, "Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        return await self._send(request, status, out, text.encode())

    async def _serve(
        self, request: web.Request, content: Content, headers: dict[str, str], *, gzip_ok: bool
    ) -> web.StreamResponse:
        """200/206/304/416 for a file body, honouring a single ``Range``."""
        etag = headers.get("ETag")
        if etag is not None and request.headers.get("If-None-Match") == etag:
            return await self._send(request, 304, headers)
        plan: Fault = request[PLAN]
        headers = {"Accept-Ranges": "bytes", **headers}
        window = None if plan.ignore_range else _parse_range(request.headers.get("Range"), content.size)
        if window is None:
            return await self._send(request, 200, headers, content, gzip_ok=gzip_ok)
        if window == _UNSATISFIABLE:
            headers = {**headers, "Content-Range": f"bytes */{content.size}", "Content-Type": "text/plain"}
            return await self._send(request, 416, headers, b"Requested Range Not Satisfiable")
        start, end = window
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{content.size}"
        return await self._send(request, 206, headers, content, start=start, end=end)
