"""The gateway's request log entries, fault switches, route names and response writer.

`GatewayRecord` extends the Hub fake's `RequestRecord` with the route a request hit, the
transaction it concerns (for ``/chunk/{offset}`` too: the tx owning that offset) and, for
GraphQL, the JSON body the client posted — so a test can read back exactly what a stock client
asked. `GatewayFault` extends `Fault` so a switch can target one ``txid`` and/or one ``route``
(e.g. only ``GET /{txid}``, not ``/tx/{txid}``). Bodies go out through ``tests.fakes.wire.pump``,
which applies drops, stalls, throttling, corruption and wrong lengths.

`range_parser` reproduces npm ``range-parser`` 1.2.1, which ar.io uses: no ``=`` is malformed
(-2, ar.io answers 400); a range is kept only if ``0 <= start <= end`` after clamping ``end``
to the size, so ``bytes=-N`` with ``N > size`` and ``bytes=9-`` past the end are unsatisfiable
(-1, ar.io answers 416); ``parseInt`` leniency (``bytes=5`` means ``5-``) is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..content import Content
from ..origins import FakeOrigins
from ..wire import PLAN, REC, Fault, RequestRecord, pump
from .model import Tx, Weave

__all__ = ["ORIGIN", "GatewayFault", "GatewayRecord", "Replies", "cannot", "classify", "range_parser"]

ORIGIN: Any = "gateway"

#: Route names `classify` gives (and `GatewayFault.route` matches).
ROUTES = (
    "data", "raw", "graphql", "tx", "tx_status", "tx_offset", "tx_data", "tx_data_raw", "tx_tags", "tx_field",
    "chunk", "post_tx", "post_chunk", "tx_anchor", "price", "wallet", "info", "other",
)  # fmt: skip


@dataclass
class GatewayRecord(RequestRecord):
    route: str = "other"  # see ROUTES
    txid: str | None = None  # the tx concerned (GraphQL: the id of a ``transaction(id:)`` query)
    graphql: Any = None  # the decoded JSON body of a GraphQL request

    @property
    def gql_query(self) -> str | None:
        """The GraphQL query text of a GraphQL request (None for other routes)."""
        return self.graphql.get("query") if isinstance(self.graphql, dict) else None


@dataclass
class GatewayFault(Fault):
    """A `Fault` that can also be scoped to one ``txid`` and/or one ``route`` (see `ROUTES`).
    ``latency`` delays the status line and headers — a slow *first byte*; ``stall`` with
    ``stall_at=0`` sends the headers and then nothing."""

    txid: str | None = None
    route: str | None = None

    def matches(self, record: RequestRecord) -> bool:
        if not super().matches(record):
            return False
        rec_txid = getattr(record, "txid", None)
        rec_route = getattr(record, "route", None)
        return (self.txid is None or self.txid == rec_txid) and (self.route is None or self.route == rec_route)


def classify(method: str, path: str, weave: Weave) -> tuple[str, str | None]:
    """(route name, txid concerned) of a request path."""
    segs = path.split("?")[0].split("/")[1:]
    head = segs[0] if segs else ""
    if head == "graphql":
        return "graphql", None
    if head == "raw" and len(segs) >= 2:
        return "raw", segs[1]
    if head == "tx":
        if len(segs) == 1 or (len(segs) == 2 and segs[1] == ""):
            return ("post_tx" if method == "POST" else "other"), None
        txid = segs[1]
        if len(segs) == 2:
            return "tx", txid
        field = segs[2]
        named = {"status": "tx_status", "offset": "tx_offset", "data": "tx_data", "tags": "tx_tags"}
        if field in named:
            return named[field], txid
        return ("tx_data_raw" if field.startswith("data.") else "tx_field"), txid
    if head == "chunk":
        if len(segs) == 1 or segs[1] == "":
            return ("post_chunk" if method == "POST" else "other"), None
        found = weave.locate(int(segs[1])) if segs[1].isdigit() else None
        return "chunk", found[0].id if found else None
    if head in ("tx_anchor", "price", "wallet", "info"):
        return head, None
    if len(head) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]{43}", head[:43]):
        return "data", head[:43]
    return "other", None


def _js_int(text: str | None) -> int | None:
    match = re.match(r"\s*([+-]?\d+)", text) if text is not None else None
    return int(match.group(1)) if match else None


def range_parser(size: int, header: str) -> int | tuple[str, list[tuple[int, int]]]:
    """npm range-parser: -2 malformed, -1 unsatisfiable, else (unit, [(first, last)] inclusive)."""
    eq = header.find("=")
    if eq < 0:
        return -2
    ranges = []
    for part in header[eq + 1 :].split(","):
        bits = part.split("-")
        start, end = _js_int(bits[0]), _js_int(bits[1]) if len(bits) > 1 else None
        if start is None:
            if end is None:
                continue
            start, end = size - end, size - 1
        elif end is None:
            end = size - 1
        end = min(end, size - 1)
        if 0 <= start <= end:
            ranges.append((start, end))
    return (header[:eq], ranges) if ranges else -1


def cannot(method: str, path: str) -> str:
    """Express's default 404 page (a route ar.io does not have)."""
    head = '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n'
    return head + f"<body>\n<pre>Cannot {method} {path}</pre>\n</body>\n</html>\n"


