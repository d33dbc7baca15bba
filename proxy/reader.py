"""The one byte-range reader every origin adapter uses.

``RangeReader.read(url, start, end, ...)`` streams bytes ``[start, end)`` of one URL:

* one ``GET`` with ``Range`` per call (no retries here: the fetch core resumes a dropped
  body from the last byte it received, under the one retry policy of
  :class:`hoard.proxy.httpbase.RetryPolicy`);
* redirects are followed by hand, and credentials go only to the origin they belong to
  (``auth_origin``): a Hub token never reaches its CDN, an Arweave gateway never sees one;
* a cross-origin redirect target (a signed CDN URL) is remembered under ``key`` for
  ``location_ttl`` seconds so later chunks skip the first hop; if the remembered URL is
  refused (401/403/404/410: expired or revoked) it is forgotten and the origin asked again;
* a ``200`` answer to a range request (an origin that ignores ``Range``) is read past the
  bytes not asked for; a ``206`` whose ``Content-Range`` does not start where asked is
  refused; a body that ends early raises :class:`OriginUnavailable` (the caller resumes);
* any other status is handed to the source's ``translate`` function, which turns it into
  the hoard error tree (each origin names its errors its own way).

Bodies come through :meth:`HttpClient.body <hoard.proxy.http.HttpClient.body>` (the
keep-alive connections of :mod:`hoard.proxy.bodyconn`, at most ``--origin-connections`` per
origin host) and are received without a copy in Python:

* when the fetch core has set a :data:`LANDING` for the read (the chunk it is filling, whose
  remaining length is exactly the range asked for), straight into that chunk's buffer: the
  blocks yielded are views of it, which the chunk writer recognises and only counts;
* otherwise into one buffer per call: each block yielded is a ``memoryview`` of that buffer,
  **valid until the next block is asked for** (a consumer that keeps blocks must copy them).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol
from urllib.parse import urljoin

from hoard.store.errors import OriginError, OriginUnavailable

from .httpbase import Reply, same_origin

__all__ = ["RangeReader", "Translate", "body_range", "REDIRECTS", "LANDING", "Landing"]

#: (reply, what) -> the exception to raise for a status the reader does not handle itself
Translate = Callable[[Reply, str], Exception]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_REFUSED = frozenset({401, 403, 404, 410})


class Landing(Protocol):
    """Where the bytes of a read may land in place (a chunk writer of the fetch core)."""

    #: the last block received in place, set by the reader before it yields the block
    issued: memoryview | None

    @property
    def remaining(self) -> int: ...

    def room(self) -> memoryview: ...


#: the landing of the reads the current task makes (set by the fetch core around
#: ``Source.read``); a read whose length is not exactly ``remaining`` does not use it
LANDING: ContextVar[Landing | None] = ContextVar("hoard_landing", default=None)
_READ_BLOCK = 1 << 20
_FIRST_BLOCK = 64 << 10
_MAX_HOPS = 12
_MAX_LOCATIONS = 1024


class RangeReader:
    """Shared by the adapters of one process (it holds the remembered redirect targets)."""

    def __init__(self, http: Any, *, location_ttl: float = 300.0) -> None:
        self.http = http
        self.location_ttl = location_ttl
        self._locations: dict[Hashable, tuple[str, float]] = {}

    def _remembered(self, key: Hashable | None) -> str | None:
        if key is None:
            return None
        hit = self._locations.get(key)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def _remember(self, key: Hashable | None, url: str) -> None:
        if key is None:
            return
        now = time.monotonic()
        if len(self._locations) >= _MAX_LOCATIONS:
            self._locations = {k: v for k, v in self._locations.items() if v[1] > now}
            while len(self._locations) >= _MAX_LOCATIONS:
                self._locations.pop(next(iter(self._locations)))
        self._locations[key] = (url, now + self.location_ttl)

    def forget(self, key: Hashable) -> None:
        self._locations.pop(key, None)

    async def read(
        self,
        url: str,
        start: int,
        end: int,
        *,
        translate: Translate,
        what: str,
        auth: Mapping[str, str] | None = None,
        auth_origin: str | None = None,
        key: Hashable | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of ``url`` (see the module docstring)."""
        if end <= start:
            return
        base = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity", **(headers or {})}
        first = url
        current = self._remembered(key) or url
        for _ in range(_MAX_HOPS):
            send = dict(base)
            if auth and auth_origin and same_origin(current, auth_origin):
                send.update(auth)
            async with self.http.body(current, headers=send) as resp:
                if resp.status in REDIRECTS and "Location" in resp.headers:
                    target = urljoin(current, resp.headers["Location"])
                    if auth_origin is None or not same_origin(target, auth_origin):
                        self._remember(key, target)
                    current = target
                    continue
                if resp.status in _REFUSED and current != first and key is not None:
                    self.forget(key)  # an expired or revoked signed URL: ask the origin again
                    current = first
                    continue
                if resp.status not in (200, 206):
                    body = await resp.read()
                    raise translate(Reply(resp.status, resp.headers, body, current), what)
                async for block in body_range(resp, start, end, what):
                    yield block
                return
        raise OriginError(f"{what}: too many redirects")


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


async def body_range(resp: Any, start: int, end: int, what: str) -> AsyncIterator[memoryview]:
    """Yield bytes [start, end) of a 200 or 206 answer; check the range the origin chose.

    Blocks land in place (:data:`LANDING`) or are views of one buffer that the next block
    overwrites (see the module docstring).
    """
    skip = 0
    if resp.status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != start:
            raise OriginError(f"{what}: origin answered range {resp.headers.get('Content-Range')!r} for {start}-{end - 1}")
    else:
        skip = start  # the origin ignored Range: read past what we do not need
    want = end - start
    landing = LANDING.get()
    if landing is not None and (skip or landing.remaining != want):
        landing = None
    buf = memoryview(bytearray(min(_READ_BLOCK, skip + want))) if landing is None else None
    first = _FIRST_BLOCK  # the first bytes go out at once (time to first byte), then 1 MiB at a time
    while want > 0:
        if landing is not None:
            room = landing.room()[:want]
            n = await resp.readinto(room, min(len(room), first))
            first = _READ_BLOCK
            if n == 0:
                raise OriginUnavailable(f"{what}: connection closed {want} bytes early")
            want -= n
            landing.issued = block = room[:n]
            yield block
            continue
        assert buf is not None
        room = buf if skip + want >= len(buf) else buf[: skip + want]
        n = await resp.readinto(room, min(len(room), first))
        first = _READ_BLOCK
        if n == 0:
            raise OriginUnavailable(f"{what}: connection closed {want} bytes early")
        lo = min(skip, n)
        skip -= lo
        take = min(n - lo, want)
        if take:
            want -= take
            yield buf[lo : lo + take]
