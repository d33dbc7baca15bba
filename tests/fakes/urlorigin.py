"""`FakeURLOrigin`: any HTTP origin a model file may be fetched from by plain URL, with the
integrity and caching metadata real servers send — or fail to send.

Files live at arbitrary paths on two origins (``origin`` and ``other``, so redirects can be
cross-origin), each with its own switches, set by `put`:

* ``digests`` — any of ``"repr-digest"`` (RFC 9530 ``Repr-Digest: sha-256=:<b64>:``, of the
  whole representation, so the same on a 206), ``"content-digest"`` (RFC 9530, of the bytes
  of *this* message: a 206 carries the digest of its part), ``"digest"`` (RFC 3230
  ``Digest: SHA-256=<b64>``), ``"amz"`` (S3 ``x-amz-checksum-sha256: <b64>``, sent only when
  the request says ``x-amz-checksum-mode: ENABLED`` and not on ranged reads; with
  ``amz_parts=N`` it is S3's composite checksum of N parts, ``<b64>-N``, which is *not* the
  sha256 of the object), ``"goog"`` (GCS: two ``x-goog-hash`` fields, ``crc32c=<b64>`` and
  ``md5=<b64>`` — GCS never sends sha256) or ``"goog-composite"`` (crc32c only, as for
  composed objects); none by default;
* ``etag``/``last_modified`` validators and conditionals (``If-None-Match`` → 304, else
  ``If-Modified-Since`` → 304; ``If-Range``); ``ranges=False`` answers a ``Range`` with 200
  and the whole body, without ``Accept-Ranges``;
* ``lying_digest`` — every digest header describes other bytes of the same size.

`change` replaces a file's bytes (new ETag, later Last-Modified); `redirect` and
`redirect_chain` add 301/302/303/307/308 hops, relative or absolute, across both origins;
`throttle` answers 429 with ``Retry-After`` (a `tests.fakes.wire.Fault`); every other
`FakeServers.fault` switch applies too. Unknown paths answer 404.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from .content import Content
from .github.servers import FakeServers, Fault, Route

__all__ = ["DIGEST_KINDS", "FakeURLOrigin", "URLFile", "crc32c"]

DIGEST_KINDS = ("repr-digest", "content-digest", "digest", "amz", "goog", "goog-composite")
_BASE_TIME = 1_690_000_000.0


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as GCS reports it (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass
class URLFile:
    content: Content
    digests: tuple[str, ...] = ()
    etag: bool = True
    last_modified: bool = True
    ranges: bool = True
    lying_digest: bool = False
    amz_parts: int | None = None
    content_type: str = "application/octet-stream"
    version: int = 1

    @property
    def modified(self) -> float:
        return _BASE_TIME + 3600 * self.version

    @property
    def etag_value(self) -> str:
        if any(k.startswith(("amz", "goog")) for k in self.digests):
            return f'"{hashlib.md5(self.content.read()).hexdigest()}"'  # S3 and GCS: md5
        return f'"{self.content.sha256[:16]}-{self.version}"'

    def described(self) -> Content:
        """The bytes the digest headers describe (other bytes when lying)."""
        if self.lying_digest:
            return Content(b"lying-digest\0" + self.content.sha256.encode(), self.content.size)
        return self.content


class FakeURLOrigin(FakeServers):
    """``with FakeURLOrigin() as o: url = o.put("/m/w.bin", data, digests=("repr-digest",))``."""

    ORIGINS = ("origin", "other")
    THREAD_NAME = "fake-url-origin"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._files: dict[tuple[str, str], URLFile] = {}
        self._redirects: dict[tuple[str, str], tuple[int, str]] = {}

    def route(self, origin: str) -> Route:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(origin, request)

        return handle

    @property
    def url(self) -> str:
        return self.origin_url("origin")

    @property
    def other_url(self) -> str:
        return self.origin_url("other")

    # -- seeding -------------------------------------------------------------------------

    def put(self, path: str, data: bytes | str | Content, *, origin: str = "origin", **switches: Any) -> str:
        """Serve ``data`` at ``path`` on ``origin`` with `URLFile` switches; returns the URL."""
        unknown = set(switches.get("digests", ())) - set(DIGEST_KINDS)
        assert not unknown, f"unknown digest kinds {unknown}"
        with self._lock:
            self._files[(origin, path)] = URLFile(Content.of(data), **switches)
        return self.origin_url(origin) + path

    def file(self, path: str, origin: str = "origin") -> URLFile:
        with self._lock:
            return self._files[(origin, path)]

    def change(self, path: str, data: bytes | str | Content | None = None, *, origin: str = "origin") -> Content:
        """New bytes at ``path`` (default: other bytes of the same size): the ETag changes and
        Last-Modified moves one hour later. Returns the new content."""
        with self._lock:
            f = self._files[(origin, path)]
            f.version += 1
            f.content = Content.of(data) if data is not None else Content(f"{path}#v{f.version}", f.content.size)
            return f.content

    def redirect(self, path: str, location: str, status: int = 302, *, origin: str = "origin") -> str:
        """``path`` answers ``status`` with ``Location: location`` (relative or absolute)."""
        assert status in (301, 302, 303, 307, 308)
        with self._lock:
            self._redirects[(origin, path)] = (status, location)
        return self.origin_url(origin) + path

    def redirect_chain(self, path: str, target: str, statuses: Iterable[int] = (301, 302, 307)) -> str:
        """A chain of hops starting at ``path`` on ``origin``, alternating between the two
        origins, ending at the absolute URL ``target``. Returns the first URL."""
        hops = list(statuses)
        origins = ["origin" if i % 2 == 0 else "other" for i in range(len(hops))]
        paths = [path] + [f"/hop{i}{path}" for i in range(1, len(hops))]
        for i, status in enumerate(hops):
            nxt = target if i + 1 == len(hops) else self.origin_url(origins[i + 1]) + paths[i + 1]
            self.redirect(paths[i], nxt, status, origin=origins[i])
        return self.origin_url("origin") + path

    def throttle(self, path: str, *, times: int = 1, retry_after: int = 1, origin: str | None = None) -> Fault:
        """The next ``times`` requests for ``path`` answer 429 with ``Retry-After``."""
        return self.fault(path_contains=path, origin=origin, times=times, status=429, retry_after=retry_after)

    # -- answering -----------------------------------------------------------------------

    async def _handle(self, origin: str, request: web.Request) -> web.StreamResponse:
        path = unquote(request.raw_path.partition("?")[0])
        with self._lock:
            hop = self._redirects.get((origin, path))
            f = self._files.get((origin, path))
        if hop is not None:
            status, location = hop
            return await self.send(request, status, {"Location": location, "Content-Type": "text/plain"}, b"")
        if f is None or request.method not in ("GET", "HEAD"):
            status = 404 if f is None else 405
            return await self.send(request, status, {"Content-Type": "text/plain"}, b"Not Found\n")
        with self._lock:
            content, etag, modified = (
                f.content,
                f.etag_value if f.etag else None,
                f.modified if f.last_modified else None,
            )
            described = f.described()
            digests, parts = f.digests, f.amz_parts
        headers: CIMultiDict[str] = CIMultiDict({"Content-Type": f.content_type})
        amz_on = request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
        self._digest_headers(headers, digests, described, parts, amz_on)

        def on_range(out: CIMultiDict[str], start: int, end: int) -> None:
            out.popall("x-amz-checksum-sha256", None)
            out.popall("x-amz-checksum-type", None)
            if "content-digest" in digests:
                part = hashlib.sha256(described.read(start, end)).digest()
                out["Content-Digest"] = f"sha-256=:{_b64(part)}:"

        return await self.serve(
            request, content, headers, etag=etag, last_modified=modified, ranges=f.ranges, on_range=on_range
        )

    @staticmethod
    def _digest_headers(
        out: CIMultiDict[str], kinds: tuple[str, ...], data: Content, parts: int | None, amz_on: bool
    ) -> None:
        sha = bytes.fromhex(data.sha256)
        for kind in kinds:
            if kind in ("repr-digest", "content-digest"):
                out.add(kind.title(), f"sha-256=:{_b64(sha)}:")
            elif kind == "digest":
                out.add("Digest", f"SHA-256={_b64(sha)}")
            elif kind == "amz" and amz_on:
                if parts:
                    step = -(-data.size // parts)
                    joined = b"".join(
                        hashlib.sha256(data.read(i, i + step)).digest() for i in range(0, data.size, step)
                    )
                    out.add("x-amz-checksum-sha256", f"{_b64(hashlib.sha256(joined).digest())}-{parts}")
                    out.add("x-amz-checksum-type", "COMPOSITE")
                else:
                    out.add("x-amz-checksum-sha256", _b64(sha))
                    out.add("x-amz-checksum-type", "FULL_OBJECT")
            elif kind in ("goog", "goog-composite"):
                raw = data.read()
                out.add("x-goog-hash", f"crc32c={_b64(crc32c(raw).to_bytes(4, 'big'))}")
                if kind == "goog":
                    out.add("x-goog-hash", f"md5={_b64(hashlib.md5(raw).digest())}")
                else:
                    out.add("x-goog-component-count", "2")
                out.add("x-goog-stored-content-length", str(data.size))
                out.add("x-goog-storage-class", "STANDARD")
