"""A parent hoard as the origin of every source (the cluster tier, DESIGN.md §6).

A node's mount (or a site's ``hoard serve``) started with ``--upstream http://parent:8090``
resolves names with the parent's ``/v1/trees/<address>`` and reads bytes from the parent:
``/v1/blobs/<b3>`` when the parent already holds the complete blob (an immutable URL that
nginx, Squid or a CDN in between may cache), else ``/v1/files/<address>@<revision>/<path>``,
which the parent fills from the real origin while it streams. Identities and expected hashes
travel in the tree, so the node verifies every byte itself before publishing.

The client's token goes to the parent, which forwards it to the origin; the parent enforces
access to private and gated content.

A parent's tree is untrusted like a client's names: paths that break the client-path rules are
dropped with a warning, a ``blake3`` hint that is not 64 hex is ignored, and a tree holding an
identity this node cannot verify (``sha256:``/``gitsha1:``/``b3:`` with the right hex) is
refused whole (:class:`OriginError`), since the node never publishes unverified bytes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
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

__all__ = ["ParentHoard"]

log = logging.getLogger("hoard.sources")
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


def _usable_dirs(what: str, info: dict[str, Any]) -> dict[str, Any]:
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


class ParentHoard:
    """One parent; :meth:`for_source` gives the adapter that stands in for each source."""

    def __init__(self, http: Any, reader: RangeReader, base_url: str) -> None:
        self.http = http
        self.reader = reader
        self.base = base_url.rstrip("/")

    def for_source(self, name: str) -> _ParentSource:
        if source_info(name) is None:
            raise LookupError(f"source {name!r} is not registered")
        return _ParentSource(self, name)


class _ParentSource(Source):
    """A source whose names and bytes come from the parent; its address facts (default ref,
    immutable revision ids) are the real source's."""

    def __init__(self, parent: ParentHoard, name: str) -> None:
        self.parent = parent
        self.http = parent.http
        self.name = name

    def _url(self, kind: str, addr: Address, revision: str, path: str = "") -> str:
        prefix = addr.repo_key + "@" + quote(revision, safe="")
        return f"{self.parent.base}/v1/{kind}/{quote(prefix, safe='/@%')}" + (f"/{quote(path)}" if path else "")

    async def _tree(self, addr: Address, revision: str, creds: Credentials) -> dict[str, Any]:
        reply = await self.http.request("GET", self._url("trees", addr, revision), headers=creds.bearer(self.name))
        if reply.status != 200:
            raise parent_error(reply, f"{addr.repo_key}@{revision}")
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
        files = {}
        for f in doc["files"]:
            parsed = _parent_entry(what, f)
            if parsed is not None:
                files[parsed[0]] = parsed[1]
        info = dict(doc.get("info") or {}) if isinstance(doc.get("info"), dict) else {}
        info = _usable_dirs(what, info)
        # the parent decides who may read restricted content; this node trusts its own user
        restricted = bool(info.pop("private", False) or info.pop("gated", False))
        info["parent_restricted"] = restricted
        if restricted:
            for entry in files.values():
                entry.meta["restricted"] = True
        created = doc.get("created")
        return Snapshot(files, created if isinstance(created, int) and not isinstance(created, bool) else 0, info)

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        path = addr.path or next(iter(sorted(snap.files)), "")
        reply = await self.http.request(
            "HEAD", self._url("files", addr, addr.revision or "", path), headers=creds.bearer(self.name)
        )
        if reply.status not in (200, 206):
            raise parent_error(reply, str(addr))

    def restricted(self, snap: Snapshot, files: bool = True) -> bool:
        return bool(snap.info.get("parent_restricted"))

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        addr = rf.address
        by_address = self._url("files", addr, addr.revision or "", addr.path)
        b3 = rf.meta.get("parent_blake3")
        if is_hex(b3, 64) and not self.restricted_meta(rf):  # (an older node may have stored any hint)
            # immutable, so any HTTP cache between here and the parent may answer it
            try:
                async for block in self._read(f"{self.parent.base}/v1/blobs/{b3}", rf, start, end):
                    yield block
                    start += len(block)
                return
            except NotFound:
                pass  # the parent no longer holds that blob: ask by address
        async for block in self._read(by_address, rf, start, end):
            yield block

    def _read(self, url: str, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        return self.parent.reader.read(
            url, start, end, translate=parent_error, what=str(rf.address),
            auth=rf.creds.bearer(self.name), auth_origin=self.parent.base,
        )

    @staticmethod
    def restricted_meta(rf: RemoteFile) -> bool:
        """Blobs of restricted repos are fetched by address, so the parent checks access."""
        return bool(rf.meta.get("restricted"))
