"""Partial blobs: sparse files filled chunk by chunk, in any order, by any process.

A partial is named by the upstream identity of its content (an alias such as
``sha256:<hex>``). Its index record holds size, chunk size, the expected whole-file hash and a
random ``tag`` naming its file ``partial/<alias>.<tag>``; each present chunk has a record with
the chunk's xxh3-64.

Rules (DESIGN.md §2, invariants 2, 4, 5):

* A chunk record is written only after the chunk's bytes are written and ``fdatasync``-ed, and
  only if the partial's record still carries the tag this writer opened: a crash loses at most
  the chunks in flight; a writer to a discarded incarnation changes nothing.
* A process fills a chunk only while it holds an exclusive OFD lock on that chunk's byte range,
  and re-checks the chunk record after taking it: no chunk is fetched twice, across processes.
* Every process that has the partial open holds a shared lock at ``LIVE_OFFSET``; gc deletes
  only partials whose live lock it can take exclusively.
* When the last chunk lands, one process (holding ``FINALIZE_OFFSET``) re-reads the file in
  order, checks each chunk's xxh3, length and upstream hash, computes BLAKE3, and publishes by
  link + index + unlink. Most of that hashing happens earlier, as contiguous chunks land
  (:meth:`Partial._advance_hash`), so publishing a large file does not stall its last reader.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import xxhash

from .blobs import publish
from .chunk_memory import ChunkMemory
from .directio import POOL, open_direct, write_at
from .errors import Busy, IntegrityError, StoreFull
from .hashing import ContentHasher
from .index import Index
from .layout import Layout
from .locks import FINALIZE_OFFSET, LIVE_OFFSET, gc_lock, try_lock, unlock, wait_lock
from .records import ExpectedHash, PartialRecord

__all__ = ["Partial", "ChunkWriter", "Discarded", "open_partial"]

#: committed chunks kept in memory per partial unless the fetch core says otherwise
_MAX_READY = 8


class Discarded(IntegrityError):
    """This incarnation of the partial was discarded or published by another process."""


@dataclass(frozen=True)
class Published:
    """What :func:`open_partial` returns when the content is already a blob."""

    b3: str


def open_partial(
    layout: Layout,
    index: Index,
    alias: str,
    size: int,
    chunk_size: int,
    expected: ExpectedHash | None,
    *,
    live_timeout: float = 30.0,
) -> Partial | Published:
    """Open (or create) the partial for ``alias``, or report that the blob already exists."""
    for attempt in range(40):
        if attempt >= 10:
            time.sleep(0.05)  # contention (a publish in progress): give it a moment
        with index.read() as txn:
            b3 = index.resolve(alias, txn)
            rec = index.get_partial(alias, txn)
        if b3 is not None:
            if layout.blob_path(b3).exists():
                return Published(b3)
            forget_missing_blob(layout, index, b3)  # indexed but its file is gone: fetch again
            continue
        if rec is None:
            got = _create(layout, index, alias, size, chunk_size, expected)
            if got is not None:
                return got
            continue
        if rec.size != size:
            raise IntegrityError(
                f"{alias}: the origin now reports {size} bytes, the partial being filled has {rec.size}"
            )
        path = layout.partial_path(alias, rec.tag)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            continue  # being published (made read-only): look again
        except FileNotFoundError:
            # The record outlived its file (deleted by hand, or a crash between gc's index
            # commit and unlink): forget the chunks it describes and start a new incarnation.
            with index.write() as txn:
                cur = index.get_partial(alias, txn)
                if cur is not None and cur.tag == rec.tag:
                    index.delete_partial_in(txn, alias)
            continue
        if not wait_lock(fd, LIVE_OFFSET, exclusive=False, timeout=live_timeout):
            os.close(fd)
            raise Busy(f"{alias}: partial held by gc for more than {live_timeout:.0f}s")
        with index.read() as txn:
            cur = index.get_partial(alias, txn)
            sums = index.chunk_sums(alias, txn) if cur is not None else {}
        if cur is None or cur.tag != rec.tag or not _still_linked(fd, path):
            os.close(fd)
            continue
        if not _share_inode(fd):
            os.close(fd)
            continue  # published meanwhile, and gc is looking at the blob: look again
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
        return Partial(layout, index, alias, cur, fd, sums)
    raise Busy(f"{alias}: could not open its partial (too much contention)")


def forget_missing_blob(layout: Layout, index: Index, b3: str) -> None:
    """Drop the index entries of a blob whose file is gone (lost disk, a crash that undid a
    gc commit), so its content can be fetched and published again."""
    with gc_lock(layout.gc_lock, exclusive=True):
        if layout.blob_path(b3).exists():
            return
        with index.write() as txn:
            index.delete_blob_in(txn, b3)


def _share_inode(fd: int) -> bool:
    """Hold a shared ``flock`` on the partial's inode for as long as ``fd`` (or a dup) is open.

    Publishing links this very inode as the blob, so a process still holding the partial
    open holds the blob open in gc's eyes (gc takes the flock exclusively before deleting a
    blob, as :meth:`Store.open_blob`'s readers expect). Only gc takes it exclusively, and
    only once the inode is a blob; then this returns False instead of waiting.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _still_linked(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev) and fst.st_nlink > 0


