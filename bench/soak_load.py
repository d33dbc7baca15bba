"""The soak benchmark's load: concurrent clients running a mix of requests, each one timed
and its answer checked.

Operations (relative weights in :class:`Mix`):

* ``hit`` — GET a whole cached file by branch (``/<repo>/resolve/main/<path>``);
* ``blob`` — GET a whole cached file by content (``/v1/blobs/<b3>``; at the origin, the same
  file by commit);
* ``range`` — GET a random 64 KiB-1 MiB ``Range`` of the largest file (by commit);
* ``head`` — HEAD a cached file by branch;
* ``cold`` — GET a file of a repo nobody asked for yet (by commit): the proxy resolves its
  tree at the origin and fetches its bytes. New repos come from the origin process in
  batches (:class:`ColdSupply`).

Plus a few *slow readers*: raw sockets with a 4 KiB receive buffer that read a file at
``SLOW_PACE`` (a few KiB/s), so the proxy really waits on them (and must not cut them: they
make progress). Every answer is checked: status, length, and the bytes (BLAKE3 of whole small
files and of a sample of large ones; every range against the expected slice; every cold file).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import blake3

from .common import MiB

__all__ = ["SLOW_PACE", "ColdSupply", "HitFile", "Mix", "Sample", "Target", "run_load"]

KiB = 1 << 10
#: slow readers take SLOW_STEP bytes every SLOW_PAUSE seconds (8 KiB/s)
SLOW_STEP, SLOW_PAUSE = 4 * KiB, 0.5
SLOW_PACE = SLOW_STEP / SLOW_PAUSE
#: whole-file hits larger than this have their bytes checked one time in VERIFY_EVERY
VERIFY_ALWAYS, VERIFY_EVERY = 1 * MiB, 16
_READ_BUF = 4 << 20


@dataclass(frozen=True)
class HitFile:
    path: str
    size: int
    blake3: str
    seed: str


@dataclass(frozen=True)
class Mix:
    hit: int = 35
    blob: int = 10
    range: int = 20
    head: int = 30
    cold: int = 5

    def ops(self) -> tuple[list[str], list[int]]:
        names = ["hit", "blob", "range", "head", "cold"]
        return names, [getattr(self, n) for n in names]


@dataclass
class Sample:
    op: str
    status: int
    latency: float  # request sent -> last body byte (or error)
    ttfb: float  # request sent -> response headers
    nbytes: int
    at: float  # monotonic time it finished
    error: str | None = None


@dataclass
class Target:
    """Where the requests go: ``hoard serve`` (``hoard=True``) or the origin directly."""

    base: str
    hoard: bool
    repo: str
    commit: str
    files: dict[str, HitFile]
    big: str  # the file ranges are taken from
    slow: str  # the file slow readers read
    samples: list[Sample] = field(default_factory=list)


class ColdSupply:
    """Files nobody asked for yet, made by the origin process in batches of new repos (in a
    thread, so the event loop never waits on the pipe)."""

    def __init__(self, ask: Callable[[str], Any], *, repos: int, files: int, size: int) -> None:
        self.ask = ask
        self.command = f"cold {repos} {files} {size}"
        self.low = repos * files // 2
        self.size = size
        self._ready: list[tuple[str, str]] = []  # (url path, content seed)
        self._lock = threading.Lock()
        self._refilling = False
        self.made = 0
        self.ran_out = 0  # cold requests turned into hits because the supply was refilling

    def take(self) -> tuple[str, str] | None:
        """A new file's (url path, content seed), or None when the supply ran dry for now."""
        with self._lock:
            item = self._ready.pop() if self._ready else None
            refill = len(self._ready) < self.low and not self._refilling
            self._refilling = self._refilling or refill
        if refill:
            threading.Thread(target=self._refill, daemon=True).start()
        if item is None:
            self.ran_out += 1
        return item

    def batch(self) -> list[tuple[str, str]]:
        """One batch straight from the origin, not through the supply (priming)."""
        return [(f"/{r['repo']}/resolve/{r['commit']}/{path}", seed) for r in self.ask(self.command)
                for path, seed in r["files"]]

    def _refill(self) -> None:
        try:
            got = self.batch()
            with self._lock:
                self._ready[:0] = got[::-1]
                self.made += len(got)
        finally:
            self._refilling = False


