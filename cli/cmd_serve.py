"""``hoard serve``: the pull-through proxy (Hugging Face API, hoard API, metrics)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path

import click

from hoard.proxy.app import serve as run_server
from hoard.proxy.service import ProxyConfig
from hoard.proxy.v1_common import admin_endpoints_off
from hoard.store.errors import UsageError

from .common import App, common_options
from .runtime import proxy_config, setup_logging


@click.command("serve")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--admin-token", envvar="HOARD_ADMIN_TOKEN", show_envvar=True, default=None, metavar="TOKEN",
              help="Require this in X-Hoard-Admin-Token for admin endpoints that change the store "
                   "(without one they are off unless the proxy listens on loopback).")
@click.option("--admin-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Read the admin token from FILE (keeps it out of the process list).")
@common_options("listen", "public_url", "upstream", "blob_store", "s3_endpoint", "blob_store_private", "sources", "chunk_size", "max_size", "send_timeout", "max_connections", "origin_connections")
def serve(app: App, log_level: str, admin_token: str | None, admin_token_file: Path | None) -> None:
    """Run the pull-through proxy until SIGINT/SIGTERM.

    \b
    Point clients at it:
      HF_ENDPOINT=http://127.0.0.1:8090 python -c 'import transformers; ...'
    hoard's own API: /v1/files/<address>, /v1/blobs/<b3>, /v1/trees/<address>,
    admin endpoints under /v1/, /metrics and /healthz. Binds 127.0.0.1 unless --listen says
    otherwise; on any other address the admin endpoints (prefetch, delete, gc, pins) are off
    unless an admin token is set. Client tokens are forwarded to the origin only, never stored
    or logged.
    """
    setup_logging(log_level)
    if admin_token_file is not None:
        admin_token = _read_token(admin_token_file)
    settings = app.settings
    config = dataclasses.replace(proxy_config(settings, local_user=False), admin_token=admin_token or None)
    _admin_notice(config)
    store = app.store

    def ready(url: str) -> None:
        if app.json:
            click.echo(json.dumps({"url": url, "home": str(settings.home)}), nl=True)
        else:
            click.echo(f"hoard: serving {settings.home} on {url}", nl=True)

    asyncio.run(run_server(config, store, ready))


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the admin token file {path}: {exc.strerror}") from None
    if not token:
        raise UsageError(f"the admin token file {path} is empty")
    return token


def _admin_notice(config: ProxyConfig) -> None:
    """Say at start-up how the admin endpoints are guarded (never the token itself)."""
    log = logging.getLogger("hoard")
    if config.admin_token:
        log.info("admin endpoints need the X-Hoard-Admin-Token header")
    elif admin_endpoints_off(config):
        log.warning(
            "listening on %s without an admin token: the admin endpoints (prefetch, delete, gc, pins) "
            "are off; set one with --admin-token-file FILE (or --admin-token / HOARD_ADMIN_TOKEN)",
            config.host,
        )
    else:
        log.info("admin endpoints are open to local clients (loopback, no admin token)")
