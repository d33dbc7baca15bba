"""Turning settings into the proxy layer's typed config (shared by serve, mount, prefetch)."""

from __future__ import annotations

import importlib.util
import logging
import sys

from hoard.proxy.bucket import BlobStoreConfig, parse_blob_store
from hoard.proxy.origin import Credentials
from hoard.proxy.service import ProxyConfig
from hoard.store.errors import UsageError

from .config import Settings
from .log_once import RepeatFilter

__all__ = ["proxy_config", "parse_listen", "setup_logging", "blob_store_config"]


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:8090``, ``[::1]:8090``, ``0.0.0.0:8090``, ``:8090`` (loopback)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"--listen wants HOST:PORT, got {text!r}") from None
    if not 0 <= number < 65536:
        raise UsageError(f"port out of range in {text!r}")
    return host, number


def proxy_config(settings: Settings, *, local_user: bool) -> ProxyConfig:
    """The proxy config; ``local_user`` lets the mount/prefetch use HF_TOKEN for themselves."""
    host, port = parse_listen(settings.listen)
    return ProxyConfig(
        host=host,
        port=port,
        source_settings=dict(settings.sources),
        upstream=settings.upstream,
        blob_store=blob_store_config(settings),
        refs_ttl=settings.refs_ttl,
        public_url=settings.public_url,
        send_timeout=settings.send_timeout,
        max_connections=settings.max_connections,
        origin_connections=settings.origin_connections,
        local_creds=Credentials.of(settings.tokens) if local_user else Credentials(),
    )


def blob_store_config(settings: Settings) -> BlobStoreConfig | None:
    """The shared blob tier's config, or None without ``--blob-store``."""
    if not settings.blob_store:
        return None
    if importlib.util.find_spec("aiobotocore") is None:
        raise UsageError("--blob-store needs the s3 extra: pip install 'hoard[s3]' (aiobotocore)")
    return parse_blob_store(settings.blob_store, endpoint=settings.s3_endpoint, region=settings.s3_region,
                            private=settings.blob_store_private)


def setup_logging(level: str = "info") -> None:
    """Log to stderr at ``level``, with each origin failure told once per cause.

    Every root handler gets a :class:`~.log_once.RepeatFilter`: the first record of an origin
    failure (``huggingface.co unreachable: Cannot connect to host ...``) passes, repeats of
    the same cause are dropped for a few minutes, then counted in the next one that passes.
    """
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())
