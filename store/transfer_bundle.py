"""hoard bundles: the manifest, and importing a bundle (a directory or a ``.tar``) safely.

A bundle is ``hoard-export.json`` plus ``blobs/<b3>``. It is untrusted input: it may come from
another machine, and ``hoard import`` writes what it says into the index. So:

* a ``.tar`` is checked member by member before anything is extracted: an absolute name, a
  ``..`` component, a symbolic or hard link, a device or a FIFO refuses the whole bundle
  (:class:`IntegrityError`); extraction then also runs tarfile's ``data`` filter, whose
  refusals are translated the same way;
* the manifest is parsed strictly (:func:`read_bundle`): repo key, revision, refs, paths,
  identities and Hugging Face metadata must pass the rules of :mod:`.untrusted`; a ``local``
  revision must be the id its content derives (``catalog.snapshot_id``);
* every blob is re-hashed against its upstream identity and the BLAKE3 the manifest names,
  and must have the size the manifest states. A file entry may carry ``expected`` (the
  :attr:`~hoard.store.records.ExpectedHash.text` of the hash that verifies it); for a hash
  identity it must agree with it. The one identity that is not a hash is ``ar:<txid>`` with
  no expected hash and ``meta["unverified"]`` set (an Arweave file without a ``File-SHA256``
  tag, verified by its length only, as it was at its origin);
* a revision already stored is never replaced: if the store holds the same repo@revision with
  another tree, the import is refused before any blob is added and no ref moves; the same
  tree again is a no-op. The check is made again in the transaction that records the
  revision (:meth:`Store.put_snapshot_if_absent`), so another process storing it meanwhile
  cannot slip in between;
* the revision is recorded only with all its content: until then nothing protects its blobs
  from gc (for a ``local`` or ``no_origin`` revision, the only copy once the bundle is gone),
  so the record is written under the shared gc lock after checking every blob, and a blob gc
  took meanwhile is added again from the bundle.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .address import Address
from .catalog import snapshot_id
from .errors import IntegrityError, InvalidAddress, UsageError
from .records import ExpectedHash, Snapshot, TreeEntry
from .store import Store, same_tree
from .untrusted import (
    check_entry,
    check_folders,
    IDENTITY_HEX,
    hashed_entry,
    named_entry,
    check_ref,
    check_repo_key,
    check_revision_id,
    is_hex,
)

__all__ = ["BUNDLE_MANIFEST", "BUNDLE_FORMAT", "ImportReport", "Bundle", "read_bundle", "extract_bundle",
           "import_bundle"]

BUNDLE_MANIFEST = "hoard-export.json"
BUNDLE_FORMAT = 1

Progress = Callable[[int], None]


@dataclass
class ImportReport:
    """What an import added: blobs, bytes, revisions; and what it left out, with why."""

    kind: str
    blobs: int = 0
    bytes: int = 0
    revisions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "blobs": self.blobs, "bytes": self.bytes,
                "revisions": self.revisions, "skipped": self.skipped}


# -- tar --------------------------------------------------------------------------------------


def _check_member(member: tarfile.TarInfo) -> None:
    """A bundle member must be a plain file or folder with a relative name inside the bundle."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise IntegrityError(f"bundle member {member.name!r} points outside the bundle; refused")
    if not (member.isreg() or member.isdir()):
        kind = ("symbolic link" if member.issym() else "hard link" if member.islnk()
                else "FIFO" if member.isfifo() else "device" if member.isdev() else "special file")
        raise IntegrityError(f"bundle member {member.name!r} is a {kind}; a bundle holds only files")


def extract_bundle(tar_path: Path, into: Path) -> None:
    """Check every member of a bundle ``.tar``, then extract it into ``into``."""
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            tar.extractall(into, members=members, filter="data")
    except tarfile.TarError as exc:  # FilterError, ReadError, a truncated archive
        raise IntegrityError(f"{tar_path}: not a usable bundle: {exc}") from None


# -- manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """A validated manifest: the revision it restores and the BLAKE3 of each file."""

    addr: Address
    revision: str
    refs: list[str]
    snapshot: Snapshot
    blake3: dict[str, str]


def _load_manifest(root: Path) -> dict[str, Any]:
    path = root / BUNDLE_MANIFEST
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise IntegrityError(f"{path} is not a regular file")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise IntegrityError(f"{root}: the bundle has no {BUNDLE_MANIFEST}") from None
    except ValueError as exc:  # bad JSON, bad UTF-8
        raise IntegrityError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{path} is not a JSON object")
    if doc.get("format") != BUNDLE_FORMAT:
        raise UsageError(f"unknown export format {doc.get('format')!r} (this hoard reads format {BUNDLE_FORMAT})")
    return doc


def _field(doc: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """``doc[key]``, which must be a ``kind``; ``default`` when absent (None: required)."""
    value = doc.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool):
        raise IntegrityError(f"bundle manifest: {key!r} is missing or not a {kind.__name__}")
    return value


def _tree_entry(doc: dict[str, Any]) -> TreeEntry:
    """A file's entry: a hash identity (with an ``expected`` that agrees, if stated), or an
    identity verified by its length only (:func:`~.untrusted.unverified_entry`)."""
    identity, stated, meta = doc.get("identity"), doc.get("expected"), doc.get("meta") or {}
    kind = identity.partition(":")[0] if isinstance(identity, str) else ""
    if kind not in IDENTITY_HEX:
        return named_entry(doc.get("size"), identity, meta, stated)
    entry = hashed_entry(doc.get("size"), identity, meta)
    if stated is not None:
        try:
            same = ExpectedHash.parse(stated) == entry.expected
        except ValueError as exc:
            raise InvalidAddress(str(exc)) from None
        if not same:
            raise InvalidAddress(f"expected hash {str(stated)[:80]!r} disagrees with identity {identity!r}")
    return entry


