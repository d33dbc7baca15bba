"""What gc may never collect, and why: the retention rules in one place.

A blob is kept, whatever the size limit, when it is

* **pinned** — directly (``hoard pin`` of a file), or as a file of a pinned revision;
* **origin-less** — some snapshot using it names content no origin can give back: a repo of
  the ``local`` source (``hoard add``, ``hoard import``), or one whose snapshot info says
  ``no_origin`` (pushed content). Only ``hoard rm`` removes such content;
* **recently used** — opened or served within ``gc_grace`` seconds (its index record, or
  this process's use not yet written there, see last_access.py);
* **open** — some process holds it open (a shared ``flock`` on the file, taken by
  :meth:`Store.open_blob` and by open partials that became the blob): checked by the
  caller, which needs the file itself (gc's plan probes it, removal holds it exclusively).

:class:`Retention` answers against one LMDB transaction, so gc's plan (a read transaction)
and its execution (the removal's write transaction, under the exclusive gc lock) apply the
same rules to the state they see. "Which snapshots use this blob" comes from the index's
``users`` database, looked up under every name of the blob.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING

import lmdb

from .records import BlobRecord

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Retention", "RemoveRules", "LOCAL_PREFIX", "REASON_OPEN", "REASON_GRACE"]

#: repo keys of the local source start with this: its content exists nowhere else
LOCAL_PREFIX = "local/"
REASON_OPEN = "open"
REASON_GRACE = "used within gc_grace"


class Retention:
    """The retention rules evaluated in one transaction (pins are read once, at creation)."""

    def __init__(
        self,
        store: Store,
        txn: lmdb.Transaction,
        now: float | None = None,
        *,
        ignore_revisions: Collection[str] = (),
    ) -> None:
        """``ignore_revisions`` (``repo@rev``): pinned revisions whose pins do not count
        (``hoard rm --force`` removes them together with their pins)."""
        self.store = store
        self._ignore = set(ignore_revisions)
        self.txn = txn
        self.now = time.time() if now is None else now
        self.grace = store.config.gc_grace
        #: b3 pinned directly
        self.pinned_blobs: set[str] = set()
        #: b3 → the pinned revision (repo@rev) holding it
        self.pinned_revisions: dict[str, str] = {}
        #: identities of files of pinned revisions (their partials are kept too)
        self.pinned_aliases: set[str] = set()
        self._no_origin: dict[tuple[str, str], bool] = {}
        self._load_pins()

    def _load_pins(self) -> None:
        index = self.store.index
        for target, _ in index.iter_pins(self.txn):
            if target.startswith("blob:"):
                self.pinned_blobs.add(target[5:])
            elif target.startswith("snapshot:"):
                if target[9:] in self._ignore:
                    continue
                repo, _, rev = target[9:].rpartition("@")
                snap = index.get_snapshot(repo, rev, self.txn)
                if snap is None:
                    continue
                for entry in snap.files.values():
                    self.pinned_aliases.add(entry.identity)
                    b3 = index.resolve(entry.identity, self.txn)
                    if b3 is not None:
                        self.pinned_revisions.setdefault(b3, f"{repo}@{rev}")

    @property
    def protected(self) -> set[str]:
        """Every pinned blob, directly or through a pinned revision."""
        return self.pinned_blobs | set(self.pinned_revisions)

    def pin_reason(self, b3: str, rec: BlobRecord) -> str | None:
        if rec.pins or b3 in self.pinned_blobs:
            return "pinned"
        revision = self.pinned_revisions.get(b3)
        return None if revision is None else f"pinned revision {revision}"

    def reason(self, b3: str, rec: BlobRecord) -> str | None:
        """Why gc must keep this blob (pins, origin, grace), or None if it may go.

        Whether the file is open is not looked at here: see the module docstring.
        """
        why = self.pin_reason(b3, rec)
        if why is not None:
            return why
        user = self.origin_less_user(b3)
        if user is not None:
            return f"no origin ({user})"
        if self.grace > 0 and self.now - self.store.last_access(b3, rec) < self.grace:
            return REASON_GRACE
        return None

    def origin_less_user(self, b3: str) -> str | None:
        """``repo@rev`` of a snapshot using this blob whose content has no origin, if any."""
        index = self.store.index
        for name in (f"b3:{b3}", *index.aliases_of(b3, self.txn)):
            for repo, rev, _ in index.users_of(name, self.txn):
                if self._origin_less(repo, rev):
                    return f"{repo}@{rev}"
        return None

    def _origin_less(self, repo: str, rev: str) -> bool:
        if repo.startswith(LOCAL_PREFIX):
            return True
        key = (repo, rev)
        known = self._no_origin.get(key)
        if known is None:
            snap = self.store.index.get_snapshot(repo, rev, self.txn)
            known = snap is not None and bool(snap.info.get("no_origin"))
            self._no_origin[key] = known
        return known


class RemoveRules:
    """Why ``hoard rm`` keeps a blob of what it removes: pinned (other than by a revision it
    removes), or used by a snapshot it does not remove (another revision of any repo, or
    another file of the revision a file is removed from).

    Like :class:`Retention`, evaluated in one transaction: the plan's (a read) and the
    removal's (a write, after the removed snapshots' entries are gone), so a revision that
    came to use a blob after the plan still keeps it.
    """

    def __init__(
        self,
        store: Store,
        txn: lmdb.Transaction,
        *,
        gone: Collection[tuple[str, str]] = (),
        file: tuple[str, str, str] | None = None,
    ) -> None:
        """``gone``: the (repo, revision) pairs removed; ``file``: (repo, revision, path)
        when one file's blob is removed."""
        self.store = store
        self.txn = txn
        self.gone = set(gone)
        self.file = file
        self.pins = Retention(store, txn, ignore_revisions=[f"{r}@{v}" for r, v in self.gone])

    def reason(self, b3: str, rec: BlobRecord | None) -> str | None:
        why = self.pins.pin_reason(b3, rec or BlobRecord(0, 0, 0))
        return why or self.user_elsewhere(b3)

    def user_elsewhere(self, b3: str) -> str | None:
        """``used by <repo@rev>[/<path>]`` for a user of this blob that stays, if any."""
        index, txn = self.store.index, self.txn
        names = [f"b3:{b3}", *index.aliases_of(b3, txn)]
        for repo, rev in sorted({(r, v) for name in names for r, v, _ in index.users_of(name, txn)}):
            if (repo, rev) in self.gone:
                continue
            if self.file is None or (repo, rev) != self.file[:2]:
                return f"used by {repo}@{rev}"
            snap = index.get_snapshot(repo, rev, txn)
            for path, entry in sorted(snap.files.items()) if snap else ():
                if path != self.file[2] and index.resolve(entry.identity, txn) == b3:
                    return f"used by {repo}@{rev}/{path}"
        return None
