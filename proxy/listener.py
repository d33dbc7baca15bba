"""Where ``hoard serve`` accepts clients: a listening site whose connections are guarded,
and how many connections the process's file descriptors allow.

:func:`raise_fd_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard limit (common practice
for servers); :func:`connection_cap` derives from that limit how many client connections may
be open: each may hold two descriptors (its socket, and the blob it is sending), and a reserve
is kept for one accept batch (asyncio accepts up to the listen backlog per wake-up before the
cap is applied to them) and for the index, partials, origin sockets and logs.
:class:`GuardedSite` is an aiohttp site (like ``TCPSite``) that hands every accepted
connection to a :class:`~.connections.ConnectionGuard`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket

from aiohttp import web

from .connections import ConnectionGuard

__all__ = ["ACCEPT_BATCH", "GuardedSite", "connection_cap", "raise_fd_limit"]

log = logging.getLogger("hoard.serve")

#: connections the loop accepts in one go (the listen backlog; asyncio accepts up to that
#: many per wake-up, before the cap is looked at): they hold descriptors for a moment
ACCEPT_BATCH = 128
#: descriptors kept out of the connection budget besides one accept batch: the index, blobs
#: and partials being filled, the origin client's sockets, logs (a tenth of the limit)
_RESERVE_FRACTION = 10
_RESERVE_MIN = 64
#: descriptors one connection may hold: its socket, and the blob it is sending
_FDS_PER_CONNECTION = 2


def raise_fd_limit() -> int:
    """Lift this process's soft RLIMIT_NOFILE to its hard limit (common practice for
    servers); return the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(fd_limit: int) -> int:
    """The most connections that fit in ``fd_limit`` descriptors with room for the rest."""
    reserve = ACCEPT_BATCH + max(_RESERVE_MIN, fd_limit // _RESERVE_FRACTION)
    return max(16, (fd_limit - reserve) // _FDS_PER_CONNECTION)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections a :class:`ConnectionGuard` watches."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard, *,
                 backlog: int = ACCEPT_BATCH) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self.guard = guard
        self.sockets: list[socket.socket] = []

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the one asked for until started)."""
        return int(self.sockets[0].getsockname()[1]) if self.sockets else self._port

    async def start(self) -> None:
        await super().start()
        handlers = self._runner.server
        assert handlers is not None
        server = await asyncio.get_running_loop().create_server(
            self.guard.factory(handlers), self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        self._server = server
        self.sockets = list(server.sockets)
        self.guard.start()

    async def stop(self) -> None:
        await self.guard.stop()
        await super().stop()
