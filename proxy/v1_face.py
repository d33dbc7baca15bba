"""hoard's own API (``/v1/...``), health and metrics.

Data:

* ``GET|HEAD /v1/files/<source>/<owner>/<repo>[@<rev>]/<path>`` — a file by address, with Range.
  ``X-Hoard-Revision`` names the revision it resolved to, ``X-Hoard-Identity`` the content.
* ``GET|HEAD /v1/blobs/<b3>`` — a complete blob by BLAKE3. Immutable, so it is sent with
  ``Cache-Control: public, max-age=31536000, immutable`` and ``ETag: "<b3>"``: nginx, Squid or
  a CDN between a fleet and this proxy can cache it as-is.
* ``GET /v1/trees/<source>/<owner>/<repo>[@<rev>]`` — the revision a name resolves to and its
  files (size, identity, BLAKE3 when complete, source metadata). A child hoard uses this and
  ``/v1/files`` to fill its own store from this one.

Admin (these change the store: with ``--admin-token`` / ``HOARD_ADMIN_TOKEN`` set, the ones
that change something need the header ``X-Hoard-Admin-Token``):

* ``POST /v1/prefetch`` ``{"address": ...}`` → 202 and a job; ``GET /v1/prefetch/<id>``.
* ``GET /v1/models``; ``GET|DELETE /v1/models/<address>``.
* ``GET /v1/cache``; ``POST /v1/gc`` ``{"max_size": "200GiB", "dry_run": true}``.
* ``GET /v1/pins``; ``POST /v1/pins`` ``{"address": ...}``; ``DELETE /v1/pins/<address>``.

Errors are JSON ``{"error": message, "kind": kind}`` with the status of the error table.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
import uuid
from typing import Any

from aiohttp import web

from hoard.store import catalog as store_catalog
from hoard.store.address import parse_address
from hoard.store.errors import AccessDenied, HoardError, InvalidAddress, NotFound, UsageError, codes_for
from hoard.store.gc import execute_gc, plan_gc
from hoard.store.units import parse_size

from .hf_face import credentials
from .prefetch import plan_prefetch, run_prefetch
from .responses import _SendfileResponse, parse_range, serve_bytes
from .service import Services

__all__ = ["add_v1_routes", "PrefetchJobs"]

log = logging.getLogger("hoard.v1")
_B3 = re.compile(r"[0-9a-f]{64}")
IMMUTABLE = "public, max-age=31536000, immutable"
_MAX_JOBS = 1000


def _services(request: web.Request) -> Services:
    from .app import SERVICES

    return request.app[SERVICES]


def error_json(exc: BaseException) -> web.Response:
    codes = codes_for(exc)
    if not isinstance(exc, HoardError) and not isinstance(exc, OSError):
        log.exception("internal error", exc_info=exc)
        return web.json_response({"error": "internal error", "kind": "internal"}, status=500)
    headers = {}
    size = getattr(exc, "size", None)
    if codes.http_status == 416 and size is not None:
        headers["Content-Range"] = f"bytes */{size}"
    kind = getattr(exc, "kind", "os_error")
    return web.json_response({"error": str(exc), "kind": kind}, status=codes.http_status, headers=headers)


def _v1_errors(handler):  # type: ignore[no-untyped-def]
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (HoardError, OSError) as exc:
            return error_json(exc)

    return wrapped


def _admin(handler):  # type: ignore[no-untyped-def]
    """Endpoints that change the store need the admin token, when one is configured."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = _services(request).config.admin_token
        given = request.headers.get("X-Hoard-Admin-Token", "")
        if token and not hmac.compare_digest(given.encode(), token.encode()):
            return error_json(AccessDenied("this endpoint needs the X-Hoard-Admin-Token header"))
        return await handler(request)

    return wrapped


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        doc = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise UsageError("request body must be JSON") from None
    if not isinstance(doc, dict):
        raise UsageError("request body must be a JSON object")
    return doc


# -- data -------------------------------------------------------------------------------------


