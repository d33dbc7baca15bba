"""The shared blob tier: what a node keeps in, and takes from, the fleet's bucket.

Layout under the bucket's prefix (every object is immutable once complete, except leases)::

    blobs/<b3>                          a verified blob's bytes, named by BLAKE3
    digests/<b3>                        BLAKE3 of each 1 MiB block of that blob (JSON)
    aliases/<kind>/<hex>                {"b3", "size"} for an upstream hash (sha256, gitsha1)
    trees/<source>/<owner>/<repo>@<revision>.json
                                        an immutable revision's tree, in the /v1/trees shape
    fills/<kind>/<hex>/lease, /<n>      a fill in progress and its pieces (:mod:`.bucket_fill`)

Write order (MUST): ``blobs/`` then ``digests/`` then ``aliases/``: an alias is the promise
that the other two are complete, so a reader that finds an alias and its digests reads the
blob, and a reader that finds anything less treats the blob as absent. A node uploads only
blobs it has verified and published itself.

Reading: :meth:`BucketTier.read` splits a range into ranged GETs of ``segment`` bytes,
``parallel`` in flight, and checks every 1 MiB block against its digest before yielding it.
A block that does not match (a corrupt object, one overwritten with other bytes, a
truncated one) raises :class:`BadCopy`: the caller reports it, ignores the bucket for that
blob and reads from the origin; the copy is rewritten once the node has published the blob.
The digests are as untrusted as the blob: the fetch core still verifies the whole file
against its upstream hash before anything is published.

Privacy: no token is ever written. Content of restricted (private or gated) repos, their
trees and their aliases are written — and looked up — only when the bucket is trusted with
them (``--blob-store-private``); a blob also used by a public repo is public content.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import blake3

from hoard.store.errors import HoardError, IntegrityError, OriginUnavailable
from hoard.store.store import Store
from hoard.store.untrusted import is_hex

from .bucket import Bucket, StoreUnreachable

#: waits between attempts of a background upload that failed transiently
_UPLOAD_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)

__all__ = ["BucketTier", "BucketBlob", "BadCopy", "BLOCK", "bucket_alias"]

log = logging.getLogger("hoard.bucket")

#: the verification block: small enough that a reader waits for little before its first
#: byte, large enough that 1 TiB of blobs needs only 32 MiB of digests
BLOCK = 1 << 20
#: upstream hash kinds that name content, and so may name it in the bucket
_ALIAS_KINDS = {"sha256": 64, "gitsha1": 40}


class BadCopy(IntegrityError):
    """The bucket's copy of a blob does not match its digests (or its recorded size)."""


@dataclass(frozen=True)
class BucketBlob:
    """A complete blob in the bucket, with the digests its blocks must match."""

    b3: str
    size: int
    digests: tuple[bytes, ...]

    def block_digest(self, index: int) -> bytes:
        return self.digests[index]


def bucket_alias(identity: str) -> str | None:
    """``aliases/<kind>/<hex>`` for an identity that is a content hash, else None."""
    kind, _, value = identity.partition(":")
    width = _ALIAS_KINDS.get(kind)
    return f"aliases/{kind}/{value}" if width and is_hex(value, width) else None


