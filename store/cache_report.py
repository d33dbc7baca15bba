"""What the cache holds, by source and by repo: ``hoard cache`` and ``GET /v1/cache``.

A ``huggingface-cli scan-cache`` for hoard, read from the index in one read transaction (no
directory walk, nothing hashed). For each repo: its revisions and refs, its files (distinct
contents over all its cached revisions), how many bytes of them are complete blobs or present
in partials, when a blob of it was last used, whether it is pinned.

Content is stored once whatever names it, so the per-repo and per-source figures overlap when
repos share files; the store totals count every blob once. How much that sharing saves is
``deduplicated_bytes``::

    logical    = sum, over every cached revision of every repo, of the sizes of its files whose
                 content is a complete blob (what per-revision copies, as in a plain directory
                 per revision, would take)
    referenced = sum of the sizes of the distinct blobs those files are
    deduplicated_bytes = logical - referenced

Blobs no cached revision names (a pinned file whose repo was removed, blobs imported from a
Hugging Face cache without their tree) are counted as ``unreferenced``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lmdb

from .records import BlobRecord
from .store import Store

__all__ = ["RepoUsage", "CacheReport", "cache_report"]


@dataclass
class RepoUsage:
    """One cached repo: distinct contents over its revisions, and how much of them is here."""

    repo: str
    revisions: list[str] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)
    files: int = 0
    size: int = 0
    cached_files: int = 0
    cached_bytes: int = 0
    partial_bytes: int = 0
    last_used: int = 0
    pinned: bool = False
    restricted: bool = False

    @property
    def source(self) -> str:
        return self.repo.split("/", 1)[0]

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "source": self.source, "revisions": self.revisions, "refs": self.refs,
                "files": self.files, "size": self.size, "cached_files": self.cached_files,
                "cached_bytes": self.cached_bytes, "partial_bytes": self.partial_bytes,
                "last_used": self.last_used, "pinned": self.pinned}


@dataclass
class CacheReport:
    repos: list[RepoUsage] = field(default_factory=list)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0
    unreferenced_blobs: int = 0
    unreferenced_bytes: int = 0
    partials: int = 0
    partial_bytes: int = 0
    pins: dict[str, int] = field(default_factory=dict)
    logical_bytes: int = 0
    deduplicated_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.blob_bytes + self.partial_bytes

    def totals(self) -> dict[str, Any]:
        """Everything but the per-repo list (the part that names no repo)."""
        return {"sources": self.sources, "blobs": self.blobs, "blob_bytes": self.blob_bytes,
                "unreferenced_blobs": self.unreferenced_blobs, "unreferenced_bytes": self.unreferenced_bytes,
                "partials": self.partials, "partial_bytes": self.partial_bytes, "total_bytes": self.total_bytes,
                "pins": self.pins, "logical_bytes": self.logical_bytes,
                "deduplicated_bytes": self.deduplicated_bytes, "repos": len(self.repos)}

    def as_dict(self) -> dict[str, Any]:
        return self.totals() | {"by_repo": [r.as_dict() for r in self.repos]}


class _Scan:
    """The walk over one read transaction: blobs, partials, then every snapshot and ref."""

    def __init__(self, store: Store, txn: lmdb.Transaction) -> None:
        self.store, self.txn, self.index = store, txn, store.index
        self.blobs: dict[str, BlobRecord] = dict(self.index.iter_blobs(txn))
        self.partials: dict[str, int] = {}
        for alias, prec in self.index.iter_partials(txn):
            cs = prec.chunk_size
            self.partials[alias] = sum(min(cs, prec.size - i * cs) for i in self.index.chunk_sums(alias, txn))
        self._b3: dict[str, str | None] = {}

    def b3(self, identity: str) -> str | None:
        if identity not in self._b3:
            self._b3[identity] = self.index.resolve(identity, self.txn)
        return self._b3[identity]


def _pins(store: Store) -> tuple[dict[str, int], set[str]]:
    """Pin counts by kind, and the repos with a pinned revision."""
    counts = {"blobs": 0, "revisions": 0, "follows": 0}
    repos: set[str] = set()
    for target in store.pins():
        if target.startswith("blob:"):
            counts["blobs"] += 1
        elif target.startswith("snapshot:"):
            counts["revisions"] += 1
            repos.add(target[9:].rpartition("@")[0])
        elif target.startswith("ref:"):
            counts["follows"] += 1
    return counts, repos


def _add_repo(scan: _Scan, usage: RepoUsage, contents: dict[str, int], report: CacheReport,
              per_source: dict[str, dict[str, int]]) -> None:
    """Fill a repo's figures from its distinct contents (identity -> size)."""
    per_source.setdefault(usage.source, {}).update(contents)
    for identity, size in contents.items():
        usage.files += 1
        usage.size += size
        b3 = scan.b3(identity)
        if b3 is None:
            usage.partial_bytes += scan.partials.get(identity, 0)
            continue
        usage.cached_files += 1
        usage.cached_bytes += size
        rec = scan.blobs.get(b3)
        if rec is not None:
            usage.last_used = max(usage.last_used, scan.store.last_access(b3, rec))
    report.repos.append(usage)


