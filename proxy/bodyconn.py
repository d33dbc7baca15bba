"""Origin bodies at line rate: a small keep-alive HTTP/1.1 client that receives into buffers.

Measured on the dev VM (bench/README.md, issue 12), receiving a 512 MiB body through aiohttp
costs ~0.5 CPU-seconds on the event loop (per 256 KiB read: a ``bytes`` object, the C parser's
body copy, the stream reader's queue, pause/resume of the transport, a join); this client
costs ~0.1: it is an :class:`asyncio.BufferedProtocol`, so while a reader waits in
:meth:`BodyResponse.readinto` the kernel copies the socket's bytes straight into the reader's
buffer, and the loop wakes the reader once per filled buffer rather than once per segment.
It carries the body streams of :class:`hoard.proxy.reader.RangeReader` only; metadata
requests stay on aiohttp (:class:`hoard.proxy.http.HttpClient`).

* **Connections**: HTTP/1.1 keep-alive, per origin (scheme, host, port), one request at a
  time each; idle ones are reused for ``idle_ttl`` seconds. A reused connection that fails
  before the first byte of an answer (the server closed it while idle) is replaced by a
  fresh one once, at once.
* **Per-host limit**: at most ``per_host`` requests are in flight per origin
  (``--origin-connections``); more wait their turn, first come first served. A response
  holds its slot until its ``async with`` block ends.
* **Framing**: ``Content-Length``, ``chunked``, or until the server closes; ``gzip`` and
  ``deflate`` content codings are decoded (we ask for ``identity``; this is for origins that
  send them anyway, as aiohttp decoded them). A body read to its end leaves the connection
  reusable; one abandoned midway is closed.
* **Time limits**: ``connect_timeout`` to connect, ``read_timeout`` for the longest silence
  while waiting for bytes.
* **Errors**: everything foreign (``OSError``, ``ssl.SSLError``, timeouts, a connection closed
  mid-body) becomes :class:`OriginUnavailable` here, the one boundary; an answer that is not
  HTTP becomes :class:`OriginError`.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import quote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from hoard.store.errors import OriginError, OriginUnavailable

__all__ = ["BodyClient", "BodyResponse"]

_SCRATCH = 256 << 10  # receive buffer for heads, and for bytes nobody waits for yet
_HIGH = 4 << 20  # unread bytes held before the socket is paused
_MAX_HEAD = 64 << 10
_NUDGE = 0.002  # a reader waiting for more wakes this long after its first new byte at the latest
_SAFE = "/%:@!$&'()*+,;=-._~?#[]"  # characters left as they are in a request target
_NO_BODY = frozenset({204, 304})


class _Closed(Exception):
    """The connection ended before the answer was complete (translated by the caller)."""


class _Conn(asyncio.BufferedProtocol):
    """One TCP (or TLS) connection. Bytes land in the buffer a reader offers (:meth:`fill`)
    or, when no one waits, in ``pending`` (heads, the first body bytes, chunk sizes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.pending = bytearray()
        self._scratch = memoryview(bytearray(_SCRATCH))
        self._target: memoryview | None = None
        self._filled = 0
        self._min = 1
        self._into_target = False
        self._waiter: asyncio.Future[None] | None = None
        self._nudge: asyncio.TimerHandle | None = None
        self._paused = False
        self.eof = False
        self.error: BaseException | None = None
        self.idle_since = 0.0

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is not None and self._filled < len(self._target):
            self._into_target = True
            return self._target[self._filled :]
        self._into_target = False
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self._into_target:
            self._filled += nbytes
            assert self._target is not None
            if self._filled >= self._min or self._filled >= len(self._target):
                self._wake()
            elif self._nudge is None:
                self._nudge = self.loop.call_later(_NUDGE, self._wake)
            return
        self.pending += self._scratch[:nbytes]
        if len(self.pending) > _HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    # -- waiting ---------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._nudge is not None:
            self._nudge.cancel()
            self._nudge = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self, timeout: float) -> None:
        """Until the next wake-up; ``TimeoutError`` after ``timeout`` seconds of silence."""
        if self.eof:
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiter = fut
        timer = self.loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    def _unpause(self) -> None:
        if self._paused and len(self.pending) < _HIGH // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    # -- reading ---------------------------------------------------------------------------

    async def read_until(self, sep: bytes, limit: int, timeout: float) -> bytes:
        """Bytes up to ``sep`` (consumed, not returned). :class:`_Closed` if the connection
        ends first; :class:`OriginError` past ``limit`` bytes."""
        while True:
            i = self.pending.find(sep)
            if i >= 0:
                line = bytes(self.pending[:i])
                del self.pending[: i + len(sep)]
                self._unpause()
                return line
            if len(self.pending) > limit:
                raise OriginError("the origin's answer has a line or head that is too long")
            if self.eof:
                raise _Closed("connection closed" if not self.pending else "connection closed mid-answer")
            await self._wait(timeout)

    async def fill(self, view: memoryview, min_bytes: int, timeout: float) -> int:
        """Receive into ``view``; returns once ``min_bytes`` (or all of ``view``) landed, or a
        little after the first bytes if more are slow to come; 0 only at end of stream."""
        got = min(len(view), len(self.pending))
        if got:
            with memoryview(self.pending) as pv:
                view[:got] = pv[:got]
            del self.pending[:got]
            self._unpause()
        if got >= min_bytes or got == len(view) or self.eof:
            return got
        self._target, self._filled, self._min = view[got:], 0, max(1, min_bytes - got)
        try:
            while not self._filled and not self.eof:
                await self._wait(timeout)
            return got + self._filled
        finally:
            self._target = None
            self._filled = 0

    def close(self) -> None:
        self.eof = True
        if self.transport is not None:
            self.transport.abort()


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