def _blocks(size: int) -> int:
    return -(-size // BLOCK)


def _block_digests(data: bytes) -> list[bytes]:
    return [blake3.blake3(data[i : i + BLOCK]).digest() for i in range(0, len(data), BLOCK)]


class BucketTier:
    """The operations the rest of hoard calls on the bucket. Lives on one event loop."""

    def __init__(self, bucket: Bucket, store: Store) -> None:
        self.bucket = bucket
        self.store = store
        self.config = bucket.config
        #: blobs whose bucket copy failed here: not read again, rewritten on the next upload
        self.bad: set[str] = set()
        self._uploads: dict[str, asyncio.Task[None]] = {}
        self._connecting: asyncio.Task[None] | None = None
        #: set by :meth:`close`: an upload waiting to retry gives up at once
        self._closing = False
        #: blobs whose upload waits to retry, and whether the store did not answer at all
        self._backing_off: dict[str, bool] = {}
        #: ranged GETs in flight in the process, first come first served: the chunk a reader
        #: waits for was asked first, so a whole-file fill does not delay its first bytes
        self._gets = asyncio.Semaphore(2 * bucket.config.parallel)

    def start(self) -> None:
        """Connect to the store in the background (inside the running loop)."""
        self._connecting = asyncio.get_running_loop().create_task(self.bucket.connect())

    @property
    def private(self) -> bool:
        return self.config.private

    def may_hold(self, users: Iterable[tuple[str, str, bool]]) -> bool:
        """Whether content with these users (repo, revision, restricted) may be in the bucket:
        some public repo uses it, or the bucket is trusted with private content."""
        found = list(users)
        return self.private or any(not restricted for _, _, restricted in found)

    # -- lookups ----------------------------------------------------------------------------

    async def lookup(self, identity: str, size: int | None = None) -> BucketBlob | None:
        """The complete blob an upstream identity names in the bucket, or None.

        ``b3:`` identities are their own name; ``sha256:``/``gitsha1:`` go through their
        alias object. A blob is complete when its digests are there too and its object has
        the recorded size; one with the wrong size is reported as bad and treated as absent.
        """
        kind, _, value = identity.partition(":")
        if kind == "b3" and is_hex(value, 64):
            b3, recorded = value, size
        else:
            key = bucket_alias(identity)
            if key is None:
                return None
            doc = await self.bucket.get_json(key, limit=4096)
            b3, recorded = doc.get("b3"), doc.get("size")
            if not is_hex(b3, 64) or not isinstance(recorded, int) or (size is not None and recorded != size):
                return None
        if b3 in self.bad:
            return None
        digests, stored = await asyncio.gather(self._digests(b3), self.bucket.head(f"blobs/{b3}"))
        if digests is None or stored is None:
            return None  # an upload not finished (or a node died mid-way): absent for now
        if stored != digests.size or (recorded is not None and recorded != digests.size):
            self.report_bad(b3, f"its object has {stored} bytes, {digests.size} expected")
            return None
        return digests

    async def _digests(self, b3: str) -> BucketBlob | None:
        doc = await self.bucket.get_json(f"digests/{b3}")
        size, hexes = doc.get("size"), doc.get("blake3")
        if doc.get("b3") != b3 or doc.get("block") != BLOCK or not isinstance(size, int) or not isinstance(hexes, str):
            return None
        if len(hexes) != 64 * _blocks(size) or not is_hex(hexes, len(hexes)):
            return None
        return BucketBlob(b3, size, tuple(bytes.fromhex(hexes[i : i + 64]) for i in range(0, len(hexes), 64)))

    def report_bad(self, b3: str, why: str) -> None:
        if b3 not in self.bad:
            log.warning("blob store: %s/blobs/%s is bad (%s): ignored; the origin is asked, and the copy "
                        "will be rewritten", self.config.url, b3, why)
        self.bad.add(b3)

    # -- reading ----------------------------------------------------------------------------

    async def read(self, blob: BucketBlob, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream verified bytes [start, end) of a bucket blob (see the module docstring).

        Raises :class:`BadCopy` for a block that does not match, and other hoard errors when
        the store fails; the bytes yielded before that are good."""
        end = min(end, blob.size)
        if start >= end:
            return
        first = start // BLOCK * BLOCK
        stop = min(-(-end // BLOCK) * BLOCK, blob.size)
        step = max(BLOCK, self.config.segment // BLOCK * BLOCK)
        spans = [(a, min(a + step, stop)) for a in range(first, stop, step)]
        tasks: list[asyncio.Task[bytes]] = []
        loop = asyncio.get_running_loop()
        try:
            for i, (a, b) in enumerate(spans):
                while len(tasks) < min(len(spans), i + self.config.parallel):
                    s = spans[len(tasks)]
                    tasks.append(loop.create_task(self._segment(blob, s[0], s[1])))
                data = await tasks[i]
                lo, hi = max(start, a) - a, min(end, b) - a
                yield data[lo:hi]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _segment(self, blob: BucketBlob, a: int, b: int) -> bytes:
        """Bytes [a, b) (block-aligned) fetched whole and checked against the digests."""
        async with self._gets:
            data = b"".join([part async for part in self.bucket.read(f"blobs/{blob.b3}", a, b)])
        got = await asyncio.to_thread(_block_digests, data)
        for n, digest in enumerate(got):
            if digest != blob.block_digest(a // BLOCK + n):
                raise BadCopy(f"blobs/{blob.b3}: block {a // BLOCK + n} does not match its digest")
        return data

    # -- writing ----------------------------------------------------------------------------

    def upload_later(self, b3: str, aliases: Iterable[str]) -> asyncio.Task[None]:
        """:meth:`upload` in the background, once per blob at a time; failures are logged."""
        running = self._uploads.get(b3)
        if running is not None and not running.done():
            return running
        task = asyncio.get_running_loop().create_task(self._upload_logged(b3, list(aliases)))
        self._uploads[b3] = task
        task.add_done_callback(lambda t: self._uploads.pop(b3, None) if self._uploads.get(b3) is t else None)
        return task

    async def _upload_logged(self, b3: str, aliases: list[str]) -> None:
        """Upload, retrying what S3 calls transient (500, 503 SlowDown, a dropped connection)
        with backoff for about 15 s: the upload is off every reader's path, so patience here
        costs nothing and saves the fleet an origin download."""
        for delay in (*_UPLOAD_BACKOFF, None):
            try:
                await self.upload(b3, aliases)
                return
            except OriginUnavailable as exc:
                # shutting down, a store that does not answer at all is not waited for; one that
                # answers "try again" (500, 503) is, within close()'s bound (a prefetch's upload
                # is what it was run for)
                if delay is None or (self._closing and isinstance(exc, StoreUnreachable)):
                    log.warning("blob store: uploading %s failed: %s", b3, exc)
                    return
                log.info("blob store: uploading %s: %s; again in %.1f s", b3, exc, delay)
                self._backing_off[b3] = isinstance(exc, StoreUnreachable)
                try:
                    await asyncio.sleep(delay)  # close() cancels a task waiting here
                except asyncio.CancelledError:
                    log.warning("blob store: uploading %s failed: %s (given up at shutdown)", b3, exc)
                    raise
                finally:
                    self._backing_off.pop(b3, None)
            except HoardError as exc:
                log.warning("blob store: uploading %s failed: %s", b3, exc)
                return

    async def upload(self, b3: str, aliases: Iterable[str]) -> bool:
        """Put a published local blob, its digests and its aliases in the bucket (in that
        order); True if anything was written. A blob already there with its digests only
        gets the aliases; a bad copy is rewritten; a lost race (another node completed the
        same blob first) is harmless: its bytes are these bytes."""
        info = self.store.blob(b3)
        fd = self.store.open_blob(b3)
        if info is None or fd is None:
            if fd is not None:
                os.close(fd)
            return False  # gone (gc, rm) since it was published
        try:
            rewrite = b3 in self.bad
            stored = None if rewrite else await self.bucket.head(f"blobs/{b3}")
            have = None if stored != info.size else await self._digests(b3)
            if have is None or have.size != info.size:
                digests: list[bytes] = []
                if stored != info.size:
                    parts = self._parts(fd, info.size, self.bucket.part_size(info.size), digests)
                    await self.bucket.upload(f"blobs/{b3}", parts, if_absent=not rewrite and stored is None)
                else:
                    digests = await asyncio.to_thread(_file_digests, fd, info.size)
                doc = {"b3": b3, "size": info.size, "block": BLOCK, "blake3": b"".join(digests).hex()}
                await self.bucket.put(f"digests/{b3}", json.dumps(doc).encode())
                self.bad.discard(b3)
            await self._put_aliases(b3, info.size, aliases)
            return True
        finally:
            os.close(fd)

    async def _parts(self, fd: int, size: int, part: int, digests: list[bytes]) -> AsyncIterator[bytes]:
        """The blob file in parts (read in a thread), noting each block's digest on the way."""
        pos = 0
        while pos < size:
            data = await asyncio.to_thread(os.pread, fd, min(part, size - pos), pos)
            if not data:
                raise IntegrityError(f"blob shorter than its index entry at {pos}")
            digests.extend(await asyncio.to_thread(_block_digests, data))
            pos += len(data)
            yield data

    async def _put_aliases(self, b3: str, size: int, aliases: Iterable[str]) -> None:
        body = json.dumps({"b3": b3, "size": size}).encode()
        for alias in dict.fromkeys(aliases):
            key = bucket_alias(alias)
            if key is not None:
                await self.bucket.put(key, body)

    # -- trees ------------------------------------------------------------------------------

    @staticmethod
    def tree_key(repo_key: str, revision: str) -> str:
        return f"trees/{repo_key}@{quote(revision, safe='')}.json"

    async def get_tree(self, repo_key: str, revision: str) -> dict[str, Any] | None:
        """An immutable revision's tree document, or None."""
        doc = await self.bucket.get_json(self.tree_key(repo_key, revision))
        return doc or None

    async def put_tree(self, repo_key: str, revision: str, doc: dict[str, Any]) -> None:
        """Store an immutable revision's tree (the first writer wins: it never changes)."""
        await self.bucket.put(self.tree_key(repo_key, revision), json.dumps(doc, sort_keys=True).encode(), if_absent=True)

    def stop_retrying(self) -> None:
        """Shutting down: an upload to a store that does not answer at all is not tried
        again, and one waiting to retry after such a failure gives up now rather than hold
        the node's shutdown through its backoff; uploads the store asked to retry (500, 503)
        go on within :meth:`close`'s bound."""
        self._closing = True
        for b3, unreachable in list(self._backing_off.items()):
            waiting = self._uploads.get(b3)
            if waiting is not None and unreachable:
                waiting.cancel()

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
            self._connecting = None
        self.stop_retrying()
        tasks = list(self._uploads.values())
        if tasks:
            await asyncio.wait(tasks, timeout=30)  # an upload under way may finish
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.bucket.close()


def _file_digests(fd: int, size: int) -> list[bytes]:
    out: list[bytes] = []
    for pos in range(0, size, BLOCK):
        out.append(blake3.blake3(os.pread(fd, min(BLOCK, size - pos), pos)).digest())
    return out
