"""Names to immutable revisions and trees: the store's refs and snapshots, kept fresh.

* A revision id (a commit) is immutable: once its tree is in the store, it is never asked for
  again.
* A ref (``main``, a tag, ``refs/pr/1``) is re-resolved at the origin after ``refs_ttl``.
* When the origin is unreachable, a known ref keeps its last revision (offline mode); a name
  never seen fails with :class:`OriginUnavailable` (a retryable 503), never "not found".
* Concurrent lookups of one name share one origin request.
* Content of private or gated repos is handed only to credentials the origin admits; the
  origin's answer is remembered per credentials fingerprint for ``access_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from hoard.store.address import Address
from hoard.store.catalog import default_ref
from hoard.store.errors import (
    AccessDenied,
    EntryNotFound,
    HoardError,
    InvalidAddress,
    NotFound,
    OriginUnavailable,
)
from hoard.store.records import Snapshot, TreeEntry
from hoard.store.store import Store

from .origin import Credentials, RemoteFile, ResolvedRef, Source

__all__ = ["Catalog", "Resolved"]

log = logging.getLogger("hoard.catalog")
T = TypeVar("T")


@dataclass(frozen=True)
class Resolved:
    """An address pinned to its revision, with that revision's tree."""

    addr: Address  # revision set to the immutable id
    snapshot: Snapshot
    #: True when the origin could not be asked and a cached answer was used
    stale: bool = False

    @property
    def revision(self) -> str:
        assert self.addr.revision is not None
        return self.addr.revision

    def entry(self, path: str) -> TreeEntry:
        entry = self.snapshot.files.get(path)
        if entry is None:
            raise EntryNotFound(f"{self.addr.repo_key}@{self.revision}: no file {path!r}", self.revision)
        return entry


