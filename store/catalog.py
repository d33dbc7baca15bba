"""What the store knows about addresses, without asking any origin.

The index keeps, per repo, refs (mutable names → revision ids) and snapshots (revision →
files). This module answers "which revision and file does this address mean *here*", lists
cached repos, imports local directories (the ``local`` source), and plans removals. Origin
lookups (refs that expired, names never seen) are the proxy's business.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import lmdb

from .address import Address, check_path
from .errors import Busy, InvalidAddress, NotFound, UsageError
from .records import BlobRecord, ExpectedHash, Snapshot, TreeEntry
from .removal import Doomed, Removed, remove
from .retention import RemoveRules, Retention
from .sources import source_info
from .store import Store

__all__ = [
    "default_ref",
    "cached_revision",
    "resolve_cached",
    "FileState",
    "file_state",
    "add_directory",
    "RepoSummary",
    "list_repos",
    "RemovePlan",
    "plan_remove",
    "execute_remove",
    "pin_target",
    "cached_blob",
    "protected_blobs",
]


_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__"}


def default_ref(source: str) -> str:
    """The ref an address without ``@revision`` means, from the source registry."""
    info = source_info(source)
    return info.default_ref if info is not None else "main"


def cached_revision(store: Store, addr: Address) -> str | None:
    """The revision id an address means in the cache: a known revision, or a ref's target."""
    rev = addr.revision or default_ref(addr.source)
    if store.get_snapshot(addr.repo_key, rev) is not None:
        return rev
    ref = store.get_ref(addr.repo_key, rev)
    return None if ref is None else ref.revision


def resolve_cached(store: Store, addr: Address) -> tuple[str, Snapshot]:
    """(revision, snapshot) of an address from the cache alone; NotFound if not cached."""
    rev = cached_revision(store, addr)
    snap = None if rev is None else store.get_snapshot(addr.repo_key, rev)
    if rev is None or snap is None:
        what = addr.repo_key + (f"@{addr.revision}" if addr.revision else "")
        raise NotFound(f"{what} is not in the cache")
    return rev, snap


@dataclass(frozen=True)
class FileState:
    """Where a file's bytes are: a complete blob, a partial, or nowhere yet."""

    path: str
    entry: TreeEntry
    b3: str | None
    present: int

    @property
    def complete(self) -> bool:
        return self.b3 is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.entry.size,
            "identity": self.entry.identity,
            "blake3": self.b3,
            "present": self.present,
        }


def file_state(store: Store, path: str, entry: TreeEntry) -> FileState:
    b3 = store.resolve(entry.identity)
    if b3 is not None:
        return FileState(path, entry, b3, entry.size)
    status = store.partial_status(entry.identity)
    return FileState(path, entry, None, status[0] if status else 0)


