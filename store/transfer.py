"""Moving content in and out of a store: ``hoard export`` and ``hoard import``.

Export formats (of one cached revision):

* ``dir`` — the repo's files as ordinary files (copies; hard links to the read-only blobs with
  ``link=True`` when on the same filesystem).
* ``hf-cache`` — a Hugging Face hub cache (``models--org--name/{blobs,snapshots,refs}``), so
  ``HF_HUB_OFFLINE=1`` clients find the files with no hoard running.
* ``hoard`` — a portable bundle (a directory, or a ``.tar`` file): ``hoard-export.json`` with the
  revision, its refs and tree (each file's size, identity, metadata, BLAKE3 and ``expected``:
  the hash that verifies it, or null for a file verified by its length only), plus
  ``blobs/<b3>``. ``hoard import`` of it on another machine
  (an air-gapped one, say) re-verifies every blob and restores the revision exactly.

Import sources: a ``hoard`` bundle (:mod:`.transfer_bundle`), or a Hugging Face hub cache
directory (:mod:`.transfer_hfcache`). Both are untrusted input, checked before anything is added.

Export never writes outside DEST, whatever the store holds (an older hoard may have stored
names it would refuse today): the revision, its refs and every entry are checked by the rules
of :mod:`.untrusted` first, and every file is written through a :class:`~.safefs.Destination`,
which resolves each path just before writing. A bad name refuses the whole export with an
:class:`IntegrityError` before anything is written.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .address import Address
from .catalog import resolve_cached
from .errors import IntegrityError, InvalidAddress, NotFound, UsageError
from .records import Snapshot, TreeEntry
from .safefs import Destination
from .store import Store
from .transfer_bundle import BUNDLE_FORMAT, BUNDLE_MANIFEST, ImportReport, extract_bundle, import_bundle
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


def export(
    store: Store, addr: Address, dest: Path, fmt: str, *, link: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Export one cached revision; returns a summary."""
    if fmt not in ("dir", "hf-cache", "hoard"):
        raise UsageError(f"unknown export format {fmt!r} (dir, hf-cache, hoard)")
    if fmt == "hf-cache" and addr.source != "huggingface":
        raise UsageError("the hf-cache format holds Hugging Face repos only")
    rev, snap = resolve_cached(store, addr)
    refs = sorted(ref for ref, rec in store.refs(addr.repo_key).items() if rec.revision == rev)
    _check_stored(addr, rev, snap, refs)
    blobs = _complete_blobs(store, snap)
    out = Destination(dest)
    if fmt == "dir":
        for path in sorted(blobs):
            out.path(path)  # every name first: a refusal writes nothing
        for path, b3 in sorted(blobs.items()):
            out.place(store.blob_path(b3), (path,), link)
            if progress:
                progress(snap.files[path].size)
    elif fmt == "hf-cache":
        _export_hf_cache(store, addr, rev, snap, blobs, refs, out, link, progress)
    else:
        _export_bundle(store, addr, rev, snap, blobs, refs, dest, progress)
    return {"repo": addr.repo_key, "revision": rev, "files": len(blobs), "bytes": snap.size,
            "format": fmt, "dest": str(dest), "refs": refs}


def _export_hf_cache(store: Store, addr: Address, rev: str, snap: Snapshot, blobs: dict[str, str],
                     refs: list[str], out: Destination, link: bool, progress: Progress | None) -> None:
    """``<kind>--<owner>--<repo>/`` with ``blobs/<etag>``, ``snapshots/<rev>/<path>`` links to
    them, and ``refs/<ref>`` files holding the revision."""
    repo_dir = f"{_HF_KIND_DIR[addr.kind]}--{addr.owner}--{addr.repo}"
    plan = [(path, b3, _hf_etag(path, snap.files[path])) for path, b3 in sorted(blobs.items())]
    for path, _, etag in plan:  # every name first: a refusal writes nothing
        out.path(repo_dir, "blobs", etag)
        out.path(repo_dir, "snapshots", rev, path)
    for ref in refs:
        out.path(repo_dir, "refs", ref)
    for path, b3, etag in plan:
        blob = out.path(repo_dir, "blobs", etag)
        if not (blob.is_file() and not blob.is_symlink() and blob.stat().st_size == snap.files[path].size):
            blob = out.place(store.blob_path(b3), (repo_dir, "blobs", etag), link)
        out.symlink((repo_dir, "snapshots", rev, path), blob)
        if progress:
            progress(snap.files[path].size)
    out.mkdir(repo_dir, "refs")
    for ref in refs:
        out.write_text((repo_dir, "refs", ref), rev)  # no trailing newline: the client reads it verbatim


def _manifest(addr: Address, rev: str, snap: Snapshot, blobs: dict[str, str], refs: list[str]) -> dict[str, Any]:
    return {
        "format": BUNDLE_FORMAT,
        "repo": addr.repo_key,
        "revision": rev,
        "refs": refs,
        "created": int(time.time()),
        "info": snap.info,
        "files": {p: {"size": e.size, "identity": e.identity, "meta": e.meta, "blake3": blobs[p],
                      "expected": e.expected.text if e.expected else None}
                  for p, e in sorted(snap.files.items())},
    }


def _export_bundle(store: Store, addr: Address, rev: str, snap: Snapshot, blobs: dict[str, str],
                   refs: list[str], dest: Path, progress: Progress | None) -> None:
    """A bundle directory, or a ``.tar`` of the same members (names fixed here: the manifest
    and ``blobs/<b3>``, each checked hex)."""
    manifest = json.dumps(_manifest(addr, rev, snap, blobs, refs), indent=1, sort_keys=True).encode()
    if dest.suffix == ".tar":
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest, "w") as tar:
            info = tarfile.TarInfo(BUNDLE_MANIFEST)
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
            for b3 in sorted(set(blobs.values())):
                tar.add(store.blob_path(b3), arcname=f"blobs/{b3}")
                if progress:
                    progress(store.blob_path(b3).stat().st_size)
        return
    out = Destination(dest)
    for b3 in sorted(set(blobs.values())):
        placed = out.place(store.blob_path(b3), ("blobs", b3))
        if progress:
            progress(placed.stat().st_size)
    out.write_text((BUNDLE_MANIFEST,), manifest.decode())


# -- import -----------------------------------------------------------------------------------


def import_path(store: Store, source: Path, progress: Progress | None = None) -> ImportReport:
    """Import a hoard bundle (dir or .tar) or a Hugging Face hub cache directory."""
    if source.is_file() and tarfile.is_tarfile(source):
        with tempfile.TemporaryDirectory(dir=store.layout.tmp) as tmp:
            extract_bundle(source, Path(tmp))
            return import_bundle(store, Path(tmp), progress)
    if (source / BUNDLE_MANIFEST).exists() or (source / BUNDLE_MANIFEST).is_symlink():
        return import_bundle(store, source, progress)
    if looks_like_hf_cache(source):
        return import_hf_cache(store, source, progress)
    raise UsageError(f"{source} is neither a hoard export nor a Hugging Face hub cache")
