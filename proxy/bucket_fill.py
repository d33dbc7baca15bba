"""Fills in progress, shared through the bucket: a fleet that misses the same file at once
costs the origin one copy.

The blob tier alone (:mod:`.bucket_tier`) helps only once a blob is complete and uploaded;
nodes that start cold together would each go to the origin. So the first node to miss a
file *leads* its fill and the others *follow* it:

* **Lease.** ``fills/<kind>/<hex>/lease`` is created with a conditional write
  (``If-None-Match: *``); the node whose write succeeds leads. Its content, ``{"node",
  "size", "piece", "beat", "done"}``, is rewritten every ``beat`` seconds while the fill
  makes progress (bytes arriving, the blob being verified or uploaded); after ``idle``
  seconds without any, the leader lets the lease go (deletes it).
* **Pieces.** The leader reads from the origin as usual and copies what arrives into pieces
  of ``piece`` bytes (its chunk size), each written as ``fills/<kind>/<hex>/<n>`` once
  complete (an object appears whole or not at all). A slow bucket slows the leader (two
  pieces in flight at most) rather than growing its memory.
* **Followers** read the pieces with ranged GETs as they appear, waiting for missing ones
  while the lease lives. A lease whose ``beat`` has not changed for ``stale`` seconds (by
  the follower's own clock: no clock is compared across nodes), or that is gone, makes the
  follower stop waiting (:class:`Lapsed`) and plan again: the blob may be complete by then,
  or the follower takes the lease over, or it reads from the origin itself.
* **The end.** Once the leader's blob, digests and aliases are in the bucket, it deletes
  the pieces and the lease. Followers verify every file against its upstream hash like any
  origin's bytes, and do not upload it again (the leader does).

A bucket lifecycle rule expiring ``fills/`` after a day removes what a dead leader leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from hoard.store.errors import HoardError, NotFound

from .bucket import Bucket

__all__ = ["FillBoard", "Lease", "Following", "Lapsed"]

log = logging.getLogger("hoard.bucket")


class Lapsed(HoardError):
    """The fill being followed stopped (its lease is gone or stale), or a piece failed."""


@dataclass
class Following:
    """Another node's fill of one file, as a follower sees it."""

    prefix: str
    size: int
    piece: int
    node: str
    beat: int = -1
    #: local monotonic time the beat last changed
    seen: float = field(default_factory=time.monotonic)


