"""Garbage collection: plan, then execute (``hoard gc [--max-size SIZE] [--dry-run]``).

The plan walks blobs and idle partials from the least recently used on and takes victims
until the store fits ``max_size``. What it passes over on the way, it lists as ``kept`` with
the reason (see retention.py): pinned, a file of a pinned revision, content no origin can give
back (the ``local`` source, pushed repos), used within ``gc_grace``, open in some process, or
a partial being filled. It also takes leftovers that cost space and mean nothing: stray
temporary files and partial files without a record.

Execution hands the victims to :func:`hoard.store.removal.remove` in batches, with a policy
that re-checks every rule at the last moment (pins may have been added, a blob used, a local
snapshot may have come to use it since the plan), so the plan is advice, never a licence.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lmdb

from .errors import StoreFull
from .locks import LIVE_OFFSET, try_lock
from .records import BlobRecord
from .removal import Doomed, remove
from .retention import REASON_OPEN, Retention
from .store import Store

__all__ = ["Victim", "Kept", "GcPlan", "GcResult", "plan_gc", "execute_gc", "blob_is_open"]

log = logging.getLogger("hoard.gc")

_TMP_MAX_AGE = 3600.0  # a temp file untouched for an hour belongs to a dead process
_STRAY_PARTIAL_AGE = 60.0  # a partial file is created just before its record: give it time


@dataclass
class Victim:
    kind: str  # "blob" | "partial" | "stray"
    name: str  # b3, alias, or path
    size: int
    last_access: float
    tag: str = ""  # a partial's incarnation

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "size": self.size, "last_access": int(self.last_access)}


@dataclass(frozen=True)
class Kept:
    """Something the plan passed over although the limit asked for more room, and why."""

    kind: str  # "blob" | "partial"
    name: str
    size: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "size": self.size, "reason": self.reason}


@dataclass
class GcPlan:
    max_size: int | None
    total_before: int
    victims: list[Victim] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    protected: int = 0
    busy_partials: int = 0
    now: float = 0.0

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
            "kept": [k.as_dict() for k in self.kept],
        }


@dataclass
class GcResult:
    removed: int = 0
    freed: int = 0
    skipped: int = 0
    kept: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"removed": self.removed, "freed": self.freed, "skipped": self.skipped, "kept": self.kept}


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


def blob_is_open(store: Store, b3: str) -> bool:
    """True if some process holds the blob's file open through the store (a shared flock)."""
    try:
        fd = os.open(store.blob_path(b3), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the probe's lock too
    return False


@dataclass
class _Candidate:
    victim: Victim
    record: BlobRecord | None = None  # blobs
    busy: bool = False  # partials


def plan_gc(store: Store, max_size: int | None, *, now: float | None = None) -> GcPlan:
    """Decide what to delete; changes nothing. ``now`` is the clock the grace period is
    measured against (default: the current time)."""
    now = time.time() if now is None else now
    candidates: list[_Candidate] = []
    known_partial_files: set[str] = set()
    total = 0
    with store.index.read() as txn:
        keep = Retention(store, txn, now)
        for b3, rec in store.index.iter_blobs(txn):
            total += rec.size
            candidates.append(_Candidate(Victim("blob", b3, rec.size, store.last_access(b3, rec)), rec))
        for alias, prec in store.index.iter_partials(txn):
            path = store.layout.partial_path(alias, prec.tag)
            known_partial_files.add(path.name)
            cs = prec.chunk_size
            present = sum(min(cs, prec.size - i * cs) for i in store.index.chunk_sums(alias, txn))
            total += present
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                mtime = 0.0
            victim = Victim("partial", alias, present, mtime, prec.tag)
            candidates.append(_Candidate(victim, busy=_partial_is_busy(path)))
        plan = GcPlan(max_size=max_size, total_before=total, protected=len(keep.protected), now=now)
        plan.busy_partials = sum(1 for c in candidates if c.busy)
        plan.victims.extend(_strays(store, known_partial_files, now))
        if max_size is not None and total > max_size:
            _choose(store, plan, keep, candidates, total - max_size)
    return plan


def _choose(store: Store, plan: GcPlan, keep: Retention, candidates: list[_Candidate], excess: int) -> None:
    """Walk candidates least recently used first, taking victims until ``excess`` is freed."""
    for cand in sorted(candidates, key=lambda c: (c.victim.last_access, c.victim.kind)):
        if excess <= 0:
            break
        v = cand.victim
        if cand.record is not None:
            why = keep.reason(v.name, cand.record) or (REASON_OPEN if blob_is_open(store, v.name) else None)
        elif v.name in keep.pinned_aliases:
            why = "pinned revision"
        else:
            why = "being filled" if cand.busy else None
        if why is not None:
            plan.kept.append(Kept(v.kind, v.name, v.size, why))
            continue
        plan.victims.append(v)
        excess -= v.size


def _strays(store: Store, known_partial_files: set[str], now: float) -> list[Victim]:
    out = []
    for entry in os.scandir(store.layout.tmp):
        st = entry.stat(follow_symlinks=False)
        if now - st.st_mtime > _TMP_MAX_AGE:
            out.append(Victim("stray", entry.path, st.st_size, st.st_mtime))
    for entry in os.scandir(store.layout.partial):
        if entry.name in known_partial_files:
            continue
        st = entry.stat(follow_symlinks=False)
        if now - st.st_mtime > _STRAY_PARTIAL_AGE and not _partial_is_busy(Path(entry.path)):
            out.append(Victim("stray", entry.path, st.st_blocks * 512, st.st_mtime))
    return out


class _GcPolicy:
    """The plan's rules again, in the removal's transaction, plus "not used since planning"."""

    def __init__(self, store: Store, plan: GcPlan) -> None:
        self.store = store
        self.now = time.time() if not plan.now else max(plan.now, time.time())
        self.planned = {v.name: v.last_access for v in plan.victims}
        self._retention: Retention | None = None

    def _rules(self, txn: lmdb.Transaction) -> Retention:
        if self._retention is None or self._retention.txn is not txn:
            self._retention = Retention(self.store, txn, self.now)  # pins as of this batch
        return self._retention

    def blob(self, txn: lmdb.Transaction, b3: str, rec: BlobRecord) -> str | None:
        why = self._rules(txn).reason(b3, rec)
        if why is None and self.store.last_access(b3, rec) > self.planned.get(b3, 0):
            why = "used since planning"
        return why

    def partial(self, txn: lmdb.Transaction, alias: str) -> str | None:
        return "pinned revision" if alias in self._rules(txn).pinned_aliases else None


def execute_gc(store: Store, plan: GcPlan, progress: Callable[[int], None] | None = None) -> GcResult:
    """Carry out a plan, re-checking every victim; returns what was actually removed."""
    try:
        store.flush_access()  # this process's recent uses count too
    except StoreFull as exc:  # they are still consulted from memory (Store.last_access)
        log.warning("gc: could not write last-access times: %s", exc)
    doomed = Doomed(
        blobs=[v.name for v in plan.victims if v.kind == "blob"],
        partials=[(v.name, v.tag) for v in plan.victims if v.kind == "partial"],
        files=[Path(v.name) for v in plan.victims if v.kind == "stray"],
    )
    done = remove(store, doomed, policy=_GcPolicy(store, plan), spare_open=True, progress=progress)
    removed = set(done.blobs) | set(done.partials) | set(done.files)
    result = GcResult(kept=done.kept)
    for v in plan.victims:
        if v.name in removed:
            result.removed += 1
            result.freed += v.size
        else:
            result.skipped += 1
    return result
