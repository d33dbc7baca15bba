"""gc plans then executes, keeps what is pinned or in use; verify finds and removes damage."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from hoard.store.address import parse_address
from hoard.store.catalog import add_directory, execute_remove, pin_target, plan_remove
from hoard.store.gc import execute_gc, plan_gc
from hoard.store.partial import Partial
from hoard.store.records import BlobRecord, ExpectedHash, Snapshot, TreeEntry
from hoard.store.store import Store
from hoard.store.verify import select_blobs, verify

from .conftest import CHUNK


def add_blob(store: Store, tmp_path: Path, name: str, size: int, last_access: int) -> str:
    f = tmp_path / name
    f.write_bytes(os.urandom(size))
    b3, _ = store.add_file(f)
    rec = store.blob(b3).record  # type: ignore[union-attr]
    with store.index.write() as txn:
        store.index.put_blob_in(txn, b3, BlobRecord(rec.size, rec.created, last_access, rec.pins))
    return b3


def test_gc_removes_least_recently_used_first(store: Store, tmp_path: Path) -> None:
    old = add_blob(store, tmp_path, "old", 1000, 100)
    mid = add_blob(store, tmp_path, "mid", 1000, 200)
    new = add_blob(store, tmp_path, "new", 1000, 300)
    plan = plan_gc(store, max_size=1500)
    assert [v.name for v in plan.victims] == [old, mid]
    assert plan.total_before == 3000 and plan.total_after == 1000
    # dry run changed nothing
    assert store.blob(old) is not None and store.blob_path(old).exists()
    result = execute_gc(store, plan)
    assert result.removed == 2 and result.freed == 2000
    assert store.blob(old) is None and not store.blob_path(old).exists()
    assert store.blob(mid) is None
    assert store.blob(new) is not None


def test_gc_never_removes_pinned_blob_or_pinned_snapshot(store: Store, tmp_path: Path) -> None:
    # a revision with an origin (so only its pin keeps it) and two loose blobs, one pinned
    in_snap = add_blob(store, tmp_path, "w.bin", 2000, 1)
    files = {"w.bin": TreeEntry.of_hash(2000, ExpectedHash("blake3", in_snap))}
    store.put_snapshot("huggingface/org/m", "a" * 40, Snapshot(files, 1), refs=["main"])
    store.pin(pin_target(store, parse_address("huggingface/org/m")))
    loose = add_blob(store, tmp_path, "loose", 1000, 1)
    pinned = add_blob(store, tmp_path, "pinned", 1000, 1)
    store.pin(f"blob:{pinned}")
    plan = plan_gc(store, max_size=0)
    assert [v.name for v in plan.victims] == [loose]
    assert {k.name: k.reason for k in plan.kept} == {
        in_snap: f"pinned revision huggingface/org/m@{'a' * 40}",
        pinned: "pinned",
    }
    execute_gc(store, plan)
    assert store.blob(loose) is None and not store.blob_path(loose).exists()
    for kept in (in_snap, pinned):
        assert store.blob(kept) is not None and store.blob_path(kept).exists()
    assert store.usage()["blobs"] == 2


def test_gc_execution_rechecks_pins_added_after_planning(store: Store, tmp_path: Path) -> None:
    b3 = add_blob(store, tmp_path, "x", 1000, 1)
    plan = plan_gc(store, max_size=0)
    assert [v.name for v in plan.victims] == [b3]
    store.pin(f"blob:{b3}")
    result = execute_gc(store, plan)
    assert result.removed == 0 and result.skipped == 1
    assert store.blob(b3) is not None


def test_gc_keeps_partial_being_filled_and_removes_idle_one(store: Store, home: Path) -> None:
    busy_data = os.urandom(2 * CHUNK)
    idle_data = os.urandom(2 * CHUNK)
    busy = store.open_file("sha256:" + hashlib.sha256(busy_data).hexdigest(), len(busy_data))
    assert isinstance(busy, Partial)
    w = busy.claim(0)
    assert w is not None
    w.write(busy_data[: CHUNK])
    w.commit()
    # an idle partial: filled once, then its process went away
    from hoard.store.config import StoreConfig

    other = Store(StoreConfig(home, chunk_size=CHUNK))
    idle_alias = "sha256:" + hashlib.sha256(idle_data).hexdigest()
    idle = other.open_file(idle_alias, len(idle_data))
    assert isinstance(idle, Partial)
    w = idle.claim(1)
    assert w is not None
    w.write(idle_data[CHUNK:])
    w.commit()
    other.release(idle)  # closes its file: the live lock is gone
    other.close()
    plan = plan_gc(store, max_size=0)
    assert plan.busy_partials == 1
    assert [(v.kind, v.name) for v in plan.victims] == [("partial", idle_alias)]
    execute_gc(store, plan)
    assert store.index.get_partial(idle_alias) is None
    assert store.index.get_partial(busy.alias) is not None
    assert busy.path.exists()


def test_gc_cleans_stale_temp_files(store: Store) -> None:
    stale = store.layout.tmp / "ingest.1.dead"
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = store.layout.tmp / "ingest.2.live"
    fresh.write_bytes(b"y")
    plan = plan_gc(store, max_size=None)
    assert [v.name for v in plan.victims] == [str(stale)]
    execute_gc(store, plan)
    assert not stale.exists() and fresh.exists()


def test_verify_finds_and_removes_damaged_blob(store: Store, tmp_path: Path) -> None:
    good = add_blob(store, tmp_path, "good", 5000, 1)
    bad = add_blob(store, tmp_path, "bad", 5000, 1)
    path = store.blob_path(bad)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff\xfe")
    report = verify(store, select_blobs(store), dry_run=True)
    assert [(f.kind, f.name) for f in report.findings] == [("damaged", bad)]
    assert store.blob(bad) is not None  # dry run
    report = verify(store, select_blobs(store))
    assert report.repaired
    assert store.blob(bad) is None and not path.exists()
    assert store.blob(good) is not None
    assert verify(store, select_blobs(store)).ok


def test_verify_sets_damaged_local_content_aside_next_to_an_earlier_copy(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(5000))
    rev, snap = add_directory(store, src, parse_address("local/me/m"))
    b3 = store.resolve(snap.files["w.bin"].identity)
    assert b3 is not None
    earlier = store.layout.quarantine_path(b3)  # other bytes set aside under that name before
    earlier.parent.mkdir()
    earlier.write_bytes(b"set aside by an earlier run")
    path = store.blob_path(b3)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(b"\xff\xfe")
    damaged = path.read_bytes()
    report = verify(store, select_blobs(store))
    assert [f.kind for f in report.findings] == ["damaged"] and report.repaired
    aside = Path(f"{earlier}.1")
    assert [(q.b3, q.path, q.used_by) for q in report.quarantined] == [(b3, str(aside), f"local/me/m@{rev}")]
    assert aside.read_bytes() == damaged and earlier.read_bytes() == b"set aside by an earlier run"
    assert store.blob(b3) is None and not path.exists()
    assert verify(store, select_blobs(store)).ok


def test_verify_deep_checks_upstream_hash(store: Store, tmp_path: Path) -> None:
    data = os.urandom(1000)
    f = tmp_path / "f"
    f.write_bytes(data)
    b3, _ = store.add_file(f)
    store.add_alias("sha256:" + "0" * 64, b3)  # an alias that lies about the content
    assert verify(store, select_blobs(store), dry_run=True).ok
    report = verify(store, select_blobs(store), deep=True, dry_run=True)
    assert [f.kind for f in report.findings] == ["damaged"]


def test_verify_reports_missing_file_and_orphans(store: Store, tmp_path: Path) -> None:
    gone = add_blob(store, tmp_path, "gone", 100, 1)
    os.unlink(store.blob_path(gone))
    orphan = store.layout.blobs / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"junk")
    # a young unindexed file may be a blob being published: left alone by default
    young = verify(store, select_blobs(store), dry_run=True)
    assert [(f.kind, f.name) for f in young.findings] == [("missing", gone)]
    # its ctime cannot be set back; a zero publish grace makes it old enough
    report = verify(store, select_blobs(store), publish_grace=0)
    kinds = sorted(f.kind for f in report.findings)
    assert kinds == ["missing", "orphan"]
    assert store.blob(gone) is None and not orphan.exists()
    assert verify(store, select_blobs(store), publish_grace=0).ok


def test_verify_sample_and_subset(store: Store, tmp_path: Path) -> None:
    blobs = {add_blob(store, tmp_path, f"b{i}", 100, 1) for i in range(20)}
    assert len(select_blobs(store, sample="5")) == 5
    assert len(select_blobs(store, sample="50%")) == 10
    parts = [set(b for b, _ in select_blobs(store, subset=f"{i}/4")) for i in range(1, 5)]
    assert set().union(*parts) == blobs
    assert sum(len(p) for p in parts) == 20


def test_rm_repo_keeps_blobs_shared_with_other_repos(store: Store, tmp_path: Path) -> None:
    shared = os.urandom(3000)
    for name, extra in (("a", b"only-a"), ("b", b"only-b")):
        d = tmp_path / name
        d.mkdir()
        (d / "shared.bin").write_bytes(shared)
        (d / "own.txt").write_bytes(extra)
        add_directory(store, d, parse_address(f"local/me/{name}"))
    plan = plan_remove(store, parse_address("local/me/a"))
    assert len(plan.blobs) == 1  # own.txt only
    execute_remove(store, plan)
    assert store.repos() == ["local/me/b"]
    assert store.usage()["blobs"] == 2
