"""Committed chunks kept in memory: hashed without a disk read, streamed without one.

A chunk is written to its partial with O_DIRECT (:mod:`hoard.store.directio`), so its bytes
are not in the page cache: reading them back is a real disk read. While a file fills, its
committed chunks' buffers stay here instead:

* the hash cursor (:meth:`Partial._advance_hash`) takes the next chunk in file order from
  here (no ``pread``, no second checksum: its xxh3 was computed from this very buffer);
* readers that lag behind the fill (a client slower than the origin) copy their bytes from
  here, before and after the file is published.

Memory is bounded twice: per file (``limit`` buffers, set by the fetch core from
``--origin-connections``) and per process (:data:`BUDGET`). When a new chunk finds no room,
the lowest-numbered chunk already hashed gives its place up; chunks below ``floor`` (which
the fetch core raises as its furthest reader moves on) are let go once hashed. A buffer is
never returned to the pool while the hasher holds it (``pin``), so no other chunk can be
written into bytes being hashed.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable

from .directio import POOL

__all__ = ["Budget", "BUDGET", "ChunkMemory"]


class Budget:
    """A process-wide count of chunk buffers held, so that many files filling or read at
    random cannot grow memory without bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)


#: chunk buffers kept for hashing and lagging readers, per process (8 MiB each by default)
BUDGET = Budget(48)


class ChunkMemory:
    """The committed chunks of one partial still in memory. Thread-safe."""

    def __init__(self, chunk_size: int, size: int, limit: int = 8) -> None:
        self.chunk_size = chunk_size
        self.size = size
        #: buffers kept at most for this file
        self.limit = limit
        #: chunks below this are let go once hashed (no reader will come back for them)
        self.floor = 0
        #: chunks below this are hashed (the partial's hash cursor)
        self.hashed = 0
        #: called (from the hashing thread) each time the hash cursor moves on
        self.on_hashed: Callable[[], None] | None = None
        self._bufs: dict[int, mmap.mmap] = {}
        self._pinned: set[int] = set()
        self._closed = False
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bufs)

    def keep(self, index: int, buf: mmap.mmap) -> bool:
        """Take ``buf`` (chunk ``index``'s bytes); False if there is no room (the buffer then
        went back to the pool). Ownership passes here either way."""
        with self._lock:
            if not self._closed and index >= min(self.floor, self.hashed) and index not in self._bufs:
                if len(self._bufs) >= self.limit:
                    self._evict_one_locked()
                if len(self._bufs) < self.limit and BUDGET.take():
                    self._bufs[index] = buf
                    return True
        POOL.put(buf)
        return False

    def read(self, offset: int, size: int) -> memoryview | None:
        """Bytes [offset, offset + size) within one kept chunk (clipped to it), or None.

        A view of the buffer, not a copy: a kept chunk's bytes never change, and the pool
        does not reuse a buffer while a view of it is alive (:class:`BufferPool`)."""
        index = offset // self.chunk_size
        with self._lock:
            buf = self._bufs.get(index)
            if buf is None:
                return None
            start = offset - index * self.chunk_size
            stop = min(start + size, min(self.chunk_size, self.size - index * self.chunk_size))
            with memoryview(buf) as whole:
                return whole[start:stop]

    def has(self, index: int) -> bool:
        return index in self._bufs

    def pin(self, index: int) -> mmap.mmap | None:
        """Chunk ``index``'s buffer for the hasher, held until :meth:`unpin`; None if gone."""
        with self._lock:
            buf = self._bufs.get(index)
            if buf is not None:
                self._pinned.add(index)
            return buf

    def unpin(self, index: int, hashed: int) -> None:
        """The hasher is done with ``index``; ``hashed`` chunks are now hashed."""
        with self._lock:
            self._pinned.discard(index)
            moved = hashed > self.hashed
            self.hashed = max(self.hashed, hashed)
            if self._closed:
                self._drop_locked(index)
            self._trim_locked()
        if moved and self.on_hashed is not None:
            self.on_hashed()

    def keep_from(self, index: int) -> None:
        """Readers no longer need chunks below ``index``: let them go once hashed."""
        with self._lock:
            if index > self.floor:
                self.floor = index
                self._trim_locked()

    def close(self) -> None:
        """Give every buffer back (those the hasher holds when it lets go)."""
        with self._lock:
            self._closed = True
            for index in list(self._bufs):
                if index not in self._pinned:
                    self._drop_locked(index)

    # -- under the lock ----------------------------------------------------------------------

    def _drop_locked(self, index: int) -> None:
        buf = self._bufs.pop(index, None)
        if buf is not None:
            BUDGET.give()
            POOL.put(buf)

    def _trim_locked(self) -> None:
        for index in [i for i in self._bufs if i < min(self.floor, self.hashed) and i not in self._pinned]:
            self._drop_locked(index)

    def _evict_one_locked(self) -> None:
        """Make room: let the lowest-numbered hashed chunk go."""
        done = [i for i in self._bufs if i < self.hashed and i not in self._pinned]
        if done:
            self._drop_locked(min(done))
