"""One download shared by the chunk reads of a file whose origin serves no byte ranges.

The fetch core asks an adapter for one chunk at a time (``read(rf, start, end)``), several
chunks of a file at once. Against an origin that ignores ``Range`` each such read would be a
download of the whole file up to its chunk: quadratic in the number of chunks. Instead, every
read of one file goes through one *pipe*: a single ``GET`` of the whole file, read in order
and handed from one chunk read to the next.

* A read of ``[start, end)`` takes the pipe when it is idle at or before ``start`` and no
  other waiting read starts earlier (so the next chunk in file order goes first); bytes
  before ``start`` are read past, after a few turns of the event loop in which reads of
  them may still arrive (the fetch core starts the chunks after a reader's position before
  the reader's own). It holds the pipe while it streams, and gives it back where
  it stopped (bytes read from the origin and not handed out are kept for the next read).
* A read that starts before the pipe's position (a resume after a dropped body, a reader
  going back) gets a pipe of its own from the start of the file: correct, just not shared.
  So does a read whose pipe has made no progress for ``stall`` seconds (its holder hangs).
* When a pipe fails (a dropped body), the reads after the point where it stopped wait up to
  ``resume_wait`` seconds for the resume of the read that held it (the fetch core resumes a
  chunk from what landed, after a short backoff), so the new pipe serves that first.
* An idle pipe is closed after ``idle`` seconds (it holds one of the host's connections,
  ``--origin-connections``), at the end of the file, or when it failed (the next read opens
  a new one and the fetch core resumes from what landed).
* The range reader's blocks are views of one buffer, valid until the next block is pulled:
  a pipe pulls only once the last one is handed out entirely, and its readers copy what they
  get before asking for more (the fetch core does).

All of it runs on the proxy's one event loop; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable

__all__ = ["SharedStreams"]

Opener = Callable[[], AsyncIterator[bytes | memoryview]]
#: loop turns a read that would read past bytes waits for reads of those bytes to show up
_PATIENCE = 8


class _Pipe:
    """One GET of a whole file, read in order."""

    def __init__(self, source: AsyncIterator[bytes | memoryview], size: int, now: float, *, busy: bool = False
                 ) -> None:
        self.source = source
        self.size = size
        self.pos = 0  # file offset of rest[0]
        self.rest: bytes | memoryview = b""  # read from the origin, not handed out yet
        self.busy = busy
        self.dead = False
        self.failed = False  # died of an error: its holder will likely resume where it stopped
        self.moved_at = now
        self.waiting: list[int] = []  # starts of the reads waiting for it
        self.freed = asyncio.Event()
        self.expiry: asyncio.TimerHandle | None = None

    async def _pull(self) -> bytes | memoryview:
        """The next block of the body; b"" at its end. A failure kills the pipe."""
        try:
            return await anext(self.source)  # type: ignore[arg-type]
        except StopAsyncIteration:
            self.dead = True
            return b""
        except Exception:
            self.dead = self.failed = True
            raise
        except BaseException:
            self.dead = True
            raise

    async def take(self, start: int, end: int) -> AsyncIterator[bytes | memoryview]:
        """Bytes [start, end) (``start >= pos``), reading past what lies before ``start``."""
        loop = asyncio.get_running_loop()
        while self.pos < end:
            if not self.rest:
                self.rest = await self._pull()
                self.moved_at = loop.time()
                if not self.rest:
                    return  # the body ended: the caller sees a short read and resumes
            n = len(self.rest)
            if self.pos + n <= start:
                self.pos += n
                self.rest = b""
                continue
            lo, hi = max(0, start - self.pos), min(n, end - self.pos)
            block, self.rest = self.rest[lo:hi], self.rest[hi:]
            self.pos += hi
            yield block


class SharedStreams:
    """The pipes of one process, by key (one per file)."""

    def __init__(self, *, idle: float = 5.0, stall: float = 30.0, resume_wait: float = 6.0) -> None:
        self.idle = idle
        self.stall = stall
        self.resume_wait = resume_wait
        self._pipes: dict[Hashable, _Pipe] = {}
        #: where a pipe that failed stopped, and until when its holder's resume is waited for
        self._resumes: dict[Hashable, tuple[int, float]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def read(
        self, key: Hashable, size: int, start: int, end: int, opener: Opener
    ) -> AsyncIterator[bytes | memoryview]:
        """Bytes [start, end) of the file ``key`` of ``size`` bytes; ``opener()`` starts a GET
        of the whole file (an async iterator of its blocks, in order)."""
        if end <= start:
            return
        pipe = await self._acquire(key, size, start, opener)
        try:
            async for block in pipe.take(start, end):
                yield block
        finally:
            self._release(key, pipe)

    async def _acquire(self, key: Hashable, size: int, start: int, opener: Opener) -> _Pipe:
        loop = asyncio.get_running_loop()
        patience = _PATIENCE
        while True:
            pipe = self._pipes.get(key)
            if pipe is None or pipe.dead:
                pipe = self._pipes[key] = _Pipe(opener(), size, loop.time())
            if pipe.pos > start or loop.time() - pipe.moved_at > self.stall:
                return _Pipe(opener(), size, loop.time(), busy=True)  # its own, not shared
            ahead = [*pipe.waiting, *self._resume_before(key, start, loop.time())]
            if not pipe.busy and not any(pipe.pos <= s < start for s in ahead):
                if start == pipe.pos or not patience:
                    pipe.busy = True
                    if pipe.expiry is not None:
                        pipe.expiry.cancel()
                        pipe.expiry = None
                    return pipe
                # it would read past bytes: let reads started in the same breath (the chunks
                # before this one) come first
                patience -= 1
                pipe.waiting.append(start)
                try:
                    await asyncio.sleep(0)
                finally:
                    pipe.waiting.remove(start)
                continue
            wait = self.stall
            if key in self._resumes:
                wait = max(0.0, min(wait, self._resumes[key][1] - loop.time()))
            pipe.waiting.append(start)
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(pipe.freed.wait(), wait)
            finally:
                pipe.waiting.remove(start)

    def _resume_before(self, key: Hashable, start: int, now: float) -> list[int]:
        """Where a failed pipe stopped, if a read starting at ``start`` should let its resume
        go first (the fetch core resumes a dropped chunk after a short backoff); a read at or
        before that point is the resume, and ends the wait."""
        hint = self._resumes.get(key)
        if hint is None:
            return []
        pos, until = hint
        if now >= until or start <= pos:
            del self._resumes[key]
            return []
        return [pos]

    def _release(self, key: Hashable, pipe: _Pipe) -> None:
        """Give a pipe back where it stopped: to the next waiting read, else idle for a while."""
        pipe.busy = False
        shared = self._pipes.get(key) is pipe
        now = asyncio.get_running_loop().time()
        if pipe.failed and pipe.pos < pipe.size:
            if len(self._resumes) > 256:
                self._resumes = {k: v for k, v in self._resumes.items() if v[1] > now}
            self._resumes[key] = (pipe.pos, now + self.resume_wait)
        if not shared or pipe.dead or pipe.pos >= pipe.size:
            if shared:
                del self._pipes[key]
            self._close(pipe)
        elif not pipe.waiting:
            pipe.expiry = asyncio.get_running_loop().call_later(self.idle, self._expire, key, pipe)
        freed, pipe.freed = pipe.freed, asyncio.Event()
        freed.set()

    def _expire(self, key: Hashable, pipe: _Pipe) -> None:
        pipe.expiry = None
        if not pipe.busy and not pipe.waiting and self._pipes.get(key) is pipe:
            del self._pipes[key]
            self._close(pipe)

    def _close(self, pipe: _Pipe) -> None:
        """Close the pipe's GET (in a task: closing an async generator awaits)."""
        pipe.dead = True
        closer = getattr(pipe.source, "aclose", None)
        if closer is None:
            return
        task = asyncio.get_running_loop().create_task(self._quietly(closer()))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _quietly(closing: object) -> None:
        with contextlib.suppress(Exception):
            await closing  # type: ignore[misc]

    async def aclose(self) -> None:
        """Close every pipe (at shutdown)."""
        for key, pipe in list(self._pipes.items()):
            if pipe.expiry is not None:
                pipe.expiry.cancel()
            del self._pipes[key]
            if not pipe.busy:
                self._close(pipe)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
