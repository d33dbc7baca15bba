"""The one hoard runtime of a Python process: settings, the store, and the fetch core.

``import hoard`` reads its configuration the way the ``hoard`` command does — flags aside:
the ``HOARD_*`` environment variables (and each source's, ``HF_TOKEN`` included) read as
click reads them (:func:`hoard.cli.config.settings_from_environment`), then
``$HOARD_HOME/config.toml``, then the defaults (:func:`hoard.cli.config.load_settings`).

The first call that needs the store opens it; the first that needs an origin starts the
fetch core: the proxy's services on a private asyncio loop in a daemon thread
(:class:`hoard.fuse.bridge.CoreBridge`, the mount's own way in). Every call is a blocking
call into that loop, so the API works the same from plain code, from threads and from inside
a running event loop (a notebook cell): nothing ever runs on the caller's loop. One runtime
per process, made under a lock, closed at interpreter exit; a child made by ``fork`` builds
its own (LMDB handles and threads do not survive a fork).

Closing at exit must happen while thread pools still take work (the core's last index writes
and its upkeep run in the loop's executor): the close is registered with ``threading``'s
exit hooks, which run *before* ``concurrent.futures`` shuts its pools down (hooks run in
reverse order of registration, and ``concurrent.futures.thread`` is imported first), with
``atexit`` as the fallback. A failure while closing at exit is logged, never raised.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook first: ours then runs before it
import dataclasses
import logging
import os
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from hoard.cli.config import Settings, load_settings, settings_from_environment
from hoard.proxy.sources import load_all
from hoard.store.store import Store

if TYPE_CHECKING:
    from hoard.fuse.bridge import CoreBridge
    from hoard.proxy.origin import Credentials
    from hoard.proxy.service import ProxyConfig, Services

__all__ = ["Runtime", "runtime", "close_runtime"]

log = logging.getLogger("hoard.api")
T = TypeVar("T")

#: seconds a single origin call (a lookup, a range) may take before it fails as unavailable
CALL_TIMEOUT = 300.0
#: "no limit" for fills of whole files (a finite number: thread waits need one)
_NO_LIMIT = 1e7


class Runtime:
    """Settings, the store, and (on first use) the fetch core on its own loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.store = Store(settings.store_config())
        self._bridge: CoreBridge | None = None
        self._lock = threading.Lock()
        #: set by close(): nothing starts the core again (a file object closed at exit)
        self.closed = False

    @property
    def config(self) -> ProxyConfig:
        """The proxy layer's config for the local user (their tokens, their origins). Pins
        that follow a branch are left to the long-running processes (``serve``, ``mount``),
        as ``hoard prefetch`` leaves them: a script's process does not refresh them."""
        from hoard.cli.runtime import proxy_config

        config = proxy_config(self.settings, local_user=True)
        return dataclasses.replace(config, origin_connections=self.settings.origin_connections, follow_pins=False)

    @property
    def bridge(self) -> CoreBridge:
        """The fetch core's loop thread, started on first use."""
        with self._lock:
            if self.closed:
                raise RuntimeError("the hoard runtime is closed (interpreter exit)")
            if self._bridge is None:
                from hoard.fuse.bridge import CoreBridge

                self._bridge = CoreBridge(self.config, self.store, call_timeout=CALL_TIMEOUT)
            return self._bridge

    @property
    def svc(self) -> Services:
        return self.bridge.svc

    @property
    def creds(self) -> Credentials:
        return self.bridge.creds

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the core's loop and wait for it (``timeout`` None: no limit)."""
        bridge = self.bridge
        return bridge.call(coro, timeout=timeout if timeout is not None else _NO_LIMIT)

    def close(self) -> None:
        """Stop the core (if it started) and close the store."""
        with self._lock:
            bridge, self._bridge = self._bridge, None
            self.closed = True
        try:
            if bridge is not None:
                bridge.close_all()
        finally:
            self.store.close()


_RUNTIME: Runtime | None = None
_LOCK = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime, made on first use (again in a forked child)."""
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None or _RUNTIME.pid != os.getpid():
            load_all()  # the source registry: addresses and settings need it
            _RUNTIME = Runtime(load_settings(settings_from_environment()))
        return _RUNTIME


def close_runtime() -> None:
    """Close this process's runtime; the next call makes a new one (new settings included)."""
    global _RUNTIME
    with _LOCK:
        rt, _RUNTIME = _RUNTIME, None
    if rt is not None and rt.pid == os.getpid():
        rt.close()


def _close_at_exit() -> None:
    try:
        close_runtime()
    except Exception as exc:  # noqa: BLE001 - at exit: say it, never raise
        log.warning("closing hoard at exit: %s", exc)


try:
    threading._register_atexit(_close_at_exit)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # another Python, or already shutting down
    pass
atexit.register(_close_at_exit)
