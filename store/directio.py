"""Direct (O_DIRECT) writes of large aligned blocks, with a buffered fallback.

On the disks hoard runs on, writing 8-16 MiB blocks with O_DIRECT and then ``fdatasync`` is
about twice as fast as buffered writes plus ``fdatasync`` (measured 1.6-2.0 vs 0.7-1.2 GiB/s),
and it keeps freshly fetched bytes from crowding the page cache. O_DIRECT wants the buffer,
the offset and the length aligned to the device block; buffers here come from ``mmap`` (page
aligned), offsets are chunk starts, and a short tail is padded and the file truncated back.
Filesystems without O_DIRECT (tmpfs) get ordinary writes.
"""

from __future__ import annotations

import mmap
import os
import threading

__all__ = ["ALIGN", "aligned_buffer", "open_direct", "write_at", "BufferPool", "POOL"]

ALIGN = 4096


def aligned_buffer(size: int) -> mmap.mmap:
    """A zeroed, page-aligned buffer of at least ``size`` bytes (rounded up to ALIGN)."""
    return mmap.mmap(-1, max(ALIGN, -(-size // ALIGN) * ALIGN))


def open_direct(path: str | os.PathLike[str], flags: int) -> tuple[int, bool]:
    """Open for writing with O_DIRECT if the filesystem allows; returns (fd, direct)."""
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        try:
            return os.open(path, flags | direct | os.O_CLOEXEC, 0o644), True
        except OSError:
            pass
    return os.open(path, flags | os.O_CLOEXEC, 0o644), False


def write_at(fd: int, direct: bool, buf: mmap.mmap, length: int, offset: int, file_size: int) -> None:
    """Write ``buf[:length]`` at ``offset``; with O_DIRECT pad to ALIGN and trim the file after.

    ``file_size`` is the size the file must have; a padded write past it is truncated back.
    """
    view = memoryview(buf)
    if direct and offset % ALIGN == 0:
        padded = -(-length // ALIGN) * ALIGN
        done = 0
        try:
            while done < padded:
                done += os.pwrite(fd, view[done:padded], offset + done)
        finally:
            view.release()
        if offset + padded > file_size:
            os.ftruncate(fd, file_size)
        return
    try:
        done = 0
        while done < length:
            done += os.pwrite(fd, view[done:length], offset + done)
    finally:
        view.release()


class BufferPool:
    """Reuses chunk buffers: a fresh 8 MiB mmap costs 2,048 page faults on first touch."""

    def __init__(self, max_idle: int = 8) -> None:
        self.max_idle = max_idle
        self._free: dict[int, list[mmap.mmap]] = {}
        self._idle: set[int] = set()  # ids of pooled buffers: a buffer is never pooled twice
        self._lock = threading.Lock()

    def get(self, size: int) -> mmap.mmap:
        cap = max(ALIGN, -(-size // ALIGN) * ALIGN)
        with self._lock:
            free = self._free.get(cap)
            if free:
                buf = free.pop()
                self._idle.discard(id(buf))
                return buf
        return mmap.mmap(-1, cap)

    def put(self, buf: mmap.mmap) -> None:
        if buf.closed:
            return
        with self._lock:
            if id(buf) in self._idle:
                raise AssertionError("a chunk buffer was returned to the pool twice")
            free = self._free.setdefault(len(buf), [])
            if len(free) < self.max_idle:
                free.append(buf)
                self._idle.add(id(buf))
                return
        buf.close()


#: the process-wide pool of chunk buffers
POOL = BufferPool()
