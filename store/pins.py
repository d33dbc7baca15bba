"""Pins by address: a file, a repo revision, or a repo that *follows* its branch.

The pins database holds ``blob:<b3>`` and ``snapshot:<repo>@<rev>`` (what gc honours, see
retention.py), and one more kind, the *follow* record ``ref:<repo>\\0<ref>``:

* ``hoard pin <repo>`` (no ``@``) of a source whose refs move pins the revision its default
  ref names now (a ``snapshot:`` pin) and records that the pin follows the ref. The record's
  note says which revision it holds, whether the follow made that snapshot pin itself
  (``own``: a revision also pinned by hand is never unpinned by a follow), the revision it
  held before (``previous``, still pinned until the one it holds is complete), and the
  address the user gave.
* :func:`advance_follows` moves each follow along its ref: when the ref names another cached
  revision, that revision is pinned at once (what of it is fetched already is kept) and the
  one held before becomes ``previous`` if it was complete (an incomplete one the follow
  pinned is simply let go); once the revision it holds is complete, ``previous`` is unpinned.
  So a repo being updated always keeps its last complete pinned copy until the new one is
  complete. Each step is one write transaction under the shared gc lock, re-reading the
  record first. Whoever moves refs or completes revisions calls it: a running proxy or mount
  (its maintenance task, which also fetches a followed repo's new revision), ``hoard pin``
  and ``hoard prefetch``.
* ``hoard unpin <repo>`` drops the follow and every pin it made (and the current revision's);
  ``hoard unpin <repo>@<rev>`` drops that revision's pin only. A follow whose revisions were
  all removed (``hoard rm --force``) is dropped by the next :func:`advance_follows`.

Sources whose refs never move (``local``: refs only change by ``hoard add``) pin the revision
alone. gc itself never looks at follow records: they change which ``snapshot:`` pins exist.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import lmdb

from .address import Address
from .catalog import default_ref, pin_target, resolve_cached
from .locks import gc_lock
from .records import PinRecord
from .sources import source_info
from .store import Store

__all__ = ["FOLLOW_PREFIX", "Follow", "PinResult", "follow_target", "follows", "pin_address", "unpin_address",
           "advance_follows", "snapshot_complete"]

FOLLOW_PREFIX = "ref:"


def follow_target(repo: str, ref: str) -> str:
    """The pins-database key of a follow record."""
    return f"{FOLLOW_PREFIX}{repo}\0{ref}"


def _snapshot(repo: str, rev: str) -> str:
    return f"snapshot:{repo}@{rev}"


@dataclass(frozen=True)
class Follow:
    """A repo pinned by its ref: the revision whose pin it holds (``own``: made by it), the
    complete revision it pinned before (kept until ``holds`` is complete), the address given."""

    repo: str
    ref: str
    holds: str
    own: bool
    address: str
    previous: str | None = None
    created: int = 0

    @property
    def target(self) -> str:
        return follow_target(self.repo, self.ref)

    @property
    def held(self) -> str:
        return _snapshot(self.repo, self.holds)

    def record(self) -> PinRecord:
        note = {"holds": self.holds, "own": self.own, "address": self.address, "previous": self.previous}
        return PinRecord(self.created, json.dumps(note, sort_keys=True))

    @classmethod
    def parse(cls, target: str, rec: PinRecord) -> Follow | None:
        """The follow a pins-database entry is, or None (another kind, or an unreadable note)."""
        if not target.startswith(FOLLOW_PREFIX) or "\0" not in target:
            return None
        repo, _, ref = target[len(FOLLOW_PREFIX):].partition("\0")
        try:
            note = json.loads(rec.note)
            previous = note.get("previous")
            return cls(repo, ref, str(note["holds"]), bool(note["own"]), str(note.get("address", repo)),
                       None if previous is None else str(previous), rec.created)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class PinResult:
    """What ``hoard pin`` did: the gc-honoured target, whether it is new, the ref followed."""

    pinned: str
    new: bool
    follows: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"pinned": self.pinned, "new": self.new, "follows": self.follows}


def follows(store: Store) -> list[Follow]:
    """Every follow record, in key order."""
    found = (Follow.parse(target, rec) for target, rec in store.pins().items())
    return [f for f in found if f is not None]


def _follow_of(store: Store, repo: str, ref: str, txn: lmdb.Transaction) -> Follow | None:
    target = follow_target(repo, ref)
    rec = store.index.get_pin(target, txn)
    return None if rec is None else Follow.parse(target, rec)


def _follows_ref(addr: Address) -> bool:
    info = source_info(addr.source)
    return not addr.path and not addr.revision and info is not None and info.refs_move


def snapshot_complete(store: Store, repo: str, rev: str, txn: lmdb.Transaction | None = None) -> bool:
    """Whether a cached revision's every file is a complete blob."""
    if txn is None:
        with store.index.read() as rtxn:
            return snapshot_complete(store, repo, rev, rtxn)
    snap = store.index.get_snapshot(repo, rev, txn)
    return snap is not None and all(store.index.resolve(e.identity, txn) is not None for e in snap.files.values())


# -- the steps of a follow, each inside the caller's write transaction ---------------------------


def _pin_in(store: Store, txn: lmdb.Transaction, target: str, note: str) -> bool:
    """Add a snapshot pin unless present; True if this call made it."""
    if store.index.get_pin(target, txn) is not None:
        return False
    store.index.put_pin_in(txn, target, PinRecord(int(time.time()), note))
    return True


