"""hoard's own API (``/v1/...``), health and metrics.

Data:

* ``GET|HEAD /v1/files/<source>/<owner>/<repo>[@<rev>]/<path>`` — a file by address, with Range.
  ``X-Hoard-Revision`` names the revision it resolved to, ``X-Hoard-Identity`` the content.
* ``GET|HEAD /v1/blobs/<b3>`` — a complete blob by BLAKE3. Immutable, so it is sent with
  ``Cache-Control: public, max-age=31536000, immutable`` and ``ETag: "<b3>"``: nginx, Squid or
  a CDN between a fleet and this proxy can cache it as-is. A blob that only restricted
  (private or gated) files use goes only to a client whose token the origin accepts for one of
  them, marked ``private`` so no shared cache keeps it; anyone else gets the 404 of an unknown
  blob, so its existence does not leak either. A blob no cached revision uses (a pinned file
  whose repo was removed, a blob imported from a hub cache without its tree) says nothing of
  who may read it: it goes to the admin token holder only, marked ``private``.
* ``GET /v1/trees/<source>/<owner>/<repo>[@<rev>]`` — the revision a name resolves to and its
  files (size, identity, BLAKE3 when complete, source metadata). A child hoard uses this and
  ``/v1/files`` to fill its own store from this one.

Admin endpoints (prefetch, models, cache, gc, pins) live in :mod:`v1_admin`; the shared
error answers, admin gate and address reading in :mod:`v1_common`; who may see restricted
content in :mod:`v1_access`. Errors are JSON ``{"error": message, "kind": kind}`` with the
status of the error table.
"""

from __future__ import annotations

import os
import re

from aiohttp import web

from hoard.store.errors import InvalidAddress, NotFound

from .links import header_text
from .responses import _SendfileResponse, parse_range, serve_bytes
from .v1_access import viewer
from .v1_admin import PREFETCH, PrefetchJobs, add_admin_routes
from .request import credentials_for, services
from .v1_common import error_json, v1_address, v1_errors

__all__ = ["add_v1_routes", "PrefetchJobs", "PREFETCH", "error_json"]

_B3 = re.compile(r"[0-9a-f]{64}")
IMMUTABLE = "public, max-age=31536000, immutable"
#: a restricted blob: immutable still, but for this client only (no shared cache may keep it)
IMMUTABLE_PRIVATE = "private, max-age=31536000, immutable"


# -- data -------------------------------------------------------------------------------------


@v1_errors
async def get_file(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    addr = v1_address(request, 3)
    if not addr.path:
        raise InvalidAddress("a file address needs a path: <source>/<owner>/<repo>[@rev]/<path>")
    creds = credentials_for(request, addr.source)
    resolved, rf = await svc.catalog.remote_file(addr, creds)
    headers = {
        "X-Hoard-Revision": header_text(resolved.revision),
        "X-Hoard-Identity": header_text(rf.identity),
        "ETag": header_text(f'"{rf.identity}"'),
        "Content-Type": "application/octet-stream",
    }
    b3 = svc.store.resolve(rf.identity)
    if b3:
        headers["X-Hoard-Blake3"] = b3
    return await serve_bytes(request, store=svc.store, core=svc.core, metrics=svc.metrics, rf=rf, headers=headers)


@v1_errors
async def get_blob(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    b3 = request.match_info["b3"]
    if not _B3.fullmatch(b3):
        raise InvalidAddress("a blob is named by 64 lowercase hex digits (its BLAKE3)")
    info = svc.store.blob(b3)
    if info is None:
        raise NotFound(f"no blob {b3}")
    users = svc.store.blob_users(b3)
    who = viewer(request)
    # with no user, nothing tells whether the bytes were private: the admin only
    if not (await who.allowed_by(users) if users else who.admin):
        raise NotFound(f"no blob {b3}")
    public = any(not restricted for _, _, restricted in users)
    etag = f'"{b3}"'
    headers = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE if public else IMMUTABLE_PRIVATE,
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
    }
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    rng = parse_range(request.headers.get("Range"), info.size)
    if rng.partial:
        headers["Content-Range"] = rng.content_range(info.size)
    fd = svc.store.open_blob(b3)
    if fd is None:
        raise NotFound(f"no blob {b3}")
    try:
        svc.store.touch(b3)
        resp = _SendfileResponse(fd, rng.start, rng.length, status=206 if rng.partial else 200, headers=headers)
        await resp.prepare(request)
        return resp
    finally:
        os.close(fd)


@v1_errors
async def get_tree(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    addr = v1_address(request, 3)
    resolved = await svc.catalog.resolve(addr.with_path(""), credentials_for(request, addr.source))
    files = []
    for path, entry in sorted(resolved.snapshot.files.items()):
        if addr.path and not (path == addr.path or path.startswith(addr.path + "/")):
            continue
        files.append(
            {
                "path": path,
                "size": entry.size,
                "identity": entry.identity,
                "expected": entry.expected.text if entry.expected else None,
                "blake3": svc.store.resolve(entry.identity),
                "meta": entry.meta,
            }
        )
    return web.json_response(
        {
            "repo": resolved.addr.repo_key,
            "revision": resolved.revision,
            "stale": resolved.stale,
            "files": files,
            "info": resolved.snapshot.info,
        }
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    return web.Response(text=svc.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def add_v1_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/files/{address:.+}", get_file)
    r.add_get("/v1/blobs/{b3}", get_blob)
    r.add_get("/v1/trees/{address:.+}", get_tree)
    add_admin_routes(app)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)

