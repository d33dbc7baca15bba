"""A parent hoard as the origin of every source (the cluster tier, DESIGN.md §6).

A node's mount (or a site's ``hoard serve``) started with ``--upstream http://parent:8090``
resolves names with the parent's ``/v1/trees/<address>`` and reads bytes from the parent:
``/v1/blobs/<b3>`` when the parent already holds the complete blob (an immutable URL that
nginx, Squid or a CDN in between may cache), else ``/v1/files/<address>@<revision>/<path>``,
which the parent fills from the real origin while it streams. Identities and expected hashes
travel in the tree, so the node verifies every byte itself before publishing.

The client's token goes to the parent, which forwards it to the origin; the parent enforces
access to private and gated content.

Several parents (``--upstream http://a:8090,http://b:8090``) fail over: every request goes
to the first parent that is not known down (:class:`ParentHealth`); a parent that cannot be
reached, or that drops a body mid-file, is marked down and the request (or the read, from
the byte it had reached) goes on at the next one at once. A parent marked down is tried
first again after ``retry_after`` seconds (doubling while it keeps failing, up to ten
times that), so a node returns to its preferred parent once it is back.

A parent's tree is untrusted like a client's names: paths that break the client-path rules are
dropped with a warning, a ``blake3`` hint that is not 64 hex is ignored, and a tree holding an
identity this node cannot verify (``sha256:``/``gitsha1:``/``b3:`` with the right hex) is
refused whole (:class:`OriginError`), since the node never publishes unverified bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from hoard.store.address import Address, check_path
from hoard.store.errors import (
    AccessDenied,
    EntryNotFound,
    GatedRepo,
    HoardError,
    InvalidAddress,
    NotFound,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
    RepoNotFound,
    RevisionNotFound,
)
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry
from hoard.store.sources import source_info
from hoard.store.untrusted import IDENTITY_HEX, check_entry, check_revision_id, hashed_entry, is_hex

from ..httpbase import TRANSIENT_STATUSES, Reply
from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from ..reader import RangeReader

__all__ = ["ParentHoard", "ParentHealth", "parent_error", "tree_files", "usable_dirs"]

log = logging.getLogger("hoard.sources")
T = TypeVar("T")
_KINDS: dict[str, type[HoardError]] = {
    "repo_not_found": RepoNotFound,
    "revision_not_found": RevisionNotFound,
    "entry_not_found": EntryNotFound,
    "not_found": NotFound,
    "gated_repo": GatedRepo,
    "access_denied": AccessDenied,
    "invalid_address": InvalidAddress,
    "integrity": OriginError,  # the parent's own integrity failure is an origin fault for us
    "range_not_satisfiable": RangeNotSatisfiable,
}


def parent_error(reply: Reply, what: str) -> HoardError:
    """Rebuild the parent's error (its JSON names the kind) in our error tree."""
    try:
        doc = reply.json()
        kind, message = doc.get("kind", ""), doc.get("error", "")
    except (ValueError, AttributeError):
        kind, message = "", ""
    message = f"{what}: {message or f'parent answered {reply.status}'}"
    if reply.status in TRANSIENT_STATUSES or kind in ("origin_unavailable", "busy"):
        return OriginUnavailable(message)
    cls = _KINDS.get(kind)
    if cls is not None:
        return cls(message)
    if reply.status == 404:
        return NotFound(message)
    if reply.status in (401, 403):
        return AccessDenied(message, reply.status)
    return OriginError(message, reply.status)


