"""``hoard verify``: re-hash blobs and check the index against the files.

Like restic's ``check --read-data-subset``, a big store can be verified in slices: all blobs,
a random sample (``--sample 5%`` or ``--sample 100``), or the n-th of k subsets (``--subset
2/10``), so a nightly job can cover the whole store over k nights.

Findings:

* ``damaged``: the file's BLAKE3 (or, with ``deep``, its upstream hash) differs from its name
  — the blob is dropped from the index and its file deleted, so it is fetched again, never
  served again as valid. Content no origin can give back (a blob some ``local`` or
  ``no_origin`` revision uses: retention.py's rule) is not deleted, however damaged: its
  file is moved aside to ``quarantine/<b3>`` (listed in :attr:`VerifyReport.quarantined`),
  out of the index so it is never served, and left there for its owner to salvage;
* ``missing``: an indexed blob whose file is gone — dropped from the index;
* ``size``: a file whose length differs from the index — dropped (or moved aside, as above);
* ``dangling_alias``: an alias pointing at no blob — deleted, with its reverse entry;
* ``stale_reverse_alias``: a reverse entry (blob → alias) whose alias names another blob or
  none — deleted;
* ``orphan``: a file under ``blobs/`` the index does not know — deleted;
* ``partial_lost``: a partial record whose file is gone — deleted.

With ``dry_run`` nothing is changed; the report is the same. Repairs go through the store's
one removal path (removal.py): index entries first, a sync, then files, under the gc lock. A
blob set aside is first given a second name under ``quarantine/`` (a hard link: the bytes stay
where they are), then removed like any other: the removal unlinks its name under ``blobs/``
only, so the quarantined file survives, and a crash in between leaves both names (the next
run finds the same damage and reuses the quarantined name).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import lmdb

from .errors import IntegrityError, StoreFull
from .index import b3_key
from .layout import fsync_dir
from .records import BlobRecord
from .removal import Doomed, remove
from .retention import Retention
from .store import Store

__all__ = ["Finding", "Quarantined", "VerifyReport", "select_blobs", "verify"]

_PUBLISH_GRACE = 60.0  # seconds a blob file may sit unindexed while it is being published


@dataclass(frozen=True)
class Finding:
    kind: str
    name: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "detail": self.detail}


@dataclass(frozen=True)
class Quarantined:
    """A damaged blob of content no origin can give back, moved aside instead of deleted."""

    b3: str
    path: str
    #: ``repo@rev`` of a revision using it whose content has no origin
    used_by: str

    def as_dict(self) -> dict[str, str]:
        return {"blob": self.b3, "path": self.path, "used_by": self.used_by}


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)
    repaired: bool = False
    #: damaged blobs moved to the quarantine (with ``dry_run``: those that would be)
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checked_blobs": self.checked,
            "checked_bytes": self.bytes,
            "repaired": self.repaired,
            "findings": [f.as_dict() for f in self.findings],
            "quarantined": [q.as_dict() for q in self.quarantined],
        }


def select_blobs(
    store: Store, sample: str | None = None, subset: str | None = None, seed: int | None = None
) -> list[tuple[str, int]]:
    """The (b3, size) pairs to re-hash: all, a sample (``N`` or ``P%``), or subset ``i/k``."""
    with store.index.read() as txn:
        blobs = [(b3, rec.size) for b3, rec in store.index.iter_blobs(txn)]
    if subset:
        i, _, k = subset.partition("/")
        n, total = int(i), int(k)
        if not (1 <= n <= total):
            raise ValueError(f"subset must be i/k with 1 <= i <= k, got {subset!r}")
        blobs = [(b, s) for b, s in blobs if int(b[:8], 16) % total == n - 1]
    if sample:
        count = (
            max(1, round(len(blobs) * float(sample[:-1]) / 100)) if sample.endswith("%") else int(sample)
        )
        if count < len(blobs):
            blobs = random.Random(seed).sample(blobs, count)
    return blobs


def _hash_file(path: str, deep_kinds: set[str]) -> tuple[str, dict[str, str], int]:
    b3 = blake3.blake3(max_threads=blake3.blake3.AUTO)
    ups: dict[str, object] = {}
    size = os.path.getsize(path)
    if "sha256" in deep_kinds:
        ups["sha256"] = hashlib.sha256()
    if "gitsha1" in deep_kinds:
        ups["gitsha1"] = hashlib.sha1(b"blob %d\0" % size)
    if not ups:
        b3.update_mmap(path)
        return b3.hexdigest(), {}, size
    n = 0
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(16 << 20)
        while got := fh.readinto(buf):
            view = memoryview(buf)[:got]
            b3.update(view)
            for h in ups.values():
                h.update(view)  # type: ignore[attr-defined]
            n += got
    return b3.hexdigest(), {k: h.hexdigest() for k, h in ups.items()}, n  # type: ignore[attr-defined]


def verify(
    store: Store,
    blobs: list[tuple[str, int]],
    *,
    deep: bool = False,
    dry_run: bool = False,
    check_index: bool = True,
    publish_grace: float = _PUBLISH_GRACE,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Re-hash ``blobs`` and (``check_index``) check the index against the files.

    A file under ``blobs/`` the index does not know is an orphan only once it is older than
    ``publish_grace`` seconds: until then it may be a blob being published.
    """
    report = VerifyReport()
    found = _Found()
    for b3, size in blobs:
        _check_blob(store, b3, size, deep, report, found, progress)
    if check_index:
        _check_index(store, report, found, publish_grace)
    found.aside = _origin_less(store, found)
    report.quarantined = [
        Quarantined(b3, str(store.layout.quarantine_path(b3)), user) for b3, user in sorted(found.aside.items())
    ]
    if not dry_run and report.findings:
        report.quarantined = _repair(store, found)
        report.repaired = True
    return report


