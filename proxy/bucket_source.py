"""The bucket as a layer in front of every origin: :class:`BucketSource` wraps a source's
adapter, and :func:`with_bucket` stacks it on each one (``--blob-store``).

* ``snapshot`` of an immutable revision (a commit, a manifest tx) first looks for the
  revision's tree in the bucket, so a node resolves a commit-pinned name without asking the
  origin for it; a tree the origin gives is stored there for the others. Refs are never
  shared: they stay per node (refs TTL) or come from a parent.
* ``read`` of a file whose content has a hash (sha256, git sha1, BLAKE3) follows a *plan*,
  made once per file and shared by its chunk fetches:

  ``blob``    the bucket holds the blob: verified ranged GETs (:meth:`BucketTier.read`);
  ``follow``  another node is filling it: read its pieces (:mod:`.bucket_fill`);
  ``lead``    this node fills it from the origin and shares the pieces;
  ``origin``  the bucket cannot help (no hash, restricted content, the store failing).

  Whatever the bucket does wrong — a corrupt or truncated blob, a store that stops mid-read,
  a leader that dies — the read goes on from the origin at the byte it had reached; no
  bucket error ever reaches a client. The fetch core verifies every file against its
  upstream hash before publishing it, whichever way its bytes came.
* After this node publishes a blob it led or fetched itself, the fetch core's
  ``on_published`` hook uploads it (:meth:`BucketSource.published`).

Everything else (resolve, stat, access checks, visibility) is the wrapped adapter's; so are
its other attributes (``inner``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hoard.store.address import Address
from hoard.store.errors import HoardError, OriginError
from hoard.store.records import Snapshot, TreeEntry

from .bucket_fill import FillBoard, Following, Lease
from .bucket_tier import BadCopy, BucketBlob, BucketTier, bucket_alias
from .origin import Credentials, RemoteFile, ResolvedRef, Source
from .sources.upstream import tree_files, usable_dirs

__all__ = ["BucketSource", "with_bucket", "published_hook", "tree_doc", "tree_snapshot"]

log = logging.getLogger("hoard.bucket")

_REPLANS = 3  # plans tried for one read before the origin alone is asked
_MISS_TTL = 30.0  # seconds an "origin" plan stands before the bucket is asked again
_BAD_TTL = 600.0  # ... and after a file made from the bucket failed verification
_MAX_PLANS = 4096


@dataclass
class _Plan:
    kind: str  # "blob" | "follow" | "lead" | "origin"
    blob: BucketBlob | None = None
    fill: Following | None = None
    lease: Lease | None = None
    until: float = float("inf")


class _BucketFailed(HoardError):
    """The bucket side of a read failed; the caller plans again (the origin, usually)."""


def tree_doc(repo_key: str, revision: str, snap: Snapshot) -> dict[str, Any]:
    """A snapshot in the ``/v1/trees`` shape (with ``expected``), as the bucket keeps it."""
    files = [
        {"path": p, "size": e.size, "identity": e.identity, "expected": e.expected.text if e.expected else None,
         "meta": {k: v for k, v in e.meta.items() if k not in ("parent_blake3", "restricted")}}
        for p, e in sorted(snap.files.items())
    ]
    return {"repo": repo_key, "revision": revision, "created": snap.created, "info": snap.info, "files": files}


def tree_snapshot(what: str, doc: dict[str, Any]) -> Snapshot:
    """A tree document from the bucket, checked like a parent's (OriginError if refused)."""
    if not isinstance(doc.get("files"), list):
        raise OriginError(f"{what}: the bucket's tree has no files")
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    created = doc.get("created")
    return Snapshot(tree_files(what, doc["files"]), created if isinstance(created, int) else 0, usable_dirs(what, info))


