"""The Arweave gateway face: Ritual's clients use ``hoard serve`` as their gateway.

ritual-arweave takes its gateway as an argument (``RepoManager(gateways=[URL])`` in 0.2.0,
``api_url=URL`` in 0.1.1, which infernet-ml 2.0.0 passes through ``repomanager_kwargs``); with
hoard's URL there, a repo downloads through the store, and again with the gateways down.
The routes are the subset those clients call (shared/reference/sources.md §1.5, §3):

* **Bytes**, from the store, filled through the fetch core on a miss (one origin fetch per
  chunk, streamed as it lands, verified before the last bytes go out):
  ``GET|HEAD /{txid}`` and ``/raw/{txid}`` (with ``Range``), ``/tx/{txid}/data.{ext}``, and
  ``/chunk/{offset}`` for the offsets ``/tx/{txid}/offset`` answered. A file's tx is that
  file; a section's tx (ritual-arweave 0.2.0 uploads big files in sections) is its window of
  the reassembled file; a manifest's tx (a repo's, a sectioned file's) is its JSON, kept in
  the store — ``/{txid}`` of one is a 404, as at a gateway (a manifest without an index). A
  repo manifest, once asked for, is resolved as ``arweave/<owner>/<repo>@<txid>`` so every file
  of the repo is known before its client asks. Which is which: :mod:`.arweave_lookup`.
* **Metadata**, passed through to the configured gateways in order and kept in the store
  (:mod:`.arweave_cache`): ``POST /graphql``, ``/tx/{txid}``, ``/tx/{txid}/{field}`` and
  ``/tx/{txid}/offset``; a kept answer is used only when no gateway answers, so "latest" stays
  latest. ``/tx/{txid}/data_size`` of a file or section comes from the stored tree.
  ``/price/{n}`` and ``/tx_anchor`` pass through, never kept.

Errors come from the hoard error tree with its HTTP status and a plain-text message: an unknown
transaction is a 404 as at the gateway, a pending one the gateway's own 202 ``Pending`` or 404,
no gateway answering with nothing kept a 503 (without ``Retry-After``: ar.Peer would sleep on
it). The face never answers 429 (ar.Peer loops forever on one) and never a 200 with
``Content-Length: 0`` for data (ar.Peer raises on it: empty data goes out chunked, as ar.io
sends it). Every route segment is checked by its pattern before anything is sent on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import web

from hoard.store.errors import HoardError, NotFound, RangeNotSatisfiable, codes_for

from . import metrics as m
from .arweave_cache import Answer, GatewayPassthrough
from .arweave_index import OffsetMap, TxRef, chunk_span
from .arweave_lookup import TxLookup, is_manifest
from .links import header_text
from .origin import RemoteFile
from .request import SERVICES
from .responses import _SendfileResponse, parse_range, serve_bytes, stream_through_core
from .service import ProxyConfig, Services
from .sources import spec
from .sources.arweave import MANIFEST_TYPE

__all__ = ["ArweaveFace", "ARWEAVE_FACE", "add_arweave_routes", "serve_window", "gateways_of", "is_gateway_request"]

log = logging.getLogger("hoard.arweave")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TXID = "{txid:[A-Za-z0-9_-]{43}}"
IMMUTABLE = "public, max-age=2592000, immutable"  # what ar.io sends for stable data


class ArweaveFace:
    """The face's state: the tx lookup (index and discovery), the gateway pass-through and
    the weave offsets seen."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.gateway = GatewayPassthrough(svc, gateways_of(svc.config))
        self.lookup = TxLookup(svc, self.gateway)
        self.offsets = OffsetMap()

    async def on_startup(self, _app: web.Application) -> None:
        await self.lookup.load()

    async def read(self, txid: str, ref: TxRef, start: int, end: int) -> bytes:
        """Bytes [start, end) of a transaction's data, through the fetch core (a range that
        reaches the end of the file waits until the file is verified)."""
        rf = await self.lookup.remote_file(txid, ref)
        core = self.svc.core
        of = await core.open(rf)
        try:
            base = ref.offset if ref.kind == "section" else 0
            return b"".join([b async for b in core.read(of, base + start, base + end)])
        finally:
            await core.close(of)


