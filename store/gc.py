"""Garbage collection: plan, then execute (``hoard gc [--max-size SIZE] [--dry-run]``).

The plan ranks unpinned blobs by last access (oldest first) and idle partials by their last
write, and takes victims until the store fits ``max_size``. It never takes a pinned blob, a
blob or partial of a pinned snapshot, or a partial some process has open (its live lock is
held). It also takes leftovers that cost space and mean nothing: stray temporary files and
partial files without a record.

Execution re-checks each victim under the exclusive gc lock (pins may have been added, a blob
may have been touched by a reader since the plan), removes index entries first and files after
(DESIGN.md §2, invariant 4), in batches so publishers are never blocked for long.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import protected_aliases, protected_blobs
from .locks import LIVE_OFFSET, gc_lock, try_lock
from .store import Store

__all__ = ["GcPlan", "GcResult", "plan_gc", "execute_gc"]

log = logging.getLogger("hoard.gc")

_BATCH = 256
_TMP_MAX_AGE = 3600.0  # a temp file untouched for an hour belongs to a dead process


@dataclass
class Victim:
    kind: str  # "blob" | "partial" | "stray"
    name: str  # b3, alias, or path
    size: int
    last_access: float

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "size": self.size, "last_access": int(self.last_access)}


@dataclass
class GcPlan:
    max_size: int | None
    total_before: int
    victims: list[Victim] = field(default_factory=list)
    protected: int = 0
    busy_partials: int = 0

    @property
    def freed(self) -> int:
        return sum(v.size for v in self.victims)

    @property
    def total_after(self) -> int:
        return self.total_before - sum(v.size for v in self.victims if v.kind != "stray")

    def as_dict(self) -> dict[str, object]:
        return {
            "max_size": self.max_size,
            "total_before": self.total_before,
            "total_after": self.total_after,
            "freed": self.freed,
            "protected_blobs": self.protected,
            "busy_partials": self.busy_partials,
            "victims": [v.as_dict() for v in self.victims],
        }


@dataclass
class GcResult:
    removed: int = 0
    freed: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"removed": self.removed, "freed": self.freed, "skipped": self.skipped}


def _partial_is_busy(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # made read-only: it is being published
    try:
        return not try_lock(fd, LIVE_OFFSET, exclusive=True)
    finally:
        os.close(fd)


def plan_gc(store: Store, max_size: int | None) -> GcPlan:
    """Decide what to delete; changes nothing."""
    protected = protected_blobs(store)
    keep_aliases = protected_aliases(store)
    blobs: list[Victim] = []
    partials: list[Victim] = []
    total = 0
    known_partial_files: set[str] = set()
    busy = 0
    with store.index.read() as txn:
        for b3, rec in store.index.iter_blobs(txn):
            total += rec.size
            if b3 not in protected and rec.pins == 0:
                blobs.append(Victim("blob", b3, rec.size, rec.last_access))
        for alias, prec in store.index.iter_partials(txn):
            path = store.layout.partial_path(alias, prec.tag)
            known_partial_files.add(path.name)
            cs = prec.chunk_size
            present = sum(min(cs, prec.size - i * cs) for i in store.index.chunk_sums(alias, txn))
            total += present
            if alias in keep_aliases:
                continue
            if _partial_is_busy(path):
                busy += 1
                continue
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                mtime = 0.0
            partials.append(Victim("partial", alias, present, mtime))
    plan = GcPlan(max_size=max_size, total_before=total, protected=len(protected), busy_partials=busy)
    plan.victims.extend(_strays(store, known_partial_files))
    if max_size is not None and total > max_size:
        excess = total - max_size
        for victim in sorted(blobs + partials, key=lambda v: (v.last_access, v.kind)):
            if excess <= 0:
                break
            plan.victims.append(victim)
            excess -= victim.size
    return plan


def _strays(store: Store, known_partial_files: set[str]) -> list[Victim]:
    out = []
    now = time.time()
    for entry in os.scandir(store.layout.tmp):
        st = entry.stat(follow_symlinks=False)
        if now - st.st_mtime > _TMP_MAX_AGE:
            out.append(Victim("stray", entry.path, st.st_size, st.st_mtime))
    for entry in os.scandir(store.layout.partial):
        if entry.name in known_partial_files:
            continue
        st = entry.stat(follow_symlinks=False)
        # a partial file is created just before its record; give its creator time
        if now - st.st_mtime > 60 and not _partial_is_busy(Path(entry.path)):
            out.append(Victim("stray", entry.path, st.st_blocks * 512, st.st_mtime))
    return out


def execute_gc(store: Store, plan: GcPlan, progress: Callable[[int], None] | None = None) -> GcResult:
    """Carry out a plan, re-checking every victim; returns what was actually removed."""
    result = GcResult()
    store.flush_access()
    blobs = [v for v in plan.victims if v.kind == "blob"]
    for start in range(0, len(blobs), _BATCH):
        batch = blobs[start : start + _BATCH]
        doomed: list[Victim] = []
        with gc_lock(store.layout.gc_lock, exclusive=True):
            protected = protected_blobs(store)  # pins may have been added since the last batch
            with store.index.write() as txn:
                for v in batch:
                    rec = store.index.get_blob(v.name, txn)
                    if rec is None or rec.pins or v.name in protected or rec.last_access > v.last_access:
                        result.skipped += 1
                        continue
                    store.index.delete_blob_in(txn, v.name)
                    doomed.append(v)
            # the deletion must be durable before the files go, or a machine crash could bring
            # back index entries whose files are gone
            store.index.env.sync(True)
            for v in doomed:
                try:
                    os.unlink(store.blob_path(v.name))
                except FileNotFoundError:
                    pass
        result.removed += len(doomed)
        result.freed += sum(v.size for v in doomed)
        if progress is not None:
            progress(len(batch))
    keep_aliases = protected_aliases(store)
    for v in plan.victims:
        try:
            if v.kind == "partial":
                removed = v.name not in keep_aliases and _remove_partial(store, v.name)
            elif v.kind == "stray":
                removed = _remove_stray(Path(v.name))
            else:
                continue
        except OSError as exc:  # one unremovable leftover must not stop the rest
            log.warning("gc: could not remove %s: %s", v.name, exc)
            removed = False
        if removed:
            result.removed += 1
            result.freed += v.size
        else:
            result.skipped += 1
        if progress is not None and v.kind != "blob":
            progress(1)
    return result


def _remove_stray(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # e.g. the unpack directory of a killed `hoard import`
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _remove_partial(store: Store, alias: str) -> bool:
    rec = store.index.get_partial(alias)
    if rec is None:
        return False
    path = store.layout.partial_path(alias, rec.tag)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    except PermissionError:
        return False  # being published
    try:
        if fd is not None and not try_lock(fd, LIVE_OFFSET, exclusive=True):
            return False  # someone opened it since the plan
        with store.index.write() as txn:
            cur = store.index.get_partial(alias, txn)
            if cur is None or cur.tag != rec.tag:
                return False
            store.index.delete_partial_in(txn, alias)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return True
    finally:
        if fd is not None:
            os.close(fd)
