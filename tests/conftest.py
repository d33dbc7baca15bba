"""Shared fixtures: a fresh store per test, small chunks so multi-chunk cases stay fast.

Also two hooks: tests marked ``fuse`` (real mounts) skip only where ``/dev/fuse`` is absent;
where it exists they must run, so a missing ``fusermount3`` is an error, not a silent skip.
And every run's summary has one line saying how many tests were skipped and why.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.proxy.sources import load_all
from hoard.store.config import StoreConfig
from hoard.store.store import Store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so tests can import tests.fakes

CHUNK = 64 << 10

load_all()  # the source registry, as every entry point of hoard loads it


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


# -- real mounts: skip only without /dev/fuse ----------------------------------------------------

FUSE_DEVICE = "/dev/fuse"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("fuse") is None:
        return
    if not os.path.exists(FUSE_DEVICE):
        pytest.skip(f"no {FUSE_DEVICE} on this machine (real FUSE mount)")
    if shutil.which("fusermount3") is None:
        pytest.fail(
            f"{FUSE_DEVICE} exists but fusermount3 is missing: install fuse3 "
            "(e.g. apt-get install fuse3, or `make system-deps`)",
            pytrace=False,
        )


# -- the skip summary ------------------------------------------------------------------------------


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ").strip() or "no reason given"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """``skipped: N (reason: count, ...)``, or ``skipped: 0``, always (CI logs show it)."""
    reasons = Counter(_skip_reason(r) for r in terminalreporter.stats.get("skipped", []))
    total = sum(reasons.values())
    detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    terminalreporter.write_line(f"skipped: {total} ({detail})" if total else "skipped: 0")