ARWEAVE_FACE = web.AppKey("arweave_face", ArweaveFace)


def gateways_of(config: ProxyConfig) -> tuple[str, ...]:
    """Where metadata is passed through: the parent hoard's own Arweave face with
    ``--upstream``, else the configured gateways (``--arweave-gateway``), in order."""
    if config.upstream:
        return tuple(u.rstrip("/") for u in config.upstream)
    value = config.source_settings.get("arweave_gateway")
    declared = spec("arweave")
    if value is None and declared is not None:
        value = next((s.default for s in declared.settings if s.name == "arweave_gateway"), ())
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(str(v).strip().rstrip("/") for v in items if str(v).strip())


def _face(request: web.Request) -> ArweaveFace:
    return request.app[ARWEAVE_FACE]


# -- errors -----------------------------------------------------------------------------------


def error_response(exc: BaseException) -> web.Response:
    """A hoard error as a plain-text answer with the status of the error table."""
    if not isinstance(exc, (HoardError, OSError)):
        log.error("internal error", exc_info=exc)
        return web.Response(status=500, text="internal error\n")
    headers = {}
    if isinstance(exc, RangeNotSatisfiable) and exc.size is not None:
        headers["Content-Range"] = f"bytes */{exc.size}"
    message = str(exc) or getattr(exc, "kind", type(exc).__name__)
    return web.Response(status=codes_for(exc).http_status, text=message + "\n", headers=headers)


def _errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (asyncio.CancelledError, web.HTTPException):
            raise  # aiohttp's own answers (413 for a body over client_max_size, ...)
        except Exception as exc:  # noqa: BLE001 - the face's one boundary
            return error_response(exc)

    return wrapped


def _relay(answer: Answer) -> web.Response:
    """A gateway's answer (or a kept one) as it came."""
    headers = {k: header_text(v) for k, v in answer.headers.items()}
    if answer.content_type:
        headers["Content-Type"] = header_text(answer.content_type)
    if answer.from_store:
        headers["X-Hoard-Source"] = "store"
    return web.Response(status=answer.status, body=answer.body, headers=headers)


# -- bytes ------------------------------------------------------------------------------------


