"""Any HTTP(S) file as an origin: the ``url`` source.

Names: ``url/<host>[:<port>]/<seg1>/<seg2>/.../<file>`` is ``https://<host>[:<port>]/<seg1>/
<seg2>/.../<file>`` (``http://`` with ``--insecure-http``, for tests and intranets). The owner
is ``host[:port]``, the repo the first path segment, the path the rest, so the mount shows
``url/<host>/<seg1>/.../<file>`` as the URL reads. A URL with a single path segment
(``https://example.com/model.pt``) has the repo ``-``, meaning the root:
``url/example.com/-/model.pt`` (and ``url/h/-/a/b`` is ``https://h/a/b``, the same file as
``url/h/a/b``). Segments are the URL's path segments as written: characters a URL cannot
hold are percent-encoded, ``%XX`` escapes pass as they are. Query strings are not part of
addresses: a ``?`` or ``#`` in an address is a character of the path (sent as ``%3F``,
``%23``), so URLs that need a query (signed URLs) cannot be named.

Each repo has one revision, ``latest``, which only grows: this source cannot list a
directory, so a file is looked up (:meth:`URLSource.stat`) the first time it is asked for,
with ``HEAD`` (or ``GET bytes=0-0`` where ``HEAD`` is refused), following redirects:

* the size comes from ``Content-Length`` (``Content-Range``); the whole file's sha256 from
  ``Repr-Digest``, ``Digest`` or ``x-amz-checksum-sha256`` (:mod:`._url_headers`). With one,
  the identity is ``sha256:<hex>`` and the bytes are verified before anything is published
  (so a URL serving a Hub LFS file's content shares its blob); bytes that contradict it are
  refused;
* without one, the identity is ``url:<url>@<ETag | Last-Modified | size>``, verified by its
  length only (``meta["unverified"]`` says why); once a fetch is complete and published, the
  sha256 of those bytes becomes the entry's expected hash at its next revalidation, so a later
  fetch of the same version is checked against the first;
* ``meta["revalidate"]`` holds the validators: the catalog asks again after the refs TTL
  with ``If-None-Match`` / ``If-Modified-Since``; a 304 keeps the entry, a changed file
  becomes a new entry with a new identity (the old blob stays until gc). While the origin is
  down the last answer serves.

Bytes are read with ranged ``GET``\\s through the shared range reader, guarded by
``If-Match`` / ``If-Unmodified-Since`` so a file that changes while its chunks are fetched
fails (412) instead of being stitched together. An origin without ``Accept-Ranges: bytes``
(``meta["no_ranges"]``) is read as one stream shared by the chunk reads (:mod:`._url_stream`).
No credential is ever sent: a client's token for this source and every other source's token
stay here. 429 and 5xx are transient (retried), 404/410 not found, 401/403 access denied.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urljoin

from hoard.store.address import Address
from hoard.store.errors import (
    AccessDenied,
    EntryNotFound,
    InvalidAddress,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
    RevisionNotFound,
)
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry
from hoard.store.sources import SourceInfo
from hoard.store.untrusted import is_hex

from ..httpbase import TRANSIENT_STATUSES, Reply
from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from ..reader import REDIRECTS
from . import BuildContext, Setting, SourceSpec
from ._url_headers import (
    URLFacts,
    conditional_headers,
    guard_headers,
    read_facts,
    url_identity,
    validators_of,
)
from ._url_stream import SharedStreams

__all__ = ["URLSource", "SPEC", "url_error", "origin_url", "ROOT_REPO", "REVISION"]

#: the repo segment that stands for the URL's root (a URL with one path segment)
ROOT_REPO = "-"
#: the one revision of every repo of this source
REVISION = "latest"
#: why a file without a digest is verified by its length only (``meta["unverified"]``)
NO_DIGEST = "the origin sent no sha-256 digest: verified by its length only until a first complete fetch"
#: where the expected hash of a file without a digest came from, once known
FIRST_FETCH = "the sha256 of its first complete fetch"

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?")
#: characters of a URL path segment sent as they are (RFC 3986 pchar, plus '%' of an escape)
_PCHAR = "!$&'()*+,;=:@%-._~"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_HOPS = 10
_HASH_BLOCK = 1 << 20


def _host(owner: str) -> str:
    """``host[:port]`` checked: a DNS name, an IPv4 address or a bracketed IPv6 one, and a
    port 1-65535. Anything else (``user@host``, a second colon) is no origin."""
    m = _HOST_PORT.fullmatch(owner)
    if m is not None:
        host, port = m.group(1), m.group(2)
        ok = port is None or 0 < int(port) < 65536
        if host.startswith("["):
            try:
                ok = ok and isinstance(ipaddress.ip_address(host[1:-1]), ipaddress.IPv6Address)
            except ValueError:
                ok = False
        else:
            ok = ok and _DNS.fullmatch(host) is not None
        if ok:
            return owner.lower()
    raise InvalidAddress(f"url/{owner[:100]}: the owner of a url address is <host>[:<port>]")


def origin_url(addr: Address, scheme: str = "https") -> str:
    """The URL an address names (see the module docstring)."""
    segments = [] if addr.repo == ROOT_REPO else [addr.repo]
    segments += addr.path.split("/") if addr.path else []
    if not segments:
        raise InvalidAddress(f"{addr}: a url address names a file: url/<host>/{ROOT_REPO}/<file>")
    path = "/".join(_BAD_ESCAPE.sub("%25", quote(seg, safe=_PCHAR)) for seg in segments)
    return f"{scheme}://{_host(addr.owner)}/{path}"


def url_error(reply: Reply, what: str) -> Exception:
    """Translate an origin's error answer into the hoard error tree."""
    status = reply.status
    if status in (404, 410):
        return EntryNotFound(f"{what}: not found at the origin (HTTP {status})", REVISION)
    if status in (401, 403, 407):
        return AccessDenied(
            f"{what}: the origin refused access (HTTP {status}); hoard sends no credentials to url origins", 403
        )
    if status == 412:
        return OriginError(f"{what}: the file changed at the origin while it was being fetched; "
                           "it is looked up again after the refs TTL", status)
    if status == 416:
        return RangeNotSatisfiable(f"{what}: the origin refused the byte range")
    if status in TRANSIENT_STATUSES:
        after = reply.headers.get("Retry-After")
        later = f" (retry after {after}s)" if after else ""
        return OriginUnavailable(f"{what}: the origin answered {status}{later}")
    return OriginError(f"{what}: the origin answered HTTP {status}", status)


