"""Background upkeep of a running proxy or mount: the size budget, and pins that follow a branch.

**The budget.** With ``max_size`` set, the store is kept inside it: once it passes
``gc_high_water`` of the cap (default 95 %), gc runs in a thread down to ``gc_low_water``
(default 80 %), least recently used first, keeping what gc always keeps (pins, content no
origin can give back, blobs used within ``gc_grace``, open files, partials being filled).
Measuring the store walks the index (:meth:`Store.usage`), so it is not done on every write:
the size is *estimated* as the last measure plus the bytes of fetched chunks written to the
store since (``hoard_stored_bytes_total``, counted once a chunk's commit is in the index). Not
the bytes received from origins: those of a chunk still in flight when the store is measured
would be counted before the measure and never after it, leaving the estimate short of the
store until the next ``remeasure``. A commit the measure already saw may be counted again,
which errs on the safe side (one more measure). The estimate is checked after every publish
and every ``tick`` seconds; the store is measured for real when the estimate passes the high
watermark, and every ``remeasure`` seconds anyway (other processes sharing the store add
bytes this one does not count). One gc at a time.

**Followed pins.** A repo pinned by its branch (store/pins.py) should keep a complete copy of
what the branch names. Every ``pin_refresh`` seconds (default: ``refs_ttl``) each followed
repo is resolved at its origin (as a client asking for it would be), and when the branch
moved, the new revision is prefetched in full, with this process's credentials (the local
user's for a mount; none for ``hoard serve``, whose clients' tokens are never kept); then the
pins move (:func:`~hoard.store.pins.advance_follows`). Fetching what the pin asks to keep is
the point of pinning a branch: without it the new revision would complete only if some
client happened to read every file, and the old one would stay pinned forever. A failure
(origin down, access refused) is logged once per repo and cause, and tried again next round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from hoard.store.address import parse_address
from hoard.store.gc import execute_gc, plan_gc
from hoard.store.pins import advance_follows, follows

from . import metrics as m

if TYPE_CHECKING:
    from .service import Services

__all__ = ["Budget", "Maintenance"]

log = logging.getLogger("hoard.maintenance")


class Budget:
    """The size cap of one process's store, kept by gc in the background."""

    def __init__(self, svc: Services, *, tick: float = 1.0, remeasure: float = 30.0) -> None:
        self.svc = svc
        self.tick = tick
        self.remeasure = remeasure
        self.measured: int | None = None
        self.measured_at = 0.0
        self._stored_at_measure = 0.0
        self.runs = 0  # gc runs started by the budget (for logs and tests)

    @property
    def cap(self) -> int | None:
        return self.svc.store.config.max_size

    def estimate(self) -> int | None:
        """The last measure plus the fetched bytes stored since (None before a first measure)."""
        if self.measured is None:
            return None
        return self.measured + int(self.svc.metrics.total(m.STORED_BYTES) - self._stored_at_measure)

    async def measure(self) -> int:
        stored = self.svc.metrics.total(m.STORED_BYTES)  # read first: a commit after it is counted
        usage = await asyncio.get_running_loop().run_in_executor(None, self.svc.store.usage)
        self.measured, self.measured_at, self._stored_at_measure = usage["total_bytes"], time.monotonic(), stored
        return self.measured

    async def check(self) -> None:
        """Measure if the estimate says so (or it is time), and trim if really over."""
        cap = self.cap
        if cap is None:
            return
        config = self.svc.store.config
        estimate = self.estimate()
        stale = time.monotonic() - self.measured_at >= self.remeasure
        if estimate is not None and estimate <= config.gc_high_water * cap and not stale:
            return
        if await self.measure() > config.gc_high_water * cap:
            await self._trim(int(config.gc_low_water * cap))

    async def _trim(self, target: int) -> None:
        store, before = self.svc.store, self.measured
        self.runs += 1
        log.info("store at %d bytes, past %.0f%% of its %d-byte cap: gc down to %d bytes",
                 before, 100 * store.config.gc_high_water, store.config.max_size, target)

        def run() -> Any:
            return execute_gc(store, plan_gc(store, target))

        result = await asyncio.get_running_loop().run_in_executor(None, run)
        after = await self.measure()
        log.info("gc removed %d item(s), freed %d bytes; store at %d bytes%s", result.removed, result.freed, after,
                 "" if after <= target else " (the rest is kept: pinned, origin-less, recently used or open)")


class Maintenance:
    """The upkeep tasks of one :class:`Services`; :meth:`poke` after a publish."""

    def __init__(self, svc: Services, *, follow_pins: bool, pin_refresh: float) -> None:
        self.svc = svc
        self.budget = Budget(svc)
        self.follow_pins = follow_pins
        self.pin_refresh = pin_refresh
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self._reported: set[tuple[str, str]] = set()

    def start(self) -> None:
        self._tasks.append(self._loop.create_task(self._budget_loop()))
        if self.follow_pins:
            self._tasks.append(self._loop.create_task(self._follow_loop()))

    def poke(self, *_: Any) -> None:
        """Something was published (called from any thread): check the budget and pins soon."""
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed: the process is stopping
            pass

    async def _budget_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.budget.tick)
            except asyncio.TimeoutError:
                pass
            woken = self._wake.is_set()
            self._wake.clear()
            await self._guard("keeping the size budget", self.budget.check())
            if woken:
                await self._guard("moving followed pins", self._advance())

    async def _advance(self) -> None:
        await self._loop.run_in_executor(None, advance_follows, self.svc.store)

    async def _follow_loop(self) -> None:
        while True:
            await asyncio.sleep(self.pin_refresh)
            await self._guard("moving followed pins", self._advance())  # drops those of removed repos first
            for follow in await self._loop.run_in_executor(None, follows, self.svc.store):
                await self._guard(f"keeping {follow.repo} pinned at its {follow.ref}", self._refresh(follow.repo))
            await self._guard("moving followed pins", self._advance())

    async def _refresh(self, repo: str) -> None:
        """Resolve a followed repo at its origin; fetch its revision when it is a new one."""
        from .prefetch import PrefetchTarget, prefetch_all

        creds = self.svc.config.local_creds
        resolved = await self.svc.catalog.resolve(parse_address(repo), creds)
        current = next((f for f in follows(self.svc.store) if f.repo == repo), None)
        if current is None or current.holds == resolved.revision:
            return
        log.info("%s moved to %s: fetching it to keep it pinned", repo, resolved.revision)
        target = PrefetchTarget(resolved.addr.with_path(""), f"{repo}@{resolved.revision}", creds)
        run = await prefetch_all(self.svc, [target])
        for failed in [t for t in run.targets if t.error] + [f for f in run.files.values() if f.error]:
            raise RuntimeError(failed.error)

    async def _guard(self, what: str, work: Any) -> None:
        """Run one piece of upkeep; log a failure once per cause (the next round tries again)."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - upkeep must never stop the process
            key = (what, f"{type(exc).__name__}: {exc}")
            if key not in self._reported:
                self._reported.add(key)
                log.warning("%s: %s", what, exc)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
