"""Room kept back on the store's filesystem, so that removing things works when it is full.

LMDB never updates a page in place: even a transaction that only deletes writes new pages,
and the data file may have to grow for them. On a filesystem at 100 % such a commit fails
with ENOSPC, so without help ``hoard gc`` and ``hoard rm`` could not free anything. The store
therefore keeps ``index/reserve``, a file of :data:`RESERVE_SIZE` really allocated bytes
(``posix_fallocate``, not a sparse file). A removal whose commit fails for space deletes the
reserve and commits again; once the removal has freed files, the reserve is made again if
the filesystem has room for it and a margin. Nothing in the index refers to the file, so any
process may delete or recreate it at any time.
"""

from __future__ import annotations

import errno
import os

from .layout import Layout

__all__ = ["RESERVE_SIZE", "ensure_reserve", "release_reserve"]

#: 4 MiB: a removal batch (256 blobs with their aliases and pins) dirties well under 1 MiB of
#: index pages; four times that covers the freelist and branch pages LMDB rewrites with them.
RESERVE_SIZE = 4 << 20

#: the reserve is made only when the filesystem keeps at least this much free beside it, so
#: making it never pushes a nearly full filesystem over the edge
_MARGIN = 2 * RESERVE_SIZE


def ensure_reserve(layout: Layout) -> bool:
    """Create the reserve if it is missing and space allows; True if it exists afterwards.

    Best effort: a filesystem that refuses (read-only, full, no fallocate) just leaves the
    store without a reserve, which only matters when the disk fills up.
    """
    path = layout.reserve
    if path.exists():
        return True
    try:
        st = os.statvfs(layout.index)
        if st.f_bavail * st.f_frsize < RESERVE_SIZE + _MARGIN:
            return False
        tmp = layout.tmp_file("reserve")  # a leftover of a killed process is a stray gc removes
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _allocate(fd)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            return False
        os.close(fd)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def _allocate(fd: int) -> None:
    """Allocate RESERVE_SIZE real bytes: fallocate where supported, zeros written otherwise."""
    try:
        os.posix_fallocate(fd, 0, RESERVE_SIZE)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    block = bytes(1 << 20)
    for _ in range(RESERVE_SIZE // len(block)):
        os.write(fd, block)


def release_reserve(layout: Layout) -> bool:
    """Delete the reserve to make room; True if there was one to delete."""
    try:
        os.unlink(layout.reserve)
    except FileNotFoundError:
        return False
    return True
