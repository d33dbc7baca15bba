"""Moving content in and out of a store: ``hoard export`` and ``hoard import``.

Export formats (of one cached revision):

* ``dir`` — the repo's files as ordinary files (copies; hard links to the read-only blobs with
  ``link=True`` when on the same filesystem).
* ``hf-cache`` — a Hugging Face hub cache (``models--org--name/{blobs,snapshots,refs}``), so
  ``HF_HUB_OFFLINE=1`` clients find the files with no hoard running.
* ``hoard`` — a portable bundle (a directory, or a ``.tar`` file): ``hoard-export.json`` with the
  revision, its refs and tree, plus ``blobs/<b3>``. ``hoard import`` of it on another machine
  (an air-gapped one, say) re-verifies every blob and restores the revision exactly.

Import sources:

* a ``hoard`` bundle (directory or ``.tar``);
* a Hugging Face hub cache directory: every blob is hashed and kept if its name (the etag: a
  sha256 for LFS files, a git blob sha1 otherwise) matches its content, so the proxy and the
  mount serve it without downloading again. A revision's tree is imported too when the cache
  holds its complete listing (``trees/<commit>.json``, written by huggingface_hub 2.x).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .address import Address, check_path
from .catalog import resolve_cached
from .errors import IntegrityError, NotFound, UsageError
from .records import ExpectedHash, Snapshot, TreeEntry
from .store import Store

__all__ = ["export", "import_path", "ImportReport", "BUNDLE_MANIFEST"]

BUNDLE_MANIFEST = "hoard-export.json"
_B3 = re.compile(r"[0-9a-f]{64}")
BUNDLE_FORMAT = 1
_HF_KIND_DIR = {"": "models", "datasets": "datasets", "spaces": "spaces"}

Progress = Callable[[int], None]


def _expected(identity: str) -> ExpectedHash | None:
    kind, _, value = identity.partition(":")
    if kind in ("sha256", "gitsha1"):
        return ExpectedHash(kind, value)
    if kind == "b3":
        return ExpectedHash("blake3", value)
    return None


def _complete_blobs(store: Store, snap: Snapshot) -> dict[str, str]:
    """path -> b3 for every file; NotFound naming what is not fully cached."""
    out: dict[str, str] = {}
    missing = []
    for path, entry in snap.files.items():
        b3 = store.resolve(entry.identity)
        if b3 is None:
            missing.append(path)
        else:
            out[path] = b3
    if missing:
        raise NotFound(
            f"{len(missing)} file(s) not fully cached (e.g. {sorted(missing)[0]}); run `hoard prefetch` first"
        )
    return out


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another filesystem: copy
    shutil.copyfile(src, dst)


def export(
    store: Store, addr: Address, dest: Path, fmt: str, *, link: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Export one cached revision; returns a summary."""
    rev, snap = resolve_cached(store, addr)
    blobs = _complete_blobs(store, snap)
    refs = sorted(ref for ref, rec in store.refs(addr.repo_key).items() if rec.revision == rev)
    if fmt == "dir":
        for path, b3 in sorted(blobs.items()):
            _place(store.blob_path(b3), dest / check_path(path), link)
            if progress:
                progress(snap.files[path].size)
    elif fmt == "hf-cache":
        _export_hf_cache(store, addr, rev, snap, blobs, refs, dest, link, progress)
    elif fmt == "hoard":
        _export_bundle(store, addr, rev, snap, blobs, refs, dest, progress)
    else:
        raise UsageError(f"unknown export format {fmt!r} (dir, hf-cache, hoard)")
    return {"repo": addr.repo_key, "revision": rev, "files": len(blobs), "bytes": snap.size,
            "format": fmt, "dest": str(dest), "refs": refs}


def _export_hf_cache(store: Store, addr: Address, rev: str, snap: Snapshot, blobs: dict[str, str],
                     refs: list[str], dest: Path, link: bool, progress: Progress | None) -> None:
    if addr.source != "huggingface":
        raise UsageError("the hf-cache format holds Hugging Face repos only")
    repo_dir = dest / f"{_HF_KIND_DIR[addr.kind]}--{addr.owner}--{addr.repo}"
    for path, b3 in sorted(blobs.items()):
        entry = snap.files[path]
        lfs = entry.meta.get("lfs")
        etag = lfs["oid"] if lfs else (entry.meta.get("oid") or entry.identity.partition(":")[2])
        blob = repo_dir / "blobs" / etag
        if not blob.exists():
            _place(store.blob_path(b3), blob, link)
        pointer = repo_dir / "snapshots" / rev / path
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        if progress:
            progress(entry.size)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        ref_file = repo_dir / "refs" / ref
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(rev)  # no trailing newline: the client reads it verbatim


def _manifest(addr: Address, rev: str, snap: Snapshot, blobs: dict[str, str], refs: list[str]) -> dict[str, Any]:
    return {
        "format": BUNDLE_FORMAT,
        "repo": addr.repo_key,
        "revision": rev,
        "refs": refs,
        "created": int(time.time()),
        "info": snap.info,
        "files": {p: {"size": e.size, "identity": e.identity, "meta": e.meta, "blake3": blobs[p]}
                  for p, e in sorted(snap.files.items())},
    }


def _export_bundle(store: Store, addr: Address, rev: str, snap: Snapshot, blobs: dict[str, str],
                   refs: list[str], dest: Path, progress: Progress | None) -> None:
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
    dest.mkdir(parents=True, exist_ok=True)
    for b3 in sorted(set(blobs.values())):
        _place(store.blob_path(b3), dest / "blobs" / b3, link=False)
        if progress:
            progress((dest / "blobs" / b3).stat().st_size)
    (dest / BUNDLE_MANIFEST).write_bytes(manifest)


