"""The one way anything leaves the store: index entries first, a sync, then the files.

gc, ``hoard rm`` (and ``DELETE /v1/models``) and ``hoard verify``'s repairs all call
:func:`remove` with what they want gone (:class:`Doomed`) and a policy that re-checks each
blob and partial at the last moment. Per batch:

1. take the store-wide gc lock exclusively: publishing takes it shared, so no blob is
   published, re-indexed or given a new alias meanwhile;
2. in one write transaction: refs, snapshots (and their pins and ``users`` entries), dangling
   aliases with their reverse entries, partial records, blob records with every alias and
   pin, each re-checked first. Before a blob's entry goes, an exclusive ``flock`` is taken on
   its file without waiting; if a reader holds it (``Store.open_blob``, an open partial that
   became the blob), gc keeps the blob ("open") while rm and verify remove it anyway (the
   reader keeps its inode; later openers see it gone). A partial goes only if its live lock
   can be taken exclusively: nobody has it open;
3. sync the index, so a crash cannot bring back entries whose files are gone (DESIGN.md §2,
   invariant 4: index entries before files);
4. unlink the files, then release the locks.

On a full filesystem step 2's commit fails with :class:`StoreFull` (LMDB writes new pages even
to delete). The removal then deletes the store's reserve (reserve.py) and commits again; with
no reserve left it frees the files of the idle partials it is removing (their live locks are
held, so nobody reads them; a record whose file is gone only makes the next opener start
afresh) and tries once more. Once files are freed the reserve is made again if there is
room for it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import lmdb

from .errors import StoreFull
from .locks import LIVE_OFFSET, gc_lock, try_lock
from .records import BlobRecord
from .reserve import ensure_reserve, release_reserve
from .retention import REASON_OPEN

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Doomed", "Removed", "Policy", "KEEP_NOTHING", "remove"]

log = logging.getLogger("hoard.store")
T = TypeVar("T")

#: items per lock hold and transaction: publishers wait for at most one batch
_BATCH = 256


class Policy(Protocol):
    """Re-checks, inside the removal's transaction, whether each item must stay after all."""

    def blob(self, txn: lmdb.Transaction, b3: str, rec: BlobRecord) -> str | None:
        """Why this blob must be kept, or None to remove it."""

    def partial(self, txn: lmdb.Transaction, alias: str) -> str | None:
        """Why this partial must be kept, or None to remove it."""


class _KeepNothing:
    def blob(self, txn: lmdb.Transaction, b3: str, rec: BlobRecord) -> str | None:
        return None

    def partial(self, txn: lmdb.Transaction, alias: str) -> str | None:
        return None


#: the policy of removals the user asked for item by item (verify's repairs)
KEEP_NOTHING: Policy = _KeepNothing()


@dataclass
class Doomed:
    """What a removal is asked to delete."""

    blobs: list[str] = field(default_factory=list)
    snapshots: list[tuple[str, str]] = field(default_factory=list)
    refs: list[tuple[str, str]] = field(default_factory=list)
    #: aliases to drop (with their reverse entries) if their blob is still not indexed
    aliases: list[str] = field(default_factory=list)
    #: (b3, alias) reverse entries to drop if the alias no longer names that blob
    reverse_aliases: list[tuple[str, str]] = field(default_factory=list)
    #: (alias, tag): a partial incarnation, removed if idle and still current
    partials: list[tuple[str, str]] = field(default_factory=list)
    #: files no index entry names (orphan blob files, stray temporaries): removed last
    files: list[Path] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.blobs) + len(self.partials) + len(self.files)

    @property
    def empty(self) -> bool:
        return not (self.count or self.snapshots or self.refs or self.aliases or self.reverse_aliases)


@dataclass
class Removed:
    """What a removal did: items removed, bytes freed, and what it kept and why."""

    blobs: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    freed: int = 0
    kept: dict[str, str] = field(default_factory=dict)

    def merge(self, other: Removed) -> None:
        self.blobs += other.blobs
        self.partials += other.partials
        self.files += other.files
        self.freed += other.freed
        self.kept.update(other.kept)


