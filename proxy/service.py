"""The proxy's configuration and the services its faces share, assembled in one place.

:func:`open_services` composes the stack once: one HTTP client, the origin adapters for the
configured sources (or, with ``upstream``, a parent hoard standing in for every origin), the
catalog, and the fetch core over the store. The HTTP server, the in-process mount and
``hoard prefetch`` all use it.

:meth:`Services.start_maintenance` starts the background upkeep every user of the services
shares: last-access times written to the index in batches, the size budget (``max_size``
with its watermarks) and pins that follow a branch (see maintenance.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hoard.store.store import Store

from .catalog import Catalog
from .fetch import FetchConfig, FetchCore
from .http import HttpClient, HttpConfig
from .metrics import Metrics
from .origin import Credentials, Source
from .reader import RangeReader
from .sources import BuildContext, all_settings, load_all
from .bucket import BlobStoreConfig
from .bucket_source import failed_hook, published_hook
from .sources.upstream import ParentHoard

__all__ = ["ProxyConfig", "Services", "open_services"]


@dataclass(frozen=True)
class ProxyConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    #: source settings by name (``hf_endpoint``, ``arweave_gateway``, ...); a setting not
    #: given takes the default its source module declares
    source_settings: Mapping[str, Any] = field(default_factory=dict)
    #: parent hoard proxies, in order of preference; when set, every origin is reached through
    #: the first that answers (a single URL is taken as a one-parent tuple)
    upstream: tuple[str, ...] = ()
    #: seconds before a parent marked down is preferred again (doubling while it keeps failing)
    upstream_retry: float = 30.0
    #: the fleet's shared blob tier (``--blob-store s3://BUCKET[/PREFIX]``); None: no bucket
    blob_store: BlobStoreConfig | None = None
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
    #: ranged connections per origin host (``--origin-connections``): chunks of one file are
    #: fetched this many at a time; None: what ``fetch`` says (8 by default)
    origin_connections: int | None = None
    #: whether the maintenance task keeps repos pinned by their branch up to date (resolving
    #: them and fetching their new revision); ``hoard prefetch`` turns it off
    follow_pins: bool = True
    #: seconds between those refreshes (None: ``refs_ttl``, at least one second)
    pin_refresh: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.upstream, str) or self.upstream is None:
            object.__setattr__(self, "upstream", (self.upstream,) if self.upstream else ())

    @property
    def fetch_config(self) -> FetchConfig:
        """``fetch`` with ``origin_connections`` applied."""
        if self.origin_connections is None or self.origin_connections == self.fetch.origin_connections:
            return self.fetch
        return replace(self.fetch, origin_connections=self.origin_connections)


@dataclass
class Services:
    config: ProxyConfig
    store: Store
    http: HttpClient
    sources: dict[str, Source]
    catalog: Catalog
    core: FetchCore
    metrics: Metrics
    #: when these services started (``/v1/cache`` counts traffic since then)
    started: float = field(default_factory=time.time)

    _maintenance: asyncio.Task[None] | None = None
    upkeep: Any = None  # the Maintenance (size budget, followed pins) once started

    def start_maintenance(self, interval: float = 30.0) -> None:
        """Write batched last-access times to the index every ``interval`` seconds, in a
        thread (an index write can wait on another process's writer); start the size budget
        and the followed pins (maintenance.py), woken after every publish."""
        from .maintenance import Maintenance

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.store.flush_access)
                except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                    logging.getLogger("hoard").warning("flushing access times: %s", exc)

        self._maintenance = asyncio.get_running_loop().create_task(loop())
        refresh = self.config.pin_refresh if self.config.pin_refresh is not None else max(1.0, self.config.refs_ttl)
        self.upkeep = Maintenance(self, follow_pins=self.config.follow_pins, pin_refresh=refresh)
        self.core.on_published.append(self.upkeep.poke)
        self.upkeep.start()

    async def aclose(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        if self.upkeep is not None:
            await self.upkeep.aclose()
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
    """Every registered source's adapter, stacked in this one place:

    * with ``upstream``, the parent hoards stand in for each source that has an origin (the
      store's own ``local`` content stays local), failing over in order;
    * with ``blob_store``, the fleet's bucket sits in front of each of those (trees of
      immutable revisions, blobs, fills in progress), falling back to what it wraps.
    """
    specs = load_all()
    parent = ParentHoard(http, reader, config.upstream, retry_after=config.upstream_retry) if config.upstream else None
    settings = source_settings(config)
    out: dict[str, Source] = {}
    for name, spec in specs.items():
        if parent is not None and spec.info.has_origin:
            out[name] = parent.for_source(name)
        else:
            ctx = BuildContext(http, reader, store, settings, config.refs_ttl)
            out[name] = spec.build(ctx)
    if config.blob_store is not None:
        from .bucket import Bucket
        from .bucket_fill import FillBoard
        from .bucket_source import with_bucket
        from .bucket_tier import BucketTier

        bucket = Bucket(config.blob_store)
        tier = BucketTier(bucket, store)
        tier.start()  # connects in the background: the first request does not wait for botocore
        out = with_bucket(out, tier, FillBoard(bucket, piece=store.config.chunk_size))
    return out


async def open_services(config: ProxyConfig, store: Store) -> Services:
    """Build the services inside the running event loop (aiohttp needs one)."""
    metrics = Metrics()
    fetch = config.fetch_config
    http = HttpClient(config.http, origin_connections=fetch.origin_connections)
    try:
        sources = build_sources(config, http, RangeReader(http), store)
    except BaseException:
        await http.close()  # a source that cannot be built (bad setting): no session left open
        raise
    catalog = Catalog(store, sources, refs_ttl=config.refs_ttl, access_ttl=config.access_ttl)
    core = FetchCore(store, sources, fetch, metrics)
    hook = published_hook(sources)
    if hook is not None:
        core.on_published.append(hook)  # the blob tier uploads what this node publishes
    failed = failed_hook(sources)
    if failed is not None:
        core.on_failed_verification.append(failed)  # ... and stops reading a copy that proved bad
    svc = Services(config, store, http, sources, catalog, core, metrics)
    svc.start_maintenance(store.config.access_flush_interval)
    return svc