#: when the response headers of the request in flight arrived (per client task)
_HEADERS_AT: dict[asyncio.Task[Any] | None, float] = {}


def _headers_arrived() -> None:
    _HEADERS_AT[asyncio.current_task()] = time.perf_counter()


async def _fetch(s: aiohttp.ClientSession, url: str, hash_it: bool) -> tuple[int, int, str | None]:
    """GET a whole body into nothing: (status, bytes, BLAKE3 of the body when ``hash_it``)."""
    hasher = blake3.blake3() if hash_it else None
    n = 0
    async with s.get(url) as resp:
        _headers_arrived()
        while block := await resp.content.readany():
            n += len(block)
            if hasher is not None:
                hasher.update(block)
        return resp.status, n, hasher.hexdigest() if hasher is not None else None


async def _whole(target: Target, s: aiohttp.ClientSession, op: str, rng: random.Random) -> tuple[int, int, str | None]:
    f = rng.choice(list(target.files.values()))
    if op == "blob" and target.hoard:
        url = f"{target.base}/v1/blobs/{f.blake3}"
    elif op == "blob":
        url = f"{target.base}/{target.repo}/resolve/{target.commit}/{f.path}"
    else:
        url = f"{target.base}/{target.repo}/resolve/main/{f.path}"
    verify = f.size <= VERIFY_ALWAYS or rng.randrange(VERIFY_EVERY) == 0
    status, n, digest = await _fetch(s, url, verify)
    if status != 200 or n != f.size:
        return status, n, f"{op} {f.path}: {status}, {n} of {f.size} bytes"
    return status, n, None if digest in (None, f.blake3) else f"{op} {f.path}: wrong bytes"


async def _cold(target: Target, s: aiohttp.ClientSession, cold: ColdSupply) -> tuple[int, int, str | None] | None:
    item = cold.take()
    if item is None:
        return None
    path, seed = item
    status, n, digest = await _fetch(s, target.base + path, True)
    if status != 200 or n != cold.size:
        return status, n, f"cold {path}: {status}, {n} of {cold.size} bytes"
    return status, n, None if digest == _content(seed, cold.size).blake3 else f"cold {path}: wrong bytes"


async def _range(target: Target, s: aiohttp.ClientSession, rng: random.Random) -> tuple[int, int, str | None]:
    f = target.files[target.big]
    length = rng.randrange(64 * KiB, 1 * MiB)
    start = rng.randrange(0, f.size - length)
    url = f"{target.base}/{target.repo}/resolve/{target.commit}/{f.path}"
    async with s.get(url, headers={"Range": f"bytes={start}-{start + length - 1}"}) as resp:
        _headers_arrived()
        status, body = resp.status, await resp.read()
    if status != 206 or body != _content(f.seed, start + length).read(start, start + length):
        return status, len(body), f"range {start}+{length}: {status}, {len(body)} bytes"
    return status, len(body), None


async def _head(target: Target, s: aiohttp.ClientSession, rng: random.Random) -> tuple[int, int, str | None]:
    f = rng.choice(list(target.files.values()))
    async with s.head(f"{target.base}/{target.repo}/resolve/main/{f.path}", allow_redirects=True) as resp:
        _headers_arrived()
        status, length = resp.status, resp.headers.get("Content-Length")
    if status != 200 or (length is not None and int(length) != f.size):
        return status, 0, f"head {f.path}: {status}, Content-Length {length}"
    return status, 0, None


