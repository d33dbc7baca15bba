"""Moving content in and out of a store: ``hoard export`` and ``hoard import``.

Export formats (of one or several cached revisions, each complete):

* ``dir`` — one revision's files as ordinary files (copies; hard links to the read-only blobs
  with ``link=True`` when on the same filesystem).
* ``hf-cache`` — a Hugging Face hub cache (``models--org--name/{blobs,snapshots,refs,trees}``),
  so ``HF_HUB_OFFLINE=1`` clients (``hf_hub_download``, ``snapshot_download``, ``from_pretrained``)
  find the files with no hoard running, and ``huggingface_hub.scan_cache_dir`` reads it without
  a warning; ``trees/<commit>.json`` is huggingface_hub's own complete listing of the revision
  (``hoard import`` of the cache then restores the revision too).
* ``hoard`` — a self-describing bundle of every revision named (bundle_io.py): one file,
  zstd-compressed (streamed, multi-threaded) when DEST ends in ``.zst``, else a plain tar
  whatever its name; a directory of the same members (the layout older hoards wrote) only when
  DEST is an existing directory or is given with a trailing separator (``as_directory``).
  ``hoard import`` of it on another machine (an air-gapped one, say) re-verifies every blob and
  restores the revisions exactly.

Import sources: a ``hoard`` bundle in any of its forms (:mod:`.transfer_bundle`: verified
completely before anything is added), or a Hugging Face hub cache directory
(:mod:`.transfer_hfcache`). Both are untrusted input, checked before anything is added.

Export never writes outside DEST, whatever the store holds (an older hoard may have stored
names it would refuse today): every revision, its refs and every entry are checked by the
rules of :mod:`.untrusted` first, and every file is written through a
:class:`~.safefs.Destination`, which resolves each path just before writing. A bad name refuses
the whole export with an :class:`IntegrityError` before anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .address import Address
from .bundle_io import BUNDLE_MANIFEST, is_bundle_file, write_bundle
from .bundle_manifest import manifest_doc
from .catalog import resolve_cached
from .errors import IntegrityError, InvalidAddress, NotFound, UsageError
from .records import Snapshot, TreeEntry
from .safefs import Destination
from .store import Store
from .transfer_bundle import ImportReport, import_bundle
from .transfer_hfcache import import_hf_cache, looks_like_hf_cache
from .untrusted import check_snapshot, is_hex

__all__ = ["export", "import_path", "ImportReport", "BUNDLE_MANIFEST"]

_HF_KIND_DIR = {"": "models", "datasets": "datasets", "spaces": "spaces"}

Progress = Callable[[int], None]


def _hf_etag(path: str, entry: TreeEntry) -> str:
    """The name huggingface_hub gives a file's blob: the LFS sha256, else the git blob sha1;
    IntegrityError if it is not one (it becomes a file name under DEST)."""
    lfs = entry.meta.get("lfs")
    etag = lfs["oid"] if lfs else (entry.meta.get("oid") or entry.identity.partition(":")[2])
    if not (is_hex(etag, 40) or is_hex(etag, 64)):
        raise IntegrityError(f"{path}: the store holds a name hoard refuses (blob name {etag!r} is not a "
                             "sha256 or git sha1); nothing was exported")
    return str(etag)


def _complete_blobs(store: Store, snap: Snapshot) -> dict[str, str]:
    """path -> b3 for every file; NotFound naming what is not fully cached."""
    out: dict[str, str] = {}
    missing = []
    for path, entry in snap.files.items():
        b3 = store.resolve(entry.identity)
        if b3 is None:
            missing.append(path)
        elif not is_hex(b3, 64):
            raise IntegrityError(f"{path}: the index maps {entry.identity} to a bad blob name {b3!r}")
        else:
            out[path] = b3
    if missing:
        raise NotFound(
            f"{len(missing)} file(s) not fully cached (e.g. {sorted(missing)[0]}); run `hoard prefetch` first"
        )
    return out


def _check_stored(addr: Address, rev: str, snap: Snapshot, refs: list[str]) -> None:
    """Refuse to export a revision whose stored names hoard would refuse today."""
    try:
        check_snapshot(addr, rev, snap, refs)
    except InvalidAddress as exc:
        raise IntegrityError(
            f"{addr.repo_key}@{rev}: the store holds a name hoard refuses ({exc}); nothing was exported. "
            f"Remove it with `hoard rm {addr.repo_key}` and fetch it again"
        ) from None


@dataclass(frozen=True)
class _Revision:
    """A cached revision to export, checked: its snapshot, refs and the blob of each file."""

    addr: Address
    rev: str
    snap: Snapshot
    refs: list[str]
    blobs: dict[str, str]

    def summary(self) -> dict[str, Any]:
        return {"repo": self.addr.repo_key, "revision": self.rev, "files": len(self.blobs),
                "bytes": self.snap.size, "refs": self.refs}


def _revision(store: Store, addr: Address) -> _Revision:
    rev, snap = resolve_cached(store, addr)
    refs = sorted(ref for ref, rec in store.refs(addr.repo_key).items() if rec.revision == rev)
    _check_stored(addr, rev, snap, refs)
    return _Revision(addr, rev, snap, refs, _complete_blobs(store, snap))


def export(
    store: Store, addrs: Address | Sequence[Address], dest: Path, fmt: str, *, link: bool = False,
    progress: Progress | None = None, as_directory: bool = False,
) -> dict[str, Any]:
    """Export one or several cached revisions (all checked before anything is written);
    returns a summary (``repo``, ``revision`` and ``refs`` too when there is one; ``written``:
    the form of a ``hoard`` bundle). ``as_directory``: write a ``hoard`` bundle as a directory
    even where DEST does not exist yet (a DEST given with a trailing separator)."""
    if fmt not in ("dir", "hf-cache", "hoard"):
        raise UsageError(f"unknown export format {fmt!r} (dir, hf-cache, hoard)")
    wanted = [addrs] if isinstance(addrs, Address) else list(addrs)
    if not wanted:
        raise UsageError("nothing to export")
    if fmt == "dir" and len(wanted) > 1:
        raise UsageError("the dir format holds one revision: export several to --format hf-cache or hoard")
    if fmt == "hf-cache" and any(a.source != "huggingface" for a in wanted):
        raise UsageError("the hf-cache format holds Hugging Face repos only")
    revisions = list({(r.addr.repo_key, r.rev): r for r in (_revision(store, a) for a in wanted)}.values())
    written = fmt
    if fmt == "dir":
        _export_dir(store, revisions[0], Destination(dest), link, progress)
    elif fmt == "hf-cache":
        out = Destination(dest)
        plans = [_hf_plan(r, out) for r in revisions]  # every name first: a refusal writes nothing
        for r, plan in zip(revisions, plans, strict=True):
            _export_hf_cache(store, r, plan, out, link, progress)
    else:
        written = _export_bundle(store, revisions, dest, progress, as_directory)
    summary: dict[str, Any] = {"files": sum(len(r.blobs) for r in revisions),
                               "bytes": sum(r.snap.size for r in revisions), "format": fmt, "written": written,
                               "dest": str(dest), "revisions": [r.summary() for r in revisions]}
    if len(revisions) == 1:
        summary |= {k: v for k, v in revisions[0].summary().items() if k in ("repo", "revision", "refs")}
    return summary


def _export_dir(store: Store, r: _Revision, out: Destination, link: bool, progress: Progress | None) -> None:
    for path in sorted(r.blobs):
        out.path(path)  # every name first: a refusal writes nothing
    for path, b3 in sorted(r.blobs.items()):
        out.place(store.blob_path(b3), (path,), link)
        if progress:
            progress(r.snap.files[path].size)


def _hf_plan(r: _Revision, out: Destination) -> list[tuple[str, str, str]]:
    """(path, b3, etag) of each file, every name it will write checked."""
    repo_dir = _hf_repo_dir(r.addr)
    plan = [(path, b3, _hf_etag(path, r.snap.files[path])) for path, b3 in sorted(r.blobs.items())]
    for path, _, etag in plan:
        out.path(repo_dir, "blobs", etag)
        out.path(repo_dir, "snapshots", r.rev, path)
    for ref in r.refs:
        out.path(repo_dir, "refs", ref)
    out.path(repo_dir, "trees", f"{r.rev}.json")
    return plan


def _hf_repo_dir(addr: Address) -> str:
    return f"{_HF_KIND_DIR[addr.kind]}--{addr.owner}--{addr.repo}"


def _export_hf_cache(store: Store, r: _Revision, plan: list[tuple[str, str, str]], out: Destination, link: bool,
                     progress: Progress | None) -> None:
    """``<kind>--<owner>--<repo>/`` with ``blobs/<etag>``, ``snapshots/<rev>/<path>`` links to
    them, ``refs/<ref>`` files holding the revision, and ``trees/<rev>.json``."""
    repo_dir = _hf_repo_dir(r.addr)
    for path, b3, etag in plan:
        blob = out.path(repo_dir, "blobs", etag)
        if not (blob.is_file() and not blob.is_symlink() and blob.stat().st_size == r.snap.files[path].size):
            blob = out.place(store.blob_path(b3), (repo_dir, "blobs", etag), link)
        out.symlink((repo_dir, "snapshots", r.rev, path), blob)
        if progress:
            progress(r.snap.files[path].size)
    out.mkdir(repo_dir, "refs")
    for ref in r.refs:
        out.write_text((repo_dir, "refs", ref), r.rev)  # no trailing newline: the client reads it verbatim
    tree = _hf_tree(r.snap)
    if tree is not None:
        out.write_text((repo_dir, "trees", f"{r.rev}.json"), json.dumps(tree, indent=1, sort_keys=True))


def _hf_tree(snap: Snapshot) -> dict[str, Any] | None:
    """huggingface_hub's ``trees/<commit>.json`` (format 1): each file's size and git blob id,
    with the LFS sha256 and size; None when an entry lacks its git blob id."""
    files: dict[str, Any] = {}
    for path, entry in sorted(snap.files.items()):
        oid, lfs = entry.meta.get("oid"), entry.meta.get("lfs")
        if not is_hex(oid, 40):
            return None
        info: dict[str, Any] = {"size": entry.size, "blob_id": oid}
        if lfs:
            info |= {"lfs_sha256": lfs["oid"], "lfs_size": lfs.get("size", entry.size)}
        files[path] = info
    return {"format_version": 1, "files": files}


def _export_bundle(store: Store, revisions: list[_Revision], dest: Path, progress: Progress | None,
                   as_directory: bool) -> str:
    """One bundle of every revision: the manifest, each blob once, the end member."""
    manifest = manifest_doc([(r.addr.repo_key, r.rev, r.snap, r.blobs, r.refs) for r in revisions])
    blobs = sorted(manifest["blobs"].items())

    def open_blob(b3: str) -> IO[bytes]:
        fd = store.open_blob(b3)  # holds a shared lock: gc does not remove it under the export
        if fd is None:
            raise NotFound(f"blob {b3} was removed while exporting; run the export again")
        return os.fdopen(fd, "rb")

    return write_bundle(dest, manifest, blobs, open_blob, progress, directory=as_directory)


# -- import -----------------------------------------------------------------------------------


def import_path(store: Store, source: Path, progress: Progress | None = None,
                reading: Progress | None = None) -> ImportReport:
    """Import a hoard bundle (a tar or tar.zst file, by content not name, or a directory) or a
    Hugging Face hub cache directory.

    ``progress``: the size of each blob just before it is added; ``reading``: bytes read from a
    bundle while it is verified."""
    if is_bundle_file(source):
        return import_bundle(store, source, progress, reading)
    if (source / BUNDLE_MANIFEST).exists() or (source / BUNDLE_MANIFEST).is_symlink():
        return import_bundle(store, source, progress, reading)
    if looks_like_hf_cache(source):
        return import_hf_cache(store, source, progress or reading)
    raise UsageError(f"{source} is neither a hoard bundle (a tar or tar.zst file, or a directory) nor a Hugging Face hub cache")