# -- local source -----------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, file to read) for every regular file under ``root``, sorted.

    Nothing outside ``root`` is ever read: entries are examined with ``lstat``
    (:func:`~hoard.store.safefs.scan_tree`), folders are entered only when they are real
    folders, and a link is followed only when its resolved target is a regular file inside
    ``root``. Links leaving ``root`` refuse the whole import *before* the first file is
    yielded (:class:`UsageError` naming them all), so nothing of it is added; FIFOs, sockets,
    devices, dangling links and links to folders are skipped with a warning.
    """
    import logging

    from .safefs import scan_tree

    scan = scan_tree(root, skip_dirs=_SKIP_DIRS)
    if scan.escaping:
        raise UsageError(scan.escaping_message(root) + "; nothing was added (copy the files in, or remove the links)")
    for note in scan.skipped:
        logging.getLogger("hoard.catalog").warning("hoard: skipped %s: not a regular file", note)
    for rel, full in scan.files:
        yield check_path(rel), full


def snapshot_id(files: dict[str, TreeEntry]) -> str:
    """A revision id for local content: 40 hex of BLAKE3 over the sorted (path, size, id) list."""
    doc = json.dumps([[p, e.size, e.identity] for p, e in sorted(files.items())], separators=(",", ":"))
    return blake3.blake3(doc.encode()).hexdigest()[:40]


def add_directory(
    store: Store,
    directory: Path,
    addr: Address,
    *,
    on_file: Callable[[str, int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, Snapshot]:
    """Import every file under ``directory`` as ``local/<owner>/<repo>[@label]``.

    Each file becomes a blob (stored once, whatever else holds the same bytes); the tree
    becomes a snapshot whose id is derived from its content; the label (default ``main``)
    and ``main`` point at it.
    """
    if addr.source != "local":
        raise InvalidAddress(f"hoard add imports into the local source, not {addr.source!r}")
    if addr.path:
        raise InvalidAddress("hoard add takes a repo address (local/<owner>/<repo>[@version]), not a file")
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    files: dict[str, TreeEntry] = {}
    sources: dict[str, Path] = {}
    for rel, full in _walk(directory):
        if on_file is not None:
            on_file(rel, full.stat().st_size)
        b3, size = store.add_file(full, progress=progress)
        files[rel] = TreeEntry.of_hash(size, ExpectedHash("blake3", b3))
        sources[rel] = full
    if not files:
        raise UsageError(f"{directory} holds no files")
    rev = snapshot_id(files)
    refs = {default_ref("local")}
    if addr.revision:
        refs.add(addr.revision)
    # no origin can give this content back: gc keeps it until `hoard rm` (retention.py)
    snap = Snapshot(files, int(time.time()), {"source_dir": str(directory.resolve()), "no_origin": True})
    _record_local(store, addr.repo_key, rev, snap, sorted(refs), sources, progress)
    return rev, snap


def _record_local(
    store: Store,
    repo: str,
    rev: str,
    snap: Snapshot,
    refs: list[str],
    sources: dict[str, Path],
    progress: Callable[[int], None] | None,
) -> None:
    """Record a local snapshot once every blob it names is in the store.

    Until the snapshot is recorded its blobs are nobody's, and gc may take any whose grace
    period ran out while a long import went on. The snapshot is written only under the shared
    gc lock after checking them all (:meth:`Store.put_snapshot_if_complete`); a file whose
    blob was collected meanwhile is imported again from its source.
    """
    for _ in range(3):
        missing = store.put_snapshot_if_complete(repo, rev, snap, refs)
        if not missing:
            return
        for rel in missing:
            b3, _ = store.add_file(sources[rel], progress=progress)
            if f"b3:{b3}" != snap.files[rel].identity:
                raise UsageError(f"{sources[rel]} changed while it was being added; add it again")
    raise Busy(f"could not record {repo}: gc kept removing its files while they were added")


# -- listing ----------------------------------------------------------------------------------


@dataclass
class RepoSummary:
    repo: str
    refs: dict[str, str]
    revisions: list[str]
    files: int = 0
    size: int = 0
    cached: int = 0
    pinned: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "repo": self.repo,
            "refs": self.refs,
            "revisions": self.revisions,
            "files": self.files,
            "size": self.size,
            "cached_bytes": self.cached,
            "pinned": self.pinned,
        }


def list_repos(store: Store, prefix: str = "") -> list[RepoSummary]:
    """Every cached repo under ``prefix`` with its refs, revisions and cached bytes."""
    pins = store.pins()
    out: dict[str, RepoSummary] = {}
    with store.index.read() as txn:
        for repo, ref, rec in store.index.iter_refs(txn, prefix):
            out.setdefault(repo, RepoSummary(repo, {}, [])).refs[ref] = rec.revision
        for repo, rev, snap in store.index.iter_snapshots(txn, prefix):
            summary = out.setdefault(repo, RepoSummary(repo, {}, []))
            summary.revisions.append(rev)
            if f"snapshot:{repo}@{rev}" in pins:
                summary.pinned = True
            main = summary.refs.get(default_ref(repo.split("/", 1)[0]))
            if main is None or main == rev:
                summary.files = len(snap.files)
                summary.size = snap.size
                summary.cached = 0
                for entry in snap.files.values():
                    if store.index.resolve(entry.identity, txn) is not None:
                        summary.cached += entry.size
    return [out[k] for k in sorted(out)]


# -- pins -------------------------------------------------------------------------------------


def cached_blob(store: Store, addr: Address, missing: str) -> tuple[TreeEntry, str]:
    """The tree entry and complete blob of a file address; NotFound (with ``missing`` as the
    reason when only the blob is absent) otherwise."""
    rev, snap = resolve_cached(store, addr)
    entry = snap.files.get(addr.path)
    if entry is None:
        raise NotFound(f"{addr} is not a file of {addr.repo_key}@{rev}")
    b3 = store.resolve(entry.identity)
    if b3 is None:
        raise NotFound(f"{addr} {missing}")
    return entry, b3


def pin_target(store: Store, addr: Address) -> str:
    """The pin target an address names: a file's blob, or a repo revision's snapshot."""
    if addr.path:
        _, b3 = cached_blob(store, addr, "is not fully cached yet; prefetch it, or pin the repo")
        return f"blob:{b3}"
    rev, _ = resolve_cached(store, addr)
    return f"snapshot:{addr.repo_key}@{rev}"


def protected_blobs(store: Store) -> set[str]:
    """BLAKE3s gc must keep whatever the limit: pinned blobs and every blob of a pinned
    revision (the other retention rules are in retention.py)."""
    with store.index.read() as txn:
        return Retention(store, txn).protected


# -- removal ----------------------------------------------------------------------------------


@dataclass
class RemovePlan:
    """What ``hoard rm`` will delete: snapshots, refs, and blobs nothing else uses."""

    snapshots: list[tuple[str, str]] = field(default_factory=list)
    refs: list[tuple[str, str]] = field(default_factory=list)
    blobs: list[tuple[str, int]] = field(default_factory=list)
    kept_pinned: list[str] = field(default_factory=list)
    #: blobs of what is removed that another revision (or another file) still uses
    kept_shared: list[str] = field(default_factory=list)
    #: (repo, revision, path) when one file's blob is removed
    file: tuple[str, str, str] | None = None

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.blobs)

    def as_dict(self) -> dict[str, object]:
        return {
            "snapshots": [f"{r}@{v}" for r, v in self.snapshots],
            "refs": [f"{r}:{n}" for r, n in self.refs],
            "blobs": [b for b, _ in self.blobs],
            "freed_bytes": self.freed,
            "kept_pinned": self.kept_pinned,
            "kept_shared": self.kept_shared,
        }


def _rules(store: Store, plan: RemovePlan, txn: lmdb.Transaction) -> RemoveRules:
    return RemoveRules(store, txn, gone=plan.snapshots, file=plan.file)


class _RemovePolicy:
    """The plan's rules again inside each removal transaction (removal.py)."""

    def __init__(self, store: Store, plan: RemovePlan) -> None:
        self.store = store
        self.plan = plan
        self._rules: RemoveRules | None = None

    def blob(self, txn: lmdb.Transaction, b3: str, rec: BlobRecord) -> str | None:
        if self._rules is None or self._rules.txn is not txn:
            self._rules = _rules(self.store, self.plan, txn)
        return self._rules.reason(b3, rec)

    def partial(self, txn: lmdb.Transaction, alias: str) -> str | None:
        return None


