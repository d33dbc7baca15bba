"""Client connections of ``hoard serve``: a cap below the fd limit, send and idle timeouts.

A client that asks for a blob and never reads holds a socket and the blob's file descriptor
for as long as the response waits on it. Three mechanisms bound what such clients can hold:

* **Idle timeout** — aiohttp's ``keepalive_timeout`` closes a connection that has sent no
  request (or no further request) for ``send_timeout`` seconds.
* **Send timeout** — a response whose client takes no bytes for ``send_timeout`` seconds is cut.
  Progress is read from the kernel, so it covers ``sendfile`` (where Python never sees the
  bytes move) and streamed writes alike: a sweep every ``tick`` seconds looks at each
  connection that is answering a request or still has bytes queued, and calls it stalled
  when bytes are waiting (in the transport or the socket's send queue, ``TIOCOUTQ``) while
  the count of bytes the client acknowledged (``TCP_INFO.tcpi_bytes_acked``) stays the same.
  Waiting for the origin is not a stall: nothing is queued then.
* **Connection cap** — at most ``cap`` connections are open (by default derived from the
  file descriptor limit: :mod:`.listener`). When a new client arrives at the cap, room is
  made at once: the connections idle longest go first, then those whose response has made no
  progress longest, so the new client is served.

A cut connection is reset (``SO_LINGER`` 0): the kernel drops what it had queued for it, its
request task is cancelled (which releases the blob's fd) and the socket is closed.
:class:`~.listener.GuardedSite` accepts every connection through :meth:`ConnectionGuard.factory`;
the guard's middleware tells it which request task each connection runs, so that task can be
cancelled.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import socket
import struct
import termios
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["ConnectionGuard"]

log = logging.getLogger("hoard.serve")

#: making room at the cap closes this fraction of the cap at once (one scan for many accepts)
_ROOM_FRACTION = 0.05
#: offset of ``tcpi_bytes_acked`` (u64) in Linux's ``struct tcp_info`` (since Linux 4.1)
_TCPI_BYTES_ACKED = 120
_LINGER_RESET = struct.pack("ii", 1, 0)
#: seconds after which a protocol whose connection never came up is forgotten
_NEVER_CONNECTED = 10.0
#: the cap warning is logged at most this often (seconds)
_WARN_EVERY = 10.0


def _queued(transport: asyncio.Transport, sock: Any) -> int:
    """Bytes written but not yet acknowledged by the client: in the transport's buffer and
    in the socket's send queue."""
    queued = transport.get_write_buffer_size()
    if sock is not None:
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
            queued += buf[0]
        except OSError:
            pass
    return queued


def _bytes_acked(sock: Any) -> int | None:
    """How many bytes the client has acknowledged so far (None where the kernel can't say)."""
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCPI_BYTES_ACKED + 8:
        return None
    return int(struct.unpack_from("=Q", info, _TCPI_BYTES_ACKED)[0])


class _Connection(asyncio.Protocol):
    """One client connection: forwards every transport event to aiohttp's RequestHandler
    and keeps what the guard needs (opened, idle since, the running request, progress)."""

    def __init__(self, guard: ConnectionGuard, handler: RequestHandler) -> None:
        self.guard = guard
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        now = guard.clock()
        self.idle_since = now  # meaningful while no request runs
        self.progress_at = now  # last time a client took bytes, or nothing was waiting
        self.acked: int | None = None
        self.task: asyncio.Task[Any] | None = None
        self.closing = False
        self.connected = False
        # counted from now: a burst of accepts creates many of these before any is connected
        guard._opened(self)

    # -- asyncio.Protocol, forwarded ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connected = True
        self.handler.connection_made(transport)
        if self.closing:  # chosen to make room before it was even connected
            self.handler.force_close()

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard._lost(self)
        self.handler.connection_lost(exc)
        self.transport = None

    # -- state -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def begin(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.progress_at = self.guard.clock()
        task.add_done_callback(self._end)

    def _end(self, task: asyncio.Task[Any]) -> None:
        if self.task is task:
            self.task = None
            self.idle_since = self.guard.clock()

    def stalled_for(self, now: float) -> float:
        """Seconds since this connection's client last took a byte while bytes waited for it
        (0 when nothing waits)."""
        transport = self.transport
        if transport is None:
            return 0.0
        sock = transport.get_extra_info("socket")
        acked = _bytes_acked(sock)
        if _queued(transport, sock) == 0 or acked != self.acked:
            self.acked = acked
            self.progress_at = now
        return now - self.progress_at

    def cut(self, *, reset: bool) -> None:
        """Close now (or as soon as connected): cancel the running request (its fds are
        released as it unwinds), and with ``reset`` drop what the kernel holds for the client."""
        if self.closing:
            return
        self.closing = True
        if self.task is not None and not self.task.done():
            self.task.cancel()  # first: a pending sendfile is unregistered before the close
        transport = self.transport
        if reset and transport is not None:
            sock = transport.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except (OSError, AttributeError):
                pass
        self.handler.force_close()


