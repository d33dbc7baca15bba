"""A fake Hugging Face Hub origin and a fake CDN origin, for tests with no internet.

`FakeHub` runs two real aiohttp servers on 127.0.0.1 (port 0, so two distinct origins
and cross-origin auth stripping is exercised) inside a background thread with its own
event loop; tests drive it synchronously or with ``async with``. It answers the
download side of the Hub protocol the way huggingface.co does (see
``shared/reference/hf_protocol.md`` §1-§5, §9), *not* the way a kind server would:

* non-LFS files on a branch/tag 307 to a **relative** ``/api/resolve-cache/...`` URL;
  on a 40-hex commit they are served directly; LFS files 302 to an **absolute**,
  HMAC-signed, expiring URL on the CDN origin, which ignores ``Authorization``;
* Xet is advertised by default (``X-Xet-Hash``, ``Link rel="xet-auth"``, ``xetHash``
  in listings) — the proxy under test must strip it; ``/xet-read-token`` answers 404;
* the CDN ``ETag`` is the Xet hash (or an S3-style etag), never the sha256;
* unknown repos answer a **bare** 401 to anonymous callers, 404 ``RepoNotFound`` to
  token holders; gated repos keep public metadata but 401/403 ``GatedRepo`` on files;
* listings paginate with absolute ``Link: <...>; rel="next"`` URLs and a cursor;
* text bodies are gzip-encoded when the client accepts it (never on HEAD or ranges).

Every request is logged (`RequestRecord`), payload bytes are counted per origin, and
`Fault` switches inject latency, 5xx/429, mid-body drops, stalls, throttling,
corruption, wrong lengths and ignored ranges. Repository state is plain dataclasses
(`FileEntry`, `Commit`, `Repo`) guarded by one lock; commits are immutable, so a
commit-pinned answer never changes while branches move with `FakeHub.commit`.

Layout: `model` (files, commits, repos), `repos` (repository state and the API that shapes
it), `wire` (request log entries, fault switches and the body writer that applies them),
`replies` (how an answer is written), `file_routes` (``/resolve``, resolve-cache, the CDN),
`api_routes` (``/api``); this module assembles them into `FakeHub`, with its lifecycle,
request log and fault registry.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .upload_routes import UploadRoutes
from .content import Content
from .model import DEFAULT_LFS_PATTERNS, DEFAULT_LFS_THRESHOLD, URL_PREFIX, Commit, FileEntry, MiB, Repo, RepoType
from .wire import PLAN, REC, Fault, Origin, RequestRecord, merge_faults

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "DEFAULT_LFS_THRESHOLD",
    "Commit",
    "FakeHub",
    "Fault",
    "FileEntry",
    "Repo",
    "RequestRecord",
]

_T = TypeVar("_T")


class FakeHub(UploadRoutes):
    """Fake huggingface.co + CDN. ``with FakeHub() as hub:`` or ``hub.start()/stop()``."""

    def __init__(
        self,
        *,
        page_size: int = 1000,
        expand_page_size: int = 50,
        xet: bool = True,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        url_ttl: float = 3600.0,
        compress: bool = True,
        gzip_min_size: int = 0,
        ratelimit_headers: bool = True,
        tokens: Iterable[str] | None = None,
        block_size: int = 256 * 1024,
        host: str = "127.0.0.1",
        per_connection_rate: float | None = None,
    ) -> None:
        self.page_size = page_size  # tree/commits page size (the Hub uses 1000)
        self.expand_page_size = expand_page_size  # tree page size with expand=true (Hub: 50)
        self.xet = xet  # advertise Xet like the live Hub (headers + xetHash)
        self.lfs_threshold = lfs_threshold
        self.url_ttl = url_ttl  # lifetime of signed CDN URLs, seconds
        self.time_shift = 0.0  # added to the clock: expire signed URLs without sleeping
        self.compress = compress  # gzip text/JSON GETs when the client accepts it
        self.gzip_min_size = gzip_min_size
        self.ratelimit_headers = ratelimit_headers
        self.warning: str | None = None  # "topic; message" sent as X-HF-Warning on hub answers
        self.tokens = None if tokens is None else set(tokens)  # None: every token is a valid user
        self.block_size = block_size
        self.host = host
        #: bytes per second each answer's body is paced at (None: as fast as it goes): a CDN
        #: that caps every connection, as real ones do (tens to hundreds of MB/s)
        self.per_connection_rate = per_connection_rate
        self._secret = hashlib.sha256(b"fake-hub-cdn-signing-key").digest()
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._objects: dict[str, Content] = {}  # CDN object key (sha256 / xet hash) -> bytes
        self._clock = 0
        self._log: list[RequestRecord] = []
        self._bytes: dict[str, int] = {"hub": 0, "cdn": 0}
        self._ratelimit: dict[tuple[str, int], int] = {}
        self._faults: list[Fault] = []
        self._ports: dict[str, int] = {}
        self._runners: dict[str, web.AppRunner] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Hub origin, e.g. ``http://127.0.0.1:PORT`` (what ``HF_ENDPOINT`` points at)."""
        return f"http://{self.host}:{self._ports['hub']}"

    @property
    def cdn_url(self) -> str:
        """CDN origin (a different port: a different origin for auth stripping)."""
        return f"http://{self.host}:{self._ports['cdn']}"

    def resolve_url(self, repo_id: str, path: str, rev: str = "main", *, repo_type: RepoType = "model") -> str:
        """The ``/resolve`` URL a client would build (``hf_hub_url``)."""
        return f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(rev, safe='')}/{quote(path)}"

    def start(self) -> FakeHub:
        """Start both origins in a background event-loop thread (idempotent)."""
        if self._thread is None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=loop.run_forever, name="fake-hub", daemon=True)
            self._thread.start()
        self.resume()
        return self

    def stop(self) -> None:
        """Stop both origins and the loop thread."""
        if self._thread is None or self._loop is None:
            return
        self.pause()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = self._loop = None

    def pause(self, origin: Origin | None = None) -> None:
        """Make an origin (default both) unreachable: close the listener and every
        connection, so clients get *connection refused* until `resume`."""
        names: tuple[Origin, ...] = ("hub", "cdn") if origin is None else (origin,)
        for name in names:
            runner = self._runners.pop(name, None)
            if runner is not None:
                self._call(runner.cleanup())

    def resume(self, origin: Origin | None = None) -> None:
        """Listen again on the same port(s) (the first start picks free ports)."""
        names: tuple[Origin, ...] = ("hub", "cdn") if origin is None else (origin,)
        for name in names:
            if name not in self._runners:
                self._call(self._open(name))

    def restart(self) -> None:
        """Drop every connection and start again on the same ports."""
        self.pause()
        self.resume()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeHub:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None, "FakeHub is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _open(self, origin: Origin) -> None:
        app = web.Application(middlewares=[self._middleware(origin)], client_max_size=16 * MiB)
        app.router.add_route("*", "/{tail:.*}", self._hub_route if origin == "hub" else self._cdn_route)
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
        origin: Origin | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        """Logged requests matching every given criterion (see `RequestRecord.has`)."""
        return [
            r
            for r in self.requests
            if (path_contains is None or r.has(path_contains))
            and (method is None or r.method == method.upper())
            and (origin is None or r.origin == origin)
            and (status is None or r.status == status)
        ]

    def count(
        self,
        path_contains: str | None = None,
        *,
        method: str | None = None,
        origin: Origin | None = None,
        status: int | None = None,
    ) -> int:
        """``len(find(...))``, e.g. ``hub.count("xet-read-token")``."""
        return len(self.find(path_contains, method=method, origin=origin, status=status))

    @property
    def bytes_sent(self) -> dict[str, int]:
        """Body bytes written per origin since the last `clear_log` (``{"hub": n, "cdn": n}``)."""
        with self._lock:
            return dict(self._bytes)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._bytes = {"hub": 0, "cdn": 0}

    # -- faults --------------------------------------------------------------------------

    def fault(
        self,
        *,
        path_contains: str | None = None,
        origin: Origin | None = None,
        method: str | None = None,
        times: int | None = None,
        latency: float = 0.0,
        status: int | None = None,
        retry_after: int = 1,
        drop_after: int | None = None,
        stall: float = 0.0,
        stall_at: int = 0,
        slow: int | None = None,
        corrupt: bool = False,
        wrong_length: int = 0,
        wrong_length_header: bool = False,
        ignore_range: bool = False,
    ) -> Fault:
        """Register a `Fault` (switches as documented there); returns it (``.hits`` counts uses)."""
        fault = Fault(
            path_contains=path_contains,
            origin=origin,
            method=method,
            times=times,
            latency=latency,
            status=status,
            retry_after=retry_after,
            drop_after=drop_after,
            stall=stall,
            stall_at=stall_at,
            slow=slow,
            corrupt=corrupt,
            wrong_length=wrong_length,
            wrong_length_header=wrong_length_header,
            ignore_range=ignore_range,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def expire_signed_urls(self) -> None:
        """Expire every signed CDN URL issued so far, now: the CDN answers them 403 "Request
        has expired", while URLs the Hub signs from now on are valid for ``url_ttl``. (It moves
        `time_shift` past the TTL: deterministic, no waiting for the wall clock.)"""
        with self._lock:
            self.time_shift += self.url_ttl + 1

    def _take_faults(self, record: RequestRecord) -> Fault:
        with self._lock:
            hit = [f for f in self._faults if f.matches(record)]
            for f in hit:
                f.hits += 1
                if f.times is not None:
                    f.times -= 1
        return merge_faults(hit)

    # -- request middleware --------------------------------------------------------------

    def _middleware(self, origin: Origin) -> Middleware:
        @web.middleware
        async def log_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
            path, _, query = request.raw_path.partition("?")
            record = RequestRecord(
                origin, request.method, path, query, {k.lower(): v for k, v in request.headers.items()}
            )
            with self._lock:
                self._log.append(record)
            plan = self._take_faults(record)
            if self.per_connection_rate:
                plan.rate = min(plan.rate or self.per_connection_rate, self.per_connection_rate)
            request[REC], request[PLAN] = record, plan
            if plan.latency:
                await asyncio.sleep(plan.latency)
            if plan.status is not None:
                response = await self._fault_status(request, plan.status, plan.retry_after)
            else:
                response = await handler(request)
            record.status = response.status
            return response

        return log_and_fault
