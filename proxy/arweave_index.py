"""Which hoard content an Arweave transaction id names: the gateway face's tx index.

Ritual's clients ask a gateway for transactions by id (``GET /{txid}``, ``/tx/{txid}/...``);
hoard keeps files by repo, revision and path. :class:`TxIndex` maps one to the other, from the
``arweave/<owner>/<repo>@<manifest>`` snapshots in the store:

* the repo-manifest tx (the revision) → ``repo``;
* each file's tx → ``file`` (its whole bytes);
* a file uploaded in sections (ritual-arweave 0.2.0): the sectioned-manifest tx →
  ``sectioned``, and each ``N.section`` tx → ``section``, the window ``[offset, offset + size)``
  of the reassembled file;
* a transaction found at the gateway that no snapshot lists → ``plain`` (added by the face).

The index lives in memory. :meth:`TxIndex.refresh` (a thread's work: it reads the store) adds
the snapshots it has not seen yet, so a revision stored by another request or another process
sharing the store is found on the next miss; :meth:`TxIndex.add_snapshot` adds one at once.

:class:`OffsetMap` remembers the weave offsets that ``/tx/{txid}/offset`` answers gave (the
absolute end offset, inclusive, and the size), so ``/chunk/{offset}`` can be answered from the
transaction's bytes; :func:`chunk_span` cuts a transaction into Arweave chunks the way
ritual-pyarweave uploads them (fixed 256 KiB steps, the last one shorter).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

from hoard.store.records import Snapshot
from hoard.store.store import Store

__all__ = ["TxRef", "TxIndex", "OffsetMap", "chunk_span", "CHUNK_SIZE", "KINDS"]

#: Arweave's data chunk size (ritual-pyarweave cuts uploads in these fixed steps)
CHUNK_SIZE = 256 * 1024
#: what a transaction id can name
KINDS = ("repo", "file", "sectioned", "section", "plain")
_PREFIX = "arweave/"
_MAX_PLAIN = 100_000  # plain txs remembered at most (a flood of ids cannot grow it without bound)
_MAX_OFFSETS = 100_000


@dataclass(frozen=True)
class TxRef:
    """What one transaction id names (see the module docstring for ``kind``).

    ``repo``/``revision``/``path`` locate it in the store (``path`` is "" for a repo manifest);
    ``offset``/``size`` are its window of the file (a section) or the whole file. A ``plain``
    tx belongs to no stored repo: ``owner`` is its uploader, ``size`` its data size and
    ``content_type`` its Content-Type tag.
    """

    kind: str
    owner: str
    repo: str = ""
    revision: str = ""
    path: str = ""
    offset: int = 0
    size: int = 0
    content_type: str = ""

    @property
    def repo_key(self) -> str:
        return f"arweave/{self.owner}/{self.repo}"


def refs_of(owner: str, repo: str, revision: str, snap: Snapshot) -> dict[str, TxRef]:
    """Every transaction a stored revision names, by id."""
    out = {revision: TxRef("repo", owner, repo, revision)}
    for path, entry in snap.files.items():
        tx = entry.meta.get("tx")
        if not isinstance(tx, str):
            continue
        sections = entry.meta.get("sections")
        if not sections:
            out[tx] = TxRef("file", owner, repo, revision, path, 0, entry.size)
            continue
        out[tx] = TxRef("sectioned", owner, repo, revision, path, 0, entry.size)
        offset = 0
        for item in sections if isinstance(sections, list) else ():
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], int)):
                break  # not what the arweave source writes: its windows cannot be trusted
            out[item[0]] = TxRef("section", owner, repo, revision, path, offset, item[1])
            offset += item[1]
    return out


class TxIndex:
    """Transaction id → :class:`TxRef`, for every Arweave revision in the store (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, TxRef] = {}
        self._plain: dict[str, TxRef] = {}
        self._seen: set[tuple[str, str]] = set()

    def get(self, txid: str) -> TxRef | None:
        with self._lock:
            return self._refs.get(txid) or self._plain.get(txid)

    def add_snapshot(self, repo_key: str, revision: str, snap: Snapshot) -> None:
        """Index one revision ``arweave/<owner>/<repo>@<revision>``."""
        parts = repo_key.split("/")
        if len(parts) != 3 or parts[0] != "arweave":
            return
        refs = refs_of(parts[1], parts[2], revision, snap)
        with self._lock:
            self._refs.update(refs)
            self._seen.add((repo_key, revision))
            for txid in refs:
                self._plain.pop(txid, None)

    def add_plain(self, txid: str, ref: TxRef) -> None:
        """Remember a transaction found at the gateway that no stored revision lists."""
        with self._lock:
            if txid in self._refs:
                return
            if len(self._plain) >= _MAX_PLAIN:
                self._plain.pop(next(iter(self._plain)))
            self._plain[txid] = ref

    def refresh(self, store: Store) -> int:
        """(In a thread.) Index the Arweave revisions of the store not indexed yet; returns
        how many were added. Listing keys is cheap; only new snapshots are decoded."""
        added = 0
        for repo_key in store.repos(_PREFIX):
            for revision in store.revisions(repo_key):
                with self._lock:
                    if (repo_key, revision) in self._seen:
                        continue
                snap = store.get_snapshot(repo_key, revision)
                if snap is not None:
                    self.add_snapshot(repo_key, revision, snap)
                    added += 1
        return added

    def __len__(self) -> int:
        with self._lock:
            return len(self._refs) + len(self._plain)


def chunk_span(rel: int, size: int) -> tuple[int, int]:
    """``[start, end)`` of the chunk holding byte ``rel`` of a ``size``-byte transaction."""
    start = rel - rel % CHUNK_SIZE
    return start, min(start + CHUNK_SIZE, size)


class OffsetMap:
    """Weave offsets → transactions, from ``/tx/{txid}/offset`` answers (thread-safe).

    A transaction of ``size`` bytes ending at absolute offset ``end`` (inclusive) holds the
    1-based weave offsets ``end - size + 1 … end``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._starts: list[int] = []
        self._spans: dict[int, tuple[int, str]] = {}  # start -> (size, txid)

    def record(self, txid: str, end: int, size: int) -> None:
        if size <= 0 or end < size:
            return
        start = end - size + 1
        with self._lock:
            if start not in self._spans:
                if len(self._starts) >= _MAX_OFFSETS:
                    self._spans.pop(self._starts.pop(0), None)
                bisect.insort(self._starts, start)
            self._spans[start] = (size, txid)

    def locate(self, offset: int) -> tuple[str, int, int] | None:
        """(txid, byte within it, its size) of a 1-based weave offset, if known."""
        with self._lock:
            i = bisect.bisect_right(self._starts, offset) - 1
            if i < 0:
                return None
            start = self._starts[i]
            size, txid = self._spans[start]
        rel = offset - start
        return (txid, rel, size) if 0 <= rel < size else None
