"""A parent hoard as the origin of every source (the cluster tier, DESIGN.md §6).

A node's mount (or a site's ``hoard serve``) started with ``--upstream http://parent:8090``
resolves names with the parent's ``/v1/trees/<address>`` and reads bytes from the parent:
``/v1/blobs/<b3>`` when the parent already holds the complete blob (an immutable URL that
nginx, Squid or a CDN in between may cache), else ``/v1/files/<address>@<revision>/<path>``,
which the parent fills from the real origin while it streams. Identities and expected hashes
travel in the tree, so the node verifies every byte itself before publishing.

The client's token goes to the parent, which forwards it to the origin; the parent enforces
access to private and gated content.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from hoard.store.address import Address
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
from hoard.store.records import Snapshot, TreeEntry

from ..http import TRANSIENT_STATUSES, HttpClient, Reply
from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from .common import body_range

__all__ = ["ParentHoard"]

_ID = re.compile(r"[0-9a-f]{40}")  # commits; a name like a 43-char branch is not immutable
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


class ParentHoard:
    """One parent; :meth:`for_source` gives the adapter that stands in for each source."""

    SOURCES = ("huggingface", "arweave", "onnx", "torch", "url")

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/")

    def for_source(self, name: str) -> _ParentSource:
        return _ParentSource(self, name)


class _ParentSource(Source):
    def __init__(self, parent: ParentHoard, name: str) -> None:
        self.parent = parent
        self.http = parent.http
        self.name = name

    def is_revision_id(self, revision: str) -> bool:
        return bool(_ID.fullmatch(revision))

    def _url(self, kind: str, addr: Address, revision: str, path: str = "") -> str:
        prefix = addr.repo_key + "@" + quote(revision, safe="")
        return f"{self.parent.base}/v1/{kind}/{quote(prefix, safe='/@%')}" + (f"/{quote(path)}" if path else "")

    async def _tree(self, addr: Address, revision: str, creds: Credentials) -> dict[str, Any]:
        reply = await self.http.request("GET", self._url("trees", addr, revision), headers=creds.bearer())
        if reply.status != 200:
            raise parent_error(reply, f"{addr.repo_key}@{revision}")
        doc: dict[str, Any] = reply.json()
        return doc

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        doc = await self._tree(addr, ref, creds)
        return ResolvedRef(doc["revision"], {"tree": doc})

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        doc = resolved.info.get("tree") or await self._tree(addr, resolved.revision, creds)
        files = {}
        for f in doc["files"]:
            meta = dict(f.get("meta") or {})
            if f.get("blake3"):
                meta["parent_blake3"] = f["blake3"]  # a hint: the parent held the whole blob
            files[f["path"]] = TreeEntry(int(f["size"]), f["identity"], meta)
        info = dict(doc.get("info") or {})
        # the parent decides who may read restricted content; this node trusts its own user
        restricted = bool(info.pop("private", False) or info.pop("gated", False))
        info["parent_restricted"] = restricted
        if restricted:
            for entry in files.values():
                entry.meta["restricted"] = True
        return Snapshot(files, int(doc.get("created", 0) or 0), info)

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        path = addr.path or next(iter(sorted(snap.files)), "")
        reply = await self.http.request(
            "HEAD", self._url("files", addr, addr.revision or "", path), headers=creds.bearer()
        )
        if reply.status not in (200, 206):
            raise parent_error(reply, str(addr))

    def restricted(self, snap: Snapshot, files: bool = True) -> bool:
        return bool(snap.info.get("parent_restricted"))

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        addr = rf.address
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity", **rf.creds.bearer()}
        urls = [self._url("files", addr, addr.revision or "", addr.path)]
        b3 = rf.meta.get("parent_blake3")
        if b3 and not self.restricted_meta(rf):
            # immutable, so any HTTP cache between here and the parent may answer it
            urls.insert(0, f"{self.parent.base}/v1/blobs/{b3}")
        for url in urls:
            async with self.http.stream(url, headers=headers) as resp:
                if resp.status == 404 and url != urls[-1]:
                    continue  # the parent no longer holds that blob: ask by address
                if resp.status not in (200, 206):
                    body = await resp.read()
                    raise parent_error(Reply(resp.status, resp.headers, body, url), str(addr))
                async for block in body_range(resp, start, end, str(addr)):
                    yield block
                return

    @staticmethod
    def restricted_meta(rf: RemoteFile) -> bool:
        """Blobs of restricted repos are fetched by address, so the parent checks access."""
        return bool(rf.meta.get("restricted"))
