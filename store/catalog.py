"""What the store knows about addresses, without asking any origin.

The index keeps, per repo, refs (mutable names → revision ids) and snapshots (revision →
files). This module answers "which revision and file does this address mean *here*", lists
cached repos, imports local directories (the ``local`` source), and plans removals. Origin
lookups (refs that expired, names never seen) are the proxy's business.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from .address import Address, check_path
from .errors import InvalidAddress, NotFound, UsageError
from .locks import gc_lock
from .records import Snapshot, TreeEntry
from .store import Store

__all__ = [
    "DEFAULT_REF",
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

DEFAULT_REF = {"huggingface": "main", "onnx": "main", "local": "main", "arweave": "latest", "torch": "latest", "url": "latest"}

_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__"}


def default_ref(source: str) -> str:
    return DEFAULT_REF.get(source, "main")


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
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if not full.is_file():
                continue  # sockets, fifos, dangling links
            rel = full.relative_to(root).as_posix()
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
    for rel, full in _walk(directory):
        if on_file is not None:
            on_file(rel, full.stat().st_size)
        b3, size = store.add_file(full, progress=progress)
        files[rel] = TreeEntry(size, f"b3:{b3}", {})
    if not files:
        raise UsageError(f"{directory} holds no files")
    rev = snapshot_id(files)
    refs = {default_ref("local")}
    if addr.revision:
        refs.add(addr.revision)
    snap = Snapshot(files, int(time.time()), {"source_dir": str(directory.resolve())})
    store.put_snapshot(addr.repo_key, rev, snap, refs=sorted(refs))
    return rev, snap


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
    """BLAKE3s gc must keep: pinned blobs and every blob of a pinned snapshot."""
    keep: set[str] = set()
    with store.index.read() as txn:
        for target, _ in store.index.iter_pins(txn):
            if target.startswith("blob:"):
                keep.add(target[5:])
            elif target.startswith("snapshot:"):
                repo, _, rev = target[9:].rpartition("@")
                raw = store.index.get_snapshot(repo, rev)
                if raw is None:
                    continue
                for entry in raw.files.values():
                    b3 = store.index.resolve(entry.identity, txn)
                    if b3 is not None:
                        keep.add(b3)
    return keep


def protected_aliases(store: Store) -> set[str]:
    """Identities of files in pinned snapshots (their partials are kept too)."""
    out: set[str] = set()
    for target in store.pins():
        if target.startswith("snapshot:"):
            repo, _, rev = target[9:].rpartition("@")
            snap = store.index.get_snapshot(repo, rev)
            if snap is not None:
                out.update(e.identity for e in snap.files.values())
    return out


# -- removal ----------------------------------------------------------------------------------


@dataclass
class RemovePlan:
    """What ``hoard rm`` will delete: snapshots, refs, and blobs no other snapshot uses."""

    snapshots: list[tuple[str, str]] = field(default_factory=list)
    refs: list[tuple[str, str]] = field(default_factory=list)
    blobs: list[tuple[str, int]] = field(default_factory=list)
    kept_pinned: list[str] = field(default_factory=list)

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
        }


def plan_remove(store: Store, addr: Address, *, force: bool = False) -> RemovePlan:
    """Plan removing a repo (all revisions), one revision, or one file's blob.

    A pinned revision is refused unless ``force`` (which also drops its pin).
    """
    plan = RemovePlan()
    protected = protected_blobs(store)
    if addr.path:
        entry, b3 = cached_blob(store, addr, "has no complete blob to remove")
        if b3 in protected:
            plan.kept_pinned.append(b3)
        else:
            plan.blobs.append((b3, entry.size))
        return plan
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
    plan.snapshots = sorted(doomed)
    for ref, rec in store.refs(addr.repo_key).items():
        if not addr.revision or (addr.repo_key, rec.revision) in doomed:
            plan.refs.append((addr.repo_key, ref))
    # blobs used by the doomed snapshots and by no other snapshot
    used_elsewhere: set[str] = set()
    candidates: dict[str, int] = {}
    with store.index.read() as txn:
        for repo, rev, snap in store.index.iter_snapshots(txn):
            target = candidates if (repo, rev) in doomed else None
            for entry in snap.files.values():
                b3 = store.index.resolve(entry.identity, txn)
                if b3 is None:
                    continue
                if target is not None:
                    target[b3] = entry.size
                else:
                    used_elsewhere.add(b3)
    for b3, size in sorted(candidates.items()):
        if b3 in used_elsewhere:
            continue
        if b3 in protected:
            plan.kept_pinned.append(b3)
        else:
            plan.blobs.append((b3, size))
    return plan


def execute_remove(store: Store, plan: RemovePlan) -> None:
    """Carry out a plan: index entries first, then files (invariant 4)."""
    with gc_lock(store.layout.gc_lock, exclusive=True):
        with store.index.write() as txn:
            for repo, ref in plan.refs:
                store.index.delete_ref_in(txn, repo, ref)
            for repo, rev in plan.snapshots:
                store.index.delete_snapshot_in(txn, repo, rev)
                store.index.delete_pin_in(txn, f"snapshot:{repo}@{rev}")
            for b3, _ in plan.blobs:
                store.index.delete_blob_in(txn, b3)
                store.index.delete_pin_in(txn, f"blob:{b3}")
        for repo, rev in plan.snapshots:
            store.forget_snapshot(repo, rev)
        for b3, _ in plan.blobs:
            try:
                os.unlink(store.blob_path(b3))
            except FileNotFoundError:
                pass