def _parent_entry(what: str, f: Any) -> tuple[str, TreeEntry] | None:
    """One file of a parent's tree, checked like client input.

    A path that breaks the client-path rules is dropped with a warning (it would become a URL
    at the parent and a file path in exports). An identity this node cannot verify fails the
    whole tree with :class:`OriginError`: another hoard only ever sends verifiable ones, the
    node publishes no byte it has not verified, and a tree with a file silently missing would
    be stored for good under an immutable revision. A ``blake3`` hint that is not 64 hex is
    ignored (it would become a URL at the parent); the bytes are then asked for by address.
    """
    if not isinstance(f, dict):
        raise OriginError(f"{what}: the parent sent a malformed tree entry")
    path = f.get("path")
    try:
        check_path(path)  # type: ignore[arg-type]
    except (InvalidAddress, TypeError, AttributeError) as exc:
        log.warning("%s: dropped %r from the parent's tree: %s", what, path, exc)
        return None
    meta = dict(f.get("meta") or {}) if isinstance(f.get("meta"), dict) else {}
    meta.pop("parent_blake3", None)
    hint = f.get("blake3")
    if is_hex(hint, 64):
        meta["parent_blake3"] = hint  # a hint: the parent held the whole blob
    elif hint:
        log.warning("%s: ignored the parent's blake3 %r for %s: not 64 hex", what, hint, path)
    size = f.get("size")
    try:
        entry = _verifiable_entry(size if isinstance(size, int) and not isinstance(size, bool) else -1, f, meta)
        check_entry(path, entry, verifiable=entry.expected is not None and entry.identity.split(":")[0] in IDENTITY_HEX)
    except (InvalidAddress, ValueError) as exc:
        raise OriginError(f"{what}: the parent's tree is refused: {exc}") from None
    return str(path), entry


def tree_files(what: str, files: list[Any]) -> dict[str, TreeEntry]:
    """The files of a tree another hoard (a parent, the fleet's bucket) sent, checked like
    client input (:func:`_parent_entry`)."""
    out = {}
    for f in files:
        parsed = _parent_entry(what, f)
        if parsed is not None:
            out[parsed[0]] = parsed[1]
    return out


def _verifiable_entry(size: int, f: dict[str, Any], meta: dict[str, Any]) -> TreeEntry:
    """The entry a parent describes, with the hash that verifies it: the ``expected`` it
    states (which must agree with a hash identity), or the hash identity itself. An entry with
    neither is accepted only when its own source says its files carry no hash (``unverified``
    in its metadata: an Arweave file without a ``File-SHA256`` tag) — verified by length only,
    here as at the parent."""
    identity = f.get("identity")
    if not isinstance(identity, str):
        raise InvalidAddress(f"identity {identity!r} is not a name")
    stated = f.get("expected")
    if stated is not None:
        return TreeEntry(size, identity, meta, ExpectedHash.parse(stated))
    if identity.split(":")[0] in IDENTITY_HEX:
        return hashed_entry(size, identity, meta)
    if not meta.get("unverified"):
        raise InvalidAddress(f"identity {identity[:80]!r} is not one hoard can verify (no hash comes with it)")
    return TreeEntry(size, identity, meta, None)


