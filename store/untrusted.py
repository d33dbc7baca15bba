"""Rules for names and identities hoard reads from anywhere but its own user's command line.

A bundle's manifest, a Hugging Face cache's file names, a tree sent by the Hub or by a parent
hoard, and even this store's own index (an older hoard may have written it) are untrusted: a
name in them becomes a file path under an export directory, a URL at an origin, or a key in
the index. They are held to the rules of client input (:func:`~hoard.store.address.check_path`
and :func:`~hoard.store.address.check_segment`: no ``..``, ``.``, empty segment, NUL, or
segment over 255 bytes), plus the exact shapes hoard gives identities and revisions:

* identity: ``sha256:<64 hex>``, ``gitsha1:<40 hex>`` or ``b3:<64 hex>`` (lowercase) — the
  kinds hoard can verify before it publishes a byte; or, for a file its source says carries
  no hash (an Arweave file without a ``File-SHA256`` tag), ``ar:<43 base64url>`` with the
  reason in ``meta["unverified"]`` and no expected hash: verified by its length only
  (:func:`unverified_entry`);
* revision: a 40-hex commit for ``huggingface`` (and for ``local``, whose ids are derived from
  the content), one safe segment for other sources;
* ref: ``/``-separated segments, each a safe segment (``main``, ``refs/pr/1``);
* repo key: what :func:`~hoard.store.address.parse_address` makes of ``<source>/[kind/]<owner>/<repo>``;
* Hugging Face metadata (``meta``): the git blob oid is 40 hex, the LFS oid 64 hex and equal
  to the sha256 the identity names (both become file names in a Hugging Face cache).

Every check returns the value it accepted, or raises :class:`InvalidAddress` naming what is
wrong; callers translate it at their boundary (an :class:`IntegrityError` for a bundle or a
damaged store, a dropped entry and a warning for an origin's tree).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .address import Address, check_path, check_segment, parse_address
from .errors import InvalidAddress
from .records import ExpectedHash, Snapshot, TreeEntry
from .sources import source_info

__all__ = [
    "IDENTITY_HEX",
    "is_hex",
    "check_identity",
    "hashed_entry",
    "UNVERIFIED_IDENTITY",
    "unverified_entry",
    "named_entry",
    "check_revision_id",
    "check_ref",
    "check_repo_key",
    "check_entry",
    "check_snapshot",
    "check_folders",
]

#: identity kind -> number of hex digits; the kinds hoard can verify
IDENTITY_HEX = {"sha256": 64, "gitsha1": 40, "b3": 64}
_HASH_KIND = {"sha256": "sha256", "gitsha1": "gitsha1", "b3": "blake3"}

_HEX = re.compile(r"[0-9a-f]*")
#: identity kind -> shape, of the names a file verified by its length only may have
#: origins' own names of content that comes with no hash: an Arweave tx (or the sectioned-file
#: manifest tx whose sections hold a file), a URL at its validator (printable ASCII, no space)
UNVERIFIED_IDENTITY = {
    "ar": re.compile(r"[A-Za-z0-9_-]{43}"),
    "arsections": re.compile(r"[A-Za-z0-9_-]{43}"),
    # a plain URL's file: url:<url>@<validator>, or url:h-<40 hex> when that is too long
    "url": re.compile(r"h-[0-9a-f]{40}|https?://[!-~]{1,190}"),
    # PyTorch weights by file name, checked by the sha256 prefix the name carries
    "torch": re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=,@~-]{0,199}"),
}


def is_hex(value: object, length: int) -> bool:
    """True if ``value`` is a str of exactly ``length`` lowercase hex digits."""
    return isinstance(value, str) and len(value) == length and bool(_HEX.fullmatch(value))


def check_identity(identity: object) -> ExpectedHash:
    """The hash an identity promises; InvalidAddress unless it is one hoard can verify."""
    kind, _, value = identity.partition(":") if isinstance(identity, str) else ("", "", "")
    if kind not in IDENTITY_HEX or not is_hex(value, IDENTITY_HEX[kind]):
        raise InvalidAddress(
            f"identity {identity!r} is not one hoard can verify (sha256:<64 hex>, gitsha1:<40 hex>, b3:<64 hex>)"
        )
    return ExpectedHash(_HASH_KIND[kind], value)


def hashed_entry(size: Any, identity: object, meta: Any) -> TreeEntry:
    """A tree entry named by a hash, from untrusted values (InvalidAddress unless well formed)."""
    expected = check_identity(identity)
    if not isinstance(meta, Mapping):
        raise InvalidAddress(f"meta {str(meta)[:60]!r} is not an object")
    return TreeEntry(size, str(identity), dict(meta), expected)


def unverified_entry(size: Any, identity: object, meta: Any) -> TreeEntry:
    """A tree entry verified by its length only, from untrusted values: its identity is an
    origin's own name (``ar:<txid>``) and ``meta["unverified"]`` says why no hash comes with
    it. InvalidAddress for anything else (a hash identity must go through
    :func:`hashed_entry`, so no hash-named file ever escapes its hash)."""
    kind, _, value = identity.partition(":") if isinstance(identity, str) else ("", "", "")
    shape = UNVERIFIED_IDENTITY.get(kind)
    if shape is None or not shape.fullmatch(value):
        raise InvalidAddress(f"identity {str(identity)[:80]!r} is not one hoard can verify or name (ar:<tx id>, url:...)")
    if not isinstance(meta, Mapping):
        raise InvalidAddress(f"meta {str(meta)[:60]!r} is not an object")
    reason = meta.get("unverified")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidAddress(f"identity {identity!r} carries no hash, and its metadata says no reason (unverified)")
    return TreeEntry(size, str(identity), dict(meta), None)


def named_entry(size: Any, identity: object, meta: Any, expected: object = None) -> TreeEntry:
    """A tree entry named by an origin's own name (:data:`UNVERIFIED_IDENTITY`), from untrusted
    values: verified by the whole-file hash it states (a url file's sha256, learnt from its
    first complete fetch), else by its length only (:func:`unverified_entry`)."""
    if expected is None:
        return unverified_entry(size, identity, meta)
    kind, _, value = identity.partition(":") if isinstance(identity, str) else ("", "", "")
    shape = UNVERIFIED_IDENTITY.get(kind)
    if shape is None or not shape.fullmatch(value):
        raise InvalidAddress(f"identity {str(identity)[:80]!r} is not one hoard can verify or name")
    try:
        exp = ExpectedHash.parse(expected)
    except ValueError as exc:
        raise InvalidAddress(str(exc)) from None
    if exp.prefix and kind != "torch":  # only a weights file name carries a hash prefix
        raise InvalidAddress(f"identity {str(identity)[:80]!r}: a hash prefix verifies nothing by itself")
    if not isinstance(meta, Mapping):
        raise InvalidAddress(f"meta {str(meta)[:60]!r} is not an object")
    return TreeEntry(size, str(identity), dict(meta), exp)


def check_revision_id(source: str, revision: object) -> str:
    """A revision id of ``source``: what the source's registry entry calls immutable (a 40-hex
    commit for Hugging Face and local repos, a manifest tx id for Arweave), one safe segment
    for a source this hoard does not know."""
    info = source_info(source)
    if info is not None:
        if not isinstance(revision, str) or not info.is_revision_id(revision):
            raise InvalidAddress(f"revision {str(revision)[:80]!r} is not a revision id of a {source} repo")
        return check_segment(revision, "revision")
    if not isinstance(revision, str):
        raise InvalidAddress(f"revision {revision!r} is not a name")
    return check_segment(revision, "revision")


def check_ref(ref: object) -> str:
    """A ref name (``main``, ``v1``, ``refs/pr/1``): every ``/``-separated segment is safe."""
    if not isinstance(ref, str) or ref.startswith("/") or ref.endswith("/"):
        raise InvalidAddress(f"ref {ref!r} is not a relative name")
    for seg in ref.split("/"):
        check_segment(seg, "ref")
    return ref


def check_repo_key(key: object) -> Address:
    """The address of a repo key (``huggingface/datasets/org/name``), which must be canonical."""
    if not isinstance(key, str):
        raise InvalidAddress(f"repo {key!r} is not a name")
    addr = parse_address(key)
    if addr.revision is not None or addr.path or addr.repo_key != key:
        raise InvalidAddress(f"repo {key!r} is not of the form <source>/<owner>/<repo>")
    return addr


def _check_meta(meta: Mapping[str, Any], identity: str) -> None:
    """Hugging Face metadata names files in a hub cache: it must be hex, and agree with the identity."""
    oid = meta.get("oid")
    if oid and not is_hex(oid, 40):
        raise InvalidAddress(f"git blob oid {oid!r} is not 40 hex")
    lfs = meta.get("lfs")
    if lfs is not None:
        lfs_oid = lfs.get("oid") if isinstance(lfs, Mapping) else None
        if not is_hex(lfs_oid, 64) or identity != f"sha256:{lfs_oid}":
            raise InvalidAddress(f"LFS oid {lfs_oid!r} is not the sha256 of identity {identity!r}")
    elif oid and identity.startswith("gitsha1:") and identity != f"gitsha1:{oid}":
        raise InvalidAddress(f"git blob oid {oid!r} disagrees with identity {identity!r}")


def check_entry(path: object, entry: TreeEntry, *, verifiable: bool = True) -> str:
    """A tree entry: a safe relative path, a size, an identity (one hoard can verify, unless
    ``verifiable`` is False: a stored revision of a source whose files may be checked by
    length only), consistent metadata."""
    if not isinstance(path, str):
        raise InvalidAddress(f"path {path!r} is not a name")
    check_path(path)
    if not isinstance(entry.size, int) or isinstance(entry.size, bool) or entry.size < 0:
        raise InvalidAddress(f"{path}: size {entry.size!r} is not a byte count")
    if verifiable:
        check_identity(entry.identity)
    elif not isinstance(entry.identity, str) or ":" not in entry.identity:
        raise InvalidAddress(f"{path}: identity {entry.identity!r} is not a name")
    if not isinstance(entry.meta, Mapping):
        raise InvalidAddress(f"{path}: meta is not an object")
    try:
        _check_meta(entry.meta, entry.identity)
    except InvalidAddress as exc:
        raise InvalidAddress(f"{path}: {exc}") from None
    return path


def check_snapshot(addr: Address, revision: str, snap: Snapshot, refs: Iterable[str] = ()) -> None:
    """A whole revision as stored: its revision id, refs, every entry and listed folder
    (identities are names here, not necessarily verifiable ones: see :func:`check_entry`)."""
    check_revision_id(addr.source, revision)
    for ref in refs:
        check_ref(ref)
    for path, entry in snap.files.items():
        check_entry(path, entry, verifiable=False)
    check_folders(snap)


def check_folders(snap: Snapshot) -> None:
    """The folders a revision lists besides its files (``info["dirs"]``, from the Hub's tree)."""
    dirs = snap.info.get("dirs") if isinstance(snap.info, Mapping) else None
    if dirs is not None and not isinstance(dirs, (Mapping, list)):
        raise InvalidAddress("the folder list is not a list")
    for folder in dirs or ():
        if not isinstance(folder, str):
            raise InvalidAddress(f"folder {folder!r} is not a name")
        check_path(folder)