def cache_report(store: Store) -> CacheReport:
    """The cache's contents by source and by repo, with the store totals (see the module doc)."""
    report = CacheReport()
    report.pins, pinned_repos = _pins(store)
    per_source: dict[str, dict[str, int]] = {}
    referenced: set[str] = set()
    with store.index.read() as txn:
        scan = _Scan(store, txn)
        repos: dict[str, RepoUsage] = {}
        contents: dict[str, dict[str, int]] = {}
        for repo, ref, rec in store.index.iter_refs(txn):
            repos.setdefault(repo, RepoUsage(repo)).refs[ref] = rec.revision
        for repo, rev, snap in store.index.iter_snapshots(txn):
            usage = repos.setdefault(repo, RepoUsage(repo))
            usage.revisions.append(rev)
            usage.restricted = usage.restricted or snap.restricted
            mine = contents.setdefault(repo, {})
            for entry in snap.files.values():
                mine[entry.identity] = entry.size
                b3 = scan.b3(entry.identity)
                if b3 is not None:
                    report.logical_bytes += entry.size
                    referenced.add(b3)
        for repo in sorted(repos):
            repos[repo].pinned = repo in pinned_repos
            _add_repo(scan, repos[repo], contents.get(repo, {}), report, per_source)
    report.blobs, report.blob_bytes = len(scan.blobs), sum(r.size for r in scan.blobs.values())
    unreferenced = [r.size for b3, r in scan.blobs.items() if b3 not in referenced]
    report.unreferenced_blobs, report.unreferenced_bytes = len(unreferenced), sum(unreferenced)
    report.partials, report.partial_bytes = len(scan.partials), sum(scan.partials.values())
    report.deduplicated_bytes = report.logical_bytes - sum(scan.blobs[b].size for b in referenced if b in scan.blobs)
    report.sources = _by_source(report.repos, per_source, scan)
    return report


def _by_source(repos: list[RepoUsage], per_source: dict[str, dict[str, int]], scan: _Scan) -> dict[str, dict[str, int]]:
    """Totals per source, each content counted once within its source: ``files`` and ``size``
    of the distinct contents its repos name, ``cached_bytes`` of those that are blobs,
    ``partial_bytes`` present of the others."""
    out: dict[str, dict[str, int]] = {}
    for r in repos:
        out.setdefault(r.source, {"repos": 0, "files": 0, "size": 0, "cached_bytes": 0, "partial_bytes": 0})["repos"] += 1
    for source, contents in per_source.items():
        row = out[source]
        blobs: dict[str, int] = {}
        for identity, size in contents.items():
            row["files"] += 1
            row["size"] += size
            b3 = scan.b3(identity)
            if b3 is None:
                row["partial_bytes"] += scan.partials.get(identity, 0)
            else:
                blobs[b3] = size
        row["cached_bytes"] = sum(blobs.values())
    return out
