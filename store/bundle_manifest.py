"""The manifest of a hoard bundle (``hoard-export.json``): writing it, and reading it strictly.

Two formats, both read by this hoard:

* **1** — one revision: ``repo``, ``revision``, ``refs``, ``info``, ``created`` and ``files``
  (path → ``size``, ``identity``, ``meta``, ``blake3``, ``expected``). Written for a bundle of
  one revision, so an older hoard can import it too.
* **2** — several revisions: ``revisions``, a list of format-1 documents without ``format``.

Bundles written by this hoard also carry ``blobs`` (b3 → size: every blob the bundle holds)
and ``end`` (the member that closes the stream, see bundle_io.py); both are optional on read,
for bundles of older hoards.

The manifest is untrusted input: repo key, revision, refs, paths, identities and Hugging Face
metadata must pass the rules of :mod:`.untrusted`; a ``local`` revision must be the id its
content derives (``catalog.snapshot_id``); a file's ``expected`` must agree with a hash
identity; a file's size must be the size ``blobs`` gives its blob. The one identity that is
not a hash is one its source gives content without a hash for (``ar:<txid>``, ...): no
expected hash and ``meta["unverified"]`` set, verified by its length only, as at its origin.
Any violation is an :class:`IntegrityError` naming the first bad value, and nothing is added.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .address import Address
from .bundle_io import BUNDLE_END
from .catalog import snapshot_id
from .errors import IntegrityError, InvalidAddress, UsageError
from .records import ExpectedHash, Snapshot, TreeEntry
from .untrusted import (
    IDENTITY_HEX,
    check_entry,
    check_folders,
    check_ref,
    check_repo_key,
    check_revision_id,
    hashed_entry,
    is_hex,
    named_entry,
)

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMATS", "Bundle", "Manifest", "manifest_doc", "parse_manifest"]

BUNDLE_FORMAT = 1  # one revision
BUNDLE_FORMATS = (1, 2)  # 2: several revisions
_MAX_MANIFEST = 256 << 20  # a manifest is metadata: anything larger is refused unread


@dataclass(frozen=True)
class Bundle:
    """One revision of a bundle: what it restores and the BLAKE3 of each file."""

    addr: Address
    revision: str
    refs: list[str]
    snapshot: Snapshot
    blake3: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.addr.repo_key}@{self.revision}"


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: its revisions, the blobs it declares (None: an older bundle) and
    whether an end member must close the stream."""

    bundles: list[Bundle]
    blobs: dict[str, int] | None
    end: bool


# -- writing ------------------------------------------------------------------------------------


def _revision_doc(repo: str, rev: str, snap: Snapshot, blobs: dict[str, str], refs: list[str]) -> dict[str, Any]:
    return {
        "repo": repo,
        "revision": rev,
        "refs": refs,
        "created": int(time.time()),
        "info": snap.info,
        "files": {p: {"size": e.size, "identity": e.identity, "meta": e.meta, "blake3": blobs[p],
                      "expected": e.expected.text if e.expected else None}
                  for p, e in sorted(snap.files.items())},
    }


def manifest_doc(revisions: list[tuple[str, str, Snapshot, dict[str, str], list[str]]]) -> dict[str, Any]:
    """The manifest of (repo, revision, snapshot, path → b3, refs) revisions: format 1 for
    one, 2 for several; with ``blobs`` and ``end``."""
    docs = [_revision_doc(*r) for r in revisions]
    sizes = {b3: snap.files[p].size for _, _, snap, blobs, _ in revisions for p, b3 in blobs.items()}
    extra = {"blobs": dict(sorted(sizes.items())), "end": BUNDLE_END}
    if len(docs) == 1:
        return {"format": 1, **docs[0], **extra}
    return {"format": 2, "created": int(time.time()), "revisions": docs, **extra}


# -- reading ------------------------------------------------------------------------------------


def _load(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:  # bad JSON, bad UTF-8
        raise IntegrityError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where} is not a JSON object")
    if doc.get("format") not in BUNDLE_FORMATS:
        raise UsageError(f"unknown export format {doc.get('format')!r} (this hoard reads formats 1 and 2)")
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


def _bundle(doc: Any) -> Bundle:
    """One revision document; IntegrityError naming the first bad value."""
    if not isinstance(doc, dict):
        raise IntegrityError("bundle manifest: a revision is not an object")
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


def _blob_sizes(doc: dict[str, Any], bundles: list[Bundle]) -> dict[str, int] | None:
    """The declared blob sizes, each agreeing with every file that names the blob."""
    blobs = doc.get("blobs")
    if blobs is None:
        return None
    if not isinstance(blobs, dict) or not all(is_hex(k, 64) and type(v) is int and v >= 0 for k, v in blobs.items()):
        raise IntegrityError("bundle manifest: 'blobs' must map 64-hex BLAKE3s to sizes")
    for b in bundles:
        for path, b3 in b.blake3.items():
            if blobs.get(b3) != b.snapshot.files[path].size:
                raise IntegrityError(f"bundle manifest: {path}: blob {b3} is not declared with its size")
    return dict(blobs)


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """Parse and validate a manifest's bytes (``where`` names it in messages)."""
    if len(raw) > _MAX_MANIFEST:
        raise IntegrityError(f"{where} is larger than {_MAX_MANIFEST >> 20} MiB; refused")
    doc = _load(raw, where)
    if doc["format"] == 1:
        bundles = [_bundle(doc)]
    else:
        revisions = _field(doc, "revisions", list)
        bundles = [_bundle(r) for r in revisions]
        keys = [b.key for b in bundles]
        if not bundles or len(set(keys)) != len(keys):
            raise IntegrityError("bundle manifest: 'revisions' is empty or names a revision twice")
    end = doc.get("end")
    if end not in (None, BUNDLE_END):
        raise IntegrityError(f"bundle manifest: 'end' must be {BUNDLE_END!r}")
    return Manifest(bundles, _blob_sizes(doc, bundles), end is not None)
