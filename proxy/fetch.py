"""The fetch core: "bytes [a, b) of file X" becomes chunk fetches into the store.

* **One fetch per chunk.** Within a process, an in-flight table keyed by (identity, chunk)
  makes every reader of a missing chunk wait on the same fetch; across processes the store's
  chunk locks do the same (a process that finds a chunk locked elsewhere polls for it).
* **Streaming while filling.** A chunk's bytes land in memory as they arrive; readers are
  woken on every block and stream them at once, so a client's first byte does not wait for
  the chunk, let alone the file.
* **Parallel ranged connections.** Chunks are fetched concurrently, one ranged request each:
  a sequential reader of chunk *i* starts its own chunk first, then *i+1 … i+k* of its range
  (``readahead``, default ``origin_connections - 1``: N chunks in flight), and a whole-file
  fill keeps ``fill_concurrency`` (default ``origin_connections``) in flight. The HTTP client
  lets at most ``origin_connections`` bodies flow per origin host (the rest queue in order),
  while each reader still receives its bytes in file order, each as soon as it landed.
* **Resume.** A dropped origin connection resumes from the last byte that landed, with
  backoff, a bounded number of times; then readers get :class:`OriginUnavailable`.
* **Verified publishing.** When the last chunk lands the store verifies length and upstream
  hash and publishes the blob. A response that reaches the end of a file holds back its last
  bytes until that succeeds, so no client ever receives a complete, wrong file.
* **Room on a full disk.** When the store's filesystem is full (a chunk's write or record, a
  new partial's record or the publishing of a file fails with :class:`StoreFull`) and the
  store has a size cap, gc trims the store once (in a thread, one run at a time) to the cap
  less what the file still needs, and the write is tried again before readers get the error
  (HTTP 507).

Everything here runs on one asyncio loop; disk work goes to the default executor.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hoard.store.errors import HoardError, IntegrityError, OriginUnavailable, StoreFull
from hoard.store.gc import execute_gc, plan_gc
from hoard.store.partial import ChunkWriter, Discarded, Partial
from hoard.store.store import Published, Store

from . import metrics as m
from .metrics import Metrics
from .openfile import BEHIND as _BEHIND
from .openfile import STALE as _STALE
from .openfile import ChunkFetch, OpenFile, call_soon
from .origin import RemoteFile, Source
from .reader import LANDING

__all__ = ["FetchConfig", "FetchCore", "OpenFile", "ChunkFetch"]

log = logging.getLogger("hoard.fetch")
T = TypeVar("T")

_READ_BLOCK = 1 << 20  # size of the pieces read back from the store for streaming
#: longest wait of a file's other chunks for the first bytes of its first one
_HEAD_START = 0.5
#: opens of a file whose blob gc removes meanwhile, before giving up
_OPEN_TRIES = 5
#: longest wait at shutdown for complete files to be verified and published
_CLOSE_FINALIZE = 30.0


@dataclass(frozen=True)
class FetchConfig:
    #: ranged connections per origin host (``--origin-connections``): one file's chunks are
    #: fetched this many at a time (the HTTP client enforces it per host)
    origin_connections: int = 8
    #: chunks started ahead of a sequential reader (None: ``origin_connections - 1``)
    readahead: int | None = None
    #: chunks in flight for one whole-file fill (None: ``origin_connections``)
    fill_concurrency: int | None = None
    #: chunk fetches in flight in the process; each holds one chunk of memory
    max_inflight: int = 32
    #: tries of one chunk on transient faults before readers get an error
    chunk_attempts: int = 6
    #: longest wait for a chunk another process is filling
    foreign_wait: float = 300.0
    #: bytes a response reaching the end of a file holds until the file is verified
    tail_hold: int = 64 << 10
    #: longest time one chunk may take to arrive, however steadily it trickles
    chunk_deadline: float = 600.0
    #: after a chunk of a file failed for good, reads of that file fail at once for this long
    #: (so a dead origin costs each reader one retry budget, not one per kernel request)
    failure_hold: float = 5.0

    def __post_init__(self) -> None:
        if self.origin_connections < 1:
            raise ValueError("origin_connections must be at least 1")

    @property
    def ahead(self) -> int:
        """Chunks started ahead of a sequential reader."""
        return max(0, self.origin_connections - 1) if self.readahead is None else self.readahead

    @property
    def fill_width(self) -> int:
        """Chunks in flight for one whole-file fill."""
        return max(1, self.origin_connections if self.fill_concurrency is None else self.fill_concurrency)


class FetchCore:
    def __init__(
        self, store: Store, sources: dict[str, Source], config: FetchConfig | None = None, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.sources = sources
        self.config = config or FetchConfig()
        self.metrics = metrics or Metrics()
        self._files: dict[str, OpenFile] = {}
        self._opening: dict[str, asyncio.Task[OpenFile]] = {}
        self._waiters: dict[str, int] = {}  # callers of open() still waiting, per identity
        self._chunks: dict[tuple[str, int], ChunkFetch] = {}
        self._slots = asyncio.Semaphore(self.config.max_inflight)
        self._reader_ids = itertools.count()
        self._threads: set[asyncio.Future[Any]] = set()
        # one gc at a time for room on a full disk; the count lets waiters skip a second run
        self._room_lock = threading.Lock()
        self._room_runs = 0
        #: called as ``hook(file, b3)`` after this process verified and published a file (the
        #: blob tier uploads it); a hook must not block or raise
        self.on_published: list[Callable[[RemoteFile, str], None]] = []
        #: called with a file whose whole bytes failed verification (and were discarded)
        self.on_failed_verification: list[Callable[[RemoteFile], None]] = []

    # -- opening ----------------------------------------------------------------------------

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run disk work in a thread. A cancelled caller does not stop the thread, so the
        work is tracked and :meth:`aclose` waits for it before closing anything it uses."""
        return await self._submit(fn, *args)

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn(*args)`` in a thread now and track it (see :meth:`_io`): registered
        before the caller can be cancelled, so shutdown never closes what it still uses."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._threads.add(fut)
        fut.add_done_callback(self._threads.discard)
        return fut

    def _with_room(self, need: int, fn: Callable[..., T], *args: Any) -> T:
        """(In a thread.) ``fn(*args)``; if the store is full and has a size cap, make room
        with gc once and call it again. ``need`` is what the file being filled still needs:
        gc trims the store to the cap minus that, so the file fits under the cap once
        complete. Without a cap, or when gc frees nothing, the :class:`StoreFull` goes to the
        caller."""
        runs = self._room_runs
        try:
            return fn(*args)
        except StoreFull as exc:
            if not self._make_room(runs, exc, need):
                raise
        return fn(*args)

    def _make_room(self, runs_seen: int, exc: StoreFull, need: int) -> bool:
        cap = self.store.config.max_size
        if cap is None:
            return False
        with self._room_lock:
            if self._room_runs != runs_seen:
                return True  # a gc finished since this attempt began: just try again
            target = max(0, cap - need)
            log.warning("%s: running gc down to %d bytes (size cap %d)", exc, target, cap)
            try:
                result = execute_gc(self.store, plan_gc(self.store, target))
            finally:
                self._room_runs += 1  # counted once done: attempts made meanwhile try again
            log.info("gc for room: removed %d item(s), freed %d bytes", result.removed, result.freed)
            return result.freed > 0

    async def open(self, rf: RemoteFile) -> OpenFile:
        """Open ``rf`` for reading; the same :class:`OpenFile` is shared by all its readers."""
        of = self._files.get(rf.identity)
        if of is not None and of.error is None:
            of.refs += 1
            if of.b3 is not None and rf.extra_aliases:
                try:
                    await self._record_aliases(rf, of.b3)  # this name may be new for it
                except BaseException:
                    of.refs -= 1
                    self._retire(of)
                    raise
            return of
        task = self._opening.get(rf.identity)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open_new(rf))
            self._opening[rf.identity] = task
            task.add_done_callback(lambda t: self._opened(rf.identity, t))
        self._waiters[rf.identity] = self._waiters.get(rf.identity, 0) + 1
        try:
            # shielded: a cancelled caller does not cancel the open others may wait on
            of = await asyncio.shield(task)
            of.refs += 1
            return of
        finally:
            self._waiters[rf.identity] -= 1
            if not self._waiters[rf.identity]:
                del self._waiters[rf.identity]
                if task.done() and not task.cancelled() and task.exception() is None:
                    self._retire(task.result())  # every waiter was cancelled: let go

    def _open_held(self, rf: RemoteFile) -> tuple[Partial | Published, int | None] | None:
        """(In a thread.) The file's partial, or its blob with a descriptor already holding
        it (gc never deletes a blob held open); None if gc removed the blob between the
        index lookup and the open (the next try finds it gone and starts a partial)."""
        got = self.store.open_file(rf.identity, rf.size, rf.expected)
        if not isinstance(got, Published):
            return got, None
        fd = self.store.open_blob(got.b3)
        return None if fd is None else (got, fd)

    async def _open_new(self, rf: RemoteFile) -> OpenFile:
        for attempt in range(_OPEN_TRIES):
            held = await self._io(self._with_room, rf.size, self._open_held, rf)
            if held is not None:
                break
            await asyncio.sleep(0.02 * (attempt + 1))  # gc is deleting it this moment
        else:
            raise OriginUnavailable(f"{rf.address}: its blob is being removed; retry")
        got, blob_fd = held
        if isinstance(got, Published):
            of = OpenFile(rf, None, got.b3)
            of.blob_fd = blob_fd
        else:
            of = OpenFile(rf, got, None)
        if of.partial is not None:
            # room for what a paced fill holds ahead of its furthest reader, and a little behind
            of.partial.memory.limit = max(of.partial.memory.limit, self._pace_window + _BEHIND)
            loop = asyncio.get_running_loop()
            of.partial.memory.on_hashed = lambda: call_soon(loop, of.nudge)
        if of.b3 is not None:
            try:
                await self._record_aliases(of.rf, of.b3)
            except BaseException:
                if of.blob_fd is not None:  # nobody gets it: let go of the blob
                    os.close(of.blob_fd)
                    of.blob_fd = None
                raise
        self._files[rf.identity] = of
        return of

    async def _record_aliases(self, rf: RemoteFile, b3: str) -> None:
        """Name a published blob by the file's other names too (an Arweave tx id, ...)."""
        missing = [a for a in rf.extra_aliases if self.store.resolve(a) != b3]
        if missing:
            await self._io(self.store.add_aliases, missing, b3)

    def _opened(self, identity: str, task: asyncio.Task[OpenFile]) -> None:
        if self._opening.get(identity) is task:
            del self._opening[identity]
        if not task.cancelled() and task.exception() is None and identity not in self._waiters:
            self._retire(task.result())  # nobody is waiting for it any more

    async def close(self, of: OpenFile) -> None:
        of.refs -= 1
        self._retire(of)

    def _retire(self, of: OpenFile) -> None:
        """Let go of a file nobody reads, fills, verifies or fetches chunks of any more."""
        if of.refs > 0 or (of.fill is not None and not of.fill.done()) or of.identity in self._waiters:
            return
        if of.finalizing is not None and not of.finalizing.done():
            return  # its done-callback retires the file
        if any(k[0] == of.identity for k in self._chunks):
            return  # read-ahead still running: its task retires the file when it ends
        if of.commits:
            return  # a chunk's commit is still writing to the partial: it retires the file
        if self._files.get(of.identity) is of:
            del self._files[of.identity]
        if of.partial is not None:
            self.store.release(of.partial)
            of.partial = None
        if of.blob_fd is not None:
            os.close(of.blob_fd)
            of.blob_fd = None

    # -- chunks -----------------------------------------------------------------------------

    def _chunk(self, of: OpenFile, index: int) -> ChunkFetch | None:
        """The in-flight fetch of a chunk, started if needed; None if the chunk is present."""
        p = of.partial
        if p is None or p.present(index) or of.b3 is not None:
            return None
        key = (of.identity, index)
        cf = self._chunks.get(key)
        if cf is None:
            cf = ChunkFetch(index)
            self._chunks[key] = cf
            cf.task = asyncio.get_running_loop().create_task(self._run_chunk(of, p, cf))
        return cf

    async def _run_chunk(self, of: OpenFile, p: Partial, cf: ChunkFetch) -> None:
        try:
            await self._fill_chunk(of, p, cf)
        except BaseException as exc:
            cf.error = exc
            if isinstance(exc, (Discarded, IntegrityError)):
                of.error = exc  # this incarnation is finished; new opens start afresh
            elif isinstance(exc, HoardError):
                of.failure = exc
                of.failed_until = asyncio.get_running_loop().time() + self.config.failure_hold
            if not isinstance(exc, asyncio.CancelledError):
                self.metrics.inc(m.ERRORS, kind=getattr(exc, "kind", type(exc).__name__))
                log.warning("%s chunk %d: %s", of.rf.address, cf.index, exc)
        finally:
            cf.done = True
            self._chunks.pop((of.identity, cf.index), None)
            cf.notify()
            of.nudge()
            of.first_bytes.set()
            if cf.writer is not None:
                cf.writer.dispose()
                cf.writer = None
        try:
            if cf.error is None and of.b3 is None and p.complete:
                await self._finalize(of)
        except Exception:  # noqa: BLE001 - recorded in of.error; readers and fills report it
            pass
        finally:
            self._retire(of)

    async def _fill_chunk(self, of: OpenFile, p: Partial, cf: ChunkFetch) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.foreign_wait
        poll = 0.02
        while True:
            async with self._slots:  # a slot is a chunk of memory: hold it only to fill
                writer = p.claim(cf.index)
                if writer is not None:
                    await self._fill_claimed(of, cf, writer)
                    return
            if p.present(cf.index) or p.b3 is not None:
                if p.b3 is not None:
                    of.b3 = p.b3
                return
            # another process holds the chunk: wait for it to land (or for its holder to die)
            if loop.time() > deadline:
                raise OriginUnavailable(f"{of.rf.address}: chunk {cf.index} held elsewhere for too long")
            await asyncio.sleep(poll)
            poll = min(poll * 2, 0.5)
            await self._io(p.refresh)

    def _committed(self, of: OpenFile, commit: asyncio.Future[list[int]]) -> None:
        """A chunk's commit thread ended (its outcome is its task's, if still awaited)."""
        of.commits -= 1
        if not commit.cancelled():
            commit.exception()  # retrieved here too: a cancelled waiter may never look
        self._retire(of)

    async def _fill_claimed(self, of: OpenFile, cf: ChunkFetch, writer: ChunkWriter) -> None:
        cf.writer = writer
        commit: asyncio.Future[list[int]] | None = None
        self.metrics.inc(m.INFLIGHT, 1)
        try:
            try:
                await asyncio.wait_for(self._download(of, cf, writer), self.config.chunk_deadline)
            except asyncio.TimeoutError:
                raise OriginUnavailable(
                    f"{of.rf.address}: chunk {cf.index} not complete after {self.config.chunk_deadline:.0f}s"
                ) from None
            # shielded: a cancelled task leaves the commit to finish in its thread (it then
            # releases the chunk itself); the file is not let go, nor the store closed, before
            # it ends (of.commits, shutdown waits for the thread)
            need = writer.partial.size - writer.partial.present_bytes
            commit = self._submit(self._with_room, need, writer.commit)
            of.commits += 1
            commit.add_done_callback(lambda f: self._committed(of, f))
            bad = await asyncio.shield(commit)
            self.metrics.inc(m.STORED_BYTES, writer.length)  # after the commit: what the size budget counts
        except asyncio.CancelledError:
            if commit is None:
                writer.abort()
            raise
        except BaseException:
            writer.abort()
            raise
        finally:
            self.metrics.inc(m.INFLIGHT, -1)
        self.metrics.inc(m.CHUNKS_FETCHED)
        if bad:
            log.warning("%s: chunks %s failed their checksum on disk; they will be fetched again", of.rf.address, bad)

    async def _download(self, of: OpenFile, cf: ChunkFetch, writer: ChunkWriter) -> None:
        # the range reader receives straight into the chunk's buffer (this task's reads only)
        LANDING.set(writer)
        src = self.sources[of.rf.source]
        attempt = 0
        while writer.landed < writer.length:
            before = writer.landed
            try:
                self.metrics.inc(m.ORIGIN_REQUESTS)
                async for block in src.read(of.rf, writer.start + writer.landed, writer.end):
                    writer.write(block)
                    self.metrics.inc(m.ORIGIN_BYTES, len(block))
                    cf.notify()
                    of.first_bytes.set()
                if writer.landed < writer.length:
                    raise OriginUnavailable(f"{of.rf.address}: origin ended the body early")
            except OriginUnavailable as exc:
                if writer.landed > before:
                    attempt = 0  # it was making progress: a fresh budget for the next drop
                attempt += 1
                if attempt >= self.config.chunk_attempts:
                    raise
                delay = min(0.1 * 2**attempt, 5.0)
                log.info("%s chunk %d: %s; resuming at +%d in %.1fs", of.rf.address, cf.index, exc, writer.landed, delay)
                await asyncio.sleep(delay)

    async def _finalize(self, of: OpenFile) -> str | None:
        """Verify and publish the file once, however many tasks ask at the same time."""
        if of.b3 is not None:
            return of.b3
        if of.finalizing is None or of.finalizing.done():
            of.finalizing = asyncio.get_running_loop().create_task(self._finalize_once(of))
            of.finalizing.add_done_callback(lambda t: (t.cancelled() or t.exception(), self._retire(of)))
        return await asyncio.shield(of.finalizing)

    async def _finalize_once(self, of: OpenFile) -> str | None:
        p = of.partial
        if p is None:
            return of.b3
        try:
            b3 = await self._io(self._with_room, 0, p.finalize)
        except IntegrityError as exc:
            of.error = exc
            self.metrics.inc(m.ERRORS, kind="integrity")
            log.error("%s: %s", of.rf.address, exc)
            if self._files.get(of.identity) is of:
                del self._files[of.identity]
            for failed in self.on_failed_verification:
                try:
                    failed(of.rf)
                except Exception as hook_exc:  # noqa: BLE001 - the file's error is what matters
                    log.warning("%s: after failing verification: %s", of.rf.address, hook_exc)
            raise
        if b3 is not None and of.b3 is None:
            of.b3 = b3
            self.metrics.inc(m.PUBLISHED)
            await self._record_aliases(of.rf, b3)
            for hook in self.on_published:
                try:
                    hook(of.rf, b3)
                except Exception as exc:  # noqa: BLE001 - a hook's failure is not the file's
                    log.warning("%s: after publishing: %s", of.rf.address, exc)
        # the partial stays open until the last reader closes the file: readers may be using it
        return b3

    # -- whole files ------------------------------------------------------------------------

    def start_fill(self, of: OpenFile) -> asyncio.Task[str]:
        """Fill the whole file in the background (idempotent); the task returns its BLAKE3."""
        if of.fill is None or (of.fill.done() and (of.fill.cancelled() or of.fill.exception() is not None)):
            of.fill = asyncio.get_running_loop().create_task(self._fill_all(of))
            of.fill.add_done_callback(lambda t: (t.cancelled() or t.exception(), self._retire(of)))
        return of.fill

    async def fill(self, of: OpenFile) -> str:
        """Fill, verify and publish the whole file; returns its BLAKE3."""
        return await asyncio.shield(self.start_fill(of))

    async def _fill_all(self, of: OpenFile) -> str:
        waited = 0.0
        while of.b3 is None:
            if of.error is not None:
                raise of.error
            of.check_failure()
            p = of.partial
            if p is None:
                raise IntegrityError(f"{of.rf.address}: partial was discarded")
            missing = [i for i in range(p.nchunks) if not p.present(i)]
            if not missing:
                if await self._finalize(of) is None:
                    # all present yet not published: another process is finalizing, or a
                    # chunk failed its on-disk checksum and was dropped; look again shortly
                    if waited > self.config.foreign_wait:
                        raise OriginUnavailable(f"{of.rf.address}: another process has been verifying it too long")
                    await asyncio.sleep(0.05)
                    waited += 0.05
                    await self._io(p.refresh)
                    if p.b3 is not None:
                        of.b3 = p.b3
                continue
            started: list[ChunkFetch] = []
            for i in missing:
                if started:
                    await self._head_start(of)
                await self._pace(of, i)
                cf = self._chunk(of, i)
                if cf is None:
                    continue
                started.append(cf)
                running = [c.task for c in started if not c.done and c.task is not None]
                if len(running) >= self.config.fill_width:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    self._raise_failed(started)
            await asyncio.gather(*(c.task for c in started if c.task is not None), return_exceptions=True)
            self._raise_failed(started)
        return of.b3

    @staticmethod
    async def _head_start(of: OpenFile) -> None:
        """Before more chunks of a file start: let the first one get its first bytes (a
        reader's chunk, asked for first, is then answered first, not in a crowd of N), for
        at most ``_HEAD_START`` seconds."""
        if not of.first_bytes.is_set():
            try:
                await asyncio.wait_for(of.first_bytes.wait(), _HEAD_START)
            except asyncio.TimeoutError:
                pass

    @property
    def _pace_window(self) -> int:
        """Chunks a whole-file fill may run ahead of its furthest reader: its own in flight,
        and two more committed and waiting in memory."""
        return self.config.fill_width + 2

    async def _pace(self, of: OpenFile, index: int) -> None:
        """Before a whole-file fill starts chunk ``index``, wait while it would be

        * more than the pace window ahead of the furthest reader, so what readers read next
          is still in memory, not read back from disk (a reader that stops moving for
          ``_STALE`` seconds, gone or just slow, holds nothing back);
        * more than the pace window and ``_BEHIND`` ahead of the hash cursor: bytes that
          arrive faster than they can be hashed would only pile up in memory (and on a busy
          machine the fetch takes the CPU the hash needs). Bounded by ``_STALE`` too.

        So the partial's memory never needs more than ``_pace_window + _BEHIND`` chunks."""
        loop = asyncio.get_running_loop()
        waited_from = loop.time()
        while of.b3 is None and of.error is None and of.partial is not None:
            now = loop.time()
            readers = index >= of.lead + self._pace_window and now - of.lead_at < _STALE
            hashing = index >= of.partial.memory.hashed + self._pace_window + _BEHIND and now - waited_from < _STALE
            if not (readers or hashing):
                return
            await of.lead_moved(_STALE / 4)

    @staticmethod
    def _raise_failed(started: list[ChunkFetch]) -> None:
        for c in started:
            if c.done and c.error is not None and not isinstance(c.error, asyncio.CancelledError):
                raise c.error

    # -- reading ----------------------------------------------------------------------------

    async def read(
        self,
        of: OpenFile,
        start: int,
        end: int,
        *,
        readahead: int | None = None,
        hold_tail: bool = True,
        past_end: bool = False,
    ) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of an open file, fetching what is missing.

        Chunk *i* being read is started first (so it queues first for a connection), then
        ``readahead`` chunks after it: within [start, end), or, with ``past_end`` (a
        sequential reader asking piece by piece, as the kernel does), past ``end`` too.
        With ``hold_tail``, a read that reaches the end of the file holds its last bytes until
        the whole file is verified and published (raising :class:`IntegrityError` if not).
        """
        end = min(end, of.size)
        if start >= end:
            return
        ahead = self.config.ahead if readahead is None else readahead
        reader = next(self._reader_ids)  # this read's name among the file's readers
        try:
            async for block in self._read(of, reader, start, end, ahead, hold_tail, past_end):
                yield block
        finally:
            of.leave(reader)

    async def _read(
        self, of: OpenFile, reader: int, start: int, end: int, ahead: int, hold_tail: bool, past_end: bool
    ) -> AsyncIterator[bytes]:
        hold_from = end
        if of.partial is not None:
            of.progress(reader, start, of.partial.chunk_size)  # before a fill starts: it paces by this
        if hold_tail and end == of.size and of.b3 is None:
            hold_from = max(start, end - min(self.config.tail_hold, of.size))
            self.start_fill(of)
        pos = start
        while pos < hold_from:
            if of.b3 is not None:
                async for block in self._read_blob(of, pos, hold_from):
                    pos += len(block)
                    if of.partial is not None:
                        of.progress(reader, pos, of.partial.chunk_size)
                    yield block
                break
            p = of.partial
            if p is None:
                raise of.error or IntegrityError(f"{of.rf.address}: file is no longer available")
            index = pos // p.chunk_size
            chunk_end = min((index + 1) * p.chunk_size, hold_from)
            if not p.present(index) and (of.identity, index) not in self._chunks:
                of.check_failure()  # failed for good a moment ago: fail at once, start nothing
            self._chunk(of, index)
            stop = p.nchunks if past_end else p.chunks_for(start, end).stop
            ahead_started = False
            async for block in self._read_chunk(of, p, index, pos, chunk_end):
                if not ahead_started:  # once its own chunk flows (see _head_start)
                    ahead_started = True
                    for j in range(index + 1, min(index + 1 + ahead, stop)):
                        self._chunk(of, j)
                pos += len(block)
                of.progress(reader, pos, p.chunk_size)
                yield block
        if pos < end:
            await self.fill(of)
            async for block in self._read_blob(of, pos, end):
                yield block

    async def _read_chunk(self, of: OpenFile, p: Partial, index: int, start: int, end: int) -> AsyncIterator[bytes]:
        chunk_start = index * p.chunk_size
        pos = start
        while pos < end:
            if of.b3 is not None:  # published meanwhile (here or by another process)
                async for block in self._read_blob(of, pos, end):
                    yield block
                return
            if of.error is not None:
                raise of.error
            if p.present(index):
                while pos < end:
                    # in memory (a view, no copy, no thread hop), else from the disk in pieces
                    data = p.read_ready(pos, end - pos)
                    if data is None:
                        data = await self._io(p.read_present, pos, min(_READ_BLOCK, end - pos))
                    if not data:
                        raise IntegrityError(f"{of.rf.address}: short read at {pos}")
                    pos += len(data)
                    yield data
                return
            if (of.identity, index) not in self._chunks:
                of.check_failure()
            cf = self._chunk(of, index)
            if cf is None:
                continue
            w = cf.writer
            if w is not None and chunk_start + w.landed > pos:
                upto = min(chunk_start + w.landed, end)
                data = w.view(pos - chunk_start, upto - chunk_start)
                if data is not None:
                    pos = upto
                    yield data
                    continue
                if p.present(index):
                    continue  # just handed to the partial (its memory): read it there
            if cf.done:
                if cf.error is not None:
                    raise cf.error
                if p.b3 is not None:
                    of.b3 = p.b3
                continue
            await cf.wait()
            if cf.done and cf.error is not None and not isinstance(cf.error, asyncio.CancelledError):
                raise cf.error  # this fetch used its retries: the next loop must not start another

    async def _read_blob(self, of: OpenFile, start: int, end: int) -> AsyncIterator[bytes]:
        if of.blob_fd is None:
            assert of.b3 is not None
            of.blob_fd = self.store.open_blob(of.b3)
            p = of.partial
            if of.blob_fd is None and p is not None and p.b3 == of.b3:
                # gc removed the blob's name the moment it was published (gc_grace 0): the
                # partial's descriptor still holds the verified bytes
                of.blob_fd = os.dup(p.fd)
            if of.blob_fd is None:
                # removed (gc, rm, verify) since it was published: the next open fetches again
                of.error = OriginUnavailable(f"{of.rf.address}: its blob was removed meanwhile; retry")
                if self._files.get(of.identity) is of:
                    del self._files[of.identity]
                raise of.error
        pos = start
        while pos < end:
            n = min(_READ_BLOCK, end - pos)
            # the chunks still in memory from the fill (the blob was written with O_DIRECT:
            # from disk it would be a real read)
            p = of.partial
            data = p.read_ready(pos, n) if p is not None else None
            if data is None:
                data = await self._io(os.pread, of.blob_fd, n, pos)
            if not data:
                raise IntegrityError(f"{of.rf.address}: blob shorter than its index entry")
            pos += len(data)
            yield data

    async def read_bytes(self, of: OpenFile, start: int, end: int, *, readahead: int = 0) -> bytes:
        """Bytes [start, end) at once (the mount's reads); ``readahead`` chunks past them are
        started for a sequential reader."""
        blocks = self.read(of, start, end, readahead=readahead, hold_tail=False, past_end=readahead > 0)
        parts = [b async for b in blocks]
        return b"".join(parts)

    # -- lifecycle --------------------------------------------------------------------------

    async def aclose(self) -> None:
        held = list(self._files.values())
        for of in held:
            of.refs += 1  # nothing is let go (its partial closed) until shutdown has looked at it
        tasks = [c.task for c in self._chunks.values() if c.task is not None]
        tasks += [of.fill for of in held if of.fill is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._threads:  # chunk commits still writing: a file they complete is finished below
            await asyncio.wait(list(self._threads), timeout=60)
        # a file whose every chunk landed is verified and published before the store closes
        # (a mount unmounted right after a whole read must not leave that to the next open);
        # its hash has mostly been computed as the chunks came, so this is short
        complete = [of for of in held
                    if of.b3 is None and of.error is None and of.partial is not None and of.partial.complete]
        if complete:
            finishing = [asyncio.ensure_future(self._finalize(of)) for of in complete]
            await asyncio.wait(finishing, timeout=_CLOSE_FINALIZE)
            for t in finishing:
                t.cancel()
            await asyncio.gather(*finishing, return_exceptions=True)
        tasks = [of.finalizing for of in held if of.finalizing is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # disk work already in threads (a commit, a finalize) finishes before anything closes
        if self._threads:
            await asyncio.wait(list(self._threads), timeout=60)
        for of in [*held, *self._files.values()]:
            of.refs = 0
            of.fill = None
            self._retire(of)
        self._files.clear()