class Catalog:
    def __init__(
        self,
        store: Store,
        sources: dict[str, Source],
        *,
        refs_ttl: float = 60.0,
        access_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sources = sources
        self.refs_ttl = refs_ttl
        self.access_ttl = access_ttl
        self.clock = clock
        self._pending: dict[tuple[str, ...], asyncio.Task[object]] = {}
        self._access: dict[tuple[str, str, str], tuple[float, BaseException | None]] = {}

    def source(self, addr: Address) -> Source:
        src = self.sources.get(addr.source)
        if src is None:
            raise InvalidAddress(f"source {addr.source!r} is not served here")
        return src

    async def _once(self, key: tuple[str, ...], make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make`` once for concurrent callers with the same key.

        It runs in its own task: a caller that is cancelled (a client gone, a mount request
        timed out) neither cancels it for the others nor hands them its cancellation.
        """
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(make())  # type: ignore[arg-type]
            self._pending[key] = task

            def done(t: asyncio.Task[object]) -> None:
                if self._pending.get(key) is t:
                    del self._pending[key]
                if not t.cancelled():
                    t.exception()  # retrieved here too, in case every caller went away

            task.add_done_callback(done)
        return await asyncio.shield(task)  # type: ignore[return-value]

    async def resolve(
        self, addr: Address, creds: Credentials, *, access: str = "files", trust_offline: bool = False
    ) -> Resolved:
        """Pin ``addr`` to an immutable revision and return its tree.

        ``access`` says what the caller will hand out: ``"files"`` (bytes: private and gated
        repos need credentials the origin admits), ``"metadata"`` (listings: only private
        repos do), or ``"none"`` (the caller checks, or serves no one but the local user).
        With ``trust_offline`` (the local user's own mount) an access check the origin cannot
        answer lets cached content through, as a dead origin must leave cached files readable.
        """
        src = self.source(addr)
        ref = addr.revision or default_ref(addr.source)
        key = addr.repo_key
        if src.is_revision_id(ref):
            snap = self.store.get_snapshot(key, ref)
            if snap is None:
                snap = await self._once(
                    ("snap", key, ref, creds.fingerprint), lambda: self._fetch_snapshot(src, addr, ResolvedRef(ref), creds)
                )
            resolved = Resolved(addr.with_revision(ref), snap)
        else:
            resolved = await self._resolve_ref(src, addr, ref, creds)
        if access != "none" and await self._restricted(src, addr, resolved, creds, files=access == "files"):
            try:
                await self._check_access(src, resolved, creds)
            except OriginUnavailable:
                if not trust_offline:
                    raise
                log.info("origin unreachable; trusting the local user with cached %s", key)
        return resolved

    async def _resolve_ref(self, src: Source, addr: Address, ref: str, creds: Credentials) -> Resolved:
        key = addr.repo_key
        rec = self.store.get_ref(key, ref)
        if rec is not None and (not src.refs_expire or self.clock() - rec.fetched_at < self.refs_ttl):
            snap = self.store.get_snapshot(key, rec.revision)
            if snap is not None:
                return Resolved(addr.with_revision(rec.revision), snap)
        try:
            return await self._once(("ref", key, ref, creds.fingerprint), lambda: self._refresh_ref(src, addr, ref, creds))
        except OriginUnavailable:
            if rec is not None:
                snap = self.store.get_snapshot(key, rec.revision)
                if snap is not None:
                    log.info("origin unreachable; serving %s@%s from cache (%s)", key, ref, rec.revision[:12])
                    return Resolved(addr.with_revision(rec.revision), snap, stale=True)
            raise

    async def _refresh_ref(self, src: Source, addr: Address, ref: str, creds: Credentials) -> Resolved:
        resolved = await src.resolve(addr, ref, creds)
        key = addr.repo_key
        snap = self.store.get_snapshot(key, resolved.revision)
        loop = asyncio.get_running_loop()
        if snap is None:
            snap = await self._fetch_snapshot(src, addr, resolved, creds, refs=[ref])
            return Resolved(addr.with_revision(resolved.revision), snap)
        updated = src.with_visibility(snap, resolved.info)
        if updated is not None:
            # the repo turned private, gated or public since this revision was cached
            snap = updated
            await loop.run_in_executor(None, lambda: self.store.put_snapshot(key, resolved.revision, snap, refs=[ref]))
        else:
            await loop.run_in_executor(None, self.store.set_ref, key, ref, resolved.revision)
        return Resolved(addr.with_revision(resolved.revision), snap)

    async def _fetch_snapshot(
        self, src: Source, addr: Address, resolved: ResolvedRef, creds: Credentials, refs: tuple[str, ...] | list[str] = ()
    ) -> Snapshot:
        snap = await src.snapshot(addr.with_revision(resolved.revision), resolved, creds)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.put_snapshot(addr.repo_key, resolved.revision, snap, refs=refs)
        )
        return snap

    async def _restricted(
        self, src: Source, addr: Address, resolved: Resolved, creds: Credentials, *, files: bool
    ) -> bool:
        """Whether the repo is private/gated *now*: as the revision was cached, or as its
        default branch last said (a commit-pinned revision is never re-fetched, but a repo can
        turn private later; the branch is re-resolved after the refs TTL)."""
        if src.restricted(resolved.snapshot, files=files):
            return True
        if not src.refs_expire or not src.is_revision_id(addr.revision or ""):
            return False
        try:
            latest = await self._resolve_ref(src, addr.with_revision(None), default_ref(addr.source), creds)
        except (NotFound, AccessDenied):
            return True  # the origin hides the repo from these credentials now: ask it
        except HoardError:
            return False  # unreachable: the cached flags stand
        return src.restricted(latest.snapshot, files=files)

    async def _check_access(self, src: Source, resolved: Resolved, creds: Credentials) -> None:
        key = (resolved.addr.repo_key, resolved.revision, creds.fingerprint)
        now = self.clock()
        hit = self._access.get(key)
        if hit is not None and now - hit[0] < self.access_ttl:
            if hit[1] is not None:
                raise copy.copy(hit[1]).with_traceback(None)  # a fresh raise, not a growing one
            return
        if len(self._access) > 4096:
            self._access = {k: v for k, v in self._access.items() if now - v[0] < self.access_ttl}
        try:
            await self._once(("access", *key), lambda: src.check_access(resolved.addr, resolved.snapshot, creds))
        except (AccessDenied, NotFound) as exc:
            self._access[key] = (now, exc)
            raise
        self._access[key] = (now, None)

    async def authorize(self, addr: Address, revision: str, snap: Snapshot, creds: Credentials) -> None:
        """Raise unless these credentials may read the files of a cached revision."""
        src = self.source(addr)
        resolved = Resolved(addr.with_revision(revision).with_path(""), snap)
        if await self._restricted(src, resolved.addr, resolved, creds, files=True):
            await self._check_access(src, resolved, creds)

    async def entry(self, addr: Address, creds: Credentials) -> tuple[Resolved, TreeEntry]:
        resolved = await self.resolve(addr, creds)
        return resolved, resolved.entry(addr.path)

    def file(self, resolved: Resolved, path: str, creds: Credentials) -> RemoteFile:
        """A file of a resolved revision, ready for the fetch core (EntryNotFound if absent)."""
        return self.source(resolved.addr).remote_file(resolved.addr.with_path(path), resolved.entry(path), creds)

    async def remote_file(self, addr: Address, creds: Credentials) -> tuple[Resolved, RemoteFile]:
        resolved = await self.resolve(addr, creds)
        return resolved, self.file(resolved, addr.path, creds)

    def forget_access(self) -> None:
        self._access.clear()

