"""The Hugging Face Hub API, as far as downloading clients use it (hf_protocol.md §10).

``HF_ENDPOINT=http://127.0.0.1:8090`` makes stock ``huggingface_hub`` and ``transformers``
download through hoard. Every answer comes from the store's snapshots when it can:

* ``HEAD``/``GET /[datasets/|spaces/]{ns}/{name}/resolve/{rev}/{path}`` — a direct 200/206
  with ``X-Repo-Commit``, the true ``ETag`` (sha256 for LFS, git blob sha1 otherwise),
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files and the real ``Content-Length`` (also on
  HEAD). No redirects, so every client version, old or new, takes the same path.
* ``/api/{models|datasets|spaces}/{ns}/{name}[/revision/{rev}]``, ``/tree/{rev}[/{path}]``
  (paged with ``Link: rel="next"``), ``POST /paths-info/{rev}`` — built from the snapshot;
  ``/refs``, ``/commits`` and ``expand=`` queries pass through to the Hub, Xet fields stripped.
* Errors always carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound`` with ``X-Repo-Commit``, ``GatedRepo``); the Hub's bare 401 becomes
  ``RepoNotFound``; an unreachable Hub is a 503, never a 401/404.

Every segment of every route (namespace, name, revision — each segment of ``refs/pr/1`` —
and path) passes the checks of store/address.py before anything is looked up or sent to the
Hub, where ``..`` would otherwise name another URL. Header values that echo client input, and
the ``Link: rel="next"`` of paged listings, are written by :mod:`links`.

Nothing Xet is ever emitted (no ``X-Xet-*``, no ``xetHash``), so clients stay on plain HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import parse_qs, quote

from aiohttp import web

from hoard.store.address import Address, check_path, check_revision, check_segment
from hoard.store.errors import (
    AccessDenied,
    EntryNotFound,
    GatedRepo,
    HoardError,
    InvalidAddress,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
    RepoNotFound,
    RevisionNotFound,
    codes_for,
)
from hoard.store.records import Snapshot, TreeEntry

from .catalog import Resolved
from .links import header_text, next_link, public_base
from .origin import Credentials
from .responses import content_type, serve_bytes
from .request import credentials_for, services
from .service import Services
from .sources.huggingface import HuggingFace, hf_error, strip_xet

__all__ = ["add_hf_routes", "hf_error_response", "credentials"]

log = logging.getLogger("hoard.hf")

_KINDS = {"models": "", "datasets": "datasets", "spaces": "spaces"}
_PAGE = 1000
_TRUE = {"1", "true", "yes"}


def hub_adapter(svc: Services) -> HuggingFace | None:
    """The Hub adapter under whatever layers wrap it (a bucket tier), or None when the Hub is
    not this proxy's origin (a parent hoard stands in for it)."""
    src = svc.sources.get("huggingface")
    inner = src.adapter if src is not None else None
    return inner if isinstance(inner, HuggingFace) else None


def credentials(request: web.Request) -> Credentials:
    """A Hub token on this face belongs to the Hub, and to nothing else."""
    return credentials_for(request, "huggingface")


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in _TRUE


# -- errors -----------------------------------------------------------------------------------


def hf_error_response(exc: BaseException, creds: Credentials | None = None) -> web.Response:
    """An error the way the Hub sends it: status, X-Error-Code/-Message, JSON body."""
    anonymous = creds is None or creds.anonymous
    headers: dict[str, str] = {}
    code = None
    status = codes_for(exc).http_status
    message = str(exc) or type(exc).__name__
    if isinstance(exc, RepoNotFound):
        code, status = "RepoNotFound", 401 if anonymous else 404
    elif isinstance(exc, RevisionNotFound):
        code, status = "RevisionNotFound", 404
    elif isinstance(exc, EntryNotFound):
        code, status = "EntryNotFound", 404
        if exc.revision:
            headers["X-Repo-Commit"] = header_text(exc.revision)
    elif isinstance(exc, GatedRepo):
        code, status = "GatedRepo", 401 if anonymous else 403
    elif isinstance(exc, AccessDenied):
        status = 403
    elif isinstance(exc, RangeNotSatisfiable):
        if exc.size is not None:
            headers["Content-Range"] = f"bytes */{exc.size}"
    elif isinstance(exc, OriginUnavailable):
        headers["Retry-After"] = "5"
    elif not isinstance(exc, HoardError):
        log.exception("internal error", exc_info=exc)
        message = "internal error"
    if code:
        headers["X-Error-Code"] = code
    headers["X-Error-Message"] = header_text(message)
    return web.json_response({"error": message}, status=status, headers=headers)