def _retarget(store: Store, txn: lmdb.Transaction, follow: Follow, rev: str) -> Follow:
    """Hold ``rev`` now (pinned at once); the revision held so far becomes ``previous`` if the
    follow pinned it and it is complete; an incomplete one it pinned is let go."""
    own = _pin_in(store, txn, _snapshot(follow.repo, rev), follow.address)
    previous = follow.previous
    if follow.own:
        if snapshot_complete(store, follow.repo, follow.holds, txn):
            if previous is not None and previous != rev:
                store.index.delete_pin_in(txn, _snapshot(follow.repo, previous))
            previous = follow.holds
        else:
            store.index.delete_pin_in(txn, follow.held)
    if previous == rev:
        previous, own = None, True  # back to the complete revision it still pins from before
    return replace(follow, holds=rev, own=own, previous=previous)


def _settle(store: Store, txn: lmdb.Transaction, follow: Follow) -> Follow:
    """Once the revision held is complete, unpin the one before it."""
    if follow.previous is None or not snapshot_complete(store, follow.repo, follow.holds, txn):
        return follow
    store.index.delete_pin_in(txn, _snapshot(follow.repo, follow.previous))
    return replace(follow, previous=None)


def _step(store: Store, follow: Follow, rev: str | None) -> Follow | None:
    """Retarget (to ``rev``, if given and new) and settle one follow, re-read in the write
    transaction; returns it as written, or None when it is gone or unchanged."""
    with gc_lock(store.layout.gc_lock, exclusive=False), store.index.write() as txn:
        current = _follow_of(store, follow.repo, follow.ref, txn)
        if current is None:
            return None
        if not any(store.index.get_snapshot(current.repo, r, txn) for r in (current.holds, current.previous) if r):
            store.index.delete_pin_in(txn, current.target)  # the repo was removed (hoard rm): so is its follow
            return None
        moved = current
        if rev is not None and rev != current.holds and store.index.get_snapshot(current.repo, rev, txn) is not None:
            moved = _retarget(store, txn, current, rev)
        moved = _settle(store, txn, moved)
        if moved == current:
            return None
        store.index.put_pin_in(txn, moved.target, moved.record())
    return moved


# -- the commands ------------------------------------------------------------------------------


def pin_address(store: Store, addr: Address, note: str) -> PinResult:
    """Pin what ``addr`` names: a file's blob, a revision, or (no ``@`` on a source whose refs
    move) the default ref's revision, followed as the ref moves."""
    if not _follows_ref(addr):
        target = pin_target(store, addr)
        new = store.pin(target, note=note)
        if not new and target.startswith("snapshot:"):
            _disown(store, target)  # pinned by hand too: a follow moving on keeps it
        return PinResult(target, new)
    ref = default_ref(addr.source)
    rev, _ = resolve_cached(store, addr)
    target = _snapshot(addr.repo_key, rev)
    with gc_lock(store.layout.gc_lock, exclusive=False), store.index.write() as txn:
        existing = _follow_of(store, addr.repo_key, ref, txn)
        if existing is None:
            new = _pin_in(store, txn, target, note)
            follow = Follow(addr.repo_key, ref, rev, new, note, None, int(time.time()))
        elif existing.holds != rev:
            new = store.index.get_pin(target, txn) is None
            follow = _retarget(store, txn, existing, rev)
        else:
            new = _pin_in(store, txn, target, note)  # unpinned by hand meanwhile: pinned again
            follow = replace(existing, own=existing.own or new)
        follow = _settle(store, txn, follow)
        store.index.put_pin_in(txn, follow.target, follow.record())
    return PinResult(target, new, ref)


def _disown(store: Store, snapshot_target: str) -> None:
    """A follow holding this snapshot pin no longer owns it (it was pinned by hand too)."""
    with store.index.write() as txn:
        for target, rec in list(store.index.iter_pins(txn)):
            follow = Follow.parse(target, rec)
            if follow is not None and follow.own and follow.held == snapshot_target:
                store.index.put_pin_in(txn, target, replace(follow, own=False).record())


def unpin_address(store: Store, addr: Address) -> list[tuple[str, bool]]:
    """Remove the pins ``addr`` names; returns (target, was pinned) for each target looked at.
    A repo (no ``@``) drops its follow record, the pins it made and the current revision's."""
    if not _follows_ref(addr):
        target = pin_target(store, addr)
        return [(target, store.unpin(target))]
    targets: list[str] = []
    try:
        rev, _ = resolve_cached(store, addr)
        targets.append(_snapshot(addr.repo_key, rev))
    except FileNotFoundError:
        pass  # not cached any more: its follow record may still be there
    out = []
    with store.index.write() as txn:
        follow = _follow_of(store, addr.repo_key, default_ref(addr.source), txn)
        if follow is not None:
            store.index.delete_pin_in(txn, follow.target)
            made = [follow.held] if follow.own else []
            made += [_snapshot(follow.repo, follow.previous)] if follow.previous else []
            targets += [t for t in made if t not in targets]
        for target in targets:
            out.append((target, store.index.delete_pin_in(txn, target)))
    if follow is not None and not any(was for _, was in out):
        out.append((follow.target, True))
    return out


def advance_follows(store: Store) -> list[Follow]:
    """Move every follow along its ref (as the store knows it) and drop the pins of revisions
    superseded by a complete one; returns each follow that changed, as written."""
    changed = []
    for follow in follows(store):
        ref = store.get_ref(follow.repo, follow.ref)
        moved = _step(store, follow, None if ref is None else ref.revision)
        if moved is not None:
            changed.append(moved)
    return changed