@dataclass
class _Found:
    """What the repair removes: bad blobs (with the file each check saw), orphan files,
    dangling aliases, stale reverse entries and partial records without their file."""

    bad_blobs: list[str] = field(default_factory=list)
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # b3 -> (inode, mtime)
    orphans: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    reverse: list[tuple[str, str]] = field(default_factory=list)
    lost: list[tuple[str, str]] = field(default_factory=list)  # (alias, tag)
    aside: dict[str, str] = field(default_factory=dict)  # b3 -> repo@rev with no origin


def _check_blob(
    store: Store,
    b3: str,
    size: int,
    deep: bool,
    report: VerifyReport,
    found: _Found,
    progress: Callable[[int], None] | None,
) -> None:
    path = str(store.blob_path(b3))
    aliases: list[str] = []
    if deep:
        with store.index.read() as txn:
            aliases = store.index.aliases_of(b3, txn)
    kinds = {a.split(":", 1)[0] for a in aliases}
    try:
        st = os.stat(path)
        got, ups, n = _hash_file(path, kinds if deep else set())
    except FileNotFoundError:
        report.findings.append(Finding("missing", b3, f"indexed blob has no file at {path}"))
        found.bad_blobs.append(b3)
        return
    report.checked += 1
    report.bytes += n
    if progress is not None:
        progress(n)
    problem = None
    if n != size:
        problem = Finding("size", b3, f"file has {n} bytes, index says {size}")
    elif got != b3:
        problem = Finding("damaged", b3, f"content hashes to {got}")
    else:
        for alias in aliases:
            kind, _, want = alias.partition(":")
            if kind in ups and ups[kind] != want:
                problem = Finding("damaged", b3, f"{kind} is {ups[kind]}, alias says {want}")
                break
    if problem is not None:
        report.findings.append(problem)
        found.bad_blobs.append(b3)
        found.seen[b3] = (st.st_ino, st.st_mtime_ns)


def _check_index(store: Store, report: VerifyReport, found: _Found, publish_grace: float) -> None:
    lost: list[tuple[str, str]] = []
    with store.index.read() as txn:
        blobs_db = store.index.db("blobs")
        for alias, b3 in store.index.iter_aliases(txn):
            if txn.get(b3_key(b3), db=blobs_db) is None:
                found.dangling.append(alias)
                report.findings.append(Finding("dangling_alias", alias, f"points at unknown blob {b3}"))
        for b3, alias in store.index.iter_reverse_aliases(txn):
            if store.index.alias_target(alias, txn) != b3:
                found.reverse.append((b3, alias))
                report.findings.append(Finding("stale_reverse_alias", alias, f"blob {b3} lists it, it names another"))
        for alias, prec in store.index.iter_partials(txn):
            if not store.layout.partial_path(alias, prec.tag).exists():
                lost.append((alias, prec.tag))
    # a partial published since our snapshot of the index is not lost: look again
    found.lost = [(a, tag) for a, tag in lost if _partial_file_missing(store, a)]
    for alias, _ in found.lost:
        report.findings.append(Finding("partial_lost", alias, "partial record without its file"))
    now = time.time()
    if store.layout.blobs.is_dir():
        for sub in os.scandir(store.layout.blobs):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                name = entry.name
                if len(name) == 64 and _is_hex(name) and store.index.get_blob(name) is not None:
                    continue
                # linking a blob into place changes its ctime; a young one may be mid-publish
                if now - entry.stat(follow_symlinks=False).st_ctime < publish_grace:
                    continue
                found.orphans.append(entry.path)
                report.findings.append(Finding("orphan", entry.path, "file not in the index"))