async def _one(target: Target, s: aiohttp.ClientSession, op: str, rng: random.Random, cold: ColdSupply) -> Sample:
    """One request of kind ``op``, timed and checked; its sample (never raises)."""
    started = time.perf_counter()
    _HEADERS_AT.pop(asyncio.current_task(), None)
    try:
        got = await _cold(target, s, cold) if op == "cold" else None
        if op == "cold" and got is None:
            op = "hit"  # the supply is refilling: a hit instead
        if got is None:
            if op in ("hit", "blob"):
                got = await _whole(target, s, op, rng)
            elif op == "range":
                got = await _range(target, s, rng)
            else:
                got = await _head(target, s, rng)
        status, nbytes, error = got
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        status, nbytes, error = 0, 0, f"{op}: {type(exc).__name__}: {exc}"
    done = time.perf_counter()
    ttfb = _HEADERS_AT.pop(asyncio.current_task(), done) - started
    return Sample(op, status, done - started, ttfb, nbytes, time.monotonic(), error)


def _content(seed: str, size: int) -> Any:
    from tests.fakes.content import Content

    return Content(seed, size)


async def _fast_client(target: Target, s: aiohttp.ClientSession, seed: int, mix: Mix, cold: ColdSupply,
                       until: float) -> None:
    rng = random.Random(seed)
    names, weights = mix.ops()
    while time.monotonic() < until:
        op = rng.choices(names, weights)[0]
        target.samples.append(await _one(target, s, op, rng, cold))


async def _slow_get(target: Target) -> Sample:
    """One slow read: a raw socket with a 4 KiB receive buffer, SLOW_STEP every SLOW_PAUSE."""
    f = target.files[target.slow]
    url = urlsplit(target.base)
    started = time.perf_counter()
    status, n, error, ttfb = 0, 0, None, 0.0
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    writer = None
    try:
        await asyncio.get_running_loop().sock_connect(sock, (url.hostname, url.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=SLOW_STEP)
        path = f"/{target.repo}/resolve/{target.commit}/{f.path}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        ttfb = time.perf_counter() - started
        status = int(head.split()[1])
        hasher = blake3.blake3()
        while n < f.size:
            block = await reader.read(min(SLOW_STEP, f.size - n))
            if not block:
                break
            hasher.update(block)
            n += len(block)
            await asyncio.sleep(SLOW_PAUSE)
        if status != 200 or n != f.size or hasher.hexdigest() != f.blake3:
            error = f"slow {f.path}: {status}, {n} of {f.size} bytes" + (" (wrong bytes)" if n == f.size else "")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        error = f"slow: {type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()
    return Sample("slow", status, time.perf_counter() - started, ttfb, n, time.monotonic(), error)


async def _slow_client(target: Target, until: float) -> None:
    while time.monotonic() < until:
        target.samples.append(await _slow_get(target))


def run_load(target: Target, *, clients: int, slow: int, seconds: float, mix: Mix, cold: ColdSupply,
             seed: int = 1) -> list[Sample]:
    """Run ``clients`` fast clients (one keep-alive pool) and ``slow`` slow readers for
    ``seconds``; every request's sample is appended to ``target.samples`` and returned.
    Slow readers finish the read they are in, so the run may end a little later."""
    async def run() -> None:
        until = time.monotonic() + seconds
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        conn = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
        # identity: the fake origin gzips text for clients that accept it; hoard never does,
        # and the lengths are checked against the files' sizes
        async with aiohttp.ClientSession(timeout=timeout, connector=conn, read_bufsize=_READ_BUF,
                                         auto_decompress=False, headers={"Accept-Encoding": "identity"}) as s:
            await asyncio.gather(
                *(_fast_client(target, s, seed * 1000 + i, mix, cold, until) for i in range(clients)),
                *(_slow_client(target, until) for _ in range(slow)),
            )

    first = len(target.samples)
    asyncio.run(run())
    return target.samples[first:]
