"""Commands that ask an origin: the proxy's services, opened for one command and closed after.

``hoard ls`` and ``hoard info`` answer from the store; when the store has never seen a repo
they may ask its origin through the same stack ``hoard prefetch`` uses (the catalog, the
source adapters, the local user's credentials), so a first look works before any download.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hoard.proxy.catalog import Resolved
from hoard.proxy.service import Services, open_services
from hoard.store.address import Address

from .common import App
from .runtime import proxy_config

__all__ = ["with_services", "resolve_online"]

T = TypeVar("T")


def with_services(app: App, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work(services)`` on a fresh event loop, with services over the app's store."""
    config = proxy_config(app.settings, local_user=True)

    async def run() -> T:
        svc = await open_services(config, app.store)
        try:
            return await work(svc)
        finally:
            await svc.aclose()

    return asyncio.run(run())


def resolve_online(app: App, addr: Address) -> Resolved:
    """Resolve ``addr`` at its origin (files of private repos need the local user's token)."""

    async def work(svc: Services) -> Resolved:
        creds: Any = svc.config.local_creds
        return await svc.catalog.resolve(addr, creds, access="metadata", trust_offline=True)

    return with_services(app, work)