@_v1_errors
async def get_file(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    addr = parse_address(request.match_info["address"])
    if not addr.path:
        raise InvalidAddress("a file address needs a path: <source>/<owner>/<repo>[@rev]/<path>")
    creds = credentials(request)
    resolved, rf = await svc.catalog.remote_file(addr, creds)
    headers = {
        "X-Hoard-Revision": resolved.revision,
        "X-Hoard-Identity": rf.identity,
        "ETag": f'"{rf.identity}"',
        "Content-Type": "application/octet-stream",
    }
    b3 = svc.store.resolve(rf.identity)
    if b3:
        headers["X-Hoard-Blake3"] = b3
    return await serve_bytes(request, store=svc.store, core=svc.core, metrics=svc.metrics, rf=rf, headers=headers)


@_v1_errors
async def get_blob(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    b3 = request.match_info["b3"]
    if not _B3.fullmatch(b3):
        raise InvalidAddress("a blob is named by 64 lowercase hex digits (its BLAKE3)")
    info = svc.store.blob(b3)
    if info is None:
        raise NotFound(f"no blob {b3}")
    etag = f'"{b3}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
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


@_v1_errors
async def get_tree(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    addr = parse_address(request.match_info["address"])
    resolved = await svc.catalog.resolve(addr.with_path(""), credentials(request))
    files = []
    for path, entry in sorted(resolved.snapshot.files.items()):
        if addr.path and not (path == addr.path or path.startswith(addr.path + "/")):
            continue
        files.append(
            {
                "path": path,
                "size": entry.size,
                "identity": entry.identity,
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


# -- prefetch ---------------------------------------------------------------------------------


class PrefetchJobs:
    """Background fills started by ``POST /v1/prefetch``; state kept in memory."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.jobs: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, address: str, creds: Any) -> dict[str, Any]:
        addr = parse_address(address)
        job = {"id": uuid.uuid4().hex[:12], "address": address, "state": "running", "files": 0,
               "done": 0, "bytes": 0, "error": None, "started": time.time()}
        self.jobs[job["id"]] = job
        if len(self.jobs) > _MAX_JOBS:  # forget the oldest finished jobs
            finished = [k for k, j in self.jobs.items() if j["state"] != "running"]
            for k in finished[: len(self.jobs) - _MAX_JOBS]:
                del self.jobs[k]
        task = asyncio.get_running_loop().create_task(self._run(job, addr, creds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: dict[str, Any], addr: Any, creds: Any) -> None:
        try:
            plan = await plan_prefetch(self.svc, addr, creds)
            job["revision"] = plan.revision
            job["files"] = len(plan.paths)
            job["done"] = len(plan.paths) - len(plan.todo)
            job["bytes"] = plan.bytes - plan.todo_bytes

            def progress(path: str, size: int) -> None:
                job["done"] += 1
                job["bytes"] += size

            await run_prefetch(self.svc, addr, creds, plan, on_file=progress)
            job["state"] = "done"
        except Exception as exc:  # reported through the job
            job["state"] = "failed"
            job["error"] = str(exc)
            log.warning("prefetch %s failed: %s", job["address"], exc)
        job["finished"] = time.time()

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


PREFETCH = web.AppKey("prefetch", PrefetchJobs)


@_admin
@_v1_errors
async def post_prefetch(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    address = body.get("address") or body.get("repo") or request.query.get("address")
    if not isinstance(address, str):
        raise UsageError('body must be {"address": "<source>/<owner>/<repo>[@rev][/<path>]"}')
    job = request.app[PREFETCH].start(address, credentials(request))
    return web.json_response(job, status=202, headers={"Location": f"/v1/prefetch/{job['id']}"})


@_v1_errors
async def get_prefetch(request: web.Request) -> web.StreamResponse:
    job = request.app[PREFETCH].jobs.get(request.match_info["id"])
    if job is None:
        raise NotFound("no such prefetch job")
    return web.json_response(job)


# -- models, cache, gc, pins ------------------------------------------------------------------


@_v1_errors
async def list_models(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    prefix = request.query.get("prefix", "")
    repos = await asyncio.get_running_loop().run_in_executor(None, store_catalog.list_repos, svc.store, prefix)
    return web.json_response([r.as_dict() for r in repos])


@_v1_errors
async def model_info(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    addr = parse_address(request.match_info["address"])
    rev, snap = store_catalog.resolve_cached(svc.store, addr)
    if addr.source in svc.sources:
        # BLAKE3s name blobs /v1/blobs serves to anyone: only for clients allowed the files
        await svc.catalog.authorize(addr, rev, snap, credentials(request))
    if addr.path:
        entry = snap.files.get(addr.path)
        if entry is None:
            raise NotFound(f"{addr.path} is not a file of {addr.repo_key}@{rev}")
        return web.json_response(store_catalog.file_state(svc.store, addr.path, entry).as_dict() | {"revision": rev})
    states = [store_catalog.file_state(svc.store, p, e) for p, e in sorted(snap.files.items())]
    return web.json_response(
        {
            "repo": addr.repo_key,
            "revision": rev,
            "refs": {k: v.revision for k, v in svc.store.refs(addr.repo_key).items()},
            "files": [s.as_dict() for s in states],
            "size": snap.size,
            "cached_bytes": sum(s.entry.size for s in states if s.complete),
            "pinned": f"snapshot:{addr.repo_key}@{rev}" in svc.store.pins(),
        }
    )


@_admin
@_v1_errors
async def delete_model(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    addr = parse_address(request.match_info["address"])
    dry = request.query.get("dry_run", "").lower() in ("1", "true")
    force = request.query.get("force", "").lower() in ("1", "true")
    plan = store_catalog.plan_remove(svc.store, addr, force=force)
    if not dry:
        await asyncio.get_running_loop().run_in_executor(None, store_catalog.execute_remove, svc.store, plan)
    return web.json_response({"dry_run": dry, **plan.as_dict()})


@_v1_errors
async def cache_summary(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    usage = await asyncio.get_running_loop().run_in_executor(None, svc.store.usage)
    return web.json_response(
        usage | {"home": str(svc.store.home), "disk_free": svc.store.disk_free(), "repos": len(svc.store.repos())}
    )


@_admin
@_v1_errors
async def post_gc(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    body = await _body(request)
    raw = body.get("max_size", svc.store.config.max_size)
    max_size = None if raw is None else parse_size(raw)
    dry = bool(body.get("dry_run", False))
    loop = asyncio.get_running_loop()
    plan = await loop.run_in_executor(None, plan_gc, svc.store, max_size)
    out: dict[str, Any] = {"dry_run": dry, **plan.as_dict()}
    if not dry:
        result = await loop.run_in_executor(None, execute_gc, svc.store, plan)
        out["result"] = result.as_dict()
    return web.json_response(out)


@_v1_errors
async def list_pins(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    return web.json_response({t: {"created": r.created, "note": r.note} for t, r in svc.store.pins().items()})


@_admin
@_v1_errors
async def add_pin(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    body = await _body(request)
    address = body.get("address")
    if not isinstance(address, str):
        raise UsageError('body must be {"address": ...}')
    target = store_catalog.pin_target(svc.store, parse_address(address))
    new = svc.store.pin(target, note=address)
    return web.json_response({"pinned": target, "new": new}, status=201 if new else 200)


@_admin
@_v1_errors
async def delete_pin(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    target = store_catalog.pin_target(svc.store, parse_address(request.match_info["address"]))
    if not svc.store.unpin(target):
        raise NotFound(f"{target} is not pinned")
    return web.json_response({"unpinned": target})


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.StreamResponse:
    svc = _services(request)
    return web.Response(text=svc.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def add_v1_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/files/{address:.+}", get_file)
    r.add_get("/v1/blobs/{b3}", get_blob)
    r.add_get("/v1/trees/{address:.+}", get_tree)
    r.add_post("/v1/prefetch", post_prefetch)
    r.add_get("/v1/prefetch/{id}", get_prefetch)
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{address:.+}", model_info)
    r.add_delete("/v1/models/{address:.+}", delete_model)
    r.add_get("/v1/cache", cache_summary)
    r.add_post("/v1/gc", post_gc)
    r.add_get("/v1/pins", list_pins)
    r.add_post("/v1/pins", add_pin)
    r.add_delete("/v1/pins/{address:.+}", delete_pin)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)