def _entry(url: str, facts: URLFacts) -> TreeEntry:
    """The tree entry of a file the origin described."""
    meta: dict[str, Any] = {"url": url, "revalidate": validators_of(facts)}
    if not facts.ranges:
        meta["no_ranges"] = True
    if facts.sha256 is not None:
        meta["digest"] = facts.digest_from
        return TreeEntry.of_hash(facts.size, ExpectedHash("sha256", facts.sha256), meta)
    reason = NO_DIGEST + (f" (ignored: {'; '.join(facts.ignored)})" if facts.ignored else "")
    meta["unverified"] = reason
    return TreeEntry(facts.size, url_identity(url, facts), meta, None)


def _with_sha256(entry: TreeEntry, sha256: str) -> TreeEntry:
    """``entry`` verified from now on by the sha256 of its first complete fetch."""
    meta = {k: v for k, v in entry.meta.items() if k != "unverified"} | {"expected_from": FIRST_FETCH}
    return TreeEntry(entry.size, entry.identity, meta, ExpectedHash("sha256", sha256))


class URLSource(Source):
    name = "url"
    #: a URL origin is asked with no credentials: what it serves is public
    may_restrict = False

    def __init__(self, ctx: BuildContext) -> None:
        self.http = ctx.http
        self.reader = ctx.reader
        self.store = ctx.store
        self.scheme = "http" if ctx.settings.get("insecure_http") else "https"
        self.streams = SharedStreams()

    def url_of(self, addr: Address) -> str:
        return origin_url(addr, self.scheme)

    def origin_of(self, addr: Address) -> str:
        """One origin per host: a host that is down says nothing of another (the catalog
        tracks origin health under this name)."""
        return f"{self.name}/{addr.owner.lower()}"

    # -- names ------------------------------------------------------------------------------

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        raise RevisionNotFound(f"{addr.repo_key}@{ref}: url repos have one revision, {REVISION!r}")

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        """The names looked up so far (none at first): the repo's one revision."""
        _host(addr.owner)
        stored = self.store.get_snapshot(addr.repo_key, resolved.revision)
        return stored if stored is not None else Snapshot({}, int(time.time()), {})

    async def stat(
        self, addr: Address, resolved: ResolvedRef, creds: Credentials, previous: TreeEntry | None = None
    ) -> TreeEntry:
        """Look the file up at the origin (conditionally, when revalidating ``previous``)."""
        url = self.url_of(addr)
        what = str(addr)
        conditional = conditional_headers(previous.meta.get("revalidate") if previous else None)
        reply = await self._probe(url, what, conditional)
        if reply.status == 304 and previous is not None:
            return await self._learnt(previous)
        if reply.status == 304:
            raise OriginError(f"{what}: the origin answered 304 to an unconditional request")
        entry = _entry(url, read_facts(reply.status, reply.headers, what))
        known = previous.expected if previous is not None and previous.identity == entry.identity else None
        if entry.expected is None and known is not None:
            return _with_sha256(entry, known.hex)  # the same version: held to its first fetch
        return await self._learnt(entry)

    async def _probe(self, url: str, what: str, conditional: dict[str, str]) -> Reply:
        """``HEAD`` following redirects (transient answers retried by the HTTP client), or a
        ``GET`` of one byte where ``HEAD`` is refused. No credential goes anywhere."""
        headers = {"Accept-Encoding": "identity", "x-amz-checksum-mode": "ENABLED", **conditional}
        reply = await self.http.follow("HEAD", url, headers=headers)
        if reply.status in (400, 405, 501):
            reply = await self._get_probe(url, headers | {"Range": "bytes=0-0"}, what)
            if reply.status == 416 and reply.headers.get("Content-Range", "").strip() == "bytes */0":
                return reply  # an empty file
        if reply.status in (200, 206, 304):
            return reply
        raise url_error(reply, what)

    async def _get_probe(self, url: str, headers: dict[str, str], what: str) -> Reply:
        """The status and headers of ``GET bytes=0-0``, following redirects; the body is not
        read (an origin that ignores Range would send all of it)."""
        for _ in range(_MAX_HOPS):
            async with self.http.stream(url, headers=headers) as resp:
                if resp.status in REDIRECTS and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                body = b"" if resp.status in (200, 206) else await resp.content.read(4096)
                return Reply(resp.status, resp.headers, body, url)
        raise OriginError(f"{what}: too many redirects")

    async def _learnt(self, entry: TreeEntry) -> TreeEntry:
        """``entry`` with the sha256 of its published content as expected hash, when a complete
        fetch of this identity is in the store (hashing the blob once if the store did not
        record that sha256 when it published it)."""
        if entry.expected is not None:
            return entry
        sha = await asyncio.get_running_loop().run_in_executor(None, self._published_sha256, entry)
        return entry if sha is None else _with_sha256(entry, sha)

    def _published_sha256(self, entry: TreeEntry) -> str | None:
        """(In a thread.) The sha256 of the blob ``entry.identity`` names, if it is complete."""
        b3 = self.store.resolve(entry.identity)
        if b3 is None:
            return None
        with self.store.index.read() as txn:
            names = self.store.index.aliases_of(b3, txn)
        for name in names:
            if name.startswith("sha256:") and is_hex(name[7:], 64):
                return name[7:]
        fd = self.store.open_blob(b3)
        if fd is None:
            return None
        try:
            h, pos = hashlib.sha256(), 0
            while data := os.pread(fd, _HASH_BLOCK, pos):
                h.update(data)
                pos += len(data)
        finally:
            os.close(fd)
        if pos != entry.size:
            return None
        self.store.add_aliases([f"sha256:{h.hexdigest()}"], b3)
        return h.hexdigest()

    # -- bytes ------------------------------------------------------------------------------

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) by ranged GET; from one shared stream for an origin without
        ranges. Guarded against a file that changes meanwhile; never with credentials."""
        url = self.url_of(rf.address)
        what = str(rf.address)
        key = (self.name, rf.identity, url)
        guard = guard_headers(rf.meta.get("revalidate"))

        def get(s: int, e: int) -> AsyncIterator[bytes]:
            return self.reader.read(url, s, e, translate=url_error, what=what, key=key, headers=guard)

        if rf.meta.get("no_ranges"):
            blocks = self.streams.read(key, rf.size, start, end, lambda: get(0, rf.size))
        else:
            blocks = get(start, end)
        async for block in blocks:
            yield block

    async def close(self) -> None:
        await self.streams.aclose()


def _build(ctx: BuildContext) -> Source:
    return URLSource(ctx)


SPEC = SourceSpec(
    info=SourceInfo(
        "url",
        default_ref=REVISION,
        refs_move=False,
        listable=False,
        revision_id=REVISION,
        summary="any HTTP(S) file: url/<host>[:<port>]/<path> (url/<host>/-/<file> for a file at the root)",
    ),
    settings=(
        Setting(
            "insecure_http",
            False,
            "Fetch url/... addresses over plain http:// instead of https:// (tests, intranets).",
            kind=bool,
        ),
    ),
    build=_build,
    order=60,
)