def usable_dirs(what: str, info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with only the listed folders (``dirs``) that pass the client-path rules."""
    dirs = info.get("dirs")
    if dirs is None:
        return info
    kept = {}
    for folder, oid in (dirs.items() if isinstance(dirs, dict) else ()):
        try:
            kept[check_path(folder)] = oid
        except (InvalidAddress, TypeError, AttributeError) as exc:
            log.warning("%s: dropped folder %r from the parent's tree: %s", what, folder, exc)
    return info | {"dirs": kept}



class ParentHealth:
    """Which parents answered lately. A parent that failed is skipped until its retry time;
    after that it is first again in line (the configured order is the preference)."""

    def __init__(self, bases: Sequence[str], *, retry_after: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bases = tuple(bases)
        self.retry_after = retry_after
        self.clock = clock
        self._down: dict[str, tuple[float, float]] = {}  # base -> (retry at, current backoff)

    def is_down(self, base: str) -> bool:
        hit = self._down.get(base)
        return hit is not None and hit[0] > self.clock()

    def order(self) -> list[str]:
        """The parents to try, best first: those not known down in configured order, then
        the down ones, soonest retry first (when all are down, still ask one)."""
        up = [b for b in self.bases if not self.is_down(b)]
        down = sorted((b for b in self.bases if self.is_down(b)), key=lambda b: self._down[b][0])
        return up + down

    def failed(self, base: str, exc: BaseException) -> None:
        _, backoff = self._down.get(base, (0.0, self.retry_after / 2))
        backoff = min(backoff * 2, self.retry_after * 10)
        if not self.is_down(base):
            log.warning("parent %s unreachable (%s); failing over for %.0fs", base, exc, backoff)
        self._down[base] = (self.clock() + backoff, backoff)

    def answered(self, base: str) -> None:
        if self._down.pop(base, None) is not None:
            log.warning("parent %s answers again", base)


class ParentHoard:
    """The parents, in order of preference; :meth:`for_source` gives the adapter that stands in
    for each source."""

    def __init__(self, http: Any, reader: RangeReader, base_urls: str | Sequence[str], *,
                 retry_after: float = 30.0) -> None:
        self.http = http
        self.reader = reader
        bases = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        self.bases = tuple(dict.fromkeys(b.rstrip("/") for b in bases if b.strip()))
        if not self.bases:
            raise ValueError("no parent URL")
        self.health = ParentHealth(self.bases, retry_after=retry_after)

    @property
    def base(self) -> str:
        """The parent requests go to now."""
        return self.health.order()[0]

    def for_source(self, name: str) -> _ParentSource:
        if source_info(name) is None:
            raise LookupError(f"source {name!r} is not registered")
        return _ParentSource(self, name)

    async def call(self, make: Callable[[str], Awaitable[T]]) -> T:
        """``make(base)`` at the first parent that answers; OriginUnavailable when none does.
        With more parents to try, each is given one retry only, so failing over takes
        seconds, not a whole retry budget."""
        order = self.health.order()
        last: OriginUnavailable | None = None
        for base in order:
            try:
                result = await make(base)
            except OriginUnavailable as exc:
                self.health.failed(base, exc)
                last = exc
                continue
            self.health.answered(base)
            return result
        assert last is not None
        raise last

    async def request(self, method: str, path: str, headers: dict[str, str], what: str) -> Reply:
        """A metadata request to the first parent that answers; a transient status counts as
        not answering."""
        async def one(base: str) -> Reply:
            retries = 1 if len(self.bases) > 1 else None
            reply: Reply = await self.http.request(method, base + path, headers=headers, retries=retries)
            if reply.status in TRANSIENT_STATUSES:
                raise parent_error(reply, what)
            return reply

        return await self.call(one)

    async def read(self, paths: Callable[[str], list[str]], start: int, end: int, *, what: str,
                   auth: dict[str, str]) -> AsyncIterator[bytes]:
        """Bytes [start, end) from the first parent that gives them: ``paths(base)`` are the
        URLs to try at a parent, in order (a NotFound moves to the next URL). A parent that
        fails mid-body is marked down and the read goes on at the next parent from the byte
        it had reached."""
        last: HoardError | None = None
        for base in self.health.order():
            try:
                async for block in self._read_at(base, paths(base), start, end, what, auth):
                    start += len(block)
                    yield block
                self.health.answered(base)
                return
            except OriginUnavailable as exc:
                self.health.failed(base, exc)
                last = exc
        raise last or OriginUnavailable(f"{what}: no parent answered")

    async def _read_at(self, base: str, urls: list[str], start: int, end: int, what: str,
                       auth: dict[str, str]) -> AsyncIterator[bytes]:
        for i, url in enumerate(urls):
            try:
                async for block in self.reader.read(url, start, end, translate=parent_error, what=what,
                                                    auth=auth, auth_origin=base):
                    start += len(block)
                    yield block
                return
            except NotFound:
                if i == len(urls) - 1:
                    raise


class _ParentSource(Source):
    """A source whose names and bytes come from the parents; its address facts (default ref,
    immutable revision ids) are the real source's."""

    def __init__(self, parent: ParentHoard, name: str) -> None:
        self.parent = parent
        self.http = parent.http
        self.name = name

    @staticmethod
    def _path(kind: str, addr: Address, revision: str, path: str = "") -> str:
        prefix = addr.repo_key + "@" + quote(revision, safe="")
        return f"/v1/{kind}/{quote(prefix, safe='/@%')}" + (f"/{quote(path)}" if path else "")

    async def _tree(self, addr: Address, revision: str, creds: Credentials) -> dict[str, Any]:
        what = f"{addr.repo_key}@{revision}"
        reply = await self.parent.request("GET", self._path("trees", addr, revision), creds.bearer(self.name), what)
        if reply.status != 200:
            raise parent_error(reply, what)
        doc: dict[str, Any] = reply.json()
        return doc

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        doc = await self._tree(addr, ref, creds)
        revision = doc.get("revision") if isinstance(doc, dict) else None
        try:
            check_revision_id(addr.source, revision)
        except InvalidAddress as exc:
            raise OriginError(f"{addr.repo_key}@{ref}: the parent sent a bad revision: {exc}") from None
        return ResolvedRef(str(revision), {"tree": doc})

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        doc = resolved.info.get("tree") or await self._tree(addr, resolved.revision, creds)
        what = f"{addr.repo_key}@{resolved.revision}"
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
            raise OriginError(f"{what}: the parent sent no tree")
        files = tree_files(what, doc["files"])
        info = dict(doc.get("info") or {}) if isinstance(doc.get("info"), dict) else {}
        info = usable_dirs(what, info)
        # the parent decides who may read restricted content; this node trusts its own user
        restricted = bool(info.pop("private", False) or info.pop("gated", False))
        info["parent_restricted"] = restricted
        if restricted:
            for entry in files.values():
                entry.meta["restricted"] = True
        created = doc.get("created")
        return Snapshot(files, created if isinstance(created, int) and not isinstance(created, bool) else 0, info)

    async def stat(
        self, addr: Address, resolved: ResolvedRef, creds: Credentials, previous: TreeEntry | None = None
    ) -> TreeEntry:
        """A file of a source that cannot list its repos, looked up by the parent: a ``HEAD``
        of it makes the parent look it up at the origin (or revalidate it, under the parent's
        refs TTL), then the parent's tree of that one path gives the entry, checked like any
        tree a parent sends."""
        what = str(addr)
        auth = creds.bearer(self.name)
        head = await self.parent.request("HEAD", self._path("files", addr, resolved.revision, addr.path), auth, what)
        if head.status not in (200, 206):
            raise parent_error(head, what)
        reply = await self.parent.request("GET", self._path("trees", addr, resolved.revision, addr.path), auth, what)
        if reply.status != 200:
            raise parent_error(reply, what)
        try:
            doc = reply.json()
        except ValueError:
            raise OriginError(f"{what}: the parent sent no JSON tree") from None
        files = doc.get("files") if isinstance(doc, dict) else None
        found = tree_files(what, files if isinstance(files, list) else []).get(addr.path)
        if found is None:
            raise EntryNotFound(f"{what}: the parent has no such file", resolved.revision)
        return found

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        path = addr.path or next(iter(sorted(snap.files)), "")
        target = self._path("files", addr, addr.revision or "", path)
        reply = await self.parent.request("HEAD", target, creds.bearer(self.name), str(addr))
        if reply.status not in (200, 206):
            raise parent_error(reply, str(addr))

    def restricted(self, snap: Snapshot, files: bool = True) -> bool:
        return bool(snap.info.get("parent_restricted"))

    def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        addr = rf.address
        by_address = self._path("files", addr, addr.revision or "", addr.path)
        b3 = rf.meta.get("parent_blake3")
        # a blob by BLAKE3 first: immutable, so any HTTP cache between here and the parent may
        # answer it; by address if the parent no longer holds it. Blobs of restricted repos
        # only by address, so the parent checks access (an older node may have stored any hint).
        by_blob = f"/v1/blobs/{b3}" if is_hex(b3, 64) and not self.restricted_meta(rf) else None

        def paths(base: str) -> list[str]:
            return [base + p for p in (by_blob, by_address) if p]

        return self.parent.read(paths, start, end, what=str(addr), auth=rf.creds.bearer(self.name))

    @staticmethod
    def restricted_meta(rf: RemoteFile) -> bool:
        """Blobs of restricted repos are fetched by address, so the parent checks access."""
        return bool(rf.meta.get("restricted"))
