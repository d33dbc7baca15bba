"""Names to immutable revisions and trees: the store's refs and snapshots, kept fresh.

* A revision id (a commit) is immutable: once its tree is in the store, it is never asked for
  again.
* A ref (``main``, a tag, ``refs/pr/1``) is re-resolved at the origin after ``refs_ttl``.
* When the origin is unreachable, a known ref keeps its last revision (offline mode); a name
  never seen fails with :class:`OriginUnavailable` (a retryable 503), never "not found".
  Once an origin call has failed, nothing waits for that origin any more: cached answers are
  used at once and one background probe at a time asks it again (:mod:`.origin_health`).
* A commit-pinned name whose tree is cached is never sent to the origin; only its repo's
  access flags are, through the default branch, under the same rules as any ref.
* Concurrent lookups of one name share one origin request.
* Content of private or gated repos is handed only to credentials the origin admits; the
  origin's answer is remembered per credentials fingerprint for ``access_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
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
from .origin_health import OriginHealth

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
        health: OriginHealth | None = None,
        miss_ttl: float = 30.0,
    ) -> None:
        self.store = store
        self.sources = sources
        self.refs_ttl = refs_ttl
        self.access_ttl = access_ttl
        #: seconds a name an unlistable source did not know is answered "not found" at once
        self.miss_ttl = miss_ttl
        self._misses: dict[tuple[str, str, str], float] = {}
        self.clock = clock
        self.health = health or OriginHealth()
        self._pending: dict[tuple[str, ...], asyncio.Task[object]] = {}
        self._access: dict[tuple[str, str, str], tuple[float, BaseException | None]] = {}

    def source(self, addr: Address) -> Source:
        src = self.sources.get(addr.source)
        if src is None:
            raise InvalidAddress(f"source {addr.source!r} is not served here")
        return src

    def origin_down(self, source: str) -> bool:
        """True while the origin of ``source`` is known to be unreachable (callers that talk
        to it directly can then answer from the cache at once instead of waiting)."""
        return self.health.is_down(source)

    async def origin_call(self, source: str, make: Callable[[], Awaitable[T]]) -> T:
        """An origin call made outside the catalog (an API pass-through, say), under the same
        health rules: while ``source``'s origin is known down it fails at once with
        OriginUnavailable (this call becomes the background probe if none runs); otherwise
        it runs, and its outcome marks the origin up or down."""
        if self.health.is_down(source):
            self.health.probe(source, lambda: self.health.call(source, make))
            raise self.health.unavailable(source)
        return await self.health.call(source, make)

    def _start(self, key: tuple[str, ...], make: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """The task running ``make`` for ``key``: the running one, or a new one.

        It is a task of its own: a caller that is cancelled (a client gone, a mount request
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
        return task  # type: ignore[return-value]

    async def _once(self, key: tuple[str, ...], make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make`` once for concurrent callers with the same key."""
        return await asyncio.shield(self._start(key, make))

    async def _ask(
        self,
        src: Source,
        key: tuple[str, ...],
        make: Callable[[], Awaitable[T]],
        stale: T | None = None,
        *,
        what: str = "this name is not cached",
        origin: str | None = None,
    ) -> T:
        """One origin call (shared by concurrent callers with ``key``), unless that origin is
        known to be down.

        Down: the call becomes the source's background probe (if none is running) and this
        returns ``stale`` at once, or raises OriginUnavailable when nothing is cached.
        Up: wait for the call; if another call marks the origin down meanwhile, stop waiting
        and answer as if it had been down (the call goes on in the background and still
        updates the store). ``origin`` names the origin whose health counts (default: the
        source's one origin; :meth:`Source.origin_of` for a source of many hosts).
        """
        name = origin or src.name

        def call() -> Awaitable[T]:
            return self.health.call(name, make)

        if not self.health.is_down(name):
            task = self._start(key, call)
            went_down = self.health.went_down(name)
            await asyncio.wait((task, went_down), return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
        else:
            self.health.probe(name, lambda: self._once(key, call))
        if stale is not None:
            return stale
        raise self.health.unavailable(name, what)

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
            resolved = Resolved(addr.with_revision(ref), await self._commit_snapshot(src, addr, ref, creds))
        else:
            resolved = await self._resolve_ref(src, addr, ref, creds)
        if addr.path and not src.listable and not resolved.snapshot.info.get("complete"):
            resolved = await self._looked_up(src, resolved, addr.path, creds)
        if access != "none" and await self._restricted(src, addr, resolved, creds, files=access == "files"):
            try:
                await self._check_access(src, resolved, creds)
            except OriginUnavailable:
                if not trust_offline:
                    raise
                log.info("origin unreachable; trusting the local user with cached %s", key)
        return resolved

    async def _commit_snapshot(self, src: Source, addr: Address, commit: str, creds: Credentials) -> Snapshot:
        """The tree of an immutable revision: from the store, else from the origin (once)."""
        snap = self.store.get_snapshot(addr.repo_key, commit)
        if snap is not None:
            return snap
        return await self._ask(
            src,
            ("snap", addr.repo_key, commit, creds.fingerprint),
            lambda: self._fetch_snapshot(src, addr, ResolvedRef(commit), creds),
            origin=src.origin_of(addr),
        )

    def _cached_ref(self, src: Source, addr: Address, ref: str) -> tuple[Resolved | None, bool]:
        """The last answer for a ref, if its tree is still in the store, and whether it is
        fresh (younger than ``refs_ttl``, or of a source whose refs never expire)."""
        rec = self.store.get_ref(addr.repo_key, ref)
        if rec is None:
            return None, False
        snap = self.store.get_snapshot(addr.repo_key, rec.revision)
        if snap is None:
            return None, False
        fresh = not src.refs_expire or self.clock() - rec.fetched_at < self.refs_ttl
        return Resolved(addr.with_revision(rec.revision), snap), fresh

    async def _resolve_ref(self, src: Source, addr: Address, ref: str, creds: Credentials) -> Resolved:
        cached, fresh = self._cached_ref(src, addr, ref)
        if cached is not None and fresh:
            return cached
        stale = None if cached is None else dataclasses.replace(cached, stale=True)
        try:
            return await self._ask(
                src, ("ref", addr.repo_key, ref, creds.fingerprint), lambda: self._refresh_ref(src, addr, ref, creds), stale,
                origin=src.origin_of(addr),
            )
        except OriginUnavailable:
            if stale is None:
                raise
            log.info("origin unreachable; serving %s@%s from cache (%s)", addr.repo_key, ref, stale.revision[:12])
            return stale

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

    async def _looked_up(self, src: Source, resolved: Resolved, path: str, creds: Credentials) -> Resolved:
        """For a source that cannot list its repos: ``path`` looked up at the origin and added
        to the revision's tree (the names looked up so far). A miss is remembered for
        ``miss_ttl`` seconds; an entry that says how to revalidate it (an ETag) is asked again,
        conditionally, after ``refs_ttl`` — its last answer serves while the origin is down."""
        entry = resolved.snapshot.files.get(path)
        checked = float((entry.meta.get("checked") or 0) if entry is not None else 0)
        if entry is not None and (not entry.meta.get("revalidate") or self.clock() - checked < self.refs_ttl):
            return resolved
        key = (resolved.addr.repo_key, resolved.revision, path)
        miss = self._misses.get(key)
        if entry is None and miss is not None and miss > self.clock():
            raise EntryNotFound(f"{resolved.addr.with_path(path)}: not found at the origin", resolved.revision)
        addr = resolved.addr.with_path(path)
        ref = ResolvedRef(resolved.revision, {})

        async def stat() -> Resolved:
            try:
                found = await src.stat(addr, ref, creds, entry)
            except NotFound:
                if len(self._misses) > 4096:
                    self._misses = {k: v for k, v in self._misses.items() if v > self.clock()}
                self._misses[key] = self.clock() + self.miss_ttl
                raise
            if found.meta.get("revalidate"):
                found = dataclasses.replace(found, meta=found.meta | {"checked": self.clock()})
            snap = await asyncio.get_running_loop().run_in_executor(
                None, self.store.merge_snapshot, resolved.addr.repo_key, resolved.revision, {path: found}
            )
            return dataclasses.replace(resolved, snapshot=snap)

        stale = None if entry is None else dataclasses.replace(resolved, stale=True)
        try:
            return await self._ask(src, ("stat", *key, creds.fingerprint), stat, stale,
                                   what="this file was never looked up", origin=src.origin_of(addr))
        except OriginUnavailable:
            if stale is None:
                raise
            log.info("origin unreachable; serving %s from cache", addr)
            return stale

    async def _restricted(
        self, src: Source, addr: Address, resolved: Resolved, creds: Credentials, *, files: bool
    ) -> bool:
        """Whether the repo is private/gated *now*: as the revision was cached, or as its
        default branch last said (a commit-pinned revision is never re-fetched, but a repo can
        turn private later). The branch is a ref like any other: re-resolved after the refs
        TTL while the origin answers, its last known flags used at once while it does not
        (refreshed by the background probe)."""
        if src.restricted(resolved.snapshot, files=files):
            return True
        if not src.refs_expire or not src.may_restrict or not src.is_revision_id(addr.revision or ""):
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

        async def ask() -> None:
            try:
                await src.check_access(resolved.addr, resolved.snapshot, creds)
            except (AccessDenied, NotFound) as exc:
                self._access[key] = (self.clock(), exc)
                raise
            self._access[key] = (self.clock(), None)

        # while the origin is down this raises OriginUnavailable at once (and probes it)
        await self._ask(src, ("access", *key), ask, what="it must confirm access to this restricted repo",
                        origin=src.origin_of(resolved.addr))

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

    async def aclose(self) -> None:
        """Stop background probes and origin calls still running (at shutdown)."""
        await self.health.aclose()
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