def _entry(path: str, doc: Any) -> tuple[TreeEntry, str]:
    """One file of the manifest: its tree entry and the BLAKE3 of its blob."""
    if not isinstance(doc, dict):
        raise InvalidAddress(f"{path}: not an object")
    entry = _tree_entry(doc)
    check_entry(path, entry, verifiable=entry.identity.partition(":")[0] in IDENTITY_HEX)
    named = doc.get("blake3")
    if not is_hex(named, 64):
        raise InvalidAddress(f"{path}: blake3 {named!r} is not 64 hex")
    if entry.identity.startswith("b3:") and entry.identity != f"b3:{named}":
        raise InvalidAddress(f"{path}: blake3 {named!r} disagrees with identity {entry.identity!r}")
    return entry, named


def read_bundle(root: Path) -> Bundle:
    """Parse and validate ``root/hoard-export.json``; IntegrityError naming the first bad value."""
    doc = _load_manifest(root)
    files_doc = _field(doc, "files", dict)
    info = _field(doc, "info", dict, {})
    created = _field(doc, "created", int, int(time.time()))
    try:
        addr = check_repo_key(doc.get("repo"))
        revision = check_revision_id(addr.source, doc.get("revision"))
        refs = [check_ref(r) for r in _field(doc, "refs", list, [])]
        files: dict[str, TreeEntry] = {}
        named: dict[str, str] = {}
        for path, f in files_doc.items():
            files[path], named[path] = _entry(path, f)
        snap = Snapshot(files, created, info)
        check_folders(snap)
    except InvalidAddress as exc:
        raise IntegrityError(f"bundle manifest: {exc}") from None
    if addr.source == "local" and snapshot_id(files) != revision:
        raise IntegrityError(f"bundle manifest: {addr.repo_key}@{revision} is not the id of its files "
                             f"({snapshot_id(files)}): the tree was altered")
    return Bundle(addr, revision, refs, snap, named)


# -- import -----------------------------------------------------------------------------------


def _check_not_replacing(store: Store, bundle: Bundle) -> bool:
    """True if the store already holds this very tree; IntegrityError if it holds another."""
    stored = store.get_snapshot(bundle.addr.repo_key, bundle.revision)
    if stored is None:
        return False
    if not same_tree(stored, bundle.snapshot):
        raise _replacing(bundle)
    return True


def _replacing(bundle: Bundle) -> IntegrityError:
    return IntegrityError(
        f"{bundle.addr.repo_key}@{bundle.revision} is already stored with different files; "
        "a revision never changes, so the bundle is refused and the store left as it was"
    )


def _blob_file(root: Path, b3: str) -> Path:
    """``root/blobs/<b3>``, which must be a regular file (never a link out of the bundle)."""
    path = root / "blobs" / b3
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise IntegrityError(f"bundle blob blobs/{b3} is missing") from None
    if not stat.S_ISREG(mode):
        raise IntegrityError(f"bundle blob blobs/{b3} is not a regular file")
    return path


def _add_blob(store: Store, bundle: Bundle, path: str, source: Path, progress: Progress | None) -> int:
    """Add one file's content; it must have the size the manifest states and match both the
    hash that verifies it and the BLAKE3 the manifest names. Returns its size.

    Content verified by its length only is added under no name and named by its identity
    (``ar:<txid>``) only once its BLAKE3 is the one the manifest names: a bundle can never
    make that name point at other bytes."""
    entry = bundle.snapshot.files[path]
    named = bundle.blake3[path]
    if source.stat().st_size != entry.size:
        raise IntegrityError(f"{path}: bundle blob holds {source.stat().st_size} bytes, manifest says {entry.size}")
    if entry.expected is not None:
        b3, size = store.add_file(source, expected=entry.expected, aliases=[entry.identity], progress=progress)
    else:
        b3, size = store.add_file(source, progress=progress)
    if b3 != named or size != entry.size:
        raise IntegrityError(f"{path}: bundle blob hashes to {b3} ({size} bytes), manifest says {named} ({entry.size})")
    if entry.expected is None:
        store.add_aliases([entry.identity], b3)
    return size


def import_bundle(store: Store, root: Path, progress: Progress | None = None) -> ImportReport:
    """Import a bundle directory (already extracted, for a ``.tar``): verify, then record."""
    bundle = read_bundle(root)
    key, rev = bundle.addr.repo_key, bundle.revision
    already = _check_not_replacing(store, bundle)
    todo = {p: e for p, e in sorted(bundle.snapshot.files.items()) if store.resolve(e.identity) is None}
    sources = {p: _blob_file(root, bundle.blake3[p]) for p in todo}  # all present before any is added
    report = ImportReport("hoard")
    for path, entry in todo.items():
        if store.resolve(entry.identity) is not None:
            continue  # two paths, one content
        report.bytes += _add_blob(store, bundle, path, sources[path], progress)
        report.blobs += 1
    if already:
        report.skipped.append(f"{key}@{rev} (already in the store)")
        return report

    def restore(missing: list[str]) -> None:
        """Add again the content gc took before the revision was recorded."""
        for path in missing:
            if store.resolve(bundle.snapshot.files[path].identity) is None:
                _add_blob(store, bundle, path, _blob_file(root, bundle.blake3[path]), progress)

    if store.put_snapshot_if_absent(key, rev, bundle.snapshot, bundle.refs, restore=restore) is not None:
        raise _replacing(bundle)  # another process stored another tree meanwhile
    report.revisions.append(f"{key}@{rev}")
    return report