class ConnectionGuard:
    """Tracks every client connection of one server; enforces the cap and the send timeout."""

    def __init__(self, *, send_timeout: float, cap: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.send_timeout = send_timeout
        self.cap = cap
        self.clock = clock
        self.tick = min(1.0, max(0.05, send_timeout / 10)) if send_timeout > 0 else 1.0
        self._open: dict[RequestHandler, _Connection] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.timed_out = 0  # connections cut by the send timeout
        self.evicted = 0  # connections closed at the cap to make room
        self._warned_at = -_WARN_EVERY

    @property
    def open(self) -> int:
        return len(self._open)

    def factory(self, make_handler: Callable[[], RequestHandler]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``, wrapping aiohttp's."""

        def make() -> asyncio.Protocol:
            if len(self._open) >= self.cap:
                self._make_room()
            return _Connection(self, make_handler())

        return make

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Record which task answers each request (a cut cancels it)."""
        conn = self._open.get(request.protocol)
        task = asyncio.current_task()
        if conn is not None and task is not None:
            conn.begin(task)
        return await handler(request)

    def start(self) -> None:
        if self.send_timeout > 0 and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    # -- internals ---------------------------------------------------------------------------

    def _opened(self, conn: _Connection) -> None:
        self._open[conn.handler] = conn

    def _lost(self, conn: _Connection) -> None:
        self._open.pop(conn.handler, None)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                self.sweep()
            except Exception:
                log.exception("connection sweep failed")

    def sweep(self) -> None:
        """Cut every connection whose client took nothing for ``send_timeout`` seconds."""
        now = self.clock()
        cut = []
        for conn in list(self._open.values()):
            if not conn.connected and now - conn.idle_since > _NEVER_CONNECTED:
                self._lost(conn)  # its accept failed after the protocol was made
                continue
            if conn.closing or conn.transport is None:
                continue
            if not conn.busy and _buffered(conn) == 0:
                continue  # idle: aiohttp's keep-alive timeout closes it
            if conn.stalled_for(now) >= self.send_timeout:
                cut.append(conn)
        for conn in cut:
            conn.cut(reset=True)
        if cut:
            self.timed_out += len(cut)
            log.info("closed %d connection(s) whose client took no bytes for %.0fs (first: %s)",
                     len(cut), self.send_timeout, _peer(cut[0]))

    def _make_room(self) -> None:
        """At the cap: close the connections idle longest, then the most stalled ones."""
        now = self.clock()
        live = [c for c in self._open.values() if not c.closing]  # the others are on their way out
        if len(live) < self.cap:
            return
        need = len(live) - self.cap + 1 + int(self.cap * _ROOM_FRACTION)
        idle = sorted((c for c in live if not c.busy and _buffered(c) == 0), key=lambda c: c.idle_since)
        chosen = idle[:need]
        if len(chosen) < need:
            busy = [c for c in live if c.busy or _buffered(c) > 0]
            busy.sort(key=lambda c: -c.stalled_for(now))
            chosen += busy[: need - len(chosen)]
        for conn in chosen:
            conn.cut(reset=conn.busy)
        self.evicted += len(chosen)
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning("client connections reached the cap of %d: closing the idle (or stalled) longest "
                        "to make room (%d so far)", self.cap, self.evicted)


def _buffered(conn: _Connection) -> int:
    """Bytes waiting in the connection's transport (0 before it is connected)."""
    return conn.transport.get_write_buffer_size() if conn.transport is not None else 0


def _peer(conn: _Connection) -> str:
    peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