def remove(
    store: Store,
    doomed: Doomed,
    *,
    policy: Policy = KEEP_NOTHING,
    spare_open: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Removed:
    """Delete ``doomed`` (see the module docstring); ``spare_open`` keeps blobs held open."""
    done = Removed()
    if doomed.empty:
        return done
    try:
        for batch in _batches(doomed):
            done.merge(_remove_batch(store, batch, policy, spare_open))
            if progress is not None:
                progress(batch.count)
    finally:
        ensure_reserve(store.layout)
    return done


def _batches(d: Doomed) -> Iterator[Doomed]:
    """Blobs and partials in slices; everything else with the first (entries) or last (files)."""
    blobs = [d.blobs[i : i + _BATCH] for i in range(0, len(d.blobs), _BATCH)]
    partials = [d.partials[i : i + _BATCH] for i in range(0, len(d.partials), _BATCH)]
    n = max(1, len(blobs), len(partials))
    for i in range(n):
        first = i == 0
        yield Doomed(
            blobs=blobs[i] if i < len(blobs) else [],
            partials=partials[i] if i < len(partials) else [],
            snapshots=d.snapshots if first else [],
            refs=d.refs if first else [],
            aliases=d.aliases if first else [],
            reverse_aliases=d.reverse_aliases if first else [],
            files=d.files if i == n - 1 else [],
        )


def _remove_batch(store: Store, d: Doomed, policy: Policy, spare_open: bool) -> Removed:
    with gc_lock(store.layout.gc_lock, exclusive=True):
        holds = _Holds(store)
        try:
            done = _commit(store, holds, lambda txn: _delete_entries(store, txn, d, policy, holds, spare_open))
            store.index.sync()
            _unlink(store, d, done)
        finally:
            holds.close()
    for repo, rev in d.snapshots:
        store.forget_snapshot(repo, rev)
    return done


def _commit(store: Store, holds: _Holds, body: Callable[[lmdb.Transaction], T]) -> T:
    """Run ``body`` in a write transaction; on a full disk make room once and run it again."""
    try:
        with store.index.write() as txn:
            return body(txn)
    except StoreFull as exc:
        if release_reserve(store.layout):
            log.warning("store full (%s): used the reserve to commit a removal", exc)
        elif holds.empty_partials():
            log.warning("store full (%s): emptied idle partials to commit a removal", exc)
        else:
            raise
    with store.index.write() as txn:
        return body(txn)


def _delete_entries(
    store: Store, txn: lmdb.Transaction, d: Doomed, policy: Policy, holds: _Holds, spare_open: bool
) -> Removed:
    """Step 2: every index change of one batch (run again from scratch if the commit is retried)."""
    index = store.index
    out = Removed()
    for repo, ref in d.refs:
        index.delete_ref_in(txn, repo, ref)
    for repo, rev in d.snapshots:
        index.delete_snapshot_in(txn, repo, rev)
        index.delete_pin_in(txn, f"snapshot:{repo}@{rev}")
    for alias in d.aliases:
        target = index.alias_target(alias, txn)
        if target is not None and index.get_blob(target, txn) is None:
            index.delete_alias_in(txn, alias)
    for b3, alias in d.reverse_aliases:
        if index.alias_target(alias, txn) != b3:
            index.delete_reverse_alias_in(txn, b3, alias)
    for alias, tag in d.partials:
        rec = index.get_partial(alias, txn)
        if rec is None or rec.tag != tag:
            continue  # gone, or a new incarnation since it was chosen
        why = policy.partial(txn, alias) or holds.partial(alias, tag)
        if why is not None:
            out.kept[alias] = why
            continue
        cs = rec.chunk_size
        out.freed += sum(min(cs, rec.size - i * cs) for i in index.chunk_sums(alias, txn))
        index.delete_partial_in(txn, alias)
        out.partials.append(alias)
    for b3 in d.blobs:
        blob = index.get_blob(b3, txn)
        if blob is None:
            continue
        why = policy.blob(txn, b3, blob)
        if why is None and not holds.blob(b3) and spare_open:
            why = REASON_OPEN
        if why is not None:
            out.kept[b3] = why
            continue
        index.delete_blob_in(txn, b3)
        index.delete_pin_in(txn, f"blob:{b3}")
        out.blobs.append(b3)
        out.freed += blob.size
    return out


def _unlink(store: Store, d: Doomed, done: Removed) -> None:
    """Step 4: the files of what step 2 removed, then the files named directly."""
    for b3 in done.blobs:
        _unlink_quiet(store.layout.blob_path(b3))
    tags = dict(d.partials)
    for alias in done.partials:
        _unlink_quiet(store.layout.partial_path(alias, tags[alias]))
    for path in d.files:
        if path.parent.parent == store.layout.blobs and store.index.get_blob(path.name) is not None:
            continue  # an orphan no longer: published since it was found
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # e.g. the unpack directory of a killed `hoard import`
            else:
                os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:  # one unremovable leftover must not stop the rest
            log.warning("could not remove %s: %s", path, exc)
            continue
        done.files.append(str(path))


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Holds:
    """Descriptors locking what one batch removes, held until its files are unlinked."""

    def __init__(self, store: Store) -> None:
        self.layout = store.layout
        self._blobs: dict[str, int | None] = {}
        self._partials: dict[tuple[str, str], int | None] = {}

    def blob(self, b3: str) -> bool:
        """Take the blob's file exclusively (no wait); False if some process holds it open."""
        if b3 in self._blobs:
            return True
        try:
            fd = os.open(self.layout.blob_path(b3), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._blobs[b3] = None  # indexed without its file: only the entries go
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._blobs[b3] = fd
        return True

    def partial(self, alias: str, tag: str) -> str | None:
        """Take a partial's live lock exclusively; the reason to keep it if that fails."""
        key = (alias, tag)
        if key in self._partials:
            return None
        try:
            fd = os.open(self.layout.partial_path(alias, tag), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            self._partials[key] = None
            return None
        except PermissionError:
            return "being published"  # made read-only by its finalizer
        if not try_lock(fd, LIVE_OFFSET, exclusive=True):
            os.close(fd)
            return "being filled"
        self._partials[key] = fd
        return None

    def empty_partials(self) -> bool:
        """Free the space of the idle partials held; True if any had some.

        Each file is truncated (its blocks are freed although our descriptor stays open) and
        unlinked, so nobody can read its chunks as present: the next opener finds the record
        without its file and starts afresh, and ``hoard verify`` drops such records.
        """
        freed = False
        for (alias, tag), fd in self._partials.items():
            if fd is not None and os.fstat(fd).st_blocks:
                os.ftruncate(fd, 0)
                _unlink_quiet(self.layout.partial_path(alias, tag))
                freed = True
        return freed

    def close(self) -> None:
        for fd in (*self._blobs.values(), *self._partials.values()):
            if fd is not None:
                os.close(fd)
        self._blobs.clear()
        self._partials.clear()