def _hf_errors(handler):  # type: ignore[no-untyped-def]
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (HoardError, OSError) as exc:
            return hf_error_response(exc, credentials(request))

    return wrapped


# -- addresses --------------------------------------------------------------------------------


def _repo_addr(kind: str, ns: str, name: str, revision: str | None = None) -> Address:
    """The repo a route names, every segment checked (each one of a revision too)."""
    rev = None if revision is None else check_revision(revision)
    return Address("huggingface", check_segment(ns, "owner"), check_segment(name, "repo"), rev, kind=kind)


def _split_rev_path(rev: str, path: str) -> tuple[str, str]:
    """Accept unencoded ``refs/pr/N`` and ``refs/convert/X`` revisions leniently."""
    if rev == "refs" and path.count("/") >= 2:
        kind, n, rest = path.split("/", 2)
        if kind in ("pr", "convert"):
            return f"refs/{kind}/{n}", rest
    return rev, path


# -- resolve ----------------------------------------------------------------------------------


def _file_headers(resolved: Resolved, path: str, entry: TreeEntry) -> dict[str, str]:
    headers = {
        "X-Repo-Commit": header_text(resolved.revision),
        "Content-Type": content_type(path),
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
    }
    lfs = entry.meta.get("lfs")
    if lfs:
        etag = header_text(f'"{lfs["oid"]}"')
        headers["ETag"] = etag
        headers["X-Linked-Etag"] = etag
        headers["X-Linked-Size"] = str(entry.size)
    else:
        oid = entry.meta.get("oid") or entry.identity.partition(":")[2]
        headers["ETag"] = header_text(f'"{oid}"')
    return headers


async def _resolve_file(request: web.Request, kind: str) -> web.StreamResponse:
    svc = services(request)
    creds = credentials(request)
    mi = request.match_info
    rev, path = _split_rev_path(mi["rev"], mi["path"])
    addr = _repo_addr(kind, mi["ns"], mi["name"], rev)
    check_path(path)
    resolved = await svc.catalog.resolve(addr, creds)
    rf = svc.catalog.file(resolved, path, creds)
    return await serve_bytes(
        request, store=svc.store, core=svc.core, metrics=svc.metrics, rf=rf,
        headers=_file_headers(resolved, path, resolved.entry(path)),
    )


def _resolve_handler(kind: str):  # type: ignore[no-untyped-def]
    @_hf_errors
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _resolve_file(request, kind)

    return handler


@_hf_errors
async def _legacy_resolve(request: web.Request) -> web.StreamResponse:
    """``/gpt2/resolve/...``: old single-segment ids; redirect to the canonical ``ns/name``."""
    svc = services(request)
    hf = hub_adapter(svc)
    mi = request.match_info
    name = check_segment(mi["name"], "repo")
    rev, path = _split_rev_path(mi["rev"], mi["path"])
    check_revision(rev)
    check_path(path)
    if hf is None:
        raise RepoNotFound(f"{name}: use the full <namespace>/<name> repo id")
    reply = await svc.catalog.origin_call("huggingface", lambda: svc.http.follow(
        "GET", f"{hf.endpoint}/api/models/{quote(name, safe='')}", headers=credentials(request).bearer("huggingface"),
        auth_origin=hf.endpoint,
    ))
    if reply.status != 200:
        raise hf_error(reply, name)
    try:
        canonical = reply.json().get("id", "")
        ns, _, repo = canonical.partition("/")
        _repo_addr("", ns, repo)
    except (ValueError, AttributeError, HoardError):
        raise RepoNotFound(f"{name}: the Hub gave no canonical id") from None
    target = f"/{quote(ns, safe='')}/{quote(repo, safe='')}/resolve/{quote(rev, safe='')}/{quote(path)}"
    return web.Response(status=307, headers={"Location": target})


# -- repo info --------------------------------------------------------------------------------


