"""Importing a Hugging Face hub cache (``~/.cache/huggingface/hub``) into the store.

Every blob (``<kind>--<owner>--<name>/blobs/<etag>``) is hashed and kept if its name (the etag:
a sha256 for LFS files, a git blob sha1 otherwise) matches its content, so the proxy and the
mount serve it without downloading again. A revision's tree is imported too when the cache
holds its complete listing (``trees/<commit>.json``, written by huggingface_hub 2.x), and the
store holds no other tree for that revision.

The cache is untrusted input. The folders hoard reads (the repo folders, ``blobs/``,
``trees/``) are examined with ``lstat`` (:func:`~.safefs.classify`): blobs and tree files must
be regular files. A link leaving the cache refuses the whole import before anything is added
(:class:`UsageError`, naming every such link); other links, FIFOs, sockets and devices are
skipped and listed in the report. Names (repo folders, etags, commits, paths, identities)
pass the rules of :mod:`.untrusted`; what fails them is skipped and listed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IntegrityError, InvalidAddress, UsageError
from .records import ExpectedHash, Snapshot, TreeEntry
from .safefs import Kind, classify
from .store import Store
from .transfer_bundle import ImportReport
from .untrusted import check_entry, check_repo_key, hashed_entry, is_hex

__all__ = ["looks_like_hf_cache", "import_hf_cache"]

_KIND_DIRS = ("models", "datasets", "spaces")

Progress = Callable[[int], None]


def looks_like_hf_cache(root: Path) -> bool:
    return root.is_dir() and any(any(root.glob(f"{kind}--*")) for kind in _KIND_DIRS)


@dataclass
class _Repo:
    """One repo folder of the cache, as scanned: its key, blob files and tree files."""

    key: str
    repo_id: str
    blobs: list[tuple[Path, ExpectedHash]] = field(default_factory=list)
    trees: list[Path] = field(default_factory=list)


@dataclass
class _Scan:
    repos: list[_Repo] = field(default_factory=list)
    escaping: list[str] = field(default_factory=list)


def _entries(
    folder: Path, root_real: str, scan: _Scan, report: ImportReport, wanted: Callable[[str], bool] = lambda _: True
) -> Iterator[tuple[str, Path]]:
    """(kind, path) of each ``wanted`` entry of ``folder`` (by name), sorted; links out of the
    cache are collected in ``scan.escaping``, the rest of what is no file or folder is noted
    as skipped. Entries hoard does not read (``snapshots/``, ``.locks/``) are not looked at."""
    for path in sorted(folder.iterdir()):
        if not wanted(path.name):
            continue
        kind, _ = classify(path, root_real)
        if kind == Kind.ESCAPING:
            scan.escaping.append(str(path))
        elif kind in (Kind.FILE, Kind.DIR):
            yield kind, path
        else:
            report.skipped.append(f"{path} ({kind}; only regular files are read)")


def _expected(etag: str) -> ExpectedHash | None:
    if is_hex(etag, 64):
        return ExpectedHash("sha256", etag)
    if is_hex(etag, 40):
        return ExpectedHash("gitsha1", etag)
    return None


def _scan_repo(repo_dir: Path, root_real: str, scan: _Scan, report: ImportReport) -> None:
    kind_dir, _, rest = repo_dir.name.partition("--")
    owner, _, name = rest.partition("--")
    kind = "" if kind_dir == "models" else kind_dir + "/"
    try:
        key = check_repo_key(f"huggingface/{kind}{owner}/{name}").repo_key
    except InvalidAddress as exc:
        report.skipped.append(f"{repo_dir} (not a repo folder: {exc})")
        return
    repo = _Repo(key, f"{owner}/{name}")
    for sub, folder in _entries(repo_dir, root_real, scan, report, lambda n: n in ("blobs", "trees")):
        if sub != Kind.DIR:
            continue
        for what, path in _entries(folder, root_real, scan, report):
            if what != Kind.FILE or path.name.endswith(".incomplete"):
                continue
            if folder.name == "trees":
                if path.suffix == ".json":
                    repo.trees.append(path)
            elif (expected := _expected(path.name)) is not None:
                repo.blobs.append((path, expected))
            else:
                report.skipped.append(f"{path} (not named by a sha256 or git sha1)")
    scan.repos.append(repo)


def _is_repo_dir_name(name: str) -> bool:
    prefix, _, rest = name.partition("--")
    return prefix in _KIND_DIRS and "--" in rest


def _scan(root: Path, report: ImportReport) -> _Scan:
    """Every repo folder's blobs and trees; UsageError if any link leaves the cache."""
    root_real = os.path.realpath(root)
    scan = _Scan()
    for kind, repo_dir in _entries(root, root_real, scan, report, _is_repo_dir_name):
        if kind == Kind.DIR:
            _scan_repo(repo_dir, root_real, scan, report)
    if scan.escaping:
        shown = ", ".join(scan.escaping[:10]) + (" …" if len(scan.escaping) > 10 else "")
        raise UsageError(f"{root}: {len(scan.escaping)} link(s) lead out of the cache and are refused "
                         f"(nothing was imported): {shown}")
    return scan