class Lease:
    """This node's lead of one fill: copies the origin's bytes into pieces."""

    def __init__(self, board: FillBoard, prefix: str, size: int, piece: int) -> None:
        self.board = board
        self.prefix = prefix
        self.size = size
        self.piece = piece
        self.done = 0
        self.broken = False
        self.released = False
        #: set while the blob is being verified and uploaded (progress without bytes)
        self.busy = False
        self._buffers: dict[int, bytearray] = {}
        self._sent: set[int] = set()
        self._slots = asyncio.Semaphore(2)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last = time.monotonic()
        self._beats = 0
        self._beat_task: asyncio.Task[None] | None = None

    @property
    def pieces(self) -> int:
        return max(1, -(-self.size // self.piece))

    def doc(self) -> bytes:
        return json.dumps({"node": self.board.node, "size": self.size, "piece": self.piece,
                           "beat": self._beats, "done": self.done}).encode()

    def start(self) -> None:
        self._beat_task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        """Rewrite the lease while the fill makes progress; let it go after ``idle`` s without."""
        while not self.released:
            await asyncio.sleep(self.board.beat)
            if self.busy or time.monotonic() - self._last < self.board.idle:
                self._beats += 1
                try:
                    await self.board.bucket.put(self.prefix + "lease", self.doc())
                except HoardError as exc:
                    log.info("blob store: renewing the lease of %s: %s", self.prefix, exc)
            else:
                log.info("blob store: fill %s made no progress for %.0fs; lease released", self.prefix, self.board.idle)
                await self.release(clean=False)

    async def feed(self, pos: int, block: bytes) -> None:
        """Bytes [pos, pos+len) of the file just arrived from the origin."""
        self._last = time.monotonic()
        if self.broken or self.released:
            return
        view = memoryview(block)
        while view:
            index = pos // self.piece
            start = index * self.piece
            length = min(self.piece, self.size - start)
            take = view[: start + length - pos]
            buf = self._buffers.get(index)
            if buf is None and pos == start and index not in self._sent:
                buf = self._buffers[index] = bytearray()
            if buf is not None and pos <= start + len(buf):
                del buf[pos - start :]  # a resumed read may start again a little earlier
                buf += take
                if len(buf) == length:
                    del self._buffers[index]
                    await self._send(index, bytes(buf))
            pos += len(take)
            view = view[len(take) :]

    async def _send(self, index: int, data: bytes) -> None:
        self._sent.add(index)
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._put_piece(index, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put_piece(self, index: int, data: bytes) -> None:
        try:
            await self.board.bucket.put(f"{self.prefix}{index}", data)
            self.done += 1
        except HoardError as exc:
            log.warning("blob store: piece %d of %s failed (%s); followers go to the origin", index, self.prefix, exc)
            self.broken = True
            await self.release(clean=False)
        finally:
            self._slots.release()

    async def release(self, *, clean: bool) -> None:
        """Stop leading: delete the lease (and with ``clean``, the pieces: the blob is up)."""
        if self.released:
            return
        self.released = True
        if self._beat_task is not None and self._beat_task is not asyncio.current_task():
            self._beat_task.cancel()
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=30)
        names = [f"{self.prefix}{i}" for i in sorted(self._sent)] if clean else []
        for name in [*names, self.prefix + "lease"]:
            try:
                await self.board.bucket.delete(name)
            except HoardError as exc:
                log.info("blob store: removing %s: %s", name, exc)
        self.board.forget(self)


class FillBoard:
    """Leases and pieces of the fills this node leads or follows."""

    def __init__(self, bucket: Bucket, *, piece: int, beat: float = 2.0, idle: float = 10.0, stale: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket = bucket
        self.piece = piece
        self.beat = beat
        self.idle = idle
        self.stale = stale
        self.clock = clock
        #: names this process (a node may run several: its mount, its serve) among leaders
        self.node = uuid.uuid4().hex
        self.leases: dict[str, Lease] = {}
        self._lapsed: dict[str, int] = {}

    @staticmethod
    def prefix(alias_key: str) -> str:
        """``aliases/sha256/<hex>`` -> ``fills/sha256/<hex>/``."""
        return "fills/" + alias_key.removeprefix("aliases/") + "/"

    def forget(self, lease: Lease) -> None:
        if self.leases.get(lease.prefix) is lease:
            del self.leases[lease.prefix]

    async def claim(self, alias_key: str, size: int) -> Lease | Following | None:
        """Lead the fill of a file (a new :class:`Lease`) or follow the node that does; None
        if the bucket could not say (the caller reads from the origin)."""
        prefix = self.prefix(alias_key)
        mine = self.leases.get(prefix)
        if mine is not None and not mine.released:
            return mine
        lease = Lease(self, prefix, size, self.piece)
        try:
            if await self.bucket.put(prefix + "lease", lease.doc(), if_absent=True):
                return self._lead(lease)
            doc = await self.bucket.get_json(prefix + "lease", limit=4096)
            if not doc:
                return None  # released just now: plan again next time
            beat = doc.get("beat")
            if self._lapsed.get(prefix) == beat:
                # seen stale before: take it over (two nodes doing so both just fetch)
                await self.bucket.put(prefix + "lease", lease.doc())
                self._lapsed.pop(prefix, None)
                return self._lead(lease)
        except HoardError as exc:
            log.info("blob store: lease of %s: %s", prefix, exc)
            return None
        piece, node = doc.get("piece"), doc.get("node")
        if doc.get("size") != size or not isinstance(piece, int) or piece <= 0 or not isinstance(node, str):
            return None
        return Following(prefix, size, piece, node, beat if isinstance(beat, int) else -1)

    def _lead(self, lease: Lease) -> Lease:
        self.leases[lease.prefix] = lease
        lease.start()
        return lease

    async def follow(self, fill: Following, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a file from the pieces of another node's fill,
        waiting for pieces not there yet. Raises :class:`Lapsed` when that fill stopped."""
        pos = start
        while pos < end:
            index = pos // fill.piece
            base = index * fill.piece
            upto = min(end, base + fill.piece, fill.size)
            try:
                async for block in self.bucket.read(f"{fill.prefix}{index}", pos - base, upto - base):
                    pos += len(block)
                    yield block
            except NotFound:
                await self._wait(fill, index)
            except HoardError as exc:
                raise Lapsed(f"{fill.prefix}{index}: {exc}") from None

    async def _wait(self, fill: Following, index: int) -> None:
        """Wait for a piece while its leader is alive (the lease's beat keeps changing)."""
        delay = 0.05
        checked = self.clock()
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            if await self.bucket.head(f"{fill.prefix}{index}") is not None:
                return
            if self.clock() - checked < 1.0:
                continue
            checked = self.clock()
            doc = await self.bucket.get_json(fill.prefix + "lease", limit=4096)
            if not doc:
                raise Lapsed(f"{fill.prefix}: the fill ended")
            beat = doc.get("beat")
            if beat != fill.beat:
                fill.beat, fill.seen = beat if isinstance(beat, int) else -1, self.clock()
            elif self.clock() - fill.seen > self.stale:
                self._lapsed[fill.prefix] = beat if isinstance(beat, int) else -1
                raise Lapsed(f"{fill.prefix}: its leader made no progress for {self.stale:.0f}s")

    async def close(self) -> None:
        for lease in list(self.leases.values()):
            await lease.release(clean=False)
