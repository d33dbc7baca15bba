"""ar.io's own data routes: ``GET|HEAD /{id}[/{manifest path}]`` and ``/raw/{id}``
(ar-io-node ``src/routes/data/handlers.ts``, ``src/lib/encoding.ts``, ``src/lib/http-utils.ts``).

* a 43-character id that is not canonical base64url answers ``400 Invalid ID: <id>``; an unknown
  or unavailable id (pending, data not all uploaded, dropped) ``404 Not found`` with
  ``Cache-Control: public, max-age=60, immutable``; a blocked one ``451``;
* the body is the raw data with ``Content-Type`` from the tag (else ``application/octet-stream``),
  ``Content-Length`` (none for empty data: chunked), ``Accept-Ranges: bytes``,
  ``X-AR-IO-Data-Id``, ``X-Cache: HIT|MISS``, ``X-AR-IO-Hops``, ``X-AR-IO-Stable``,
  ``X-AR-IO-Verified``, ``X-AR-IO-Trusted`` and ``Cache-Control`` (stable: 30 days immutable;
  else 12 h from a trusted source, 2 h otherwise);
* digest headers — ``ETag: "<sha256 b64url>"``, ``X-AR-IO-Digest``, ``Content-Digest:
  sha-256=:<std b64>:`` — only on HEAD (`digests_on_head`) or when the item is *cached*
  (`Tx.cached`, set after a complete GET when `cache_on_read`, or forced by `cache_all`).
  So a first GET (a MISS) carries none. ``If-None-Match`` equal to the ETag answers 304;
* one ``Range`` answers 206 + ``Content-Range``, several a ``multipart/byteranges`` 206, an
  unsatisfiable one 416 + ``Content-Range: bytes */size``, a malformed one (no ``=``) 400;
* manifests (Content-Type ``application/x.arweave-manifest+json``): a path resolves through
  ``paths`` (trailing slashes ignored); the empty path resolves to the index (``index.path``,
  or ``index.id`` in 0.2.0), else to the 0.2.0 ``fallback``; when something resolved and the
  URL is exactly ``/{id}``, a 301 to ``/{id}/`` comes first; nothing resolved is a 404 (so a
  Ritual repo manifest, which has no index, is a 404 at ``/{id}``). ``/raw/{id}`` serves the
  manifest bytes themselves. A non-manifest ignores any sub-path.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .identity import is_b64url_id
from .model import Tx
from .replies import GatewayRecord, Replies, cannot, range_parser
from .ritual import MANIFEST_TYPE

__all__ = ["DataRoutes", "resolve_manifest"]

STABLE_MAX_AGE, UNSTABLE_TRUSTED_MAX_AGE, UNSTABLE_MAX_AGE, NOT_FOUND_MAX_AGE = 2592000, 43200, 7200, 60
RAW_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-src 'none'; object-src 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


def _id_of(entry: Any) -> str | None:
    return entry["id"] if isinstance(entry, dict) and isinstance(entry.get("id"), str) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def resolve_manifest(manifest: Any, path: str) -> str | None:
    """The id an ``arweave/paths`` manifest resolves ``path`` to (ar.io's streaming rules)."""
    manifest = _object(manifest)
    v2 = manifest.get("version") == "0.2.0"
    paths = _object(manifest.get("paths"))
    wanted = path.rstrip("/")
    if wanted:
        for key, entry in paths.items():
            if key.rstrip("/") == wanted and _id_of(entry) is not None:
                return _id_of(entry)
    else:
        index = _object(manifest.get("index"))
        if v2 and _id_of(index) is not None:
            return _id_of(index)
        target = index.get("path")
        if isinstance(target, str) and _id_of(paths.get(target)) is not None:
            return _id_of(paths.get(target))
    return _id_of(manifest.get("fallback")) if v2 else None


class DataRoutes(Replies):
    """``/{id}`` and ``/raw/{id}`` (a base of `FakeGateway`, which sets these switches)."""

    digests_on_head: bool
    cache_all: bool
    trusted: bool

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return await self._html(
            request, 404, "Not found", {"Cache-Control": f"public, max-age={NOT_FOUND_MAX_AGE}, immutable"}
        )

    def _readable(self, txid: str) -> Tx | None:
        tx = self.weave.get(txid)
        if tx is None or tx.pending or tx.data is None or tx.error_codes is not None:
            return None
        return tx

    async def _data_route(self, request: web.Request, record: GatewayRecord) -> web.StreamResponse:
        path = request.raw_path.split("?")[0]
        raw = record.route == "raw"
        txid = record.txid or ""
        rest = path[len("/raw/") + 43 :] if raw else path[1 + 43 :]
        if (
            request.method not in ("GET", "HEAD")
            or (rest and not rest.startswith("/"))
            or (raw and rest not in ("", "/"))
        ):
            text = cannot(request.method, path)
            return await self._html(request, 404, text)
        if not is_b64url_id(txid):
            return await self._text(request, 400, f"Invalid ID: {txid}", {"Content-Type": "text/html; charset=utf-8"})
        tx = self.weave.get(txid)
        if tx is not None and tx.blocked:
            text = f"Requested content blocked by this node's content policy. Blocked ID: {txid}"
            return await self._html(
                request, 451, text, {"Cache-Control": f"public, max-age={STABLE_MAX_AGE}, immutable"}
            )
        tx = self._readable(txid)
        if tx is None:
            return await self._not_found(request)
        if not raw and tx.content_type == MANIFEST_TYPE:
            assert tx.data is not None
            try:
                manifest = json.loads(tx.data.read())
            except ValueError:
                return await self._not_found(request)
            resolved = resolve_manifest(manifest, unquote(rest[1:]))
            if resolved is None:
                return await self._not_found(request)
            if rest == "":
                query = request.raw_path.partition("?")[2]
                location = f"/{txid}/" + (f"?{query}" if query else "")
                text = f'<p>Moved Permanently. Redirecting to <a href="{location}">{location}</a></p>'
                return await self._html(request, 301, text, {"Location": location})
            target = self._readable(resolved)
            if target is None:
                return await self._not_found(request)
            return await self._serve_data(request, target, raw=False)
        return await self._serve_data(request, tx, raw=raw)

    def _data_headers(self, request: web.Request, tx: Tx, *, raw: bool) -> dict[str, str]:
        cached = tx.cached or self.cache_all
        stable = self.weave.stable(tx)
        if stable:
            cache_control = f"public, max-age={STABLE_MAX_AGE}, immutable"
        else:
            cache_control = f"public, max-age={UNSTABLE_TRUSTED_MAX_AGE if self.trusted else UNSTABLE_MAX_AGE}"
        hops_text = request.headers.get("X-AR-IO-Hops", "")
        hops = int(hops_text) if hops_text.isdigit() else 0
        headers = {
            "X-AR-IO-Data-Id": tx.id,
            "Accept-Ranges": "bytes",
            "Cache-Control": cache_control,
            "X-Cache": "HIT" if cached else "MISS",
            "X-AR-IO-Hops": str(hops if cached else hops + 1),
            "Content-Type": tx.content_type or "application/octet-stream",
            "X-AR-IO-Stable": "true" if stable else "false",
            "X-AR-IO-Verified": "true" if cached else "false",
        }
        if cached or (request.method == "HEAD" and self.digests_on_head):
            digest = tx.sha256_b64url
            headers["X-AR-IO-Digest"] = digest
            headers["Content-Digest"] = f"sha-256=:{base64.b64encode(base64.urlsafe_b64decode(digest + '=')).decode()}:"
            headers["ETag"] = f'"{digest}"'
        headers["X-AR-IO-Trusted"] = "true" if self.trusted else "false"
        if raw:
            headers.update(RAW_HEADERS)
        return headers

    async def _serve_data(self, request: web.Request, tx: Tx, *, raw: bool) -> web.StreamResponse:
        assert tx.data is not None
        headers = self._data_headers(request, tx, raw=raw)
        size = tx.data_size
        range_header = request.headers.get("Range")
        etag = headers.get("ETag")
        not_modified = etag is not None and request.headers.get("If-None-Match") == etag
        if range_header is None:
            if not_modified:
                return await self._send(request, 304, _without_entity(headers), length=False)
            return await self._send(request, 200, headers, tx.data, length=size > 0, cache_tx=tx)
        ranges = range_parser(size, range_header)
        if ranges == -2:
            return await self._text(
                request, 400, "Malformed 'range' header", {**headers, "Content-Type": "text/plain; charset=utf-8"}
            )
        if ranges == -1 or not isinstance(ranges, tuple) or ranges[0] != "bytes":
            headers = {**headers, "Content-Range": f"bytes */{size}", "Content-Type": "text/plain; charset=utf-8"}
            return await self._text(request, 416, "Range not satisfiable", headers)
        spans = ranges[1]
        if len(spans) == 1:
            first, last = spans[0]
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            if not_modified:
                return await self._send(request, 304, _without_entity(headers), length=False)
            return await self._send(request, 206, headers, tx.data, start=first, end=last + 1)
        boundary = "-" * 26 + secrets.token_hex(12)
        kind = headers["Content-Type"]
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
        parts: list[Any] = []
        for first, last in spans:
            parts.append(
                f"--{boundary}\r\nContent-Type: {kind}\r\nContent-Range: bytes {first}-{last}/{size}\r\n\r\n".encode()
            )
            parts.append((tx.data, first, last + 1))
            parts.append(b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        if not_modified:
            return await self._send(request, 304, _without_entity(headers), length=False)
        return await self._send(request, 206, headers, parts)


def _without_entity(headers: dict[str, str]) -> dict[str, str]:
    """RFC 7232 §4.1, as ar.io's ``handleIfNoneMatch`` does."""
    return {
        k: v
        for k, v in headers.items()
        if k not in ("Content-Length", "Content-Encoding", "Content-Range", "Content-Type")
    }
