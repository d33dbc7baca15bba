"""hoard's admin API: prefetch jobs, cached models, the cache summary, gc and pins.

* ``POST /v1/prefetch`` → 202 and a job; ``GET /v1/prefetch/<id>`` (v1_prefetch.py).
* ``GET /v1/models``; ``GET|DELETE /v1/models/<address>`` (``?dry_run=1``, ``?force=1``).
* ``GET /v1/cache``: totals by source, blobs, partials, pins, deduplicated bytes, hit ratio
  and origin bytes since start, and each repo (``by_repo``); ``POST /v1/gc``
  ``{"max_size": "200GiB", "dry_run": true}``.
* ``GET /v1/pins``; ``POST /v1/pins`` ``{"address": ...}`` (a repo without ``@`` follows its
  branch, see store/pins.py); ``DELETE /v1/pins/<address>``.

The ones that change the store go through :func:`admin_only` (v1_common). Every answer is
filtered through the request's :class:`Viewer`: a restricted (private or gated) repo, and the
hashes of content only such repos use, appear only to the admin token holder and to clients
whose token the origin accepts for the repo. To everyone else a hidden repo is "not in the
cache" (404, as for one never fetched), and totals may count bytes they never name.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiohttp import web

from hoard.store import catalog as store_catalog
from hoard.store.address import Address, parse_address
from hoard.store.cache_report import cache_report
from hoard.store.errors import HoardError, NotFound, UsageError
from hoard.store.gc import execute_gc, plan_gc
from hoard.store.pins import Follow, pin_address, unpin_address
from hoard.store.records import PinRecord
from hoard.store.units import parse_size

from . import metrics as m
from .service import Services
from .v1_access import Viewer, viewer
from .request import services
from .v1_common import admin_only, read_body, v1_address, v1_errors
from .v1_prefetch import PREFETCH, PrefetchJob, PrefetchJobs, get_prefetch, post_prefetch

__all__ = ["PrefetchJob", "PrefetchJobs", "PREFETCH", "add_admin_routes", "traffic"]

log = logging.getLogger("hoard.v1")
_TRUE = ("1", "true")
_B3 = re.compile(r"[0-9a-f]{64}")
_IDENTITY = re.compile(r"[a-z0-9]+:[^/]")  # sha256:..., gitsha1:..., b3:..., url:...


def _not_cached(addr: Address) -> NotFound:
    """The answer for a repo this client may not see: the same as for one never fetched."""
    what = addr.repo_key + (f"@{addr.revision}" if addr.revision else "")
    return NotFound(f"{what} is not in the cache")


async def _check_visible(who: Viewer, addr: Address) -> None:
    if not await who.sees_repo(addr.repo_key):
        raise _not_cached(addr)


# -- models -----------------------------------------------------------------------------------


@v1_errors
async def list_models(request: web.Request) -> web.StreamResponse:
    svc, who = services(request), viewer(request)
    prefix = request.query.get("prefix", "")
    repos = await asyncio.get_running_loop().run_in_executor(None, store_catalog.list_repos, svc.store, prefix)
    return web.json_response([r.as_dict() for r in repos if await who.sees_repo(r.repo)])


@v1_errors
async def model_info(request: web.Request) -> web.StreamResponse:
    svc, who = services(request), viewer(request)
    addr = v1_address(request, 3)
    rev, snap = store_catalog.resolve_cached(svc.store, addr)
    await _check_visible(who, addr)
    if not who.admin and addr.source in svc.sources:
        # the cached flags may be behind: a repo can turn private after it was cached
        try:
            await svc.catalog.authorize(addr, rev, snap, who.creds_for(addr.repo_key))
        except HoardError:
            raise _not_cached(addr) from None
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


@admin_only
@v1_errors
async def delete_model(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    addr = v1_address(request, 3)
    dry = request.query.get("dry_run", "").lower() in _TRUE
    force = request.query.get("force", "").lower() in _TRUE
    await _check_visible(viewer(request), addr)
    plan = store_catalog.plan_remove(svc.store, addr, force=force)
    if not dry:
        await asyncio.get_running_loop().run_in_executor(None, store_catalog.execute_remove, svc.store, plan)
    return web.json_response({"dry_run": dry, **plan.as_dict()})


# -- cache and gc -----------------------------------------------------------------------------


@v1_errors
async def cache_summary(request: web.Request) -> web.StreamResponse:
    """Totals (restricted bytes included), this process's traffic since it started, and the
    repos this client may see (``by_repo``; the others are only counted, ``hidden_repos``)."""
    svc, who = services(request), viewer(request)
    report = await asyncio.get_running_loop().run_in_executor(None, cache_report, svc.store)
    shown = [r.as_dict() for r in report.repos if await who.sees_repo(r.repo)]
    config = svc.store.config
    return web.json_response(
        report.totals()
        | {"home": str(svc.store.home), "disk_free": svc.store.disk_free(), "max_size": config.max_size,
           "gc_high_water": config.gc_high_water, "gc_low_water": config.gc_low_water}
        | traffic(svc)
        | {"by_repo": shown, "hidden_repos": len(report.repos) - len(shown)}
    )


def traffic(svc: Services) -> dict[str, Any]:
    """Hits, misses, hit ratio (files served from the store / files served), origin and client
    bytes, since this process started."""
    hits, misses = svc.metrics.total(m.HITS), svc.metrics.total(m.MISSES)
    return {"since": svc.started, "hits": int(hits), "misses": int(misses),
            "hit_ratio": None if hits + misses == 0 else hits / (hits + misses),
            "origin_bytes": int(svc.metrics.total(m.ORIGIN_BYTES)),
            "client_bytes": int(svc.metrics.total(m.CLIENT_BYTES))}


async def _name_visible(who: Viewer, kind: str | None, name: str) -> bool:
    """Whether a gc plan may name ``name`` to this viewer. Blobs and partials are named by
    hashes: shown when their content is. Anything else (stray files, which may be named after a
    restricted file's hash) only to the admin."""
    if kind == "blob" or (kind is None and _B3.fullmatch(name)):
        return await who.sees_blob(name)
    if kind == "partial" or (kind is None and _IDENTITY.match(name)):
        return await who.allowed_by(who.svc.store.identity_users(name))
    return who.admin


async def _shown_plan(who: Viewer, plan: dict[str, Any]) -> dict[str, Any]:
    """A gc plan (or result) with what this viewer may not see left out: each list of named
    entries (``victims``, ``kept``) filtered, with a ``hidden_<list>`` count; a mapping of
    names (a result's ``kept``) filtered by key. Totals stay whole."""
    if who.admin:
        return plan
    out = dict(plan)
    for key in ("victims", "kept"):
        entries = plan.get(key)
        if isinstance(entries, list):
            shown = [e for e in entries if await _name_visible(who, e.get("kind"), e["name"])]
            out[key], out[f"hidden_{key}"] = shown, len(entries) - len(shown)
        elif isinstance(entries, dict):
            out[key] = {n: why for n, why in entries.items() if await _name_visible(who, None, n)}
    return out


@admin_only
@v1_errors
async def post_gc(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    body = await read_body(request)
    raw = body.get("max_size", svc.store.config.max_size)
    max_size = None if raw is None else parse_size(raw)
    dry = bool(body.get("dry_run", False))
    loop = asyncio.get_running_loop()
    plan = await loop.run_in_executor(None, plan_gc, svc.store, max_size)
    who = viewer(request)
    out: dict[str, Any] = {"dry_run": dry, **await _shown_plan(who, plan.as_dict())}
    if not dry:
        result = await loop.run_in_executor(None, execute_gc, svc.store, plan)
        out["result"] = await _shown_plan(who, result.as_dict())
    return web.json_response(out)


# -- pins -------------------------------------------------------------------------------------


async def _pin_visible(who: Viewer, target: str, note: str) -> bool:
    """A pin shows when what it names is visible, and so is the repo its note names."""
    follow = Follow.parse(target, PinRecord(0, note))
    if follow is not None:
        return await who.sees_repo(follow.repo)
    if target.startswith("snapshot:"):
        if not await who.sees_repo(target[9:].rpartition("@")[0]):
            return False
    elif target.startswith("blob:") and not await who.sees_blob(target[5:]):
        return False
    try:
        noted = parse_address(note)
    except HoardError:
        return True  # a free-text note names no repo
    return await who.sees_repo(noted.repo_key)


@v1_errors
async def list_pins(request: web.Request) -> web.StreamResponse:
    """Every pin gc honours this client may see; a revision pinned by a repo that follows its
    branch says which ref (``follows``), and one kept until the next is complete says so."""
    svc, who = services(request), viewer(request)
    pins = svc.store.pins()
    follows = [f for f in (Follow.parse(t, r) for t, r in pins.items()) if f is not None]
    out: dict[str, dict[str, Any]] = {}
    for target, rec in pins.items():
        if target.startswith("ref:") or not await _pin_visible(who, target, rec.note):
            continue
        out[target] = {"created": rec.created, "note": rec.note}
        for f in follows:
            if f.held == target:
                out[target]["follows"] = f.ref
            elif f.previous and target == f"snapshot:{f.repo}@{f.previous}":
                out[target]["until_complete"] = f.held
    return web.json_response(out)


@admin_only
@v1_errors
async def add_pin(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    body = await read_body(request)
    address = body.get("address")
    if not isinstance(address, str):
        raise UsageError('body must be {"address": ...}')
    addr = parse_address(address)
    await _check_visible(viewer(request), addr)
    result = pin_address(svc.store, addr, address)
    doc = {k: v for k, v in result.as_dict().items() if k != "follows" or v is not None}
    return web.json_response(doc, status=201 if result.new else 200)


@admin_only
@v1_errors
async def delete_pin(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    addr = v1_address(request, 3)
    await _check_visible(viewer(request), addr)
    done = unpin_address(svc.store, addr)
    removed = [t for t, was in done if was]
    if not removed:
        raise NotFound(f"{done[0][0]} is not pinned")
    return web.json_response({"unpinned": removed[0]})


def add_admin_routes(app: web.Application) -> None:
    r = app.router
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
