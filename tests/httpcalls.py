"""HTTP calls tests make: `call` (aiohttp, one request, never raises) and `raw` (http.client).

`call` and `exchange` report a failed exchange in `Got.error` instead of raising, keeping
what arrived (status, headers, the part of the body read before the break), so a test can
tell "answered 503" from "cut mid-body" from "left hanging" (`Got.hung`). Timeouts are per
read (``sock_read``), with no total bound: they are liveness bounds, not timing assertions.
`raw` sends one request with ``http.client``, which follows no redirects and decodes nothing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

__all__ = ["Got", "call", "exchange", "raw", "session"]


@dataclass
class Got:
    status: int | None
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""
    error: str | None = None  # the client-side exception, if the exchange failed

    @property
    def hung(self) -> bool:
        return self.error is not None and "Timeout" in self.error

    def json(self) -> Any:
        return json.loads(self.body)


def session(timeout: float) -> aiohttp.ClientSession:
    """A client session whose every read waits at most ``timeout`` seconds."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=timeout))


async def exchange(
    s: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    raw: bytes | None = None,
) -> Got:
    """One request (JSON ``body`` or ``raw`` bytes); a broken body is reported (error + what
    arrived), never raised."""
    kw: dict[str, Any] = {"headers": headers or {}}
    if body is not None:
        kw["json"] = body
    if raw is not None:
        kw["data"] = raw
    got = Got(None)
    try:
        async with s.request(method, url, **kw) as resp:
            got.status = resp.status
            got.headers = CIMultiDict(resp.headers)
            chunks = []
            try:
                async for block in resp.content.iter_any():
                    chunks.append(block)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                got.error = type(exc).__name__ + ": " + str(exc)
            got.body = b"".join(chunks)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        got.error = type(exc).__name__ + ": " + str(exc)
    return got


def call(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    raw: bytes | None = None,
    timeout: float = 30.0,
) -> Got:
    """`exchange` on a session of its own, from synchronous code."""

    async def run() -> Got:
        async with session(timeout) as s:
            return await exchange(s, method, url, headers=headers, body=body, raw=raw)

    return asyncio.run(run())


def raw(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    timeout: float = 30.0,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, no redirects followed, nothing decoded."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + ("?" + parts.query if parts.query else ""), body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()
