"""The aiohttp application and the server loop of ``hoard serve``."""

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
from .hf_face import add_hf_routes
from .service import ProxyConfig, Services, open_services
from .v1_face import PREFETCH, PrefetchJobs, add_v1_routes

__all__ = ["SERVICES", "make_app", "serve", "Server"]

log = logging.getLogger("hoard.access")

SERVICES = web.AppKey("services", Services)


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
    finally:
        elapsed = (time.monotonic() - started) * 1000
        face = "v1" if request.path.startswith("/v1/") else "hf"
        request.app[SERVICES].metrics.inc(m.REQUESTS, face=face, status=str(status))
        log.info("%s %s %d %.1fms", request.method, request.path, status, elapsed)


def make_app(svc: Services) -> web.Application:
    app = web.Application(middlewares=[_access_log], client_max_size=4 << 20)
    app[SERVICES] = svc
    jobs = PrefetchJobs(svc)
    app[PREFETCH] = jobs

    async def _stop_jobs(_: web.Application) -> None:
        await jobs.aclose()

    app.on_cleanup.append(_stop_jobs)
    add_v1_routes(app)
    add_hf_routes(app)
    return app


class Server:
    """A running proxy: ``await Server.start(...)``, then ``url``, then ``await stop()``."""

    def __init__(self, svc: Services, runner: web.AppRunner, site: web.TCPSite) -> None:
        self.svc = svc
        self.runner = runner
        self.site = site

    @classmethod
    async def start(cls, config: ProxyConfig, store: Store) -> Server:
        svc = await open_services(config, store)
        try:
            runner = web.AppRunner(make_app(svc), access_log=None, handle_signals=False, shutdown_timeout=5.0)
            await runner.setup()
        except BaseException:
            await svc.aclose()
            raise
        site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await svc.aclose()
            raise UsageError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
        return cls(svc, runner, site)

    @property
    def port(self) -> int:
        server = self.site._server  # noqa: SLF001 - aiohttp exposes no public accessor
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        host = self.svc.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.svc.aclose()


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
