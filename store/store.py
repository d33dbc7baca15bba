"""The store façade: blobs, partials, refs, snapshots and pins of one ``$HOARD_HOME``.

Nothing here knows HTTP or FUSE. Several processes may open the same home at once; all
coordination goes through LMDB transactions and the locks of :mod:`hoard.store.locks`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from .last_access import AccessLog
from .blobs import ingest_bytes, ingest_file
from .config import StoreConfig
from .errors import Busy
from .index import Index
from .layout import Layout
from .locks import gc_lock
from .partial import Partial, Published, open_partial
from .records import BlobRecord, ExpectedHash, PinRecord, RefRecord, Snapshot, TreeEntry
from .reserve import ensure_reserve

__all__ = ["Store", "BlobInfo", "Published", "same_tree"]


#: attempts of :meth:`Store.put_snapshot_if_absent` to find a snapshot's content complete
_RESTORE_ATTEMPTS = 3


def same_tree(a: Snapshot, b: Snapshot) -> bool:
    """Same files with the same sizes and identities: the same bytes (``info`` may differ)."""
    return {p: (e.size, e.identity) for p, e in a.files.items()} == {
        p: (e.size, e.identity) for p, e in b.files.items()
    }


@dataclass(frozen=True)
class BlobInfo:
    b3: str
    size: int
    path: Path
    record: BlobRecord


class Store:
    """One store on disk. Thread-safe; open it once per process and share it."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.layout = Layout(config.home)
        self.layout.create()
        self.index = Index(self.layout.index)
        self._lock = threading.Lock()
        # partials handed out: the live one per alias, and every one still held (a published
        # or discarded partial stays open until its last holder releases it)
        self._current: dict[str, Partial] = {}
        self._held: dict[int, tuple[Partial, int]] = {}
        self._snapshots: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()
        self._access = AccessLog(self.index, config.gc_grace, config.access_flush_interval)
        ensure_reserve(self.layout)  # room for gc and rm to commit once the disk is full

    @property
    def home(self) -> Path:
        return self.config.home

    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size

    def close(self) -> None:
        self._access.close()
        with self._lock:
            held = [p for p, _ in self._held.values()]
            self._held.clear()
            self._current.clear()
        for partial in held:
            partial.close()
        self.index.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs ----------------------------------------------------------------------------

    def blob_path(self, b3: str) -> Path:
        return self.layout.blob_path(b3)

    def blob(self, b3: str) -> BlobInfo | None:
        rec = self.index.get_blob(b3)
        if rec is None:
            return None
        return BlobInfo(b3, rec.size, self.layout.blob_path(b3), rec)

    def open_blob(self, b3: str) -> int | None:
        """A read-only descriptor on a blob's file, holding a shared ``flock`` on it for as
        long as it (or a dup of it) stays open; None if the file is gone or gc is removing it.

        gc takes the lock exclusively before deleting a blob, so a blob some process is
        reading (a response being sent, a mounted file open) is never collected under it.
        """
        try:
            fd = os.open(self.layout.blob_path(b3), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None  # gc holds it: it is being deleted
        return fd

    def resolve(self, alias: str) -> str | None:
        """BLAKE3 of the complete blob an alias names, or None."""
        return self.index.resolve(alias)

    def lookup(self, alias: str) -> BlobInfo | None:
        b3 = self.index.resolve(alias)
        return None if b3 is None else self.blob(b3)

    def add_file(
        self,
        src: Path,
        *,
        expected: ExpectedHash | None = None,
        aliases: Iterable[str] = (),
        progress: Callable[[int], None] | None = None,
    ) -> tuple[str, int]:
        return ingest_file(self.layout, self.index, src, expected=expected, aliases=aliases, progress=progress)

    def add_bytes(
        self, data: bytes, *, expected: ExpectedHash | None = None, aliases: Iterable[str] = ()
    ) -> tuple[str, int]:
        return ingest_bytes(self.layout, self.index, data, expected=expected, aliases=aliases)

    def blob_users(self, b3: str) -> list[tuple[str, str, bool]]:
        """(repo, revision, restricted) of every cached snapshot with a file whose content is
        this blob (under any of its names)."""
        with self.index.read() as txn:
            names = [f"b3:{b3}", *self.index.aliases_of(b3, txn)]
            return sorted({u for name in names for u in self.index.users_of(name, txn)})

    def add_aliases(self, aliases: Iterable[str], b3: str) -> None:
        """Name an existing blob by more aliases, in one transaction (a no-op for a blob gone)."""
        with self.index.write() as txn:
            if self.index.get_blob(b3, txn) is None:
                return
            for alias in aliases:
                self.index.put_alias_in(txn, alias, b3)

    def identity_users(self, identity: str) -> list[tuple[str, str, bool]]:
        """(repo, revision, restricted) of every cached snapshot with a file of this identity
        (an alias such as ``sha256:<hex>``, complete or not), sorted."""
        with self.index.read() as txn:
            return sorted(self.index.users_of(identity, txn))

    def add_alias(self, alias: str, b3: str) -> None:
        with self.index.write() as txn:
            self.index.put_alias_in(txn, alias, b3)

    def touch(self, b3: str) -> None:
        """Note a use of a blob. Written to the index in batches by :meth:`flush_access` (a
        long-running process calls it periodically, close() last), or within moments when
        the index last saw the blob used more than half of ``gc_grace`` ago (last_access.py)."""
        self._access.touch(b3)

    def last_access(self, b3: str, rec: BlobRecord) -> int:
        """The latest known use of a blob: its record, or this process's unwritten use."""
        pending = self._access.pending(b3)
        return rec.last_access if pending is None else max(rec.last_access, pending)

    def access_flush_due(self) -> bool:
        return self._access.flush_due()

    def flush_access(self) -> None:
        self._access.flush()

    # -- partials -------------------------------------------------------------------------

    def open_file(
        self, alias: str, size: int, expected: ExpectedHash | None = None
    ) -> Partial | Published:
        """The blob for ``alias`` if complete, else its (shared, refcounted) partial.

        Call :meth:`release` once per :class:`Partial` returned.
        """
        shared = self._share(alias)
        if shared is not None:
            return shared
        got = open_partial(self.layout, self.index, alias, size, self.config.chunk_size, expected)
        if isinstance(got, Published):
            return got
        shared = self._share(alias)
        if shared is not None:  # another thread opened it meanwhile: keep one instance
            got.close()
            return shared
        with self._lock:
            self._current[alias] = got
            self._held[id(got)] = (got, 1)
        return got

    def _share(self, alias: str) -> Partial | None:
        with self._lock:
            cur = self._current.get(alias)
            if cur is None or cur.b3 is not None or cur.discarded:
                return None  # published or dead: the next opener gets the blob or a new one
            _, count = self._held[id(cur)]
            self._held[id(cur)] = (cur, count + 1)
            return cur

    def release(self, partial: Partial) -> None:
        with self._lock:
            held = self._held.get(id(partial))
            if held is not None and held[1] > 1:
                self._held[id(partial)] = (partial, held[1] - 1)
                return
            self._held.pop(id(partial), None)
            if self._current.get(partial.alias) is partial:
                del self._current[partial.alias]
        partial.close()

    def partial_status(self, alias: str) -> tuple[int, int] | None:
        """(present bytes, size) of a partial in the index, without opening it."""
        with self.index.read() as txn:
            rec = self.index.get_partial(alias, txn)
            if rec is None:
                return None
            sums = self.index.chunk_sums(alias, txn)
        cs = rec.chunk_size
        present = sum(min(cs, rec.size - i * cs) for i in sums)
        return present, rec.size

    # -- refs and snapshots ---------------------------------------------------------------

    def get_ref(self, repo: str, ref: str) -> RefRecord | None:
        return self.index.get_ref(repo, ref)

    def set_ref(self, repo: str, ref: str, revision: str, fetched_at: float | None = None) -> None:
        with self.index.write() as txn:
            self.index.put_ref_in(txn, repo, ref, RefRecord(revision, time.time() if fetched_at is None else fetched_at))

    def get_snapshot(self, repo: str, revision: str) -> Snapshot | None:
        key = (repo, revision)
        with self._lock:
            snap = self._snapshots.get(key)
            if snap is not None:
                self._snapshots.move_to_end(key)
                return snap
        snap = self.index.get_snapshot(repo, revision)
        if snap is not None:
            self._cache_snapshot(key, snap)
        return snap

    def put_snapshot(self, repo: str, revision: str, snap: Snapshot, refs: Iterable[str] = ()) -> None:
        """Record an immutable revision, and point ``refs`` at it, in one transaction."""
        now = time.time()
        with self.index.write() as txn:
            self.index.put_snapshot_in(txn, repo, revision, snap)
            for ref in refs:
                self.index.put_ref_in(txn, repo, ref, RefRecord(revision, now))
        self._cache_snapshot((repo, revision), snap)

    def merge_snapshot(self, repo: str, revision: str, files: dict[str, TreeEntry], info: dict[str, Any] | None = None) -> Snapshot:
        """Add (or replace) files of a revision, read and written in one transaction.

        For sources that cannot list their repos (torch weights, plain URLs): their one
        revision is the set of names looked up so far, which grows as names are looked up,
        by any number of processes at once, without losing another's additions.
        """
        with self.index.write() as txn:
            old = self.index.get_snapshot(repo, revision, txn)
            merged = dict(old.files) if old is not None else {}
            merged.update(files)
            snap = Snapshot(merged, old.created if old is not None else int(time.time()),
                            (dict(old.info) if old is not None else {}) | (info or {}))
            self.index.put_snapshot_in(txn, repo, revision, snap)
        self._cache_snapshot((repo, revision), snap)
        return snap

    def put_snapshot_if_complete(
        self, repo: str, revision: str, snap: Snapshot, refs: Iterable[str] = ()
    ) -> list[str]:
        """Record a snapshot (as :meth:`put_snapshot`) only if every file's content is a
        complete blob; returns the paths whose content is missing, and writes nothing then.

        The check and the write happen under the shared gc lock, in one transaction: gc
        (which holds that lock exclusively to delete) cannot remove a blob in between. For
        content no origin can give back, whose blobs the snapshot is what protects.
        """
        now = time.time()
        with gc_lock(self.layout.gc_lock, exclusive=False), self.index.write() as txn:
            missing = sorted(p for p, e in snap.files.items() if self.index.resolve(e.identity, txn) is None)
            if missing:
                return missing
            self.index.put_snapshot_in(txn, repo, revision, snap)
            for ref in refs:
                self.index.put_ref_in(txn, repo, ref, RefRecord(revision, now))
        self._cache_snapshot((repo, revision), snap)
        return []

    def put_snapshot_if_absent(
        self,
        repo: str,
        revision: str,
        snap: Snapshot,
        refs: Iterable[str] = (),
        *,
        restore: Callable[[list[str]], None] | None = None,
    ) -> Snapshot | None:
        """Record a revision the store does not hold yet (as :meth:`put_snapshot`); a stored
        revision is never replaced. The check and the write are one write transaction.

        Returns the stored snapshot, writing nothing and moving no ref, when the store holds
        ``repo@revision`` with another tree (:func:`same_tree`); None when it wrote, or when
        the same tree was stored already (then nothing is written and no ref moves either).

        With ``restore``, the snapshot is also written only if every file's content is a
        complete blob, checked under the shared gc lock in the same transaction (as
        :meth:`put_snapshot_if_complete`): for content no origin can give back, which nothing
        protects from gc until its snapshot is recorded. When some is missing, ``restore`` is
        called with those paths (outside the lock) to add their content again, and the whole
        check is made again; :class:`Busy` if gc keeps taking it.
        """
        for _ in range(_RESTORE_ATTEMPTS):
            with contextlib.ExitStack() as held:
                if restore is not None:
                    held.enter_context(gc_lock(self.layout.gc_lock, exclusive=False))
                txn = held.enter_context(self.index.write())
                stored = self.index.get_snapshot(repo, revision, txn)
                if stored is not None:
                    return None if same_tree(stored, snap) else stored
                missing = [] if restore is None else sorted(
                    p for p, e in snap.files.items() if self.index.resolve(e.identity, txn) is None
                )
                if not missing:
                    now = time.time()
                    self.index.put_snapshot_in(txn, repo, revision, snap)
                    for ref in refs:
                        self.index.put_ref_in(txn, repo, ref, RefRecord(revision, now))
            if not missing:
                self._cache_snapshot((repo, revision), snap)
                return None
            assert restore is not None
            restore(missing)
        raise Busy(f"could not record {repo}@{revision}: gc kept removing its files while they were added")

    def _cache_snapshot(self, key: tuple[str, str], snap: Snapshot) -> None:
        with self._lock:
            self._snapshots[key] = snap
            self._snapshots.move_to_end(key)
            while len(self._snapshots) > 256:
                self._snapshots.popitem(last=False)

    def forget_snapshot(self, repo: str, revision: str) -> None:
        with self._lock:
            self._snapshots.pop((repo, revision), None)

    def repos(self, prefix: str = "") -> list[str]:
        """Repo keys with a cached snapshot or ref, sorted."""
        seen: set[str] = set()
        with self.index.read() as txn:
            for repo, _ in self.index.iter_snapshot_keys(txn, prefix):
                seen.add(repo)
            for repo, _, _ in self.index.iter_refs(txn, prefix):
                seen.add(repo)
        return sorted(seen)

    def revisions(self, repo: str) -> list[str]:
        with self.index.read() as txn:
            return [rev for r, rev in self.index.iter_snapshot_keys(txn, repo + "@") if r == repo]

    def refs(self, repo: str) -> dict[str, RefRecord]:
        with self.index.read() as txn:
            return {ref: rec for r, ref, rec in self.index.iter_refs(txn, repo + "\0")}

    # -- pins -----------------------------------------------------------------------------

    def pin(self, target: str, note: str = "") -> bool:
        """Pin ``blob:<b3>`` or ``snapshot:<repo>@<rev>``; False if it already was."""
        with self.index.write() as txn:
            if self.index.get_pin(target, txn) is not None:
                return False
            self.index.put_pin_in(txn, target, PinRecord(int(time.time()), note))
            if target.startswith("blob:"):
                self._adjust_pins(txn, target[5:], +1)
        return True

    def unpin(self, target: str) -> bool:
        with self.index.write() as txn:
            if not self.index.delete_pin_in(txn, target):
                return False
            if target.startswith("blob:"):
                self._adjust_pins(txn, target[5:], -1)
        return True

    def _adjust_pins(self, txn: object, b3: str, delta: int) -> None:
        rec = self.index.get_blob(b3, txn)  # type: ignore[arg-type]
        if rec is not None:
            pins = max(0, rec.pins + delta)
            self.index.put_blob_in(txn, b3, BlobRecord(rec.size, rec.created, rec.last_access, pins))  # type: ignore[arg-type]

    def pins(self) -> dict[str, PinRecord]:
        with self.index.read() as txn:
            return dict(self.index.iter_pins(txn))

    # -- stats ----------------------------------------------------------------------------

    def usage(self) -> dict[str, int]:
        """Bytes and counts of blobs and partials (from the index; no directory walk)."""
        blob_bytes = blobs = 0
        partial_bytes = partials = 0
        with self.index.read() as txn:
            for _, rec in self.index.iter_blobs(txn):
                blobs += 1
                blob_bytes += rec.size
            for alias, prec in self.index.iter_partials(txn):
                partials += 1
                cs = prec.chunk_size
                partial_bytes += sum(min(cs, prec.size - i * cs) for i in self.index.chunk_sums(alias, txn))
        return {
            "blobs": blobs,
            "blob_bytes": blob_bytes,
            "partials": partials,
            "partial_bytes": partial_bytes,
            "total_bytes": blob_bytes + partial_bytes,
        }

    def disk_free(self) -> int:
        st = os.statvfs(self.home)
        return st.f_bavail * st.f_frsize
