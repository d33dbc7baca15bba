"""Shared pieces of the HF conformance tests (hf_protocol.md §11).

* a fake Hub + CDN (``tests/fakes``) holding the repositories the tests use;
* the real proxy in-process (``ProxyThread``) with a request recorder on its access log,
  so a test can tell exactly which requests (method, path, status) a *client* sent to the
  proxy — the fake's own log only shows what the proxy sent upstream;
* ``run_client``: a script run by a stock ``huggingface_hub`` in a subprocess with
  ``HF_ENDPOINT`` pointed at the proxy, a private ``HF_HOME``, telemetry off and Xet left
  ON (hf_xet is installed): the fake advertises Xet and the proxy must strip it;
* ``hub_python``: a cached virtualenv with another ``huggingface_hub`` release, built with
  pip on first use under ``/tmp/hoard-test-venvs/`` (a failure to build it fails the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.harness import ProxyThread

MiB = 1 << 20
KiB = 1 << 10
GOOD, OTHER = "hf_good_token", "hf_other_token"
CONFIG = json.dumps({"model_type": "bert", "hidden_size": 32, "vocab": ["tok"] * 300}).encode()
PR_CONFIG = b'{"pr": 1}'
TINY: dict[str, bytes | Content] = {
    "config.json": CONFIG,
    "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "WordPiece"}}).encode(),
    "sub/c.txt": b"c\n",
    "sub/dir/b.txt": b"nested\n",
    "with space \u00e9.txt": "unicode \u2713\n".encode(),
    "model.safetensors": Content("tiny-model", 3 * MiB + 17),
}
BIG = Content("big-model", 6 * MiB + 5)
GATED_W = Content("gated-weights", 64 * KiB + 3)
CSV = b"a,b\n1,2\n3,4\n"
DS_PARQUET = Content("ds-parquet", 200 * KiB + 1)
MANY = 1005  # files in org/many: more than one 1000-entry page from the proxy
XET_KEYS = ("xethash", "xet_hash", "xetenabled")

#: hf_xet ships wheels for these; there the clients run with Xet available
XET_PLATFORM = platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def data_of(spec: bytes | Content) -> bytes:
    return spec.read() if isinstance(spec, Content) else spec


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


@pytest.fixture(autouse=True)
def _fresh_hub(hub: FakeHub) -> Iterator[None]:
    hub.resume()
    hub.clear_faults()
    hub.clear_log()
    hub.xet = True
    yield
    hub.resume()
    hub.clear_faults()
    hub.xet = True


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

PRELUDE = r"""
import hashlib, json, os, sys
ARGS = json.loads(os.environ["CLIENT_ARGS"])
HOME = os.environ["HF_HOME"]
HUB = os.path.join(HOME, "hub")
OUT = {}
import huggingface_hub
OUT["_version"] = huggingface_hub.__version__
from huggingface_hub.utils._runtime import is_xet_available
OUT["_xet_available"] = bool(is_xet_available())

def attempt(name, fn):
    try:
        OUT[name] = {"ok": fn()}
    except Exception as exc:
        resp = getattr(exc, "response", None)
        OUT[name] = {"error": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                     "status": getattr(resp, "status_code", None), "message": str(exc)[:600]}

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

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


def client_env(
    endpoint: str,
    home: Path,
    *,
    token: str | None = None,
    offline: bool = False,
    args: dict[str, Any] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    drop = ("HF_", "HUGGING", "TRANSFORMERS_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        CLIENT_ARGS=json.dumps(args or {}),
        TOKENIZERS_PARALLELISM="false",
    )
    # Xet is deliberately NOT disabled: the fake advertises it, the proxy must strip it.
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra or {})
    return env


def run_client(
    endpoint: str,
    home: Path,
    script: str,
    *,
    python: str = sys.executable,
    token: str | None = None,
    offline: bool = False,
    args: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180,
) -> dict[str, Any]:
    """Run ``script`` (after PRELUDE) with a stock client; return its ``OUT`` dict."""
    env = client_env(endpoint, home, token=token, offline=offline, args=args, extra=extra_env)
    code = PRELUDE + textwrap.dedent(script) + "\nprint('@@OUT@@' + json.dumps(OUT))\n"
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=timeout, cwd=home.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@OUT@@")]
    assert proc.returncode == 0 and lines, f"client failed (rc={proc.returncode}):\n{proc.stderr[-6000:]}"
    out: dict[str, Any] = json.loads(lines[-1][len("@@OUT@@") :])
    if XET_PLATFORM:
        assert out["_xet_available"], f"hf_xet should be installed and enabled for {out['_version']}"
    return out


def raw(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, no redirects followed, nothing decoded."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, parts.path + ("?" + parts.query if parts.query else ""), body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


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


# --------------------------------------------------------------------------------------
# other client releases
# --------------------------------------------------------------------------------------

VENV_ROOT = Path(os.environ.get("HOARD_TEST_VENVS", "/tmp/hoard-test-venvs"))


def hub_python(version: str) -> str:
    """Python of a virtualenv with ``huggingface_hub==version`` (built once, then reused).

    Keyed by client version and interpreter version; a stamp file marks a finished build,
    a lock file serialises concurrent builders. Any failure is a test failure, never a skip.
    """
    py_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = VENV_ROOT / f"huggingface_hub-{version}-{py_tag}"
    python = target / "bin" / "python"
    stamp = target / ".hoard-ready"
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and python.exists():
            return str(python)
        shutil.rmtree(target, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
             f"huggingface_hub=={version}"],
            [str(python), "-c", "import huggingface_hub, sys; "
             f"assert huggingface_hub.__version__ == {version!r}, huggingface_hub.__version__"],
        ]
        for cmd in steps:
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.fail(f"cannot build the huggingface_hub=={version} test venv at {target}: {cmd[:4]}: {exc}")
            if proc.returncode != 0:
                pytest.fail(
                    f"cannot build the huggingface_hub=={version} test venv at {target} "
                    f"(needs PyPI access through pip): {' '.join(cmd[:6])} exited {proc.returncode}:\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
                )
        stamp.write_text(version)
        return str(python)