def _sibling(path: str, entry: TreeEntry, blobs: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"rfilename": path}
    if blobs:
        out["size"] = entry.size
        out["blobId"] = entry.meta.get("oid", "")
        lfs = entry.meta.get("lfs")
        if lfs:
            out["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs.get("pointerSize", 0)}
    return out


def _info_json(resolved: Resolved, blobs: bool) -> dict[str, Any]:
    snap = resolved.snapshot
    info = dict(snap.info.get("repo_info") or {})
    addr = resolved.addr
    info.setdefault("id", addr.repo_id)
    info["sha"] = resolved.revision
    info["siblings"] = [_sibling(p, e, blobs) for p, e in sorted(snap.files.items())]
    return info


async def _passthrough(request: web.Request, svc: Services, url: str) -> web.Response | None:
    """Forward an API GET to the Hub; None if it is unreachable (the caller falls back)."""
    hf = hub_adapter(svc)
    assert hf is not None
    creds = credentials(request)
    try:
        reply = await svc.catalog.origin_call("huggingface", lambda: svc.http.follow(
            "GET", url, headers=creds.bearer("huggingface"), auth_origin=hf.endpoint, params=list(request.query.items())
        ))
    except OriginUnavailable:
        return None
    if reply.status != 200:
        raise hf_error(reply, request.path)
    try:
        doc = strip_xet(reply.json())
    except (ValueError, UnicodeDecodeError):
        raise OriginError(f"{request.path}: the Hub sent no JSON") from None
    headers = {}
    link = next_link(reply.headers.get("Link", ""), reply.url, hf.endpoint, public_base(svc.config, request))
    if link:
        headers["Link"] = link
    return web.json_response(doc, headers=headers)


def _info_handler(with_revision: bool):  # type: ignore[no-untyped-def]
    @_hf_errors
    async def handler(request: web.Request) -> web.StreamResponse:
        svc = services(request)
        mi = request.match_info
        kind = _KINDS[mi["type"]]
        addr = _repo_addr(kind, mi["ns"], mi["name"], mi["rev"] if with_revision else None)
        hf = hub_adapter(svc)
        if "expand" in request.query and hf is not None:
            tail = ("revision", quote(addr.revision, safe="")) if addr.revision else ()
            passed = await _passthrough(request, svc, hf.api_url(addr, *tail))
            if passed is not None:
                return passed
        resolved = await svc.catalog.resolve(addr, credentials(request), access="metadata")
        return web.json_response(_info_json(resolved, _flag(request, "blobs")))

    return handler


# -- tree and paths-info ----------------------------------------------------------------------


def _tree_entry(path: str, entry: TreeEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "file", "oid": entry.meta.get("oid", ""), "size": entry.size, "path": path}
    lfs = entry.meta.get("lfs")
    if lfs:
        out["lfs"] = {"oid": lfs["oid"], "size": lfs["size"], "pointerSize": lfs.get("pointerSize", 0)}
    return out


def _dir_entry(path: str, oid: str) -> dict[str, Any]:
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def _dirs(snap: Snapshot) -> dict[str, str]:
    dirs: dict[str, str] = dict(snap.info.get("dirs") or {})
    for path in snap.files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]), "")
    return dirs


def tree_listing(snap: Snapshot, path: str, recursive: bool) -> list[dict[str, Any]]:
    """Entries under ``path`` ("" for the root), as the Hub's tree endpoint lists them."""
    prefix = f"{path}/" if path else ""
    dirs = _dirs(snap)
    if path and path not in dirs:
        raise EntryNotFound(f"no folder {path!r}")
    out: list[dict[str, Any]] = []
    for d, oid in sorted(dirs.items()):
        if d.startswith(prefix) and (recursive or "/" not in d[len(prefix) :]):
            out.append(_dir_entry(d, oid))
    for p, e in sorted(snap.files.items()):
        if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :]):
            out.append(_tree_entry(p, e))
    return out


def _tree_handler():  # type: ignore[no-untyped-def]
    @_hf_errors
    async def handler(request: web.Request) -> web.StreamResponse:
        svc = services(request)
        mi = request.match_info
        kind = _KINDS[mi["type"]]
        rev, path = _split_rev_path(mi["rev"], mi.get("path", ""))
        addr = _repo_addr(kind, mi["ns"], mi["name"], rev)
        if path:
            check_path(path)
        hf = hub_adapter(svc)
        if _flag(request, "expand") and hf is not None:
            url = hf.api_url(addr, "tree", quote(rev, safe="")) + (f"/{quote(path, safe='')}" if path else "")
            passed = await _passthrough(request, svc, url)
            if passed is not None:
                return passed
        resolved = await svc.catalog.resolve(addr, credentials(request), access="metadata")
        try:
            entries = tree_listing(resolved.snapshot, path, _flag(request, "recursive"))
        except EntryNotFound as exc:
            raise EntryNotFound(f"{addr.repo_key}@{resolved.revision}: {exc}", resolved.revision) from None
        offset = _cursor(request.query.get("cursor"))
        try:
            limit = max(1, min(int(request.query.get("limit", _PAGE) or _PAGE), _PAGE))
        except ValueError:
            raise InvalidAddress("limit must be a number") from None
        page = entries[offset : offset + limit]
        headers = {}
        if offset + limit < len(entries):
            nxt = request.rel_url.update_query(cursor=_make_cursor(offset + limit))
            headers["Link"] = header_text(f'<{public_base(svc.config, request)}{nxt.raw_path_qs}>; rel="next"', 8192)
        return web.json_response(page, headers=headers)

    return handler


