"""Shared pieces of the HF conformance tests (hf_protocol.md §11).

* a fake Hub + CDN (``tests/fakes``) holding the repositories the tests use;
* the real proxy in-process (``ProxyThread``) with a request recorder on its access log,
  so a test can tell exactly which requests (method, path, status) a *client* sent to the
  proxy — the fake's own log only shows what the proxy sent upstream;
* ``run_client``: a script run by a stock ``huggingface_hub`` in a subprocess
  (`runner.run_script`) with ``HF_ENDPOINT`` pointed at the proxy, a private ``HF_HOME``,
  telemetry off and Xet left ON (hf_xet is installed): the fake advertises Xet and the
  proxy must strip it. Other ``huggingface_hub`` releases: `runner.hub_python`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import logging
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.fakes.samples import GOOD, TINY
from tests.harness import ProxyThread
from tests.httpcalls import raw as _raw

from .runner import PRELUDE as _BASE_PRELUDE
from .runner import run_script

MiB = 1 << 20
KiB = 1 << 10
PR_CONFIG = b'{"pr": 1}'
BIG = Content("big-model", 6 * MiB + 5)
GATED_W = Content("gated-weights", 64 * KiB + 3)
CSV = b"a,b\n1,2\n3,4\n"
DS_PARQUET = Content("ds-parquet", 200 * KiB + 1)
MANY = 1005  # files in org/many: more than one 1000-entry page from the proxy
XET_KEYS = ("xethash", "xet_hash", "xetenabled")

#: hf_xet ships wheels for these; there the clients run with Xet available
XET_PLATFORM = platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")


# --------------------------------------------------------------------------------------
# fake upstream
# --------------------------------------------------------------------------------------


def make_hub() -> FakeHub:
    """A started fake Hub (Xet advertised, 50-entry tree pages) with the test repositories."""
    hub = FakeHub(page_size=50).start()
    hub.add_repo("org/tiny", TINY, tags=("v1.0",))
    hub.add_pr("org/tiny", {"config.json": PR_CONFIG})
    hub.add_repo("org/big", {"big.bin": BIG})
    hub.add_repo("org/gated", {"config.json": b"{}", "w.bin": GATED_W}, gated="manual", allowed_tokens={GOOD})
    hub.add_repo("org/private", {"config.json": b'{"private": true}'}, private=True, allowed_tokens={GOOD})
    hub.add_repo(
        "org/ds",
        {"data/train.csv": CSV, "data/part-0.parquet": DS_PARQUET, "README.md": b"# ds\n"},
        repo_type="dataset",
    )
    hub.add_repo("org/sp", {"app.py": b"print('hi')\n"}, repo_type="space")
    hub.add_repo("org/many", {f"f/{i:05d}.txt": f"{i}\n".encode() for i in range(MANY)})
    return hub


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    fake = make_hub()
    try:
        yield fake
    finally:
        fake.stop()


# --------------------------------------------------------------------------------------
# the proxy, with a recorder of what clients sent it
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request a client made to the proxy (from its access log; path is decoded)."""

    method: str
    path: str
    status: int


class _AccessRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[Seen] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3:
            self.seen.append(Seen(str(args[0]), str(args[1]), int(args[2])))


class _ServerErrors(logging.Filter):
    """Keeps the exceptions the proxy's thread logs (aiohttp "Unhandled exception", asyncio
    "Task exception was never retrieved", hoard internal errors) and strips their traceback
    from the log record.

    Why strip: CPython 3.11 formats tracebacks with ``ast.parse`` (caret anchors), and the AST
    constructor's recursion counter is not thread-safe (gh-106905): the proxy thread formatting
    a traceback while pytest formats a failure crashes the whole session with ``SystemError:
    AST constructor recursion depth mismatch``. The exceptions stay visible: the record keeps
    type, message and innermost frames, and tests can assert on ``Proxy.server_errors``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = []
            tb = exc.__traceback__
            while tb is not None:
                code = tb.tb_frame.f_code
                frames.append(f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} {code.co_name}")
                tb = tb.tb_next
            text = f"{record.getMessage()}: {type(exc).__name__}: {exc} [at {' < '.join(reversed(frames[-4:]))}]"
            self.errors.append(text)
            record.msg, record.args = "%s", (text,)
            record.exc_info, record.exc_text = None, None
        return True


_SERVER_LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio", "hoard.hf", "hoard.fetch", "hoard.catalog", "hoard.http")


class Proxy:
    """A running ``ProxyThread`` plus what its clients asked for."""

    def __init__(self, px: ProxyThread, recorder: _AccessRecorder, errors: _ServerErrors) -> None:
        self.px = px
        self._rec = recorder
        self._errors = errors

    @property
    def server_errors(self) -> list[str]:
        """Exceptions the proxy logged from its own thread (see ``_ServerErrors``)."""
        self.settle()
        return list(self._errors.errors)

    @property
    def url(self) -> str:
        return self.px.url

    @property
    def metrics(self) -> Any:
        return self.px.metrics

    def settle(self) -> None:
        """Let the proxy loop run its pending callbacks (no waiting on time)."""
        for _ in range(3):
            self.px.call(asyncio.sleep(0))

    def mark(self) -> tuple[float, int]:
        """A point in the request history: (requests counted by metrics, access-log length)."""
        self.settle()
        return self.metrics.total("hoard_http_requests_total"), len(self._rec.seen)

    def since(self, mark: tuple[float, int]) -> list[Seen]:
        """Client requests after ``mark``; cross-checked against the proxy's own metrics."""
        self.settle()
        seen = list(self._rec.seen[mark[1] :])
        counted = self.metrics.total("hoard_http_requests_total") - mark[0]
        assert counted == len(seen), f"metrics counted {counted} requests, access log {len(seen)}: {seen}"
        return seen

    @property
    def seen(self) -> list[Seen]:
        return list(self._rec.seen)


