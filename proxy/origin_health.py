"""Whether each origin answered the catalog lately, and the one background probe per origin.

The catalog asks an origin for names (refs, trees, access checks). When such a call fails with
:class:`~hoard.store.errors.OriginUnavailable` (after the HTTP stack's retry budget), the
source is marked *down*. While it is down, nothing waits for it:

* a ref with a cached answer resolves to that answer at once (stale);
* a name never seen fails at once with ``OriginUnavailable`` (a retryable 503);
* at most one *probe* per source runs at a time: the request that found nothing fresh hands
  the re-resolution it needed to :meth:`OriginHealth.probe`, which runs it in a task of its
  own. Requests never wait for a probe. When a probe (or any other call) gets an answer from
  the origin, even "not found", the source is up again and names refresh normally.

Requests that were already waiting on the origin when another call marked it down stop
waiting too: :meth:`OriginHealth.went_down` is a future they race against their own call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hoard.store.errors import HoardError, NotReady, OriginError, OriginUnavailable

__all__ = ["OriginHealth"]

log = logging.getLogger("hoard.catalog")
T = TypeVar("T")


class OriginHealth:
    """Per-source reachability, as the last origin call saw it. Lives on one event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._down_since: dict[str, float] = {}
        self._probes: dict[str, asyncio.Task[object]] = {}
        self._down_waiters: dict[str, asyncio.Future[None]] = {}

    def is_down(self, source: str) -> bool:
        """True from a failed origin call until the next answered one."""
        return source in self._down_since

    def down_for(self, source: str) -> float:
        """Seconds since the source was marked down (0 when it is up)."""
        since = self._down_since.get(source)
        return 0.0 if since is None else self.clock() - since

    def unavailable(self, source: str, what: str = "") -> OriginUnavailable:
        """The error for a request that needs an origin known to be down."""
        for_ = f"; {what}" if what else ""
        return OriginUnavailable(
            f"{source}: the origin has been unreachable for {self.down_for(source):.0f}s{for_}; retry later"
        )

    def went_down(self, source: str) -> asyncio.Future[None]:
        """A future resolved the next time ``source`` is marked down (shared by all waiters)."""
        fut = self._down_waiters.get(source)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._down_waiters[source] = fut
        return fut

    def failed(self, source: str, exc: BaseException) -> None:
        if source not in self._down_since:
            self._down_since[source] = self.clock()
            # once per outage (and once per cause: the CLI's RepeatFilter): the line that explains
            # every EIO / 503 that follows while the origin stays down
            log.warning("origin %s: %s; serving what is cached, asking again in the background", source, exc)
        fut = self._down_waiters.pop(source, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def answered(self, source: str) -> None:
        since = self._down_since.pop(source, None)
        if since is not None:
            log.warning("origin %s reachable again after %.1fs", source, self.clock() - since)

    async def call(self, source: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run one origin call and record what it says about the origin's health.

        Any answer from the origin (a hoard error other than OriginUnavailable included: a
        404 is an answer) marks it up; OriginUnavailable marks it down.
        """
        try:
            result = await make()
        except NotReady:
            self.answered(source)  # it answered: "not yet" is about the content, not the origin
            raise
        except OriginUnavailable as exc:
            self.failed(source, exc)
            raise
        except OriginError as exc:  # it answered, with something hoard cannot use: say what
            self.answered(source)
            log.warning("origin %s: %s", source, exc)
            raise
        except HoardError:
            self.answered(source)
            raise
        self.answered(source)
        return result

    def probe(self, source: str, make: Callable[[], Awaitable[object]]) -> None:
        """Start ``make`` (an origin call, already wrapped in :meth:`call`) in its own task
        unless a probe of this source is running. Never waits; failures are only logged."""
        running = self._probes.get(source)
        if running is not None and not running.done():
            return
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(make())  # type: ignore[arg-type]
        self._probes[source] = task

        def done(t: asyncio.Task[object]) -> None:
            if self._probes.get(source) is t:
                del self._probes[source]
            if not t.cancelled() and t.exception() is not None:
                log.debug("probe of %s: %s", source, t.exception())

        task.add_done_callback(done)

    def probing(self, source: str) -> bool:
        task = self._probes.get(source)
        return task is not None and not task.done()

    async def aclose(self) -> None:
        """Cancel running probes (at shutdown)."""
        tasks = list(self._probes.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