def _partial_file_missing(store: Store, alias: str) -> bool:
    rec = store.index.get_partial(alias)
    return rec is not None and not store.layout.partial_path(alias, rec.tag).exists()


def _is_hex(name: str) -> bool:
    try:
        bytes.fromhex(name)
    except ValueError:
        return False
    return True


def _unchanged(path: str, seen: tuple[int, int] | None) -> bool:
    """True if the file at ``path`` is still the one that was checked (or is still missing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return seen is None
    return seen is not None and (st.st_ino, st.st_mtime_ns) == seen


class _RepairPolicy:
    """A blob refetched and published since it was checked is a new, good file: keep it."""

    def __init__(self, store: Store, seen: dict[str, tuple[int, int]]) -> None:
        self.store = store
        self.seen = seen

    def blob(self, txn: lmdb.Transaction, b3: str, rec: BlobRecord) -> str | None:
        if _unchanged(str(self.store.blob_path(b3)), self.seen.get(b3)):
            return None
        return "replaced since it was checked"

    def partial(self, txn: lmdb.Transaction, alias: str) -> str | None:
        return None


def _origin_less(store: Store, found: _Found) -> dict[str, str]:
    """The damaged blobs (with a file) some revision with no origin uses: b3 -> that revision."""
    out: dict[str, str] = {}
    if not found.seen:
        return out
    with store.index.read() as txn:
        rules = Retention(store, txn)
        for b3 in found.seen:
            user = rules.origin_less_user(b3)
            if user is not None:
                out[b3] = user
    return out


def _repair(store: Store, found: _Found) -> list[Quarantined]:
    """Remove what was found, through the one removal path (each item re-checked there),
    after giving each blob of content no origin can give back its name in the quarantine.
    Returns what was set aside."""
    aside: dict[str, Path] = {}
    for b3 in sorted(found.aside):  # all of them before anything is removed
        path = _set_aside(store, b3, found.seen[b3])
        if path is not None:
            aside[b3] = path
    doomed = Doomed(
        # one not set aside (its file went or changed meanwhile) stays for the next run
        blobs=[b for b in found.bad_blobs if b not in found.aside or b in aside],
        aliases=found.dangling,
        reverse_aliases=found.reverse,
        partials=found.lost,
        files=[Path(p) for p in found.orphans],
    )
    done = remove(store, doomed, policy=_RepairPolicy(store, found.seen))
    for b3 in [b for b in aside if b in done.kept]:  # replaced by good bytes since it was checked
        aside.pop(b3).unlink(missing_ok=True)
    return [Quarantined(b3, str(path), found.aside[b3]) for b3, path in sorted(aside.items())]


def _set_aside(store: Store, b3: str, seen: tuple[int, int]) -> Path | None:
    """Give the damaged blob file checked as ``seen`` a name under ``quarantine/``; None if
    it is gone or was replaced since it was checked (then it is not removed this run)."""
    folder = store.layout.quarantine
    try:
        folder.mkdir(exist_ok=True)
        try:
            dest = _link_aside(store.blob_path(b3), folder, b3)
            st = os.stat(dest)
        except FileNotFoundError:
            return None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreFull(f"no space to set damaged blob {b3} aside in {folder}; nothing was removed") from exc
        raise IntegrityError(f"cannot set damaged blob {b3} aside in {folder} ({exc}); nothing was removed") from exc
    if (st.st_ino, st.st_mtime_ns) != seen:
        os.unlink(dest)
        return None
    fsync_dir(folder)
    return dest


def _link_aside(src: Path, folder: Path, b3: str) -> Path:
    """``quarantine/<b3>`` as a hard link to ``src`` (``<b3>.1``, ``<b3>.2``, ... when that
    name holds other bytes, set aside before). A link, not a copy: no second copy of a big
    file is written, and the file checked is exactly the file kept."""
    for n in itertools.count():
        dest = folder / (b3 if n == 0 else f"{b3}.{n}")
        try:
            os.link(src, dest)
            return dest
        except FileExistsError:
            if os.path.samefile(src, dest):
                return dest  # linked by an earlier run that stopped before the removal
    raise AssertionError("unreachable")