# -- import -----------------------------------------------------------------------------------


@dataclass
class ImportReport:
    kind: str
    blobs: int = 0
    bytes: int = 0
    revisions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "blobs": self.blobs, "bytes": self.bytes,
                "revisions": self.revisions, "skipped": self.skipped}


def import_path(store: Store, source: Path, progress: Progress | None = None) -> ImportReport:
    """Import a hoard bundle (dir or .tar) or a Hugging Face hub cache directory."""
    if source.is_file() and tarfile.is_tarfile(source):
        with tempfile.TemporaryDirectory(dir=store.layout.tmp) as tmp:
            with tarfile.open(source) as tar:
                tar.extractall(tmp, filter="data")
            return _import_bundle(store, Path(tmp), progress)
    if (source / BUNDLE_MANIFEST).is_file():
        return _import_bundle(store, source, progress)
    if source.is_dir() and (any(source.glob("models--*")) or any(source.glob("datasets--*"))
                            or any(source.glob("spaces--*"))):
        return _import_hf_cache(store, source, progress)
    raise UsageError(f"{source} is neither a hoard export nor a Hugging Face hub cache")


def _import_bundle(store: Store, root: Path, progress: Progress | None) -> ImportReport:
    doc = json.loads((root / BUNDLE_MANIFEST).read_text())
    if doc.get("format") != BUNDLE_FORMAT:
        raise UsageError(f"unknown export format {doc.get('format')!r}")
    report = ImportReport("hoard")
    files: dict[str, TreeEntry] = {}
    for path, f in doc["files"].items():
        check_path(path)
        entry = TreeEntry(int(f["size"]), f["identity"], f.get("meta") or {})
        files[path] = entry
        named = str(f.get("blake3", ""))
        if not _B3.fullmatch(named):
            raise UsageError(f"{path}: bad blake3 {named!r} in the manifest")
        expected = _expected(entry.identity)
        if expected is None:
            raise UsageError(f"{path}: identity {entry.identity!r} is of a kind hoard cannot verify")
        if store.resolve(entry.identity) is not None:
            continue
        # the content must match the upstream hash *and* the BLAKE3 the manifest names
        b3, size = store.add_file(root / "blobs" / named, expected=expected, aliases=[entry.identity],
                                  progress=progress)
        if b3 != named:
            raise IntegrityError(f"{path}: bundle blob hashes to {b3}, manifest says {named}")
        report.blobs += 1
        report.bytes += size
    repo, rev = doc["repo"], doc["revision"]
    store.put_snapshot(repo, rev, Snapshot(files, int(doc.get("created", time.time())), doc.get("info") or {}),
                       refs=doc.get("refs") or [])
    report.revisions.append(f"{repo}@{rev}")
    return report


def _hf_blobs(repo_dir: Path) -> Iterator[Path]:
    blobs = repo_dir / "blobs"
    if blobs.is_dir():
        for p in sorted(blobs.iterdir()):
            if p.is_file() and not p.name.endswith(".incomplete") and ".incomplete" not in p.name:
                yield p


def _import_hf_cache(store: Store, root: Path, progress: Progress | None) -> ImportReport:
    report = ImportReport("hf-cache")
    for repo_dir in sorted(root.iterdir()):
        kind_dir, _, rest = repo_dir.name.partition("--")
        if kind_dir not in ("models", "datasets", "spaces") or "--" not in rest:
            continue
        owner, _, name = rest.partition("--")
        for blob in _hf_blobs(repo_dir):
            etag = blob.name
            if len(etag) == 64:
                expected = ExpectedHash("sha256", etag)
            elif len(etag) == 40:
                expected = ExpectedHash("gitsha1", etag)
            else:
                report.skipped.append(str(blob))
                continue
            if store.resolve(expected.alias or "") is not None:
                continue
            try:
                _, size = store.add_file(blob, expected=expected, progress=progress)
            except IntegrityError:
                report.skipped.append(f"{blob} (content does not match its name)")
                continue
            report.blobs += 1
            report.bytes += size
        kind = "" if kind_dir == "models" else kind_dir
        repo_key = f"huggingface/{kind + '/' if kind else ''}{owner}/{name}"
        for tree_file in sorted((repo_dir / "trees").glob("*.json")) if (repo_dir / "trees").is_dir() else []:
            rev = tree_file.stem
            snap = _hf_tree_snapshot(tree_file, f"{owner}/{name}", rev)
            if snap is not None and store.get_snapshot(repo_key, rev) is None:
                store.put_snapshot(repo_key, rev, snap)
                report.revisions.append(f"{repo_key}@{rev}")
    return report


def _hf_tree_snapshot(tree_file: Path, repo_id: str, rev: str) -> Snapshot | None:
    """A snapshot from huggingface_hub 2.x's ``trees/<commit>.json`` (complete listings)."""
    try:
        doc = json.loads(tree_file.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("format_version") != 1 or not isinstance(doc.get("files"), dict):
        return None
    files: dict[str, TreeEntry] = {}
    for path, f in doc["files"].items():
        meta: dict[str, Any] = {"oid": f.get("blob_id", "")}
        if f.get("lfs_sha256"):
            meta["lfs"] = {"oid": f["lfs_sha256"], "size": f.get("lfs_size", f.get("size", 0)), "pointerSize": 0}
            identity = f"sha256:{f['lfs_sha256']}"
        else:
            identity = f"gitsha1:{f.get('blob_id', '')}"
        files[check_path(path)] = TreeEntry(int(f.get("size", 0)), identity, meta)
    return Snapshot(files, int(time.time()), {"repo_info": {"id": repo_id, "sha": rev}, "imported": "hf-cache"})

