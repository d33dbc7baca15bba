"""The mount's way into the fetch core: the proxy's services on a loop in a background thread.

FUSE calls arrive on libfuse's worker threads and must block until they have an answer; the
fetch core lives on an asyncio loop. :class:`CoreBridge` runs that loop in its own thread and
turns each call into a coroutine submitted to it, waited for with a timeout, so that no FUSE
request can hang forever: a call that outlives its timeout is cancelled and reported as
:class:`OriginUnavailable` (EIO to the reader).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Any, TypeVar

from hoard.proxy.catalog import Resolved
from hoard.proxy.fetch import OpenFile
from hoard.proxy.origin import Credentials, RemoteFile
from hoard.proxy.service import ProxyConfig, Services, open_services
from hoard.store.address import Address
from hoard.store.errors import OriginUnavailable
from hoard.store.store import Store

__all__ = ["CoreBridge"]

T = TypeVar("T")


class CoreBridge:
    """Blocking calls into the in-process fetch core (or one filling from a parent hoard)."""

    def __init__(self, config: ProxyConfig, store: Store, *, call_timeout: float = 300.0) -> None:
        self.config = config
        self.store = store
        self.creds: Credentials = config.local_creds
        self.call_timeout = call_timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hoard-core", daemon=True)
        self._thread.start()
        self.svc: Services = self.call(open_services(config, store), timeout=60)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(self.call_timeout if timeout is None else timeout)
        except FutureTimeout:
            fut.cancel()
            raise OriginUnavailable("timed out waiting for the origin") from None

    # -- names ------------------------------------------------------------------------------

    def resolve(self, addr: Address) -> Resolved:
        return self.call(self.svc.catalog.resolve(addr, self.creds, trust_offline=True), timeout=120)

    def remote_file(self, resolved: Resolved, path: str) -> RemoteFile:
        return self.svc.catalog.file(resolved, path, self.creds)

    # -- bytes ------------------------------------------------------------------------------

    def open(self, rf: RemoteFile) -> OpenFile:
        return self.call(self.svc.core.open(rf), timeout=120)

    def close(self, of: OpenFile) -> None:
        self.call(self.svc.core.close(of), timeout=60)

    def start_fill(self, of: OpenFile) -> None:
        async def start() -> None:
            self.svc.core.start_fill(of)

        self.call(start(), timeout=30)

    def read(self, of: OpenFile, start: int, end: int, readahead: int) -> bytes:
        return self.call(self.svc.core.read_bytes(of, start, end, readahead=readahead))

    def fill(self, of: OpenFile) -> str:
        return self.call(self.svc.core.fill(of), timeout=None)

    # -- lifecycle --------------------------------------------------------------------------

    def close_all(self) -> None:
        try:
            self.call(self.svc.aclose(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