class BucketSource(Source):
    """A source's adapter with the fleet's bucket in front of it."""

    def __init__(self, inner: Source, tier: BucketTier, board: FillBoard) -> None:
        self.inner = inner
        self.name = inner.name
        self.tier = tier
        self.board = board
        self._plans: dict[str, _Plan] = {}
        self._planning: dict[str, asyncio.Task[_Plan]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the adapter's own API (endpoint, ...)

    @property
    def adapter(self) -> Source:
        """The origin's own adapter under this layer (for faces that use its API)."""
        return getattr(self.inner, "adapter", self.inner)

    # -- the wrapped adapter's answers ------------------------------------------------------

    @property
    def refs_expire(self) -> bool:
        return self.inner.refs_expire

    @property
    def listable(self) -> bool:
        return self.inner.listable

    def is_revision_id(self, revision: str) -> bool:
        return self.inner.is_revision_id(revision)

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        return await self.inner.resolve(addr, ref, creds)

    async def stat(self, addr: Address, resolved: ResolvedRef, creds: Credentials,
                   previous: TreeEntry | None = None) -> TreeEntry:
        return await self.inner.stat(addr, resolved, creds, previous)

    def remote_file(self, addr: Address, entry: TreeEntry, creds: Credentials) -> RemoteFile:
        return self.inner.remote_file(addr, entry, creds)

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        await self.inner.check_access(addr, snap, creds)

    def restricted(self, snap: Snapshot, files: bool = True) -> bool:
        return self.inner.restricted(snap, files)

    def with_visibility(self, snap: Snapshot, info: dict[str, Any]) -> Snapshot | None:
        return self.inner.with_visibility(snap, info)

    async def close(self) -> None:
        self.tier.stop_retrying()
        tasks = list(self._tasks)
        if tasks:  # an upload (and the clean-up after it) under way may finish
            await asyncio.wait(tasks, timeout=30)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.board.close()
        await self.tier.close()  # shared by every wrapper; closing twice is harmless
        await self.inner.close()

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- trees ------------------------------------------------------------------------------

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        revision = resolved.revision
        shared = self.inner.listable and self.inner.is_revision_id(revision)
        if shared:
            snap = await self._bucket_tree(addr.repo_key, revision)
            if snap is not None:
                return self.inner.with_visibility(snap, resolved.info) or snap
        snap = await self.inner.snapshot(addr, resolved, creds)
        if shared and (self.tier.private or not snap.restricted):
            self._background(self._put_tree(addr.repo_key, revision, snap))
        return snap

    async def _bucket_tree(self, repo_key: str, revision: str) -> Snapshot | None:
        what = f"{self.tier.config.url}/{BucketTier.tree_key(repo_key, revision)}"
        try:
            doc = await self.tier.get_tree(repo_key, revision)
            if doc is None:
                return None
            if doc.get("repo") != repo_key or doc.get("revision") != revision:
                raise OriginError(f"{what}: names {doc.get('repo')}@{doc.get('revision')}")
            snap = tree_snapshot(what, doc)
        except HoardError as exc:
            log.warning("blob store: tree ignored: %s", exc)
            return None
        if snap.restricted and not self.tier.private:
            return None
        log.info("blob store: %s@%s resolved from the bucket", repo_key, revision[:12])
        return snap

    async def _put_tree(self, repo_key: str, revision: str, snap: Snapshot) -> None:
        try:
            await self.tier.put_tree(repo_key, revision, tree_doc(repo_key, revision, snap))
        except HoardError as exc:
            log.info("blob store: storing the tree of %s@%s: %s", repo_key, revision[:12], exc)

    # -- plans ------------------------------------------------------------------------------

    def _content(self, rf: RemoteFile) -> tuple[str, str] | None:
        """How the bucket names the file's content: the identity to look it up by
        (``sha256:<hex>``, ``b3:<hex>``...) and the key its fill is shared under; None when
        the bucket may not hold it (restricted content) or no hash names it."""
        exp = rf.expected
        if exp is None or exp.prefix:
            return None
        if not self.tier.may_hold(self.tier.store.identity_users(rf.identity)):
            return None  # restricted content: neither looked up nor shared
        kind = "b3" if exp.kind == "blake3" else exp.kind
        if kind != "b3" and bucket_alias(f"{kind}:{exp.hex}") is None:
            return None
        return f"{kind}:{exp.hex}", f"aliases/{kind}/{exp.hex}"

    async def _plan(self, rf: RemoteFile) -> _Plan:
        plan = self._plans.get(rf.identity)
        now = asyncio.get_running_loop().time()
        if plan is not None and plan.until > now and not (plan.lease is not None and plan.lease.released):
            return plan
        task = self._planning.get(rf.identity)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._make_plan(rf))
            self._planning[rf.identity] = task
            task.add_done_callback(lambda t: self._planning.pop(rf.identity, None))
        plan = await asyncio.shield(task)
        if len(self._plans) >= _MAX_PLANS:
            self._plans = {k: v for k, v in self._plans.items() if v.kind in ("lead", "follow")}
        self._plans[rf.identity] = plan
        return plan

    async def _make_plan(self, rf: RemoteFile) -> _Plan:
        """Blob in the bucket, else lead or follow the fleet's fill, else the origin."""
        named = self._content(rf)
        later = asyncio.get_running_loop().time() + _MISS_TTL
        if named is None:
            return _Plan("origin", until=later)
        identity, fill_key = named
        try:
            blob = await self.tier.lookup(identity, rf.size)
            if blob is not None:
                return _Plan("blob", blob=blob)
            claimed = await self.board.claim(fill_key, rf.size)
            if isinstance(claimed, Lease):
                blob = await self.tier.lookup(identity, rf.size)
                if blob is not None:  # completed just before its lease was let go
                    await claimed.release(clean=False)
                    return _Plan("blob", blob=blob)
                log.info("blob store: %s: leading its fill for the fleet", rf.address)
                return _Plan("lead", lease=claimed)
            if isinstance(claimed, Following):
                log.info("blob store: %s: following the fill of node %s", rf.address, claimed.node[:8])
                return _Plan("follow", fill=claimed)
        except HoardError as exc:
            log.warning("blob store: %s: %s; reading from the origin", rf.address, exc)
        return _Plan("origin", until=later)

    # -- reading ----------------------------------------------------------------------------

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        pos = start
        for _ in range(_REPLANS):
            plan = await self._plan(rf)
            try:
                async for block in self._read_plan(plan, rf, pos, end):
                    pos += len(block)
                    yield block
                return
            except _BucketFailed as exc:
                log.warning("blob store: %s at +%d: %s; planning again", rf.address, pos, exc)
                self._demote(rf, plan)
        async for block in self.inner.read(rf, pos, end):
            yield block

    def _demote(self, rf: RemoteFile, plan: _Plan) -> None:
        if plan.kind == "blob" and self._plans.get(rf.identity) is plan:
            self._plans[rf.identity] = _Plan("origin", until=asyncio.get_running_loop().time() + _MISS_TTL)
        elif self._plans.get(rf.identity) is plan:
            del self._plans[rf.identity]

    async def _read_plan(self, plan: _Plan, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes of the file by one plan; bucket failures become :class:`_BucketFailed`,
        origin failures pass through unchanged (the fetch core resumes those)."""
        if plan.kind == "origin" or (plan.kind == "lead" and plan.lease is None):
            async for block in self.inner.read(rf, start, end):
                yield block
            return
        if plan.kind == "lead":
            assert plan.lease is not None
            async for block in self.inner.read(rf, start, end):
                await plan.lease.feed(start, block)
                start += len(block)
                yield block
            return
        source: AsyncIterator[bytes]
        if plan.kind == "blob":
            assert plan.blob is not None
            source = self.tier.read(plan.blob, start, end)
        else:
            assert plan.fill is not None
            source = self.board.follow(plan.fill, start, end)
        try:
            async for block in source:
                yield block
        except BadCopy as exc:
            assert plan.blob is not None
            self.tier.report_bad(plan.blob.b3, str(exc))
            raise _BucketFailed(str(exc)) from None
        except HoardError as exc:  # Lapsed, a store gone mid-read, ...
            raise _BucketFailed(str(exc)) from None

    # -- after verifying --------------------------------------------------------------------

    def failed_verification(self, rf: RemoteFile) -> None:
        """The fetch core found ``rf``'s whole file wrong (its hash or length) and discarded
        it. If its bytes came from the bucket (a forged or damaged copy whose block digests
        were forged along), the copy is not read again here, and the file comes from the
        origin for a while: one bad object must not fail a file over and over."""
        plan = self._plans.pop(rf.identity, None)
        if plan is None or plan.kind == "origin":
            return
        if plan.lease is not None:  # leading a fill with bytes that proved wrong: drop its pieces
            self._background(plan.lease.release(clean=True))
        if plan.kind == "lead":
            return  # the origin's own bytes were wrong: the core's error says so
        if plan.kind == "blob" and plan.blob is not None:
            self.tier.report_bad(plan.blob.b3, "the file made from it failed verification")
        self._plans[rf.identity] = _Plan("origin", until=asyncio.get_running_loop().time() + _BAD_TTL)

    # -- after publishing -------------------------------------------------------------------

    def published(self, rf: RemoteFile, b3: str) -> None:
        """The fetch core verified and published ``rf`` as ``b3``: share it (in the
        background) unless it came from the bucket or another node leads its upload."""
        plan = self._plans.pop(rf.identity, None)
        kind = plan.kind if plan is not None else "origin"
        if kind in ("blob", "follow") or rf.expected is None or rf.expected.prefix:
            return
        if not self.tier.may_hold(self.tier.store.blob_users(b3)):
            if plan is not None and plan.lease is not None:
                self._background(plan.lease.release(clean=True))
            return
        aliases = [a for a in (rf.identity, rf.expected.alias) if a]
        self._background(self._share(b3, aliases, plan.lease if plan is not None else None))

    async def _share(self, b3: str, aliases: list[str], lease: Lease | None) -> None:
        if lease is not None:
            lease.busy = True
        try:
            await self.tier.upload_later(b3, aliases)
        finally:
            if lease is not None:
                await lease.release(clean=True)


def with_bucket(sources: Mapping[str, Source], tier: BucketTier, board: FillBoard) -> dict[str, Source]:
    """Every source that has an origin, behind the bucket (``local`` content has no other copy
    anywhere, and is not shared)."""
    return {name: BucketSource(src, tier, board) if src.info.has_origin else src for name, src in sources.items()}


def published_hook(sources: Mapping[str, Source]) -> Callable[[RemoteFile, str], None] | None:
    """The fetch core's ``on_published`` callback for these sources, if any is bucketed."""
    if not any(isinstance(s, BucketSource) for s in sources.values()):
        return None

    def hook(rf: RemoteFile, b3: str) -> None:
        src = sources.get(rf.source)
        if isinstance(src, BucketSource):
            src.published(rf, b3)

    return hook


def failed_hook(sources: Mapping[str, Source]) -> Callable[[RemoteFile], None] | None:
    """The fetch core's ``on_failed_verification`` callback for these sources, if any is bucketed."""
    if not any(isinstance(s, BucketSource) for s in sources.values()):
        return None

    def hook(rf: RemoteFile) -> None:
        src = sources.get(rf.source)
        if isinstance(src, BucketSource):
            src.failed_verification(rf)

    return hook