class BodyResponse:
    """One answer: ``status``, ``headers``, ``url``; the body by :meth:`readinto` or :meth:`read`."""

    def __init__(self, conn: _Conn, url: str, head: bytes, read_timeout: float) -> None:
        self._conn = conn
        self.url = url
        self._timeout = read_timeout
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise OriginError(f"the origin's answer is not HTTP/1.x: {lines[0][:80]!r}")
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise OriginError(f"the origin sent a malformed header line {line[:80]!r}")
            headers.add(name, value.strip())
        self.headers = CIMultiDictProxy(headers)
        connection = headers.get("Connection", "").lower()
        self.keep_alive = "close" not in connection and (self.version != "HTTP/1.0" or "keep-alive" in connection)
        coding = headers.get("Transfer-Encoding", "").lower()
        self._chunked = "chunked" in coding
        self._length: int | None = None
        if not self._chunked and "Content-Length" in headers:
            text = headers["Content-Length"].strip()
            if not text.isdigit():
                raise OriginError(f"the origin sent Content-Length {text[:40]!r}")
            self._length = int(text)
        self._left = self._length if self._length is not None else -1  # bytes of body (or chunk) left
        self._chunk_open = False
        self.complete = self.status in _NO_BODY or self._length == 0
        if not self._chunked and self._length is None and not self.complete:
            self.keep_alive = False  # the body runs until the server closes
        self._decoder = _decoder(headers.get("Content-Encoding", ""))
        self._decoded = bytearray()
        self._raw: memoryview | None = None
        self._flushed = False

    @property
    def content_length(self) -> int | None:
        return self._length

    async def readinto(self, view: memoryview, min_bytes: int = 1) -> int:
        """Body bytes into ``view``: at least ``min_bytes`` unless they are slow to come or the
        body ends; 0 at its end. :class:`OriginUnavailable` if the connection ends early."""
        if self._decoder is None:
            return await self._raw_into(view, min_bytes)
        while not self._decoded:
            if self._flushed:
                return 0
            if self._raw is None:
                self._raw = memoryview(bytearray(_SCRATCH))
            n = await self._raw_into(self._raw, 1)
            if n:
                self._decoded += self._decoder.decompress(self._raw[:n])
            else:
                self._decoded += self._decoder.flush()
                self._flushed = True
        n = min(len(view), len(self._decoded))
        view[:n] = self._decoded[:n]
        del self._decoded[:n]
        return n

    async def _raw_into(self, view: memoryview, min_bytes: int) -> int:
        conn, timeout = self._conn, self._timeout
        try:
            while not self.complete:
                if self._chunked and self._left <= 0:
                    await self._next_chunk()
                    continue
                want = len(view) if self._left < 0 else min(len(view), self._left)
                n = await conn.fill(view[:want], min(min_bytes, want), timeout)
                if n == 0:
                    if self._left < 0:  # the body ran until the server closed: that is its end
                        self.complete = True
                        return 0
                    raise _Closed(f"connection closed {self._left} bytes before the end of the body")
                if self._left >= 0:
                    self._left -= n
                    if self._left == 0 and not self._chunked:
                        self.complete = True
                return n
            return 0
        except _Closed as exc:
            raise OriginUnavailable(f"{_host(self.url)}: {exc}") from None
        except asyncio.TimeoutError:
            raise OriginUnavailable(f"{_host(self.url)}: no bytes for {timeout:.0f}s") from None
        except OSError as exc:
            raise OriginUnavailable(f"{_host(self.url)}: {exc}") from None

    async def _next_chunk(self) -> None:
        conn, timeout = self._conn, self._timeout
        if self._chunk_open:
            if await conn.read_until(b"\r\n", 2, timeout):
                raise OriginError(f"{_host(self.url)}: malformed chunked body")
        line = await conn.read_until(b"\r\n", 1024, timeout)
        text = line.split(b";", 1)[0].strip()
        try:
            size = int(text, 16)
        except ValueError:
            raise OriginError(f"{_host(self.url)}: malformed chunk size {text[:20]!r}") from None
        if size == 0:
            while await conn.read_until(b"\r\n", _MAX_HEAD, timeout):
                pass  # trailers
            self.complete = True
            return
        self._left, self._chunk_open = size, True

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The whole (small) body; at most ``limit`` bytes are kept."""
        out = bytearray()
        buf = memoryview(bytearray(64 << 10))
        while n := await self.readinto(buf):
            if len(out) < limit:
                out += buf[: min(n, limit - len(out))]
        return bytes(out)

    def try_finish(self) -> bool:
        """Consume the rest of the body if it is already here (a redirect's short text)."""
        if self.complete:
            return True
        pending = self._conn.pending
        if not self._chunked and self._decoder is None and 0 < self._left <= len(pending):
            del pending[: self._left]
            self._left = 0
            self.complete = True
        return self.complete


def _decoder(coding: str) -> zlib._Decompress | None:  # type: ignore[name-defined]
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, by its header
    raise OriginError(f"the origin sent content coding {coding!r}, which hoard cannot decode")


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


class BodyClient:
    """The connection pool. Create inside a running loop; close with :meth:`close`."""

    def __init__(
        self,
        *,
        per_host: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        user_agent: str = "hoard/0.1",
        idle_ttl: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.user_agent = user_agent
        self.idle_ttl = idle_ttl
        self._limits: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        #: how https origins are verified (None: the system's CAs, as aiohttp does)
        self._ssl = ssl_context
        self.opened = 0  # connections opened so far (a test looks at reuse)

    @asynccontextmanager
    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> AsyncIterator[BodyResponse]:
        """``GET url`` (no redirects followed); the answer, its body unread."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OriginError(f"cannot fetch {url[:100]!r}: not an http(s) URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise OriginError(f"cannot fetch {url[:100]!r}: bad port") from None
        key = (parts.scheme, parts.hostname, port)
        target = quote(parts.path or "/", safe=_SAFE) + (f"?{quote(parts.query, safe=_SAFE)}" if parts.query else "")
        request = self._request_bytes(target, parts.netloc, headers or {})
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = asyncio.Semaphore(self.per_host)
        async with limit:
            resp = await self._send(key, request, url)
            try:
                yield resp
            finally:
                self._release(key, resp)

    def _request_bytes(self, target: str, netloc: str, headers: Mapping[str, str]) -> bytes:
        fields = {"Host": netloc, "User-Agent": self.user_agent, "Accept": "*/*", "Accept-Encoding": "identity"}
        lower = {k.lower(): k for k in fields}
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n\0") or not name:
                raise OriginError("refusing to send a header with a line break")
            fields.pop(lower.get(name.lower(), name), None)
            fields[name] = value
        lines = [f"GET {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    async def _send(self, key: tuple[str, str, int], request: bytes, url: str) -> BodyResponse:
        for attempt in range(2):
            conn, reused = await self._connection(key)
            try:
                assert conn.transport is not None
                conn.transport.write(request)
                while True:
                    head = await conn.read_until(b"\r\n\r\n", _MAX_HEAD, self.read_timeout)
                    resp = BodyResponse(conn, url, head, self.read_timeout)
                    if not 100 <= resp.status < 200:
                        return resp
            except _Closed as exc:
                conn.close()
                if reused and attempt == 0 and not conn.pending:
                    continue  # closed while idle: once more on a fresh connection
                raise OriginUnavailable(f"{_host(url)}: {exc}") from None
            except asyncio.TimeoutError:
                conn.close()
                raise OriginUnavailable(f"{_host(url)}: no answer for {self.read_timeout:.0f}s") from None
            except OSError as exc:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise OriginUnavailable(f"{_host(url)}: {exc}") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    async def _connection(self, key: tuple[str, str, int]) -> tuple[_Conn, bool]:
        """An idle connection to ``key`` (reused: True), else a new one."""
        loop = asyncio.get_running_loop()
        idle = self._idle.get(key, [])
        while idle:
            conn = idle.pop()
            alive = not conn.eof and conn.transport is not None and not conn.transport.is_closing()
            if alive and not conn.pending and loop.time() - conn.idle_since < self.idle_ttl:
                return conn, True
            conn.close()
        scheme, host, port = key
        context = self._ssl_context() if scheme == "https" else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(loop), host, port, ssl=context,
                                       server_hostname=host if context else None),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise OriginUnavailable(f"{host}:{port}: connect timed out after {self.connect_timeout:.0f}s") from None
        except OSError as exc:
            raise OriginUnavailable(f"{host}:{port}: {exc.strerror or exc}") from None
        self.opened += 1
        return conn, False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _release(self, key: tuple[str, str, int], resp: BodyResponse) -> None:
        """Keep the connection for the next request if its answer was read to the end."""
        conn = resp._conn
        loop = asyncio.get_running_loop()
        if resp.keep_alive and resp.try_finish() and not conn.eof and not conn.pending:
            conn.idle_since = loop.time()
            self._idle.setdefault(key, []).append(conn)
        else:
            conn.close()
        self._sweep(loop.time())

    def _sweep(self, now: float) -> None:
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.eof and now - c.idle_since < self.idle_ttl]
            for c in idle:
                if c not in keep:
                    c.close()
            if keep:
                self._idle[key] = keep[-self.per_host :]
                for c in keep[: -self.per_host]:
                    c.close()
            else:
                del self._idle[key]

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
