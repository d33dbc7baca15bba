"""Publishing verified files as blobs, and ingesting local files in one pass.

The publish order is the store's first invariant (DESIGN.md §2): the caller has written every
byte, synced it, checked length and upstream hash and computed BLAKE3; :func:`publish` then
makes the file read-only, links it to ``blobs/<b3[:2]>/<b3>``, syncs the directory, and only
then indexes the blob and its aliases, all under the shared gc lock so gc cannot delete a blob
between "it exists" and "it is indexed". Identical content found already published is not
stored twice: the new copy is simply dropped.
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .directio import aligned_buffer, open_direct, write_at
from .errors import StoreFull
from .hashing import ContentHasher
from .index import Index
from .layout import Layout, fsync_dir
from .locks import gc_lock
from .records import BlobRecord, ExpectedHash

__all__ = ["publish", "ingest_file", "ingest_bytes"]

Progress = Callable[[int], None]


def publish(
    layout: Layout,
    index: Index,
    src: Path,
    b3: str,
    size: int,
    aliases: Iterable[str] = (),
    *,
    keep_src: bool = False,
) -> bool:
    """Make the verified file ``src`` the blob ``b3`` and index it with ``aliases``.

    ``src`` is linked, not copied; unless ``keep_src`` it is made read-only first and unlinked
    afterwards (after the index commit). With ``keep_src`` (a partial, which other processes
    may still open by its own name) the caller unlinks it and makes it read-only. Returns True
    if ``src`` became the blob, False if identical content was already published.
    """
    if not keep_src:
        os.chmod(src, 0o444)
    final = layout.blob_path(b3)
    now = int(time.time())
    linked = False
    with gc_lock(layout.gc_lock, exclusive=False):
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(final.parent.parent)
        try:
            os.link(src, final)
            fsync_dir(final.parent)
            linked = True
        except FileExistsError:
            # Same content published before (or linked by an earlier attempt that died before
            # indexing it): a file at blobs/<b3> only ever holds bytes whose BLAKE3 is b3.
            pass
        with index.write() as txn:
            rec = index.get_blob(b3, txn)
            if rec is None:
                rec = BlobRecord(size=size, created=now, last_access=now)
                index.put_blob_in(txn, b3, rec)
            for alias in aliases:
                index.put_alias_in(txn, alias, b3)
    if not keep_src:
        try:
            os.unlink(src)
        except FileNotFoundError:
            pass
    return linked


# -- ingest -----------------------------------------------------------------------------------

_BLOCK = 16 << 20  # large reads: BLAKE3 parallelises within a block, syscalls stay few
_INFLIGHT = 3  # blocks between the reader/hasher and the writer


class _Writer(threading.Thread):
    """Writes blocks handed over by the hasher, so hashing and writing overlap on two cores."""

    def __init__(self, fd: int, direct: bool, size: int) -> None:
        super().__init__(daemon=True, name="hoard-ingest-writer")
        self.fd = fd
        self.direct = direct
        self.size = size
        self.q: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue(maxsize=_INFLIGHT)
        self.free: queue.Queue[mmap.mmap] = queue.Queue()
        self.error: BaseException | None = None
        self.offset = 0

    def run(self) -> None:
        while (item := self.q.get()) is not None:
            buf, n = item
            try:
                if self.error is None:
                    write_at(self.fd, self.direct, buf, n, self.offset, self.size)
                    self.offset += n
            except BaseException as exc:  # reported to the caller after the loop
                self.error = exc
            self.free.put(buf)


def ingest_file(
    layout: Layout,
    index: Index,
    src: Path,
    *,
    expected: ExpectedHash | None = None,
    aliases: Iterable[str] = (),
    progress: Progress | None = None,
) -> tuple[str, int]:
    """Copy ``src`` into the store, hashing while writing; returns (b3, size).

    The source is read once: each block is hashed by this thread and written (O_DIRECT where
    the filesystem allows) by another.
    """
    size = os.stat(src).st_size
    hasher = ContentHasher(size, expected)
    tmp = layout.tmp_file("ingest")
    in_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    out_fd, direct = open_direct(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    writer = _Writer(out_fd, direct, size)
    writer.start()
    try:
        try:
            os.posix_fadvise(in_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
        for _ in range(_INFLIGHT + 1):
            writer.free.put(aligned_buffer(min(_BLOCK, max(size, 1))))
        while True:
            buf = writer.free.get()
            n = _read_full(in_fd, buf)
            if n == 0:
                break
            with memoryview(buf) as view:
                hasher.update(view[:n])
            writer.q.put((buf, n))
            if progress is not None:
                progress(n)
        writer.q.put(None)
        writer.join()
        if writer.error is not None:
            raise writer.error
        b3 = hasher.finish()
        os.fsync(out_fd)
    except OSError as exc:
        _abort(writer, tmp)
        if exc.errno == errno.ENOSPC:
            raise StoreFull(f"no space left while adding {src}") from exc
        raise
    except BaseException:
        _abort(writer, tmp)
        raise
    finally:
        os.close(in_fd)
        os.close(out_fd)
    aliases = [*aliases, *hasher.learned_aliases()]
    if expected is not None and expected.alias:
        aliases.append(expected.alias)
    _publish_or_drop(layout, index, tmp, b3, size, aliases)
    return b3, size


def _publish_or_drop(layout: Layout, index: Index, tmp: Path, b3: str, size: int, aliases: list[str]) -> None:
    """Publish a temporary file; if that fails (a full index, say), delete it at once rather
    than leave its space taken until gc finds it stale an hour later."""
    try:
        publish(layout, index, tmp, b3, size, aliases)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read_full(fd: int, buf: mmap.mmap) -> int:
    """Fill ``buf`` from ``fd`` (short only at end of file); O_DIRECT writes want whole blocks."""
    total = 0
    with memoryview(buf) as view:
        while total < len(buf):
            n = os.readv(fd, [view[total:]])
            if n == 0:
                break
            total += n
    return total


def _abort(writer: _Writer, tmp: Path) -> None:
    if writer.is_alive():
        writer.error = writer.error or RuntimeError("aborted")
        writer.q.put(None)
        writer.join()
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def ingest_bytes(
    layout: Layout,
    index: Index,
    data: bytes,
    *,
    expected: ExpectedHash | None = None,
    aliases: Iterable[str] = (),
) -> tuple[str, int]:
    """Store a small in-memory object (metadata files, tests); returns (b3, size)."""
    hasher = ContentHasher(len(data), expected)
    hasher.update(data)
    b3 = hasher.finish()
    aliases = [*aliases, *hasher.learned_aliases()]
    if expected is not None and expected.alias:
        aliases.append(expected.alias)
    with gc_lock(layout.gc_lock, exclusive=False):  # gc cannot delete it between look and alias
        if index.get_blob(b3) is not None and layout.blob_path(b3).exists():
            with index.write() as txn:
                for alias in aliases:
                    index.put_alias_in(txn, alias, b3)
            return b3, len(data)
    tmp = layout.tmp_file("bytes")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise StoreFull(f"no space left storing a {len(data)}-byte object") from exc
        raise
    os.close(fd)
    _publish_or_drop(layout, index, tmp, b3, len(data), aliases)
    return b3, len(data)
