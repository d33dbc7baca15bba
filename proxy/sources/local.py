"""The ``local`` source: repos imported with ``hoard add``; the store is their only origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hoard.store.address import Address
from hoard.store.errors import NotFound, RevisionNotFound
from hoard.store.records import Snapshot
from hoard.store.sources import source_info
from hoard.store.store import Store

from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from . import BuildContext, SourceSpec

__all__ = ["LocalSource", "SPEC"]


class LocalSource(Source):
    name = "local"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        raise NotFound(f"{addr.repo_key}@{ref} is not in the store (add it with `hoard add`)")

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        snap = self.store.get_snapshot(addr.repo_key, resolved.revision)
        if snap is None:
            raise RevisionNotFound(f"{addr.repo_key}@{resolved.revision} is not in the store")
        return snap

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        raise NotFound(f"{rf.address}: its blob is gone from the store and local content has no origin")
        yield b""  # pragma: no cover  (makes this an async generator)


def _build(ctx: BuildContext) -> Source:
    return LocalSource(ctx.store)


_INFO = source_info("local")  # declared by the store itself: it is the store's own content
assert _INFO is not None
SPEC = SourceSpec(info=_INFO, build=_build, order=90)