async def _empty(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    """Empty data as ar.io sends it: a chunked 200 (``Content-Length: 0`` makes ar.Peer raise)."""
    resp = web.StreamResponse(status=200, headers=headers)
    if request.method != "HEAD":
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write_eof()
    return resp


async def serve_window(
    request: web.Request, *, svc: Services, rf: RemoteFile, start: int, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """``serve_bytes`` for the window ``[start, start + size)`` of a file (a section): Range is
    relative to the window; the blob is sent with sendfile, a missing one filled through the
    fetch core; a window that reaches the end of the file holds its tail until it is verified."""
    if size == 0:
        return await _empty(request, headers)
    rng = parse_range(request.headers.get("Range"), size)
    headers = {**headers, "Accept-Ranges": "bytes"}
    if rng.partial:
        headers["Content-Range"] = rng.content_range(size)
    status = 206 if rng.partial else 200
    lo, hi = start + rng.start, start + rng.end
    b3 = svc.store.resolve(rf.identity)
    fd = None if b3 is None else svc.store.open_blob(b3)
    if b3 is not None and fd is not None:
        try:
            svc.store.touch(b3)
            svc.metrics.inc(m.HITS)
            resp = _SendfileResponse(fd, lo, hi - lo, status=status, headers=headers)
            await resp.prepare(request)
            if request.method != "HEAD":
                svc.metrics.inc(m.CLIENT_BYTES, hi - lo)
            return resp
        finally:
            os.close(fd)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = hi - lo
    if request.method == "HEAD":
        await resp.prepare(request)
        return resp
    svc.metrics.inc(m.MISSES)
    return await stream_through_core(request, resp, core=svc.core, metrics=svc.metrics, rf=rf, start=lo, end=hi)


def _data_headers(svc: Services, txid: str, ref: TxRef, rf: RemoteFile, *, whole: bool) -> dict[str, str]:
    """ar.io's data headers: the tx id, the Content-Type tag, immutable caching; the digest
    (sha256, as ar.io writes it: ``ETag``, ``X-AR-IO-Digest`` and ``Content-Digest``) only for
    a whole file the store holds, verified. ``Content-Digest`` is a digest of the message's
    content (RFC 9530), so it goes only on an answer without ``Range`` (``whole``)."""
    kind = rf.meta.get("content_type") or ref.content_type or "application/octet-stream"
    complete = svc.store.resolve(rf.identity) is not None
    headers = {
        "X-AR-IO-Data-Id": txid,
        "Content-Type": header_text(str(kind)),
        "Cache-Control": IMMUTABLE,
        "X-Cache": "HIT" if complete else "MISS",
    }
    exp = rf.expected
    if complete and ref.kind != "section" and exp is not None and exp.kind == "sha256" and not exp.prefix:
        raw = bytes.fromhex(exp.hex)
        digest = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        headers.update({"ETag": f'"{digest}"', "X-AR-IO-Digest": digest})
        if whole:
            headers["Content-Digest"] = f"sha-256=:{base64.b64encode(raw).decode()}:"
    return headers


async def _manifest(face: ArweaveFace, txid: str, path: str) -> web.Response:
    """A manifest's JSON: kept, else fetched (and kept); the gateway's answer if not a 200."""
    answer = await face.gateway.manifest(txid, path)
    if answer.status != 200:
        return _relay(answer)
    return _relay(Answer(200, answer.body, MANIFEST_TYPE, from_store=answer.from_store))


@_errors
async def data(request: web.Request) -> web.StreamResponse:
    """``/{txid}``, ``/raw/{txid}`` and ``/tx/{txid}/data.{ext}``: a transaction's data."""
    face = _face(request)
    txid = request.match_info["txid"]
    whole = "ext" in request.match_info or request.path.startswith("/raw/")
    ref = await face.lookup.find(txid)
    if ref is None:
        raise NotFound(f"{txid}: no such transaction at the gateway")
    if is_manifest(ref):
        if not whole:
            raise NotFound(f"{txid} is a manifest without an index: its JSON is at /raw/{txid} or /tx/{txid}/data.")
        path = f"/raw/{txid}" if request.path.startswith("/raw/") else f"/tx/{txid}/data."
        return await _manifest(face, txid, path)
    svc = face.svc
    rf = await face.lookup.remote_file(txid, ref)
    headers = _data_headers(svc, txid, ref, rf, whole="Range" not in request.headers)
    if ref.kind == "section":
        return await serve_window(request, svc=svc, rf=rf, start=ref.offset, size=ref.size, headers=headers)
    if rf.size == 0:
        return await _empty(request, headers)
    return await serve_bytes(request, store=svc.store, core=svc.core, metrics=svc.metrics, rf=rf, headers=headers)


# -- metadata ---------------------------------------------------------------------------------


@_errors
async def tx_header(request: web.Request) -> web.StreamResponse:
    """``/tx/{txid}`` and ``/tx/{txid}/{field}`` (but ``data_size`` and ``offset``). A tx's
    header and fields never change once mined; its ``status`` (confirmations) does, every
    block, and is not kept."""
    txid = request.match_info["txid"]
    field = request.match_info.get("field")
    path = f"/tx/{txid}" + (f"/{field}" if field else "")
    return _relay(await _face(request).gateway.ask("GET", path, keep=field != "status"))


@_errors
async def tx_data_size(request: web.Request) -> web.StreamResponse:
    """``/tx/{txid}/data_size``: from the stored tree for a file or a section."""
    face = _face(request)
    txid = request.match_info["txid"]
    ref = await face.lookup.find(txid, discover=False)
    if ref is not None and ref.kind in ("file", "section"):
        return web.Response(text=str(ref.size), content_type="text/plain")
    return _relay(await face.gateway.ask("GET", f"/tx/{txid}/data_size"))


@_errors
async def tx_offset(request: web.Request) -> web.StreamResponse:
    """``/tx/{txid}/offset``: passed through and kept; remembered for ``/chunk``."""
    face = _face(request)
    txid = request.match_info["txid"]
    answer = await face.gateway.ask("GET", f"/tx/{txid}/offset")
    if answer.status == 200:
        try:
            doc = answer.json()
            face.offsets.record(txid, int(doc["offset"]), int(doc["size"]))
        except (ValueError, TypeError, KeyError):
            log.info("/tx/%s/offset: the gateway's answer is not {offset, size}", txid)
    return _relay(answer)


@_errors
async def chunk(request: web.Request) -> web.StreamResponse:
    """``/chunk/{offset}``: the 256 KiB chunk holding a weave offset, from the store when the
    offset lies in a transaction hoard serves; else passed through (not kept)."""
    face = _face(request)
    offset = int(request.match_info["offset"])
    packing = request.headers.get("x-packing", "unpacked")
    hit = face.offsets.locate(offset) if packing in ("unpacked", "any") else None
    ref = None if hit is None else await face.lookup.find(hit[0], discover=False)
    if hit is None or ref is None or ref.size != hit[2] or is_manifest(ref):
        headers = {"x-packing": packing} if "x-packing" in request.headers else {}
        return _relay(await face.gateway.ask("GET", f"/chunk/{offset}", headers=headers, keep=False))
    txid, rel, size = hit
    start, end = chunk_span(rel, size)
    data = await face.read(txid, ref, start, end)
    body = {"chunk": base64.urlsafe_b64encode(data).decode().rstrip("="), "data_path": "", "tx_path": "",
            "packing": "unpacked"}
    last = offset - rel + end - 1
    return web.json_response(body, headers={"arweave-absolute-end-offset": str(last)},
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


@_errors
async def graphql(request: web.Request) -> web.StreamResponse:
    """``POST /graphql``: passed through; kept answers only when no gateway answers."""
    body = await request.read()
    return _relay(await _face(request).gateway.ask("POST", "/graphql", body=body))


@_errors
async def passthrough(request: web.Request) -> web.StreamResponse:
    """``/price/{n}[/{target}]`` and ``/tx_anchor``: passed through, never kept."""
    mi = request.match_info
    path = "/tx_anchor" if "bytes" not in mi else f"/price/{mi['bytes']}" + (f"/{mi['target']}" if "target" in mi else "")
    headers = {"Accept": request.headers["Accept"]} if "Accept" in request.headers else {}
    return _relay(await _face(request).gateway.ask("GET", path, headers=headers, keep=False))


def add_arweave_routes(app: web.Application) -> None:
    """The gateway routes (none can match a Hugging Face or ``/v1`` route: a bare ``/{txid}``
    is one 43-character base64url segment)."""
    face = ArweaveFace(app[SERVICES])
    app[ARWEAVE_FACE] = face
    app.on_startup.append(face.on_startup)
    r = app.router
    r.add_get(f"/{_TXID}", data)
    r.add_get(f"/raw/{_TXID}", data)
    r.add_get(f"/tx/{_TXID}", tx_header)
    r.add_get(f"/tx/{_TXID}/data.{{ext:[A-Za-z0-9]{{0,16}}}}", data)
    r.add_get(f"/tx/{_TXID}/data_size", tx_data_size)
    r.add_get(f"/tx/{_TXID}/offset", tx_offset)
    r.add_get(f"/tx/{_TXID}/{{field:[a-z_]{{1,32}}}}", tx_header)
    r.add_get(r"/chunk/{offset:\d{1,20}}", chunk)
    r.add_get(r"/price/{bytes:\d{1,20}}", passthrough)
    r.add_get(r"/price/{bytes:\d{1,20}}/" + _TXID.replace("txid", "target"), passthrough)
    r.add_get("/tx_anchor", passthrough)
    r.add_post("/graphql", graphql)


_HANDLERS = frozenset({data, tx_header, tx_data_size, tx_offset, chunk, graphql, passthrough})


def is_gateway_request(request: web.Request) -> bool:
    """True if this face answers the request (for the access log's and metrics' face label)."""
    return request.match_info.handler in _HANDLERS
