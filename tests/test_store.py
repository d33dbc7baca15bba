"""The store in one process: blobs, aliases, partials, integrity, resume."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import blake3
import pytest

from hoard.store.config import StoreConfig
from hoard.store.errors import IntegrityError
from hoard.store.hashing import git_blob_sha1
from hoard.store.partial import Partial
from hoard.store.records import BlobRecord, ExpectedHash
from hoard.store.store import Published, Store

from .conftest import CHUNK
from .harness import wait_for


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fill(partial: Partial, data: bytes, order: list[int] | None = None) -> list[int]:
    """Fill every listed chunk of ``partial`` from ``data``; returns chunks found bad."""
    bad: list[int] = []
    for i in order if order is not None else range(partial.nchunks):
        w = partial.claim(i)
        assert w is not None, f"chunk {i} could not be claimed"
        w.write(data[w.start : w.end])
        bad += w.commit()
    return bad


def test_add_file_dedups_and_names_blob_by_blake3(store: Store, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    a = tmp_path / "a.bin"
    b = tmp_path / "b.bin"
    a.write_bytes(data)
    b.write_bytes(data)
    b3a, size = store.add_file(a, aliases=["url:http://x/a"])
    b3b, _ = store.add_file(b, expected=ExpectedHash("sha256", sha256(data)))
    assert b3a == b3b == blake3.blake3(data).hexdigest()
    assert size == len(data)
    path = store.blob_path(b3a)
    assert path.read_bytes() == data
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    assert store.resolve("url:http://x/a") == b3a
    assert store.resolve("sha256:" + sha256(data)) == b3a
    assert store.usage()["blobs"] == 1
    assert list(store.layout.tmp.iterdir()) == []


def test_add_file_with_wrong_expected_hash_publishes_nothing(store: Store, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"payload")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        store.add_file(f, expected=ExpectedHash("sha256", "0" * 64))
    assert store.usage()["blobs"] == 0
    assert list(store.layout.tmp.iterdir()) == []
    assert not any(store.layout.blobs.rglob("*") if store.layout.blobs.exists() else [])


def test_partial_out_of_order_fill_publishes_verified_blob(store: Store) -> None:
    data = os.urandom(5 * CHUNK + 123)
    alias = "sha256:" + sha256(data)
    p = store.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p, Partial) and p.nchunks == 6
    assert fill(p, data, [3, 1, 0, 5, 2, 4]) == []
    b3 = p.finalize()
    assert b3 == blake3.blake3(data).hexdigest()
    store.release(p)
    assert store.blob_path(b3).read_bytes() == data
    assert store.index.get_partial(alias) is None
    assert list(store.layout.partial.iterdir()) == []
    assert store.open_file(alias, len(data)) == Published(b3)


def test_git_sha1_identity(store: Store) -> None:
    data = b'{"model_type": "bert"}\n'
    sha1 = git_blob_sha1(data)
    p = store.open_file("gitsha1:" + sha1, len(data), ExpectedHash("gitsha1", sha1))
    assert isinstance(p, Partial)
    fill(p, data)
    assert p.finalize() == blake3.blake3(data).hexdigest()


def test_hash_mismatch_discards_partial_and_publishes_nothing(store: Store) -> None:
    data = os.urandom(3 * CHUNK)
    wrong = bytearray(data)
    wrong[CHUNK + 7] ^= 0xFF
    alias = "sha256:" + sha256(data)
    p = store.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p, Partial)
    fill(p, bytes(wrong))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        p.finalize()
    store.release(p)
    assert store.index.get_partial(alias) is None
    assert store.resolve(alias) is None
    assert store.usage()["blobs"] == 0
    assert list(store.layout.partial.iterdir()) == []


def test_corrupt_chunk_on_disk_is_dropped_and_refetched(home: Path) -> None:
    data = os.urandom(4 * CHUNK)
    alias = "sha256:" + sha256(data)
    s1 = Store(StoreConfig(home, chunk_size=CHUNK))
    p = s1.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p, Partial)
    fill(p, data, [1, 2, 3])  # chunk 0 missing: nothing hashed yet
    s1.close()  # the filler goes away; its chunks are on disk only
    with open(p.path, "r+b") as fh:  # bit rot in chunk 2 while it sits on disk
        fh.seek(2 * CHUNK + 5)
        fh.write(b"\x00" if data[2 * CHUNK + 5] else b"\x01")
    s2 = Store(StoreConfig(home, chunk_size=CHUNK))
    p2 = s2.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p2, Partial)
    bad = fill(p2, data, [0])
    assert bad == [2]
    assert not p2.present(2)
    assert p2.finalize() is None
    fill(p2, data, [2])
    assert p2.finalize() == blake3.blake3(data).hexdigest()
    s2.close()


def test_partial_resumes_after_reopen(home: Path) -> None:
    data = os.urandom(4 * CHUNK + 1)
    alias = "sha256:" + sha256(data)
    s1 = Store(StoreConfig(home, chunk_size=CHUNK))
    p = s1.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p, Partial)
    fill(p, data, [0, 2])
    w = p.claim(3)
    assert w is not None
    w.write(data[w.start : w.start + 100])  # in flight when the process "dies"
    s1.close()

    s2 = Store(StoreConfig(home, chunk_size=CHUNK))
    p2 = s2.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p2, Partial)
    assert sorted(i for i in range(p2.nchunks) if p2.present(i)) == [0, 2]
    fill(p2, data, [1, 3, 4])
    assert p2.finalize() == blake3.blake3(data).hexdigest()
    s2.close()


def test_lost_partial_file_starts_over(store: Store) -> None:
    data = os.urandom(2 * CHUNK)
    alias = "sha256:" + sha256(data)
    p = store.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p, Partial)
    fill(p, data, [0])
    store.release(p)
    os.unlink(p.path)  # deleted by hand
    p2 = store.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p2, Partial)
    assert not p2.present(0)
    fill(p2, data)
    assert p2.finalize() == blake3.blake3(data).hexdigest()


def test_claims_are_exclusive_across_threads(store: Store) -> None:
    data = os.urandom(8 * CHUNK)
    alias = "sha256:" + sha256(data)
    p = store.open_file(alias, len(data), ExpectedHash("sha256", sha256(data)))
    assert isinstance(p, Partial)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for i in range(p.nchunks):
            w = p.claim(i)
            if w is None:
                continue
            with lock:
                claimed.append(i)
            w.write(data[w.start : w.end])
            w.commit()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == list(range(8))
    assert p.finalize() == blake3.blake3(data).hexdigest()


def test_same_partial_instance_shared_in_process(store: Store) -> None:
    data = os.urandom(CHUNK + 1)
    alias = "sha256:" + sha256(data)
    a = store.open_file(alias, len(data))
    b = store.open_file(alias, len(data))
    assert a is b
    store.release(a)
    store.release(b)


def test_zero_length_file(store: Store) -> None:
    alias = "sha256:" + sha256(b"")
    p = store.open_file(alias, 0, ExpectedHash("sha256", sha256(b"")))
    assert isinstance(p, Partial)
    fill(p, b"")
    assert p.finalize() == blake3.blake3(b"").hexdigest()


def test_chunk_overflow_and_short_commit_are_refused(store: Store) -> None:
    data = os.urandom(CHUNK * 2)
    p = store.open_file("sha256:" + sha256(data), len(data))
    assert isinstance(p, Partial)
    w = p.claim(0)
    assert w is not None
    with pytest.raises(IntegrityError, match="overflows"):
        w.write(data[: CHUNK + 1])
    w.write(data[:10])
    with pytest.raises(IntegrityError, match="short"):
        w.commit()
    assert not p.present(0)
    assert p.claim(0) is not None  # the failed commit released the claim


def used_ago(store: Store, b3: str, seconds: int) -> int:
    """Record (through the index API) that the blob was last used ``seconds`` ago."""
    rec = store.blob(b3).record  # type: ignore[union-attr]
    when = int(time.time()) - seconds
    with store.index.write() as txn:
        store.index.put_blob_in(txn, b3, BlobRecord(rec.size, rec.created, when, rec.pins))
    return when


def test_touch_updates_last_access_in_batches(store: Store) -> None:
    b3, _ = store.add_bytes(b"x" * 10)
    seen = used_ago(store, b3, 10)  # well within half of gc_grace: a hot blob
    store.touch(b3)
    assert store.blob(b3).record.last_access == seen  # type: ignore[union-attr]  # not yet: batched
    assert store.last_access(b3, store.blob(b3).record) > seen  # type: ignore[union-attr]  # known here
    store.flush_access()
    assert store.blob(b3).record.last_access >= seen + 10  # type: ignore[union-attr]


def test_first_use_in_a_grace_period_reaches_the_index_at_once(store: Store) -> None:
    """A separate gc process must see a use of a blob idle for long, without waiting for the
    periodic flush: touch() writes it from a thread of its own within moments."""
    b3, _ = store.add_bytes(b"y" * 10)
    seen = used_ago(store, b3, 3600)  # older than half of gc_grace (600 s)
    store.touch(b3)
    wait_for(lambda: store.blob(b3).record.last_access > seen, timeout=10)  # type: ignore[union-attr]


def test_open_blob_holds_a_shared_lock_gc_can_see(store: Store, tmp_path: Path) -> None:
    import fcntl

    b3, _ = store.add_bytes(b"some model bytes")
    fd = store.open_blob(b3)
    assert fd is not None
    probe = os.open(store.blob_path(b3), os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):  # what gc tries before deleting a blob
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it any more
        assert store.open_blob(b3) is None  # while "gc" holds it, readers treat it as gone
    finally:
        os.close(probe)
    assert store.open_blob("0" * 64) is None