def _cursor(value: str | None) -> int:
    if not value:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(value.encode() + b"==").decode()))
    except ValueError:
        raise InvalidAddress("bad cursor") from None


def _make_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


@_hf_errors
async def _paths_info(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    mi = request.match_info
    addr = _repo_addr(_KINDS[mi["type"]], mi["ns"], mi["name"], mi["rev"])
    body = await request.read()
    try:
        if request.content_type == "application/json":
            doc = json.loads(body or b"{}")
            raw = doc.get("paths", []) if isinstance(doc, dict) else None
            paths = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else None
        else:
            paths = parse_qs(body.decode()).get("paths", [])
    except (ValueError, UnicodeDecodeError):
        paths = None
    if paths is None or not all(isinstance(p, str) for p in paths):
        raise InvalidAddress("paths-info wants paths=... form fields or {\"paths\": [...]}")
    resolved = await svc.catalog.resolve(addr, credentials(request), access="metadata")
    snap = resolved.snapshot
    dirs = _dirs(snap)
    out = []
    for p in paths:
        p = p.strip("/")
        if p in snap.files:
            out.append(_tree_entry(p, snap.files[p]))
        elif p in dirs:
            out.append(_dir_entry(p, dirs[p]))
    return web.json_response(out)


def _passthrough_handler(*tail: str):  # type: ignore[no-untyped-def]
    @_hf_errors
    async def handler(request: web.Request) -> web.StreamResponse:
        svc = services(request)
        mi = request.match_info
        addr = _repo_addr(_KINDS[mi["type"]], mi["ns"], mi["name"], mi.get("rev"))
        hf = hub_adapter(svc)
        if hf is not None:
            extra = [quote(mi[t], safe="") if t in mi else t for t in tail]
            passed = await _passthrough(request, svc, hf.api_url(addr, *extra))
            if passed is not None:
                return passed
        if tail and tail[0] == "refs":
            refs = svc.store.refs(addr.repo_key)
            if refs:
                branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": r.revision} for n, r in refs.items() if not n.startswith("refs/")]
                return web.json_response({"branches": branches, "tags": [], "converts": [], "pullRequests": []})
        raise OriginUnavailable("the Hub is unreachable and this answer is not cached")

    return handler


@_hf_errors
async def _whoami(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    hf = hub_adapter(svc)
    if hf is None:
        raise OriginUnavailable("no Hub configured")
    reply = await svc.catalog.origin_call(
        "huggingface",
        lambda: svc.http.request("GET", f"{hf.endpoint}/api/whoami-v2", headers=credentials(request).bearer("huggingface")),
    )
    if reply.status != 200:
        raise hf_error(reply, "whoami")
    try:
        return web.json_response(reply.json())
    except (ValueError, UnicodeDecodeError):
        raise OriginError("whoami: the Hub sent no JSON") from None


async def _not_found(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {"error": "Not Found"}, status=404, headers={"X-Error-Message": "Not Found"}
    )


def add_hf_routes(app: web.Application) -> None:
    r = app.router
    for prefix, kind in (("/datasets", "datasets"), ("/spaces", "spaces"), ("", "")):
        r.add_get(prefix + "/{ns}/{name}/resolve/{rev}/{path:.+}", _resolve_handler(kind))
    r.add_get("/{name}/resolve/{rev}/{path:.+}", _legacy_resolve)
    api = "/api/{type:models|datasets|spaces}/{ns}/{name}"
    r.add_get(api, _info_handler(False))
    r.add_get(api + "/revision/{rev:.+}", _info_handler(True))
    r.add_get(api + "/tree/{rev}", _tree_handler())
    r.add_get(api + "/tree/{rev}/{path:.+}", _tree_handler())
    r.add_post(api + "/paths-info/{rev:.+}", _paths_info)
    r.add_get(api + "/refs", _passthrough_handler("refs"))
    r.add_get(api + "/commits/{rev:.+}", _passthrough_handler("commits", "rev"))
    r.add_get("/api/whoami-v2", _whoami)
    r.add_route("*", "/api/{tail:.*}", _not_found)

