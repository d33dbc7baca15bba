"""HTTP clients that read a response into nothing and time it: aiohttp (large reads) and curl.

Both report bytes, wall time and time to first body byte (TTFB). The aiohttp client uses a
4 MiB read buffer (aiohttp's default is 64 KiB, which would make the client the bottleneck),
follows redirects (the fake Hub sends LFS files to its CDN), and can run several downloads
concurrently on one loop.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .common import BenchError

__all__ = ["Fetch", "aio_fetch", "aio_fetch_many", "aio_range", "curl_fetch", "have_curl", "hf_download"]

_READ_BUF = 4 << 20


@dataclass(frozen=True)
class Fetch:
    nbytes: int
    seconds: float
    ttfb: float  # request sent -> first body byte
    status: int
    #: bodies that ended early and were resumed with a Range request (as huggingface_hub does)
    resumes: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        return self.nbytes / self.seconds if self.seconds > 0 else float("inf")


async def _get(session: aiohttp.ClientSession, url: str, expect: int | None, t0: float | None = None,
               resume: int = 0) -> Fetch:
    """GET ``url`` into nothing; a body cut short is resumed from where it stopped, at most
    ``resume`` times (each cut is recorded in ``Fetch.resumes``), else it raises."""
    t0 = time.perf_counter() if t0 is None else t0
    first = None
    n = 0
    status = 0
    cuts: list[str] = []
    while True:
        headers = {"Range": f"bytes={n}-"} if n else None
        try:
            async with session.get(url, headers=headers) as resp:
                if resp.status not in (200, 206):
                    body = (await resp.read())[:300]
                    raise BenchError(f"GET {url} -> {resp.status}: {body!r}")
                status = status or resp.status
                while True:
                    block = await resp.content.readany()
                    if not block:
                        break
                    if first is None:
                        first = time.perf_counter()
                    n += len(block)
            break
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            if len(cuts) >= resume or expect is None:
                raise BenchError(f"GET {url}: body cut at {n} of {expect} bytes: {exc}") from None
            cuts.append(f"cut at {n}")
    dt = time.perf_counter() - t0
    if expect is not None and n != expect:
        raise BenchError(f"GET {url}: got {n} bytes, expected {expect}")
    return Fetch(n, dt, (first or time.perf_counter()) - t0, status, tuple(cuts))


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        read_bufsize=_READ_BUF,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
        connector=aiohttp.TCPConnector(limit=64, force_close=True),
    )


def aio_fetch(url: str, expect: int | None = None, *, resume: int = 0) -> Fetch:
    """One GET on a fresh connection."""

    async def run() -> Fetch:
        async with _session() as s:
            return await _get(s, url, expect, resume=resume)

    return asyncio.run(run())


def aio_fetch_many(urls: Sequence[str], expect: int | None = None, *, resume: int = 0) -> tuple[float, list[Fetch]]:
    """Start every GET at once; returns (wall time until the last finished, each fetch)."""

    async def run() -> tuple[float, list[Fetch]]:
        async with _session() as s:
            t0 = time.perf_counter()
            got = await asyncio.gather(*(_get(s, u, expect, t0, resume) for u in urls))
            return time.perf_counter() - t0, list(got)

    return asyncio.run(run())


def aio_range(url: str, start: int, length: int) -> tuple[Fetch, bytes]:
    """One ``Range: bytes=start-(start+length-1)`` GET on a fresh connection (redirects
    followed); returns the timing and the body."""

    async def run() -> tuple[Fetch, bytes]:
        async with _session() as s:
            t0 = time.perf_counter()
            first = None
            body = bytearray()
            async with s.get(url, headers={"Range": f"bytes={start}-{start + length - 1}"}) as resp:
                if resp.status not in (200, 206):
                    raise BenchError(f"GET {url} (Range) -> {resp.status}")
                while True:
                    block = await resp.content.readany()
                    if not block:
                        break
                    first = first or time.perf_counter()
                    body += block
                    if resp.status == 200 and len(body) >= start + length:
                        break  # Range ignored: stop at what was asked
            dt = time.perf_counter() - t0
            data = bytes(body[start : start + length]) if resp.status == 200 else bytes(body)
            return Fetch(len(body), dt, (first or time.perf_counter()) - t0, resp.status), data

    return asyncio.run(run())


def have_curl() -> bool:
    return shutil.which("curl") is not None


def curl_fetch(url: str, expect: int | None = None, timeout: float = 300) -> Fetch:
    """``curl -o /dev/null``, timed by curl itself (excludes process start)."""
    fmt = "%{size_download} %{time_total} %{time_starttransfer} %{http_code}"
    out = subprocess.run(["curl", "-sS", "-L", "-o", "/dev/null", "-w", fmt, url],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise BenchError(f"curl {url}: {out.stderr.strip()}")
    size, total, ttfb, code = out.stdout.split()
    n = int(float(size))
    if code not in ("200", "206") or (expect is not None and n != expect):
        raise BenchError(f"curl {url}: HTTP {code}, {n} bytes")
    return Fetch(n, float(total), float(ttfb), int(code))


_HF_DOWNLOAD = """\
import json, os, sys, time
from huggingface_hub import hf_hub_download
repo, name, rev = sys.argv[1:4]
t0 = time.perf_counter()
path = hf_hub_download(repo, name, revision=rev)
print(json.dumps({"seconds": time.perf_counter() - t0, "size": os.path.getsize(path)}))
"""


def hf_download(endpoint: str, repo: str, name: str, commit: str, home: Path, size: int,
                *, disable_xet: bool = False) -> float:
    """Seconds a stock ``hf_hub_download`` (fresh ``HF_HOME``, in a subprocess) takes for one
    file; ``disable_xet`` when the endpoint is the fake Hub itself, which advertises Xet."""
    from .servers import clean_env  # servers imports this module

    env = clean_env() | {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                         "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if disable_xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    try:
        out = subprocess.run([sys.executable, "-c", _HF_DOWNLOAD, repo, name, commit],
                             capture_output=True, text=True, env=env, timeout=600)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if out.returncode != 0:
        raise BenchError(f"hf_hub_download via {endpoint} failed: {out.stderr.strip()[-800:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if got["size"] != size:
        raise BenchError(f"hf_hub_download via {endpoint}: {got['size']} bytes, expected {size}")
    return float(got["seconds"])

