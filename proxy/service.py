"""The proxy's configuration and the services its faces share, assembled in one place.

:func:`open_services` composes the stack once: one HTTP client, the origin adapters for the
configured sources (or, with ``upstream``, a parent hoard standing in for every origin), the
catalog, and the fetch core over the store. The HTTP server, the in-process mount and
``hoard prefetch`` all use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hoard.store.store import Store

from .catalog import Catalog
from .fetch import FetchConfig, FetchCore
from .http import HttpClient, HttpConfig
from .metrics import Metrics
from .origin import Credentials, Source
from .reader import RangeReader
from .sources import BuildContext, all_settings, load_all
from .sources.upstream import ParentHoard

__all__ = ["ProxyConfig", "Services", "open_services"]


@dataclass(frozen=True)
class ProxyConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    #: source settings by name (``hf_endpoint``, ``arweave_gateway``, ...); a setting not
    #: given takes the default its source module declares
    source_settings: Mapping[str, Any] = field(default_factory=dict)
    #: a parent hoard proxy; when set, every origin is reached through it
    upstream: str | None = None
    refs_ttl: float = 60.0
    access_ttl: float = 60.0
    fetch: FetchConfig = field(default_factory=FetchConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    #: credentials of the local user, for the mount and prefetch (never used to serve HTTP clients)
    local_creds: Credentials = field(default_factory=Credentials)
    #: when set, admin endpoints that change the store require it (X-Hoard-Admin-Token)
    admin_token: str | None = field(default=None, repr=False)
    #: the URL clients reach this proxy at (for links it builds); None: http://host:port
    public_url: str | None = None
    #: seconds a connection may make no progress before it is closed: a response its client
    #: takes no bytes of (sendfile included), or a connection idle between requests (0: never)
    send_timeout: float = 60.0
    #: open client connections at most (None: derived from the file descriptor limit, which
    #: ``hoard serve`` raises to its hard limit); at the cap the idle or stalled longest go
    max_connections: int | None = None


@dataclass
class Services:
    config: ProxyConfig
    store: Store
    http: HttpClient
    sources: dict[str, Source]
    catalog: Catalog
    core: FetchCore
    metrics: Metrics

    _maintenance: asyncio.Task[None] | None = None

    def start_maintenance(self, interval: float = 30.0) -> None:
        """Write batched last-access times to the index every ``interval`` seconds, in a
        thread (an index write can wait on another process's writer)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.store.flush_access)
                except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                    logging.getLogger("hoard").warning("flushing access times: %s", exc)

        self._maintenance = asyncio.get_running_loop().create_task(loop())

    async def aclose(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        await self.catalog.aclose()
        await self.core.aclose()
        for src in self.sources.values():
            await src.close()
        await self.http.close()


def source_settings(config: ProxyConfig) -> dict[str, Any]:
    """Every source setting: what the config gives, else what its source declares. A source
    may read another's (the ONNX hub reads the GitHub hosts that the GitHub source declares)."""
    return {s.name: config.source_settings.get(s.name, s.default) for _, s in all_settings()}


def build_sources(config: ProxyConfig, http: HttpClient, reader: RangeReader, store: Store) -> dict[str, Source]:
    """Every registered source's adapter; with ``upstream``, a parent hoard stands in for each
    source that has an origin (the store's own ``local`` content stays local)."""
    specs = load_all()
    parent = ParentHoard(http, reader, config.upstream) if config.upstream else None
    settings = source_settings(config)
    out: dict[str, Source] = {}
    for name, spec in specs.items():
        if parent is not None and spec.info.has_origin:
            out[name] = parent.for_source(name)
        else:
            ctx = BuildContext(http, reader, store, settings, config.refs_ttl)
            out[name] = spec.build(ctx)
    return out


async def open_services(config: ProxyConfig, store: Store) -> Services:
    """Build the services inside the running event loop (aiohttp needs one)."""
    metrics = Metrics()
    http = HttpClient(config.http)
    sources = build_sources(config, http, RangeReader(http), store)
    catalog = Catalog(store, sources, refs_ttl=config.refs_ttl, access_ttl=config.access_ttl)
    core = FetchCore(store, sources, config.fetch, metrics)
    svc = Services(config, store, http, sources, catalog, core, metrics)
    svc.start_maintenance(store.config.access_flush_interval)
    return svc
