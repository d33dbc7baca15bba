"""The narrow interface between the fetch core and the origins.

A :class:`Source` turns names into immutable revisions and trees, and reads byte ranges of
the files it describes. Everything source-specific (URL schemes, redirects, error codes,
auth) stays inside its adapter; the fetch core, the catalog, the HTTP faces and the mount see
only :class:`RemoteFile` and :class:`~hoard.store.records.Snapshot`.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hoard.store.address import Address
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry

__all__ = ["Credentials", "RemoteFile", "Source", "expected_for", "ResolvedRef"]


@dataclass(frozen=True)
class Credentials:
    """A client's credentials for an origin. Never stored, never logged (repr hides them)."""

    token: str | None = field(default=None, repr=False)

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def fingerprint(self) -> str:
        """A stable, non-reversible name for these credentials (cache keys, logs)."""
        if not self.token:
            return "anonymous"
        return hashlib.sha256(self.token.encode()).hexdigest()[:16]


ANONYMOUS = Credentials()


@dataclass(frozen=True)
class RemoteFile:
    """One file of one revision at an origin: what the fetch core needs to fill it."""

    source: str
    address: Address  # with the immutable revision and the path
    identity: str  # the alias naming its content, e.g. "sha256:<hex>"
    size: int
    expected: ExpectedHash | None
    creds: Credentials = ANONYMOUS
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ResolvedRef:
    """A mutable name resolved at the origin, plus whatever the answer told about the revision."""

    revision: str
    info: dict[str, Any] = field(default_factory=dict)


def expected_for(entry: TreeEntry) -> ExpectedHash | None:
    """The whole-file hash an identity promises (``sha256:``, ``gitsha1:``, ``b3:``)."""
    kind, _, value = entry.identity.partition(":")
    if kind == "sha256":
        return ExpectedHash("sha256", value)
    if kind == "gitsha1":
        return ExpectedHash("gitsha1", value)
    if kind == "b3":
        return ExpectedHash("blake3", value)
    return None


class Source(abc.ABC):
    """An origin adapter."""

    #: the address source it serves ("huggingface", "arweave", ...)
    name: str = ""
    #: False for sources whose refs only change locally (they are never re-resolved)
    refs_expire: bool = True

    @abc.abstractmethod
    def is_revision_id(self, revision: str) -> bool:
        """True if ``revision`` names an immutable revision (a commit), not a ref."""

    @abc.abstractmethod
    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        """Resolve a ref (branch, tag, ...) of a repo to an immutable revision id."""

    @abc.abstractmethod
    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        """The full tree of an immutable revision."""

    def remote_file(self, addr: Address, entry: TreeEntry, creds: Credentials) -> RemoteFile:
        """The file ``addr`` (revision and path set) of a tree, ready to fetch."""
        return RemoteFile(self.name, addr, entry.identity, entry.size, expected_for(entry), creds, entry.meta)

    @abc.abstractmethod
    def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a file. Raises hoard errors; may stop early on a
        dropped connection (OriginUnavailable), and the caller resumes from where it got."""

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        """Raise AccessDenied/NotFound if the origin would refuse these credentials.

        Called before serving cached content of repos the snapshot marks restricted.
        """

    def restricted(self, snap: Snapshot, files: bool = True) -> bool:
        """True if cached content of this revision may only go to clients the origin admits.

        A private repo restricts everything; a gated one only its files (its metadata and
        listings are public, as on the Hub).
        """
        return bool(snap.info.get("private") or (files and snap.info.get("gated")))

    def with_visibility(self, snap: Snapshot, info: dict[str, Any]) -> Snapshot | None:
        """``snap`` with the access flags of a fresh origin answer, or None if unchanged."""
        return None

    async def close(self) -> None:
        """Release resources (the shared HTTP client is closed by its owner)."""
