"""Last-access times of blobs: written in batches, except a blob's first use in a while.

gc evicts the least recently used blobs and never one used within ``gc_grace`` seconds, so
it must see recent uses, including uses by other processes. Writing the index on every read
would cost an LMDB write transaction per request; instead uses are kept in memory and
flushed every ``access_flush_interval`` seconds (30 s by default) by a running proxy or
mount. That alone would let a separate ``hoard gc`` see a blob served a moment ago as idle,
so :meth:`AccessLog.touch` also reads the blob's record (an LMDB read: no lock, no write)
and, when its recorded last access is older than half the grace period, asks for a flush at
once. A hot blob therefore costs one index write per half grace period, and a cold one
becomes visible to gc within moments of its first use.

The prompt flush runs in a thread of its own, never in the caller: ``touch`` is called on
the proxy's event loop, and a write transaction may wait for another process's writer
(LMDB allows one at a time across processes) for as long as that one runs. The thread is
started on the first prompt flush and stopped by :meth:`AccessLog.close`.
"""

from __future__ import annotations

import logging
import threading
import time

from .index import Index
from .records import BlobRecord

__all__ = ["AccessLog"]

log = logging.getLogger("hoard.store")


class AccessLog:
    """Pending last-access times of one process, and the thread that writes them early."""

    def __init__(self, index: Index, grace: float, flush_interval: float) -> None:
        self._index = index
        self._grace = grace
        self._interval = flush_interval
        self._lock = threading.Lock()
        self._touched: dict[str, int] = {}
        self._last_flush = time.monotonic()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def touch(self, b3: str) -> None:
        """Note a use of a blob now; flushed at once if the index last saw it long ago."""
        now = int(time.time())
        with self._lock:
            self._touched[b3] = now
        if self._grace <= 0:
            return  # gc has no grace period to respect: the batch is soon enough
        rec = self._index.get_blob(b3)
        if rec is not None and now - rec.last_access >= self._grace / 2:
            self._kick()

    def pending(self, b3: str) -> int | None:
        """This process's last use of a blob not yet written to the index, if any."""
        return self._touched.get(b3)

    def flush_due(self) -> bool:
        return bool(self._touched) and time.monotonic() - self._last_flush > self._interval

    def flush(self) -> None:
        """Write every pending time to the index in one transaction (later times only)."""
        with self._lock:
            touched, self._touched = self._touched, {}
            self._last_flush = time.monotonic()
        if not touched:
            return
        try:
            with self._index.write() as txn:
                for b3, when in touched.items():
                    rec = self._index.get_blob(b3, txn)
                    if rec is not None and rec.last_access < when:
                        self._index.put_blob_in(txn, b3, BlobRecord(rec.size, rec.created, when, rec.pins))
        except BaseException:
            with self._lock:  # keep them for the next try (newer uses win)
                for b3, when in touched.items():
                    self._touched[b3] = max(when, self._touched.get(b3, 0))
            raise

    def _kick(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="hoard-access")
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - kept for the next flush; logged
                log.warning("writing last-access times: %s", exc)

    def close(self) -> None:
        """Stop the flush thread and write what is pending (a failure is logged: losing a
        few access times only makes gc's choice less informed)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(30)
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("writing last-access times on close: %s", exc)
