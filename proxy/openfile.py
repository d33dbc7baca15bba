"""A remote file open in the fetch core, and the in-flight fetch of one of its chunks.

:class:`OpenFile` is shared by every reader of a file in this process. Besides its partial
(while filling) or blob (after), it knows where its streaming readers are: the furthest one
(the *lead*) paces a whole-file fill (:meth:`FetchCore._pace <hoard.proxy.fetch.FetchCore>`),
and the slowest one still following (at most :data:`BEHIND` chunks behind the lead) tells the
partial's memory which committed chunks it may let go. :class:`ChunkFetch` is the one fetch of
one chunk that every reader of that chunk waits on. Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hoard.store.partial import ChunkWriter, Partial

from .origin import RemoteFile

__all__ = ["BEHIND", "STALE", "ChunkFetch", "OpenFile", "call_soon"]

#: chunks behind the furthest reader whose buffers stay in memory for the readers following it
BEHIND = 8
#: a furthest reader that made no progress for this long no longer holds a fill back
STALE = 1.0


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    """``fn`` on ``loop`` (from a worker thread); nothing once the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass


class ChunkFetch:
    """The in-flight fetch of one chunk; readers watch ``writer.landed`` grow."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.writer: ChunkWriter | None = None
        self.done = False
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()

    def notify(self) -> None:
        old, self._progress = self._progress, asyncio.Event()
        old.set()

    async def wait(self) -> None:
        await self._progress.wait()


class OpenFile:
    """A remote file opened in this process: its partial while filling, its blob after."""

    def __init__(self, rf: RemoteFile, partial: Partial | None, b3: str | None) -> None:
        self.rf = rf
        self.partial = partial
        self.b3 = b3
        self.refs = 0
        self.error: BaseException | None = None
        self.fill: asyncio.Task[str] | None = None
        self.blob_fd: int | None = None
        #: the one verification-and-publish of this file in flight
        self.finalizing: asyncio.Task[str | None] | None = None
        #: chunk commits still running in threads (the partial stays open for them)
        self.commits = 0
        #: the last transient failure, and until when (loop time) reads fail with it at once
        self.failure: BaseException | None = None
        self.failed_until = 0.0
        #: the furthest chunk a reader has reached, and when a reader last made progress
        #: (loop time): a whole-file fill runs at most a window ahead of it (see _pace)
        self.lead = -1
        self.lead_at = float("-inf")
        self._lead_moved = asyncio.Event()
        #: where each streaming reader is: reader id -> (chunk, loop time of its last bytes)
        self._readers: dict[int, tuple[int, float]] = {}
        #: set once the first chunk fetched for this file got its first bytes (or ended): the
        #: chunks after it wait for that, so the origin answers the reader's chunk first
        self.first_bytes = asyncio.Event()

    def progress(self, reader: int, pos: int, chunk_size: int) -> None:
        """Reader ``reader`` got bytes up to ``pos``: move the lead, and let the partial's
        memory go below the slowest reader still following (up to ``BEHIND`` chunks behind
        the lead: one further back reads from disk rather than hold the others' memory)."""
        now = asyncio.get_running_loop().time()
        index = pos // chunk_size
        self._readers[reader] = (index, now)
        self.lead_at = now
        active = [i for i, at in self._readers.values() if now - at < STALE]
        lead = max(active)
        if lead != self.lead:
            moved = lead > self.lead
            self.lead = lead
            if moved:
                self.nudge()
        if self.partial is not None:
            self.partial.memory.keep_from(max(min(active), lead - BEHIND))

    def nudge(self) -> None:
        """Wake a paced fill: the lead moved, or a chunk was committed (and hashed on)."""
        old, self._lead_moved = self._lead_moved, asyncio.Event()
        old.set()

    def leave(self, reader: int) -> None:
        """A streaming reader is done (or gone)."""
        self._readers.pop(reader, None)

    async def lead_moved(self, timeout: float) -> None:
        """Until the lead moves or a chunk is committed (:meth:`nudge`), or ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._lead_moved.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def check_failure(self) -> None:
        if self.failure is not None and asyncio.get_running_loop().time() < self.failed_until:
            raise self.failure

    @property
    def size(self) -> int:
        return self.rf.size

    @property
    def identity(self) -> str:
        return self.rf.identity
