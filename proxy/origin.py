"""The narrow interface between the fetch core and the origins.

A :class:`Source` turns names into immutable revisions and trees, and reads byte ranges of
the files it describes. Everything source-specific (URL schemes, redirects, error codes,
auth) stays inside its adapter; the fetch core, the catalog, the HTTP faces and the mount see
only :class:`RemoteFile` and :class:`~hoard.store.records.Snapshot`.

Credentials are per source: a client's Hub token is the ``huggingface`` entry of its
:class:`Credentials`, and an adapter only ever reads its own entry, so no token can reach
another origin's host.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hoard.store.address import Address
from hoard.store.errors import NotFound
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry
from hoard.store.sources import SourceInfo, source_info

__all__ = ["Credentials", "ANONYMOUS", "RemoteFile", "Source", "ResolvedRef", "name_published"]


@dataclass(frozen=True)
class Credentials:
    """A client's credentials, one per origin they belong to. Never stored, never logged
    (the repr hides them)."""

    tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, tokens: Mapping[str, str | None]) -> Credentials:
        """From ``{source: token}``; empty tokens are dropped."""
        return cls(tuple(sorted((s, t) for s, t in tokens.items() if t)))

    @classmethod
    def for_source(cls, source: str, token: str | None) -> Credentials:
        return cls.of({source: token})

    def token(self, source: str) -> str | None:
        """The token for ``source``'s origin, if the client gave one."""
        for name, token in self.tokens:
            if name == source:
                return token
        return None

    def bearer(self, source: str) -> dict[str, str]:
        """``Authorization: Bearer`` for ``source``'s origin, or nothing."""
        token = self.token(source)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def only(self, source: str) -> Credentials:
        """These credentials with ``source``'s token alone."""
        return Credentials.for_source(source, self.token(source))

    @property
    def anonymous(self) -> bool:
        return not self.tokens

    @property
    def fingerprint(self) -> str:
        """A stable, non-reversible name for these credentials (cache keys, logs)."""
        if not self.tokens:
            return "anonymous"
        h = hashlib.sha256()
        for name, token in self.tokens:
            h.update(f"{name}\0{token}\0".encode())
        return h.hexdigest()[:16]


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

    @property
    def extra_aliases(self) -> list[str]:
        """Other names of the content (an Arweave tx id, ...), recorded once it is published."""
        names = self.meta.get("aliases") or []
        return [a for a in names if isinstance(a, str) and a != self.identity]


def name_published(store: Any, rf: RemoteFile, b3: str) -> None:
    """Record a file's other names (``RemoteFile.extra_aliases``: an Arweave tx id) for the
    blob it was found to be; a read, and a write only for names still missing."""
    missing = [a for a in rf.extra_aliases if store.resolve(a) != b3]
    if missing:
        store.add_aliases(missing, b3)


@dataclass(frozen=True)
class ResolvedRef:
    """A mutable name resolved at the origin, plus whatever the answer told about the revision."""

    revision: str
    info: dict[str, Any] = field(default_factory=dict)


class Source(abc.ABC):
    """An origin adapter. Its address-level facts come from the registry (``info``)."""

    #: the address source it serves ("huggingface", "arweave", ...)
    name: str = ""
    #: False for origins whose content is public (no repo there ever turns private), so the
    #: catalog never re-checks a commit-pinned revision's access through its default branch
    may_restrict: bool = True

    @property
    def info(self) -> SourceInfo:
        found = source_info(self.name)
        if found is None:
            raise LookupError(f"source {self.name!r} is not registered")
        return found

    @property
    def adapter(self) -> Source:
        """The origin's own adapter under any layers wrapping it (a bucket tier): itself."""
        return self

    @property
    def refs_expire(self) -> bool:
        """False for sources whose refs only change locally (never re-resolved)."""
        return self.info.refs_move

    @property
    def listable(self) -> bool:
        """False when a repo's files can only be looked up one name at a time (:meth:`stat`)."""
        return self.info.listable

    def origin_of(self, addr: Address) -> str:
        """The name the catalog tracks the health of ``addr``'s origin under: the source, for a
        source with one origin; one name per host for a source of many (``url``)."""
        return self.name

    def is_revision_id(self, revision: str) -> bool:
        """True if ``revision`` names an immutable revision (a commit), not a ref."""
        return self.info.is_revision_id(revision)

    @abc.abstractmethod
    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        """Resolve a ref (branch, tag, ...) of a repo to an immutable revision id."""

    @abc.abstractmethod
    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        """The full tree of an immutable revision (for a source that cannot list its repos:
        what is known of it so far, possibly nothing)."""

    async def stat(
        self, addr: Address, resolved: ResolvedRef, creds: Credentials, previous: TreeEntry | None = None
    ) -> TreeEntry:
        """Look one file up at the origin (``addr.path``), for sources that cannot list their
        repos (``listable`` False): its size, identity and expected hash. NotFound if absent.

        ``previous`` is the entry looked up before, when it is being revalidated (its meta
        has ``revalidate``: an ETag, a Last-Modified date): return it unchanged if the origin
        says the content is the same (a conditional request), else the new entry.
        """
        raise NotFound(f"{addr}: not in {addr.repo_key}@{resolved.revision}")

    def remote_file(self, addr: Address, entry: TreeEntry, creds: Credentials) -> RemoteFile:
        """The file ``addr`` (revision and path set) of a tree, ready to fetch; it carries
        only this source's credentials."""
        return RemoteFile(self.name, addr, entry.identity, entry.size, entry.expected, creds.only(self.name), entry.meta)

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