@contextlib.contextmanager
def running_proxy(home: Path, hub_url: str, **config: Any) -> Iterator[Proxy]:
    logger = logging.getLogger("hoard.access")
    recorder = _AccessRecorder()
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(recorder)
    errors = _ServerErrors()
    for name in _SERVER_LOGGERS:
        logging.getLogger(name).addFilter(errors)
    px = ProxyThread(home, hub_url, **config)
    px.start()
    try:
        yield Proxy(px, recorder, errors)
    finally:
        try:
            px.stop()
        finally:
            logger.removeHandler(recorder)
            logger.setLevel(old_level)
            for name in _SERVER_LOGGERS:
                logging.getLogger(name).removeFilter(errors)


@pytest.fixture
def proxy(hub: FakeHub, tmp_path: Path) -> Iterator[Proxy]:
    """A cold proxy (fresh store, 256 KiB chunks) in front of the module's fake Hub."""
    with running_proxy(tmp_path / "hoard", hub.url, chunk_size=256 * KiB) as px:
        yield px


# --------------------------------------------------------------------------------------
# real clients
# --------------------------------------------------------------------------------------

#: `runner.PRELUDE`, plus the client's version and Xet availability in ``OUT`` and helpers to
#: inspect an HF cache (``HUB``, ``repo_dir``, ``read``, ``tree``, ``describe``).
PRELUDE = _BASE_PRELUDE + r"""
HOME = os.environ["HF_HOME"]
HUB = os.path.join(HOME, "hub")
import huggingface_hub
OUT["_version"] = huggingface_hub.__version__
from huggingface_hub.utils._runtime import is_xet_available
OUT["_xet_available"] = bool(is_xet_available())

def repo_dir(repo_id, kind="models", cache=None):
    return os.path.join(cache or HUB, kind + "--" + repo_id.replace("/", "--"))

def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()

def tree(root):
    '''{relative path: sha256} of every regular file (following symlinks) below root.'''
    out = {}
    for d, dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = sha256(p)
    return out

def describe(path):
    '''Where a returned path points: its symlink target and blob name.'''
    return {"path": path, "islink": os.path.islink(path), "link": os.readlink(path) if os.path.islink(path) else None,
            "blob": os.path.basename(os.path.realpath(path)), "sha256": sha256(path), "size": os.path.getsize(path)}
"""


def run_client(endpoint: str, home: Path, script: str, **options: Any) -> dict[str, Any]:
    """`runner.run_script` after this module's PRELUDE (``options`` as there). Where hf_xet
    has wheels the client must have had Xet available: the fake advertises it, the proxy
    must strip it."""
    out = run_script(endpoint, home, script, prelude=PRELUDE, **options)
    if XET_PLATFORM:
        assert out["_xet_available"], f"hf_xet should be installed and enabled for {out['_version']}"
    return out


#: `httpcalls.raw` with a longer bound: these requests go through the proxy to the fake
raw = functools.partial(_raw, timeout=60.0)


def xet_keys(obj: Any, where: str = "$") -> list[str]:
    """JSON paths of every key that smells of Xet."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in XET_KEYS or "xet" in str(k).lower():
                found.append(f"{where}.{k}")
            found += xet_keys(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += xet_keys(v, f"{where}[{i}]")
    return found


def xet_headers(headers: http.client.HTTPMessage) -> list[str]:
    bad = [f"{k}: {v}" for k, v in headers.items() if k.lower().startswith("x-xet")]
    bad += [f"Link: {v}" for v in headers.get_all("Link") or [] if "xet" in v.lower()]
    return bad
