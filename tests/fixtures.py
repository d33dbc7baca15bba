"""Pytest fixtures shared by test modules that keep one fake Hub for the whole module.

Import them by name (``from tests.fixtures import fresh_hub, proxy  # noqa: F401``): pytest
finds fixtures in a test module's globals. Each module defines its own module-scoped ``hub``
fixture (a `FakeHub` holding that module's repositories); these build on it.

* `fresh_hub` (autouse): before each test the fake is reachable, fault-free, with an empty
  request log and Xet advertised; after it, reachable, fault-free and advertising Xet again;
* `proxy`: the real proxy in-process (`ProxyThread`, 256 KiB chunks) on a fresh ``home``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.hub import FakeHub
from tests.harness import ProxyThread

__all__ = ["CHUNK", "fresh_hub", "proxy"]

#: the proxy's chunk size: small, so a few-MiB file spans many chunks
CHUNK = 256 << 10


@pytest.fixture(autouse=True)
def fresh_hub(hub: FakeHub) -> Iterator[None]:
    hub.resume()
    hub.clear_faults()
    hub.clear_log()
    hub.xet = True
    yield
    hub.resume()
    hub.clear_faults()
    hub.xet = True


@pytest.fixture
def proxy(home: Path, hub: FakeHub) -> Iterator[ProxyThread]:
    with ProxyThread(home, hub.url, chunk_size=CHUNK) as p:
        yield p
