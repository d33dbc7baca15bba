"""Several named HTTP origins run as one fake that answers like a plain CDN: the answer
writing shared by the GitHub, torch weights and generic URL fakes.

The origins themselves — real aiohttp servers on 127.0.0.1 in one loop thread, the request
log (`tests.fakes.wire.RequestRecord`, ``origin`` is the origin's name here, e.g. ``"api"``),
the `tests.fakes.wire.Fault` registry and the byte counts — are `tests.fakes.origins.FakeOrigins`,
shared with the fake Hub and the fake Arweave gateway. Bodies go out through
`tests.fakes.wire.pump`, which applies drops, stalls, throttling, corruption and wrong lengths
and counts the bytes per origin.

`serve` answers a file the way a plain CDN does (RFC 9110): ``ETag``/``Last-Modified``,
``If-None-Match`` (weak comparison) before ``If-Modified-Since`` → 304, a single
``Range`` → 206 or 416, ``If-Range`` that falls back to 200 when the validator changed,
and optionally no range support at all (200 with the whole body, no ``Accept-Ranges``).
"""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Callable, Iterable, Mapping
from email.utils import parsedate_to_datetime

from aiohttp import web
from multidict import CIMultiDict

from ..content import Content
from ..origins import FakeOrigins, Route
from ..wire import PLAN, REC, Fault, RequestRecord, pump

__all__ = ["FakeServers", "Fault", "RequestRecord", "Route", "http_date", "parse_range"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
UNSATISFIABLE = (-1, -1)


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as ``(start, end)`` half-open; None to ignore the header (absent,
    multi-range, malformed); `UNSATISFIABLE` for a 416."""
    match = _RANGE.match(value.strip()) if value else None
    if match is None:
        return None
    first, last = match.groups()
    if first == "":
        if last == "" or int(last) == 0:
            return None if last == "" else UNSATISFIABLE
        return max(0, size - int(last)), size
    start = int(first)
    if last != "" and int(last) < start:
        return None
    end = size if last == "" else min(int(last) + 1, size)
    return (start, end) if start < end else UNSATISFIABLE


def http_date(ts: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


def _etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` weak comparison: ``*`` or any listed tag equal ignoring ``W/``."""
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in header.split(","))


