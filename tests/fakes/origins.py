"""The server machinery every fake origin shares: named aiohttp origins on one loop thread,
the request log, byte counts and the fault registry.

`FakeOrigins` runs each name in `FakeOrigins.ORIGINS` as a real aiohttp server on
``host`` (port 0 at first, so every origin is distinct and a client that strips
``Authorization`` across origins can be checked), all inside one daemon thread running its
own event loop; tests drive it synchronously (``with``, `start`/`stop`) or with
``async with``. `pause` closes an origin's listener and connections (clients get
*connection refused*), `resume` listens again on the same port, `restart` does both.

Every request goes through one middleware: it becomes a record (`_record`, a
`tests.fakes.wire.RequestRecord` unless a fake extends it), is appended to the log, and every
registered `tests.fakes.wire.Fault` it matches is used up and merged into the request's plan
(`_take_faults`), stored on the request under ``PLAN`` for the body writer
(`tests.fakes.wire.pump`). `_respond` then waits out the plan's latency and answers with the
status the plan forces (`fault_reply`, worded by each fake like its origin) or with the
origin's route (`route`). Bodies count their bytes per origin through `_count_sent`.

A fake subclasses this, sets ``ORIGINS`` (and ``THREAD_NAME``, ``CLIENT_MAX_SIZE``,
``FAULT``, ``CANCEL_ON_STOP`` where it differs) and implements `route` and `fault_reply`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Self, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .wire import PLAN, REC, Fault, RequestRecord, merge_faults

__all__ = ["FakeOrigins", "Route"]

_T = TypeVar("_T")
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeOrigins:
    """Base of a fake made of named HTTP origins. See the module docstring."""

    #: the origins' names, in the order `start` opens them (also the `bytes_sent` keys)
    ORIGINS: tuple[str, ...] = ()
    THREAD_NAME = "fake-origins"
    #: the largest request body an origin reads (aiohttp's default: 1 MiB)
    CLIENT_MAX_SIZE = 1024**2
    #: what `fault` registers (a `Fault` subclass may add scopes)
    FAULT: type[Fault] = Fault
    #: on `stop`, cancel handlers still running (e.g. sleeping out a ``latency``)
    CANCEL_ON_STOP = False

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.time_shift = 0.0  # added to the clock: expire signed URLs/rate windows without sleeping
        self._lock = threading.RLock()
        self._log: list[RequestRecord] = []
        self._bytes: dict[str, int] = dict.fromkeys(self.ORIGINS, 0)
        self._faults: list[Fault] = []
        self._ports: dict[str, int] = {}
        self._runners: dict[str, web.AppRunner] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def route(self, origin: str) -> Route:
        """The handler of every path of ``origin``."""
        raise NotImplementedError

    async def fault_reply(self, request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
        """The answer a `Fault` with ``status`` forces, shaped like the origin's own."""
        raise NotImplementedError

    def _now(self) -> float:
        return time.time() + self.time_shift

    # -- lifecycle -----------------------------------------------------------------------

    def origin_url(self, origin: str) -> str:
        """``http://HOST:PORT`` of a started origin."""
        return f"http://{self.host}:{self._ports[origin]}"

    def start(self) -> Self:
        """Start every origin in a background event-loop thread (idempotent)."""
        if self._thread is None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=loop.run_forever, name=self.THREAD_NAME, daemon=True)
            self._thread.start()
        self.resume()
        return self

    def stop(self) -> None:
        """Stop every origin and the loop thread."""
        if self._thread is None or self._loop is None:
            return
        self.pause()
        if self.CANCEL_ON_STOP:
            self._call(self._cancel_leftovers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = self._loop = None

    def pause(self, origin: str | None = None) -> None:
        """Make an origin (default: all) unreachable: close the listener and every
        connection, so clients get *connection refused* until `resume`."""
        for name in self.ORIGINS if origin is None else (origin,):
            runner = self._runners.pop(name, None)
            if runner is not None:
                self._call(runner.cleanup())

    def resume(self, origin: str | None = None) -> None:
        """Listen again on the same port(s) (the first start picks free ports)."""
        for name in self.ORIGINS if origin is None else (origin,):
            if name not in self._runners:
                self._call(self._open(name))

    def restart(self) -> None:
        """Drop every connection and start again on the same ports."""
        self.pause()
        self.resume()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop thread and wait for its result."""
        assert self._loop is not None, f"{type(self).__name__} is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    @staticmethod
    async def _cancel_leftovers() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _open(self, origin: str) -> None:
        app = web.Application(middlewares=[self._middleware(origin)], client_max_size=self.CLIENT_MAX_SIZE)
        app.router.add_route("*", "/{tail:.*}", self.route(origin))
        # shutdown_timeout: cancel stalled handlers quickly on pause/stop
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._ports.get(origin, 0))
        await site.start()
        self._ports[origin] = runner.addresses[0][1]
        self._runners[origin] = runner

    # -- request log ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def find(
        self,
        path_contains: str | None = None,
        *,
        method: str | None = None,
        origin: str | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        """Logged requests matching every given criterion (see `RequestRecord.has`)."""
        return self._select(path_contains, method, status, origin=origin)

    def count(self, path_contains: str | None = None, **criteria: Any) -> int:
        """``len(find(...))``, e.g. ``hub.count("xet-read-token")``."""
        return len(self.find(path_contains, **criteria))

    def _select(
        self, path_contains: str | None, method: str | None, status: int | None, **fields: Any
    ) -> list[RequestRecord]:
        """The records whose path holds ``path_contains``, with ``method`` (any case) and
        ``status``, and whose attribute is equal to each of ``fields`` (None: any)."""
        return [
            r
            for r in self.requests
            if (path_contains is None or r.has(path_contains))
            and (method is None or r.method == method.upper())
            and (status is None or r.status == status)
            and all(want is None or getattr(r, name) == want for name, want in fields.items())
        ]

    @property
    def bytes_sent(self) -> dict[str, int]:
        """Body bytes written per origin since the last `clear_log`."""
        with self._lock:
            return dict(self._bytes)

    def clear_log(self) -> None:
        """Forget the logged requests and reset the byte counts."""
        with self._lock:
            self._log.clear()
            self._bytes = dict.fromkeys(self.ORIGINS, 0)

    def _count_sent(self, origin: str, n: int) -> None:
        with self._lock:
            self._bytes[origin] = self._bytes.get(origin, 0) + n

    # -- faults --------------------------------------------------------------------------

    def fault(self, **switches: Any) -> Fault:
        """Register a fault (a ``FAULT``: ``path_contains``, ``origin``, ``method``, ``times``;
        ``latency``, ``status``, ``retry_after``, ``drop_after``, ``stall``/``stall_at``,
        ``slow``, ``rate``, ``corrupt``, ``wrong_length``/``wrong_length_header``,
        ``ignore_range`` — see `tests.fakes.wire.Fault`). Returns it (``.hits`` counts uses)."""
        fault = self.FAULT(**switches)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_faults(self, record: RequestRecord) -> Fault:
        """Every registered fault matching ``record``, each used up once, merged into a plan."""
        with self._lock:
            hit = [f for f in self._faults if f.matches(record)]
            for f in hit:
                f.hits += 1
                if f.times is not None:
                    f.times -= 1
        return merge_faults(hit)

    # -- request middleware --------------------------------------------------------------

    async def _record(self, origin: str, request: web.Request) -> RequestRecord:
        """The log entry of a request (raw path and query, lower-case header names)."""
        path, _, query = request.raw_path.partition("?")
        headers = {k.lower(): v for k, v in request.headers.items()}
        return RequestRecord(origin, request.method, path, query, headers)  # type: ignore[arg-type]

    async def _respond(self, request: web.Request, handler: Handler, plan: Fault) -> web.StreamResponse:
        """Wait out the plan's latency, then answer the status it forces or the route's answer."""
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if plan.status is not None:
            return await self.fault_reply(request, plan.status, plan.retry_after)
        return await handler(request)

    def _middleware(self, origin: str) -> Middleware:
        @web.middleware
        async def log_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
            record = await self._record(origin, request)
            with self._lock:
                self._log.append(record)
            plan = self._take_faults(record)
            request[REC], request[PLAN] = record, plan
            response = await self._respond(request, handler, plan)
            record.status = response.status
            return response

        return log_and_fault