class Replies(FakeOrigins):
    """Response writing (a base of `FakeGateway`, which sets these attributes)."""

    weave: Weave
    cache_on_read: bool
    _tx_bytes: dict[str, int]

    def _count(self, record: GatewayRecord, n: int) -> None:
        with self._lock:
            self._count_sent(record.origin, n)
            if record.txid is not None and record.route in ("data", "raw", "tx_data", "tx_data_raw", "chunk"):
                self._tx_bytes[record.txid] = self._tx_bytes.get(record.txid, 0) + n

    async def _send(
        self,
        request: web.Request,
        status: int,
        headers: Mapping[str, str],
        body: bytes | Content | list[bytes | tuple[Content, int, int]] = b"",
        *,
        start: int = 0,
        end: int | None = None,
        length: bool = True,
        cache_tx: Tx | None = None,
    ) -> web.StreamResponse:
        """Write one answer through the fault plan. ``body`` may be a list of literal parts and
        ``(content, start, end)`` slices (multipart). ``length=False`` sends no Content-Length
        (chunked). ``cache_tx``: mark that tx cached once the whole body went out."""
        plan: Fault = request[PLAN]
        record: GatewayRecord = request[REC]
        parts = (
            body
            if isinstance(body, list)
            else [(Content.of(body), start, Content.of(body).size if end is None else end)]
        )
        size = sum(len(p) if isinstance(p, bytes) else p[2] - p[1] for p in parts)

        def chunks() -> Iterable[bytes]:
            for p in parts:
                if isinstance(p, bytes):
                    yield p
                else:
                    yield from p[0].iter_range(p[1], p[2], 256 * 1024)

        response = web.StreamResponse(status=status, headers=dict(headers))
        record.status = status
        bodiless = request.method == "HEAD" or status in (204, 304)
        if not bodiless:
            record.body_length = size
        if length and status != 304:
            declared = size + (plan.wrong_length if plan.wrong_length_header else 0)
            response.headers["Content-Length"] = str(max(0, declared))
        await response.prepare(request)
        if bodiless:
            await response.write_eof()
            return response

        def count(_origin: Any, n: int) -> None:
            self._count(record, n)
            # pump counts before each write, so this happens before the client sees the end
            if cache_tx is not None and self.cache_on_read and record.bytes_sent >= size:
                cache_tx.cached = True

        await pump(request, response, chunks(), size, plan, plan.corrupt, count)
        return response

    async def _text(
        self, request: web.Request, status: int, text: str | bytes, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        body = text.encode() if isinstance(text, str) else text
        return await self._send(request, status, {**(headers or {})}, body)

    async def _html(
        self, request: web.Request, status: int, text: str, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        """What Express ``res.send(string)`` writes (ar.io's own answers)."""
        return await self._text(request, status, text, {"Content-Type": "text/html; charset=utf-8", **(headers or {})})

    async def fault_reply(self, request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
        """The answer a forced status gets, worded like the real gateway/node/proxy (which
        never send ``Retry-After``: ``retry_after`` is unused)."""
        record: GatewayRecord = request[REC]
        data_route = record.route in ("data", "raw")
        if status == 404:
            if data_route:
                return await self._html(request, 404, "Not found", {"Cache-Control": "public, max-age=60, immutable"})
            return await self._text(request, 404, b"" if record.route in ("tx_offset", "chunk") else b"Not Found.")
        if status == 451:
            text = f"Requested content blocked by this node's content policy. Blocked ID: {record.txid}"
            return await self._html(request, 451, text, {"Cache-Control": "public, max-age=2592000, immutable"})
        if status == 410:
            return await self._text(request, 410, "tx_overspend")
        if status == 500:
            return await self._html(request, 500, "Internal server error")
        if status == 503:
            return await self._text(request, 503, "no healthy upstream", {"Content-Type": "text/plain"})
        if status == 504:
            return await self._text(request, 504, "upstream request timeout", {"Content-Type": "text/plain"})
        html = "\r\n".join(
            ["<html>", f"<head><title>{status}</title></head>", "<body>", f"<center><h1>{status}</h1></center>"]
            + ["</body>", "</html>", ""]
        )
        return await self._text(request, status, html, {"Content-Type": "text/html"})