def _doomed_revisions(store: Store, addr: Address, force: bool) -> set[tuple[str, str]]:
    """The (repo, revision) pairs a repo or revision address removes; pinned ones need force."""
    if addr.revision:
        rev, _ = resolve_cached(store, addr)
        doomed = {(addr.repo_key, rev)}
    else:
        doomed = {(addr.repo_key, r) for r in store.revisions(addr.repo_key)}
        if not doomed and not store.refs(addr.repo_key):
            raise NotFound(f"{addr.repo_key} is not in the cache")
    pinned = sorted(f"{r}@{v}" for r, v in doomed if f"snapshot:{r}@{v}" in store.pins())
    if pinned and not force:
        raise UsageError(f"{', '.join(pinned)} is pinned: `hoard unpin` it first, or remove with --force")
    return doomed


def plan_remove(store: Store, addr: Address, *, force: bool = False) -> RemovePlan:
    """Plan removing a repo (all revisions), one revision, or one file's blob.

    A pinned revision is refused unless ``force`` (which also drops its pin). A blob is
    removed only if nothing that stays uses it: no other revision of any repo, no other
    file of the same revision, no pin.
    """
    plan = RemovePlan()
    candidates: dict[str, int] = {}
    if addr.path:
        rev, _ = resolve_cached(store, addr)
        entry, b3 = cached_blob(store, addr, "has no complete blob to remove")
        plan.file = (addr.repo_key, rev, addr.path)
        candidates[b3] = entry.size
    else:
        plan.snapshots = sorted(_doomed_revisions(store, addr, force))
        for ref, rec in store.refs(addr.repo_key).items():
            if not addr.revision or (addr.repo_key, rec.revision) in plan.snapshots:
                plan.refs.append((addr.repo_key, ref))
        for repo, rev in plan.snapshots:
            snap = store.get_snapshot(repo, rev)
            for entry in snap.files.values() if snap else ():
                b3 = store.resolve(entry.identity)
                if b3 is not None:
                    candidates[b3] = entry.size
    with store.index.read() as txn:
        rules = _rules(store, plan, txn)
        for b3, size in sorted(candidates.items()):
            why = rules.reason(b3, store.index.get_blob(b3, txn))
            if why is None:
                plan.blobs.append((b3, size))
            elif why.startswith("pinned"):
                plan.kept_pinned.append(b3)
            else:
                plan.kept_shared.append(b3)
    return plan


def execute_remove(store: Store, plan: RemovePlan) -> Removed:
    """Carry out a plan through the store's one removal path (removal.py), re-checking each
    blob there; returns what was removed and what was kept after all."""
    doomed = Doomed(blobs=[b3 for b3, _ in plan.blobs], snapshots=list(plan.snapshots), refs=list(plan.refs))
    return remove(store, doomed, policy=_RemovePolicy(store, plan))