def import_hf_cache(store: Store, root: Path, progress: Progress | None = None) -> ImportReport:
    """Import the verified blobs of a hub cache, and the trees it lists completely."""
    report = ImportReport("hf-cache")
    for repo in _scan(root, report).repos:
        for blob, expected in repo.blobs:
            if store.resolve(expected.alias or "") is not None:
                continue
            try:
                _, size = store.add_file(blob, expected=expected, progress=progress)
            except IntegrityError:
                report.skipped.append(f"{blob} (content does not match its name)")
                continue
            report.blobs += 1
            report.bytes += size
        for tree_file in repo.trees:
            _import_tree(store, repo, tree_file, report)
    return report


def _import_tree(store: Store, repo: _Repo, tree_file: Path, report: ImportReport) -> None:
    rev = tree_file.stem
    try:
        snap = _hf_tree_snapshot(tree_file, repo.repo_id, rev)
    except InvalidAddress as exc:
        report.skipped.append(f"{tree_file} ({exc})")
        return
    if snap is None:
        return
    stored = store.get_snapshot(repo.key, rev)
    if stored is None:
        store.put_snapshot(repo.key, rev, snap)
        report.revisions.append(f"{repo.key}@{rev}")
    elif {p: e.identity for p, e in stored.files.items()} != {p: e.identity for p, e in snap.files.items()}:
        report.skipped.append(f"{tree_file} (the store holds another tree for {rev}; kept it)")


def _hf_tree_snapshot(tree_file: Path, repo_id: str, rev: str) -> Snapshot | None:
    """A snapshot from huggingface_hub 2.x's ``trees/<commit>.json`` (complete listings);
    None if the file is not one; InvalidAddress if a name in it is bad."""
    if not is_hex(rev, 40):
        raise InvalidAddress(f"{rev!r} is not a commit id")
    try:
        doc = json.loads(tree_file.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format_version") != 1 or not isinstance(doc.get("files"), dict):
        return None
    files: dict[str, TreeEntry] = {}
    for path, f in doc["files"].items():
        if not isinstance(f, dict):
            raise InvalidAddress(f"{path}: not an object")
        meta: dict[str, Any] = {"oid": f.get("blob_id", "")}
        if f.get("lfs_sha256"):
            meta["lfs"] = {"oid": f["lfs_sha256"], "size": f.get("lfs_size", f.get("size", 0)), "pointerSize": 0}
            identity = f"sha256:{f['lfs_sha256']}"
        else:
            identity = f"gitsha1:{f.get('blob_id', '')}"
        files[path] = hashed_entry(f.get("size", 0), identity, meta)
        check_entry(path, files[path])
    return Snapshot(files, int(time.time()), {"repo_info": {"id": repo_id, "sha": rev}, "imported": "hf-cache"})
