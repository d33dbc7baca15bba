"""Cross-process locks: open-file-description byte-range locks and a store-wide gc lock.

Chunk claims use Linux OFD locks (``F_OFD_SETLK``) on byte ranges of a partial's lock file
descriptor. Unlike classic POSIX locks they belong to the open file description, not the
process, so closing an unrelated descriptor of the same file does not drop them; like them,
the kernel releases them when the holder dies, even by SIGKILL. A killed filler therefore
never leaves a chunk claimed forever.

Offsets far beyond any file size name non-data locks of a partial:

* :data:`LIVE_OFFSET` — held shared by every process that has the partial open; gc takes it
  exclusive to prove nobody is filling the partial before deleting it.
* :data:`FINALIZE_OFFSET` — held exclusive by the process verifying and publishing it.

The gc lock (``flock`` on ``index/gc.lock``) is held shared while a blob is published and
exclusive while gc deletes blobs, so a blob is never deleted between another process's
"this content exists" check and its use of the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "try_lock",
    "unlock",
    "wait_lock",
    "LIVE_OFFSET",
    "FINALIZE_OFFSET",
    "gc_lock",
]

LIVE_OFFSET = 1 << 62
FINALIZE_OFFSET = (1 << 62) + 1

# struct flock on Linux (x86_64 and aarch64): short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (must be 0 for OFD locks), with native alignment and padding.
_FLOCK = struct.Struct("@hhqqi4x")


def _ofd(fd: int, cmd: int, kind: int, start: int, length: int) -> None:
    fcntl.fcntl(fd, cmd, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))


def try_lock(fd: int, start: int, length: int = 1, exclusive: bool = True) -> bool:
    """Take a byte-range lock without waiting; False if another description holds it."""
    try:
        _ofd(fd, fcntl.F_OFD_SETLK, fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK, start, length)
    except BlockingIOError:
        return False
    except PermissionError:  # EACCES: some kernels report conflicts this way
        return False
    return True


def unlock(fd: int, start: int, length: int = 1) -> None:
    _ofd(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, start, length)


def wait_lock(
    fd: int, start: int, length: int = 1, exclusive: bool = True, timeout: float | None = None
) -> bool:
    """Take a lock, polling with backoff so the wait can end (timeout) and stays interruptible."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while not try_lock(fd, start, length, exclusive):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    return True


@contextlib.contextmanager
def gc_lock(path: Path, exclusive: bool) -> Iterator[None]:
    """Hold the store-wide gc lock (shared: publishing; exclusive: gc deleting)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