class FakeServers(FakeOrigins):
    """Base of a multi-origin fake that answers like a plain CDN. Subclasses set `ORIGINS`
    and implement `route(origin)`; the lifecycle, request log and faults are `FakeOrigins`'."""

    THREAD_NAME = "fake-servers"

    def __init__(self, *, host: str = "127.0.0.1", block_size: int = 64 * 1024) -> None:
        super().__init__(host=host)
        self.block_size = block_size

    def trace(self, origins: Iterable[str] | None = None) -> list[str]:
        """The log as ``"origin METHOD target -> status"`` lines (for asserting exact sequences)."""
        keep = None if origins is None else set(origins)
        return [
            f"{r.origin} {r.method} {r.target} -> {r.status}" for r in self.requests if keep is None or r.origin in keep
        ]

    # -- writing answers -----------------------------------------------------------------

    async def fault_reply(self, request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
        """The answer a `Fault` forces (subclasses shape it like their origin)."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if status in (429, 503):
            headers["Retry-After"] = str(retry_after)
        return await self.send(request, status, headers, f"{status} fault\n".encode())

    async def send(
        self,
        request: web.Request,
        status: int,
        headers: Mapping[str, str],
        body: bytes | Content = b"",
        *,
        start: int = 0,
        end: int | None = None,
        length: bool = True,
    ) -> web.StreamResponse:
        """Write one answer; ``length=False`` streams it chunked, with no ``Content-Length``."""
        plan: Fault = request[PLAN]
        record: RequestRecord = request[REC]
        content = Content.of(body)
        end = content.size if end is None else end
        response = web.StreamResponse(status=status, headers=CIMultiDict(headers))
        record.status = status
        bodyless = request.method == "HEAD" or status in (204, 304)
        if not bodyless:
            record.body_length = end - start
        if length:
            declared = end - start + (plan.wrong_length if plan.wrong_length_header else 0)
            response.headers["Content-Length"] = str(max(0, declared))
        elif not bodyless:
            response.enable_chunked_encoding()
        await response.prepare(request)
        if bodyless:
            await response.write_eof()
            return response
        chunks = content.iter_range(start, end, self.block_size)
        await pump(request, response, chunks, end - start if length else None, plan, plan.corrupt, self._count_sent)
        return response

    async def send_redirect(
        self, request: web.Request, status: int, location: str, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        out = {"Location": location, "Content-Type": "text/html; charset=utf-8", **(headers or {})}
        body = f'<html><body>You are being <a href="{location}">redirected</a>.</body></html>'
        return await self.send(request, status, out, body.encode())

    async def serve(
        self,
        request: web.Request,
        content: Content,
        headers: Mapping[str, str],
        *,
        etag: str | None = None,
        last_modified: float | None = None,
        ranges: bool = True,
        gzip_ok: bool = False,
        on_range: Callable[[CIMultiDict[str], int, int], None] | None = None,
    ) -> web.StreamResponse:
        """200/206/304/416 for a file body. ``on_range(headers, start, end)`` may edit the
        headers of a 206; ``gzip_ok`` compresses a whole-body GET for a client that accepts
        gzip (the ETag becomes weak, as a CDN does)."""
        out: CIMultiDict[str] = CIMultiDict(headers)
        if etag is not None:
            out["ETag"] = etag
        if last_modified is not None:
            out["Last-Modified"] = http_date(last_modified)
        if ranges:
            out.setdefault("Accept-Ranges", "bytes")
        if self._not_modified(request, etag, last_modified):
            out.popall("Accept-Ranges", None)
            return await self.send(request, 304, out)
        plan: Fault = request[PLAN]
        window = None
        if ranges and not plan.ignore_range and self._if_range_ok(request, etag, last_modified):
            window = parse_range(request.headers.get("Range"), content.size)
        if window == UNSATISFIABLE:
            out["Content-Range"], out["Content-Type"] = f"bytes */{content.size}", "text/plain"
            return await self.send(request, 416, out, b"Requested Range Not Satisfiable\n")
        if window is not None:
            start, end = window
            if on_range is not None:
                on_range(out, start, end)
            out["Content-Range"] = f"bytes {start}-{end - 1}/{content.size}"
            return await self.send(request, 206, out, content, start=start, end=end)
        accepts = request.headers.get("Accept-Encoding", "")
        if gzip_ok and request.method == "GET" and "gzip" in accepts.lower():
            out["Content-Encoding"] = "gzip"
            if etag is not None and not etag.startswith("W/"):
                out["ETag"] = "W/" + etag
            raw = content.read()
            return await self.send(request, 200, out, gzip.compress(raw, mtime=0))
        return await self.send(request, 200, out, content)

    @staticmethod
    def _not_modified(request: web.Request, etag: str | None, last_modified: float | None) -> bool:
        inm = request.headers.get("If-None-Match")
        if inm is not None:
            return etag is not None and _etag_matches(inm, etag)
        ims = request.headers.get("If-Modified-Since")
        if ims is not None and last_modified is not None:
            try:
                return int(last_modified) <= parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    @staticmethod
    def _if_range_ok(request: web.Request, etag: str | None, last_modified: float | None) -> bool:
        """``If-Range``: honour the Range only if the validator still matches (strong ETag or
        exact date); otherwise the whole current body is sent with 200."""
        value = request.headers.get("If-Range")
        if value is None:
            return True
        if value.startswith('"') or value.startswith("W/"):
            return etag is not None and not etag.startswith("W/") and value == etag
        return last_modified is not None and value == http_date(last_modified)
