"""The aiohttp application and the server loop of ``hoard serve``.

Client connections are accepted through a :class:`~.listener.GuardedSite`: idle and send
timeouts (``ProxyConfig.send_timeout``) and a connection cap below the file descriptor limit
(``ProxyConfig.max_connections``, else derived from the limit, which is first raised to its
hard maximum) keep clients that never read from exhausting the process's descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from hoard.store.errors import UsageError
from hoard.store.store import Store

from . import metrics as m
from .arweave_face import add_arweave_routes, is_gateway_request
from .connections import ConnectionGuard
from .hf_face import add_hf_routes
from .listener import GuardedSite, connection_cap, raise_fd_limit
from .request import SERVICES
from .service import ProxyConfig, Services, open_services
from .v1_face import PREFETCH, PrefetchJobs, add_v1_routes

__all__ = ["SERVICES", "Server", "make_app", "serve"]

log = logging.getLogger("hoard.access")



@web.middleware
async def _access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One line per request: method, path, status, bytes, time. Never headers (tokens)."""
    started = time.monotonic()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the connection was closed under it (client gone, send timeout, cap)
        raise
    finally:
        elapsed = (time.monotonic() - started) * 1000
        face = "v1" if request.path.startswith("/v1/") else "arweave" if is_gateway_request(request) else "hf"
        request.app[SERVICES].metrics.inc(m.REQUESTS, face=face, status=str(status))
        log.info("%s %s %d %.1fms", request.method, request.path, status, elapsed)


def make_app(svc: Services, guard: ConnectionGuard | None = None) -> web.Application:
    middlewares = [_access_log] if guard is None else [guard.middleware, _access_log]
    app = web.Application(middlewares=middlewares, client_max_size=4 << 20)
    app[SERVICES] = svc
    jobs = PrefetchJobs(svc)
    app[PREFETCH] = jobs

    async def _stop_jobs(_: web.Application) -> None:
        await jobs.aclose()

    app.on_cleanup.append(_stop_jobs)
    add_v1_routes(app)
    add_hf_routes(app)
    add_arweave_routes(app)
    return app


class Server:
    """A running proxy: ``await Server.start(...)``, then ``url``, then ``await stop()``."""

    def __init__(self, svc: Services, runner: web.AppRunner, site: GuardedSite) -> None:
        self.svc = svc
        self.runner = runner
        self.site = site
        self.guard = site.guard

    @classmethod
    async def start(cls, config: ProxyConfig, store: Store) -> Server:
        svc = await open_services(config, store)
        guard = _connection_guard(config)
        try:
            runner = web.AppRunner(
                make_app(svc, guard), access_log=None, handle_signals=False, shutdown_timeout=5.0,
                **_handler_settings(config),
            )
            await runner.setup()
        except BaseException:
            await svc.aclose()
            raise
        site = GuardedSite(runner, config.host, config.port, guard)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await svc.aclose()
            raise UsageError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
        return cls(svc, runner, site)

    @property
    def port(self) -> int:
        return self.site.port

    @property
    def url(self) -> str:
        host = self.svc.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.svc.aclose()


def _connection_guard(config: ProxyConfig) -> ConnectionGuard:
    """The guard of client connections: the cap is ``max_connections`` if set, else derived
    from the descriptor limit (raised to its hard limit first, in any case)."""
    fd_limit = raise_fd_limit()
    cap = config.max_connections or connection_cap(fd_limit)
    log.debug("open file limit %d; at most %d client connections; send timeout %.0fs", fd_limit, cap,
              config.send_timeout)
    return ConnectionGuard(send_timeout=config.send_timeout, cap=cap)


def _handler_settings(config: ProxyConfig) -> dict[str, float]:
    """aiohttp's per-connection settings: an idle connection is closed after ``send_timeout``
    (0 disables the timeouts, leaving aiohttp's default)."""
    return {"keepalive_timeout": config.send_timeout} if config.send_timeout > 0 else {}


async def serve(config: ProxyConfig, store: Store, ready: Callable[[str], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    server = await Server.start(config, store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(server.url)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()
