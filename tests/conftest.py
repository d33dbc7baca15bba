"""Shared fixtures: a fresh store per test, small chunks so multi-chunk cases stay fast."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoard.store.config import StoreConfig
from hoard.store.store import Store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so tests can import tests.fakes

CHUNK = 64 << 10


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    s = Store(StoreConfig(home, chunk_size=CHUNK))
    yield s
    s.close()


@pytest.fixture
def hoard_env(home: Path) -> dict[str, str]:
    """Environment for running the `hoard` CLI in a subprocess against ``home``."""
    env = dict(os.environ)
    env["HOARD_HOME"] = str(home)
    env.pop("HOARD_MAX_SIZE", None)
    return env