def _create(
    layout: Layout,
    index: Index,
    alias: str,
    size: int,
    chunk_size: int,
    expected: ExpectedHash | None,
) -> Partial | None:
    tag = os.urandom(8).hex()
    path = layout.partial_path(alias, tag)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        os.unlink(path)
        raise StoreFull(f"cannot create a {size}-byte partial: {exc}") from exc
    try_lock(fd, LIVE_OFFSET, exclusive=False)
    _share_inode(fd)
    rec = PartialRecord(size=size, chunk_size=chunk_size, created=int(time.time()), tag=tag, expected=expected)
    try:
        with index.write() as txn:
            won = index.get_partial(alias, txn) is None and index.resolve(alias, txn) is None
            if won:
                index.put_partial_in(txn, alias, rec)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    if not won:
        os.close(fd)
        os.unlink(path)
        return None
    return Partial(layout, index, alias, rec, fd, {})


class Partial:
    """An open partial blob. Thread-safe; one instance per alias per process is enough."""

    def __init__(
        self,
        layout: Layout,
        index: Index,
        alias: str,
        rec: PartialRecord,
        fd: int,
        sums: dict[int, int],
    ) -> None:
        self.layout = layout
        self.index = index
        self.alias = alias
        self.rec = rec
        self.fd = fd
        self.size = rec.size
        self.chunk_size = rec.chunk_size
        self.nchunks = rec.nchunks
        self.path = layout.partial_path(alias, rec.tag)
        self._sums = dict(sums)
        self._lock = threading.Lock()
        self._claimed: set[int] = set()
        self._hash_lock = threading.Lock()
        # the OFD finalize lock keeps other processes out; this keeps other threads out
        self._finalize_lock = threading.Lock()
        self._hasher = ContentHasher(rec.size, rec.expected)
        self._hashed_chunks = 0
        #: committed chunks still in memory: for the hash cursor (which then needs no disk
        #: read) and for readers (the file is written with O_DIRECT: no page cache)
        self.memory = ChunkMemory(rec.chunk_size, rec.size, _MAX_READY)
        self._closed = False
        self._wfd: int | None = None
        self._direct = False
        #: set once published (by this or another process): the blob's BLAKE3
        self.b3: str | None = None
        #: set once this incarnation is known dead (hash mismatch, discarded elsewhere)
        self.discarded = False

    # -- presence -------------------------------------------------------------------------

    def chunk_range(self, index: int) -> tuple[int, int]:
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def chunks_for(self, start: int, end: int) -> range:
        """Indices of the chunks covering bytes [start, end)."""
        if end <= start:
            return range(0)
        return range(start // self.chunk_size, (end - 1) // self.chunk_size + 1)

    def present(self, index: int) -> bool:
        return index in self._sums

    def missing(self, start: int, end: int) -> list[int]:
        return [i for i in self.chunks_for(start, end) if i not in self._sums]

    @property
    def present_count(self) -> int:
        return len(self._sums)

    @property
    def present_bytes(self) -> int:
        """Bytes of the chunks present (O(1): every chunk is full but perhaps the last)."""
        count = len(self._sums)
        if not count:
            return 0
        short = self.nchunks * self.chunk_size - self.size  # what the last chunk lacks
        return count * self.chunk_size - (short if (self.nchunks - 1) in self._sums else 0)

    @property
    def complete(self) -> bool:
        return len(self._sums) == self.nchunks

    def refresh(self) -> None:
        """Learn chunks filled by other processes since this partial was opened."""
        with self.index.read() as txn:
            rec = self.index.get_partial(self.alias, txn)
            if rec is None or rec.tag != self.rec.tag:
                b3 = self.index.resolve(self.alias, txn)
                if b3 is not None:
                    self.b3 = b3
                    return
                self.discarded = True
                raise Discarded(f"{self.alias}: partial was discarded")
            sums = self.index.chunk_sums(self.alias, txn)
        with self._lock:
            self._sums.update(sums)

    def pread(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def read_ready(self, offset: int, size: int) -> memoryview | None:
        """Bytes of a committed chunk still in memory (a view: see
        :meth:`ChunkMemory.read`), or None (clipped to the chunk)."""
        return self.memory.read(offset, size)

    def read_present(self, offset: int, size: int) -> bytes:
        """Bytes of a present chunk: from memory while it is kept there, else the file."""
        data = self.memory.read(offset, size)
        return bytes(data) if data is not None else os.pread(self.fd, size, offset)

    def _keep_ready(self, index: int, buf: mmap.mmap) -> None:
        """Take a committed chunk's buffer (ownership passes to the partial)."""
        self.memory.keep(index, buf)

    # -- filling --------------------------------------------------------------------------

    def claim(self, index: int) -> ChunkWriter | None:
        """Claim chunk ``index`` for filling; None if present or being filled elsewhere."""
        if index in self._sums:
            return None
        with self._lock:
            if index in self._claimed or index in self._sums:
                return None
            start, end = self.chunk_range(index)
            if not try_lock(self.fd, start, max(1, end - start)):
                return None
            self._claimed.add(index)
        # another process may have filled it, or published the whole blob, since our last look
        with self.index.read() as txn:
            rec = self.index.get_partial(self.alias, txn)
            stale = rec is None or rec.tag != self.rec.tag or self.index.has_chunk(self.alias, index, txn)
        if stale:
            self._release(index)
            self.refresh()
            return None
        return ChunkWriter(self, index)

    def claimed_elsewhere(self, index: int) -> bool:
        """True while another process holds the chunk's lock."""
        start, end = self.chunk_range(index)
        with self._lock:
            if index in self._claimed:
                return False
            if try_lock(self.fd, start, max(1, end - start)):
                unlock(self.fd, start, max(1, end - start))
                return False
        return True

    def _release(self, index: int) -> None:
        start, end = self.chunk_range(index)
        with self._lock:
            unlock(self.fd, start, max(1, end - start))
            self._claimed.discard(index)

    def _write_chunk(self, buf: mmap.mmap, length: int, offset: int) -> None:
        """Write a whole chunk and sync it (the data half of invariant 2)."""
        with self._lock:
            if self._wfd is None:
                self._wfd, self._direct = open_direct(self.path, os.O_WRONLY)
        try:
            write_at(self._wfd, self._direct, buf, length, offset, self.size)
            os.fdatasync(self._wfd)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreFull(f"no space left filling {self.alias}") from exc
            raise

    def _mark(self, index: int, xxh3: int) -> None:
        with self.index.write() as txn:
            rec = self.index.get_partial(self.alias, txn)
            if rec is None or rec.tag != self.rec.tag:
                self.discarded = True
                raise Discarded(f"{self.alias}: partial was discarded while chunk {index} was filled")
            self.index.put_chunk_in(txn, self.alias, index, xxh3)
        with self._lock:
            self._sums[index] = xxh3

    def _unmark(self, indices: list[int]) -> None:
        with self.index.write() as txn:
            rec = self.index.get_partial(self.alias, txn)
            if rec is not None and rec.tag == self.rec.tag:
                for i in indices:
                    self.index.delete_chunk_in(txn, self.alias, i)
        with self._lock:
            for i in indices:
                self._sums.pop(i, None)

    # -- hashing and publishing -----------------------------------------------------------

    def _advance_hash(self, wait: bool = False) -> list[int]:
        """Hash contiguous present chunks from the cursor on; returns chunks found corrupt.

        Without ``wait``, a thread that finds another one hashing leaves the work to it (the
        holder looks again after letting go, so no chunk is left behind).
        """
        bad: list[int] = []
        while True:
            if not self._hash_lock.acquire(blocking=wait):
                return bad
            try:
                while self._hashed_chunks < self.nchunks and self._hashed_chunks in self._sums:
                    i = self._hashed_chunks
                    start, end = self.chunk_range(i)
                    buf = self.memory.pin(i)
                    try:
                        if buf is not None:  # its xxh3 was computed from this very buffer
                            with memoryview(buf) as view:
                                self._hasher.update(view[: end - start])
                        else:
                            data = os.pread(self.fd, end - start, start)
                            if len(data) != end - start or xxhash.xxh3_64_intdigest(data) != self._sums[i]:
                                bad.append(i)
                                break
                            self._hasher.update(data)
                        self._hashed_chunks += 1
                    finally:
                        self.memory.unpin(i, self._hashed_chunks)
            finally:
                self._hash_lock.release()
            more = self._hashed_chunks < self.nchunks and self._hashed_chunks in self._sums
            if bad or not more:
                break
        if bad:
            self._unmark(bad)
        return bad

    def finalize(self) -> str | None:
        """Verify and publish if every chunk is present; returns the BLAKE3 once published.

        Returns None when chunks are still missing (some may have just been found corrupt
        and dropped, to be fetched again) or another process is finalizing. Raises
        :class:`IntegrityError` if the whole file does not match its upstream hash; the
        partial is then discarded and nothing is published.
        """
        with self._finalize_lock:
            return self._finalize()

    def _finalize(self) -> str | None:
        if self.b3 is not None:
            return self.b3
        if not self.complete:
            self.refresh()
            if self.b3 is not None or not self.complete:
                return self.b3
        if not try_lock(self.fd, FINALIZE_OFFSET):
            return None
        try:
            self.refresh()  # another process may have published it before we got the lock
            if self.b3 is not None:
                return self.b3
            if self._advance_hash(wait=True) or self._hashed_chunks < self.nchunks:
                return None
            try:
                b3 = self._hasher.finish()
            except IntegrityError as exc:
                self.discard()
                raise IntegrityError(f"{self.alias}: {exc}; partial discarded") from None
            os.fsync(self.fd)
            aliases = [self.alias, *self._hasher.learned_aliases()]
            publish(self.layout, self.index, self.path, b3, self.size, aliases, keep_src=True)
            with self.index.write() as txn:
                rec = self.index.get_partial(self.alias, txn)
                if rec is not None and rec.tag == self.rec.tag:
                    self.index.delete_partial_in(txn, self.alias)
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            if _same_file(self.fd, self.layout.blob_path(b3)):
                # this inode is the blob (linked now, or by an attempt that failed to index
                # it, on a full disk say); read-only only now: until the partial's record was
                # gone, other processes still opened this inode read-write through its name
                os.fchmod(self.fd, 0o444)
            self.b3 = b3
            return b3
        finally:
            unlock(self.fd, FINALIZE_OFFSET)

    def discard(self) -> None:
        """Forget this partial: its chunk records, its record and its file."""
        self.discarded = True
        with self.index.write() as txn:
            rec = self.index.get_partial(self.alias, txn)
            if rec is not None and rec.tag == self.rec.tag:
                self.index.delete_partial_in(txn, self.alias)
        try:
            if _still_linked(self.fd, self.path):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        with self._lock:
            self._sums.clear()
        self.memory.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.memory.close()
            if self._wfd is not None:
                os.close(self._wfd)
            os.close(self.fd)  # drops every OFD lock this description holds


class ChunkWriter:
    """Fills one claimed chunk: bytes land in a memory buffer, readable by streaming readers
    (:meth:`view`), and go to disk in one aligned write when the chunk is complete."""

    def __init__(self, partial: Partial, index: int) -> None:
        self.partial = partial
        self.index = index
        self.start, self.end = partial.chunk_range(index)
        self.length = self.end - self.start
        self.pos = 0
        # taken from the pool at the first byte, not at the claim: a chunk queued for a
        # connection holds no memory
        self._buf: mmap.mmap | None = None
        self._handed = False  # the buffer went to the partial (committed)
        #: the last view :meth:`room` gave a range reader, filled: writing it only counts it
        self.issued: memoryview | None = None
        self._done = False
        # commit() runs in a worker thread; dispose() may come from the loop meanwhile (a
        # cancelled task): the buffer goes back to the pool only when neither uses it
        self._state = threading.Lock()
        self._committing = False
        self._disposed = False

    @property
    def landed(self) -> int:
        """Bytes of this chunk received so far (readable with :meth:`view`)."""
        return self.pos

    @property
    def remaining(self) -> int:
        """Bytes of this chunk still to come."""
        return self.length - self.pos

    def _buffer(self) -> mmap.mmap:
        if self._buf is None:
            if self._handed or self._disposed:
                raise AssertionError("write after commit")
            self._buf = POOL.get(self.partial.chunk_size)
        return self._buf

    def room(self) -> memoryview:
        """The free part of the chunk's buffer, from the next byte on: a range reader receives
        into it and yields what it filled (``issued``); :meth:`write` of that very view then
        only counts the bytes (no copy)."""
        buf = self._buffer()
        self.issued = None
        with memoryview(buf) as whole:
            return whole[self.pos : self.length]

    def view(self, start: int, end: int) -> memoryview | None:
        """Bytes [start, end) of the chunk (relative to its start), which must have landed, as
        a view of the buffer (no copy: bytes that landed are never written again, and the pool
        does not reuse a buffer while a view of it is alive); None once the buffer was handed
        over to the partial (then the chunk is present and in its memory) or freed.

        Readable while the chunk is being committed too: its bytes no longer change then, and
        a reader right behind the last byte must not wait for the disk write and the hash."""
        if end > self.pos:
            raise ValueError(f"bytes up to {end} of chunk {self.index} have not landed ({self.pos})")
        with self._state:
            if self._buf is None or self._disposed:
                return None
            with memoryview(self._buf) as whole:
                return whole[start:end]

    @property
    def committing(self) -> bool:
        return self._committing

    def write(self, data: bytes | memoryview) -> None:
        n = len(data)
        buf = self._buffer()
        if self.pos + n > self.length:
            raise IntegrityError(
                f"{self.partial.alias}: chunk {self.index} overflows by {self.pos + n - self.length} bytes"
            )
        if data is self.issued and data is not None:
            self.issued = None  # received in place by the range reader (room())
        else:
            if isinstance(data, memoryview) and data.obj is buf:
                data = bytes(data)  # a piece of our own buffer: never copy it onto itself
            buf[self.pos : self.pos + n] = data
        self.pos += n

    def rewind(self, to: int = 0) -> None:
        """Forget bytes past ``to`` (an upstream connection dropped mid-chunk). Views handed
        out by :meth:`view` of those bytes would see them change: only for a writer nobody
        reads from."""
        self.pos = min(self.pos, to)

    def commit(self) -> list[int]:
        """Write, sync and mark the chunk present; returns chunks found corrupt hashing on.

        On :class:`StoreFull` the chunk stays claimed with its bytes in memory, so the caller
        may make room and call ``commit`` again; it must otherwise :meth:`abort`.
        """
        with self._state:
            if self._buf is None and self.length == 0 and not (self._disposed or self._handed):
                self._buf = POOL.get(self.partial.chunk_size)  # an empty file: no byte ever asked for one
            buf = self._buf
            if buf is None or self._disposed:
                raise IntegrityError(f"{self.partial.alias}: chunk {self.index} was abandoned")
            self._committing = True
        try:
            if self.pos != self.length:
                raise IntegrityError(
                    f"{self.partial.alias}: chunk {self.index} short: {self.pos} of {self.length} bytes"
                )
            self.partial._write_chunk(buf, self.length, self.start)
            with memoryview(buf) as mv:
                digest = xxhash.xxh3_64_intdigest(mv[: self.length])
            self.partial._mark(self.index, digest)
            # the bytes stay readable in the partial's memory (for the hash cursor and readers):
            # hand the buffer over; under the lock, so a reader finds it here or there
            with self._state:
                self._buf = None
                self._handed = True
                self.partial._keep_ready(self.index, buf)
        except StoreFull:
            # retryable once room is made (the fetch core runs gc): keep the claim and the
            # bytes; the caller commits again or aborts
            if self._disposed:
                self._finish()
            raise
        except BaseException:
            self._finish()
            raise
        else:
            self._finish()
        finally:
            with self._state:
                self._committing = False
                leftover = self._buf if self._disposed else None
                if leftover is not None:
                    self._buf = None
            if leftover is not None:
                POOL.put(leftover)
        return self.partial._advance_hash()

    def abort(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.partial._release(self.index)

    def dispose(self) -> None:
        """Free the chunk's buffer (after commit or abort, once no reader needs :meth:`view`)."""
        self._finish()
        with self._state:
            self._disposed = True
            buf = None if self._committing else self._buf
            if buf is not None:
                self._buf = None
        if buf is not None:
            POOL.put(buf)
