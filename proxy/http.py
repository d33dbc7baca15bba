"""The one HTTP client stack every origin adapter shares.

One aiohttp session (connection pooling, keep-alive), per-host concurrency limits, timeouts
on connect and on every read, and retries with exponential backoff for transient faults only:
connection errors, timeouts, 429 and 5xx. Permanent answers (404, 401/403, 416, other 4xx)
are returned at once. Foreign exceptions are translated here, at this one boundary, into the
hoard error tree: an unreachable origin is :class:`OriginUnavailable` (retryable, a 503 to our
own clients), never a "not found".

Redirects are never followed implicitly: adapters follow them with :meth:`HttpClient.follow`,
which sends credentials only to the origin they belong to.

Bodies streamed by the range reader (:meth:`HttpClient.body`) do not go through aiohttp but
through :class:`hoard.proxy.bodyconn.BodyClient`, which receives into the reader's buffers and
allows ``origin_connections`` of them in flight per origin host (``--origin-connections``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urljoin

import aiohttp

from hoard.store.errors import OriginError, OriginUnavailable

from .bodyconn import BodyClient, BodyResponse
from .httpbase import TRANSIENT_STATUSES, HttpConfig, Reply, host_of, redact, same_origin

__all__ = ["HttpConfig", "HttpClient", "Reply", "BodyResponse", "same_origin", "TRANSIENT_STATUSES"]

log = logging.getLogger("hoard.http")


class HttpClient:
    """Shared client. Create inside a running loop; close with :meth:`close`."""

    def __init__(self, config: HttpConfig | None = None, *, origin_connections: int = 8) -> None:
        self.config = config or HttpConfig()
        #: body streams in flight per origin host at most (the range reader's; metadata
        #: requests are counted by aiohttp's own per-host limit)
        self.origin_connections = origin_connections
        self.bodies = BodyClient(
            per_host=origin_connections,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            user_agent=self.config.user_agent,
        )
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.config.connect_timeout, sock_read=self.config.read_timeout
        )
        self.session = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=self.config.max_per_host, ttl_dns_cache=300),
            headers={"User-Agent": self.config.user_agent},
            auto_decompress=True,
        )

    async def close(self) -> None:
        await self.bodies.close()
        await self.session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        data: Any = None,
        retries: int | None = None,
    ) -> Reply:
        """Send a request and read the whole (small) body, retrying transient faults.

        Returns any final status, 4xx included: the caller knows what a 404 means for it.
        Raises :class:`OriginUnavailable` when the origin stays unreachable or keeps failing.
        """
        attempts = (self.config.retries if retries is None else retries) + 1
        last: str = ""
        for attempt in range(attempts):
            try:
                async with self.session.request(
                    method, url, headers=headers, params=params, data=data, allow_redirects=False
                ) as resp:
                    body = await resp.read()
                    if resp.status not in TRANSIENT_STATUSES or attempt == attempts - 1:
                        return Reply(resp.status, resp.headers, body, str(resp.url))
                    last = f"HTTP {resp.status}"
                    delay = self.config.retry.delay(attempt, resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                last = _describe(exc)
                if attempt == attempts - 1:
                    break
                delay = self.config.retry.delay(attempt)
            log.debug("retrying %s %s in %.2fs after %s", method, redact(url), delay, last)
            await asyncio.sleep(delay)
        raise OriginUnavailable(f"{host_of(url)} unreachable: {last}")

    async def follow(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth_origin: str | None = None,
        max_hops: int = 10,
        **kwargs: Any,
    ) -> Reply:
        """:meth:`request`, following redirects; ``Authorization`` goes only to ``auth_origin``."""
        hdrs = dict(headers or {})
        auth = hdrs.pop("Authorization", None)
        for _ in range(max_hops):
            send = dict(hdrs)
            if auth and auth_origin and same_origin(url, auth_origin):
                send["Authorization"] = auth
            reply = await self.request(method, url, headers=send, **kwargs)
            if reply.status not in (301, 302, 303, 307, 308) or "Location" not in reply.headers:
                return reply
            url = urljoin(url, reply.headers["Location"])
        raise OriginError(f"too many redirects from {host_of(url)}")

    @asynccontextmanager
    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a streaming GET (no redirects followed, no retries: the caller resumes)."""
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as resp:
                yield resp
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            raise OriginUnavailable(f"{host_of(url)}: {_describe(exc)}") from None


    def body(self, url: str, *, headers: Mapping[str, str] | None = None) -> AbstractAsyncContextManager[BodyResponse]:
        """Open a GET whose body is read into the caller's buffers (no redirects followed, no
        retries: the caller resumes); at most ``origin_connections`` per origin host at once."""
        return self.bodies.get(url, headers)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.split("\n", 1)[0]
