"""Data that no origin can give back is never lost; what is in use is never collected.

* gc never collects content of the ``local`` source (or any snapshot marked ``no_origin``):
  only ``hoard rm`` removes it, and ``gc --dry-run`` says why it keeps it;
* ``hoard rm`` of a file or a repo keeps every blob something else still uses;
* gc keeps a blob used within ``gc_grace`` (even by another process that has not flushed its
  batch of access times) and a blob some process holds open, partials become blobs included;
* gc, rm and verify delete through one path, and leave a store ``hoard verify`` finds clean;
* ``hoard import`` records a bundle's revision only with all its content, and never over
  another tree of the same revision; ``hoard verify`` moves damaged content no origin can give
  back to the quarantine instead of deleting it.

The CLI runs as real processes; the proxy is the real one on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoard.store.address import parse_address
from hoard.store.catalog import add_directory
from hoard.store.config import StoreConfig
from hoard.store.gc import execute_gc, plan_gc
from hoard.store.partial import Partial
from hoard.store.records import BlobRecord, ExpectedHash, Snapshot, TreeEntry
from hoard.store.store import Store
from hoard.store.transfer import export, import_path
from hoard.store.verify import select_blobs, verify

from .conftest import CHUNK
from .harness import ProxyThread, wait_for
from .httpcalls import call

HOARD = [sys.executable, "-m", "hoard.cli.main"]


def hoard(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*HOARD, *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, f"hoard {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def hoard_json(env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(hoard(env, *args, "--json").stdout)  # type: ignore[no-any-return]


def no_grace(home: Path) -> None:
    """config.toml: gc may take anything not used this very second (so only the rules under
    test keep a blob)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("gc_grace = 0\n")


def used_ago(store: Store, b3: str, seconds: int) -> int:
    """Record (through the index API) that the blob was last used ``seconds`` ago."""
    rec = store.blob(b3).record  # type: ignore[union-attr]
    when = int(time.time()) - seconds
    with store.index.write() as txn:
        store.index.put_blob_in(txn, b3, BlobRecord(rec.size, rec.created, when, rec.pins))
    return when


def blob_of(env: dict[str, str], address: str) -> tuple[str, Path]:
    info = hoard_json(env, "info", address)
    return info["blake3"], Path(info["blob_path"])


# -- item 1: content with no origin ------------------------------------------------------------


def test_gc_never_collects_local_content_whose_source_is_gone(
    hoard_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    weights = os.urandom(300_000)
    (src / "sub" / "w.bin").write_bytes(weights)
    (src / "config.json").write_text('{"a": 1}\n')
    no_grace(home)
    rev = hoard_json(hoard_env, "add", str(src), "local/me/m@v1")["revision"]
    shutil.rmtree(src)  # the store now holds the only copy

    plan = hoard_json(hoard_env, "gc", "--max-size", "0", "--dry-run")
    assert plan["victims"] == []
    assert [k["reason"] for k in plan["kept"]] == [f"no origin (local/me/m@{rev})"] * 2
    assert "no origin (local/me/m@" in hoard(hoard_env, "gc", "--max-size", "0", "--dry-run").stdout
    done = hoard_json(hoard_env, "gc", "--max-size", "0")
    assert done["result"]["removed"] == 0
    b3, path = blob_of(hoard_env, "local/me/m/sub/w.bin")
    assert path.read_bytes() == weights
    hoard(hoard_env, "verify")

    # only `hoard rm` removes it
    removed = hoard_json(hoard_env, "rm", "local/me/m")
    assert b3 in removed["blobs"] and not path.exists()
    hoard(hoard_env, "verify")


def test_gc_keeps_a_blob_any_origin_less_snapshot_uses(store: Store, tmp_path: Path) -> None:
    """Content shared between a repo with an origin and a pushed one (``no_origin``) stays,
    even once the repo with the origin is gone."""
    data = os.urandom(5000)
    b3, _ = store.add_bytes(data)
    used_ago(store, b3, 10_000)
    entry = {"w.bin": TreeEntry.of_hash(len(data), ExpectedHash("blake3", b3))}
    store.put_snapshot("huggingface/org/m", "a" * 40, Snapshot(entry, 1))
    assert [v.name for v in plan_gc(store, 0).victims] == [b3]
    store.put_snapshot("huggingface/me/pushed", "b" * 40, Snapshot(entry, 1, {"no_origin": True}))
    plan = plan_gc(store, 0)
    assert plan.victims == []
    assert [k.reason for k in plan.kept] == [f"no origin (huggingface/me/pushed@{'b' * 40})"]
    execute_gc(store, plan)
    assert store.blob(b3) is not None and store.blob_path(b3).read_bytes() == data


def test_execution_rechecks_a_local_snapshot_recorded_after_planning(store: Store) -> None:
    data = os.urandom(5000)
    b3, _ = store.add_bytes(data)
    used_ago(store, b3, 10_000)
    plan = plan_gc(store, 0)
    assert [v.name for v in plan.victims] == [b3]
    snap = Snapshot({"w": TreeEntry.of_hash(5000, ExpectedHash("blake3", b3))}, 1)
    missing = store.put_snapshot_if_complete("local/me/m", "c" * 40, snap)
    assert missing == []
    result = execute_gc(store, plan)
    assert result.removed == 0 and result.kept == {b3: f"no origin (local/me/m@{'c' * 40})"}
    assert store.blob_path(b3).read_bytes() == data


def test_a_snapshot_of_local_content_is_recorded_only_with_all_its_blobs(store: Store) -> None:
    b3, _ = store.add_bytes(b"local bytes")
    execute_gc(store, plan_gc(store, 0, now=time.time() + 3600))  # collected before recording
    assert store.blob(b3) is None
    snap = Snapshot({"f": TreeEntry.of_hash(11, ExpectedHash("blake3", b3))}, 1)
    assert store.put_snapshot_if_complete("local/me/m", "d" * 40, snap, ["main"]) == ["f"]
    assert store.get_snapshot("local/me/m", "d" * 40) is None and store.refs("local/me/m") == {}


# -- item 2: rm keeps what is used elsewhere -----------------------------------------------------


def test_rm_of_a_file_keeps_a_blob_another_repo_or_file_uses(
    hoard_env: dict[str, str], tmp_path: Path
) -> None:
    shared = os.urandom(100_000)
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "w.bin").write_bytes(shared)
        (d / "own.txt").write_text(f"only {name}\n")
        (d / "copy.txt").write_text(f"only {name}\n")  # same content as own.txt
        hoard(hoard_env, "add", str(d), f"local/me/{name}")
    b3, path = blob_of(hoard_env, "local/me/b/w.bin")

    gone = hoard_json(hoard_env, "rm", "local/me/a/w.bin")
    assert gone["blobs"] == [] and gone["kept_shared"] == [b3]
    assert path.read_bytes() == shared
    own, own_path = blob_of(hoard_env, "local/me/a/own.txt")
    gone = hoard_json(hoard_env, "rm", "local/me/a/own.txt")  # copy.txt has the same bytes
    assert gone["blobs"] == [] and gone["kept_shared"] == [own]
    assert own_path.exists()
    hoard(hoard_env, "verify")

    # removing a whole repo keeps what the other one uses, and frees what only it used
    gone = hoard_json(hoard_env, "rm", "local/me/a")
    assert gone["blobs"] == [own] and gone["kept_shared"] == [b3]
    assert path.read_bytes() == shared and not own_path.exists()
    hoard(hoard_env, "verify")


# -- item 3: recently used and open blobs ----------------------------------------------------------


def test_gc_in_another_process_keeps_a_blob_the_proxy_served_a_moment_ago(
    hoard_env: dict[str, str], home: Path
) -> None:
    with ProxyThread(home, "http://127.0.0.1:9") as px:
        data = os.urandom(50_000)
        b3, _ = px.store.add_bytes(data)
        # a file of a public revision (a blob no revision uses goes to the admin only)
        entry = TreeEntry.of_hash(len(data), ExpectedHash("blake3", b3))
        px.store.put_snapshot("huggingface/org/m", "a" * 40, Snapshot({"w.bin": entry}, 1))
        idle_since = used_ago(px.store, b3, 3600)  # idle for an hour: gc's first choice
        got = call("GET", f"{px.url}/v1/blobs/{b3}")
        assert got.status == 200 and got.body == data
        # the proxy's periodic flush is 30 s away; this use reaches the index at once
        wait_for(lambda: px.store.blob(b3).record.last_access > idle_since, timeout=10)  # type: ignore[union-attr]
        plan = hoard_json(hoard_env, "gc", "--max-size", "0")
        assert plan["victims"] == []
        assert [(k["name"], k["reason"]) for k in plan["kept"]] == [(b3, "used within gc_grace")]
        assert call("GET", f"{px.url}/v1/blobs/{b3}").body == data


def test_gc_keeps_a_blob_held_open_and_takes_it_once_closed(store: Store) -> None:
    data = os.urandom(5000)
    b3, _ = store.add_bytes(data)
    used_ago(store, b3, 3600)
    fd = store.open_blob(b3)
    assert fd is not None
    try:
        plan = plan_gc(store, 0)
        assert plan.victims == [] and [(k.name, k.reason) for k in plan.kept] == [(b3, "open")]
        os.close(fd)
        plan = plan_gc(store, 0)
        assert [v.name for v in plan.victims] == [b3]
        fd = store.open_blob(b3)  # opened between plan and execution: execution sees it
        assert fd is not None
        result = execute_gc(store, plan)
        assert result.removed == 0 and result.kept == {b3: "open"}
        assert os.pread(fd, len(data), 0) == data and store.blob(b3) is not None
    finally:
        os.close(fd)
    assert execute_gc(store, plan_gc(store, 0)).removed == 1
    assert store.blob(b3) is None and not store.blob_path(b3).exists()
    assert verify(store, select_blobs(store)).ok


def test_gc_keeps_a_blob_published_from_a_partial_some_process_still_holds(home: Path) -> None:
    data = os.urandom(3 * CHUNK)
    sha = hashlib.sha256(data).hexdigest()
    filler = Store(StoreConfig(home, chunk_size=CHUNK))
    gc_side = Store(StoreConfig(home, chunk_size=CHUNK))
    try:
        p = filler.open_file("sha256:" + sha, len(data), ExpectedHash("sha256", sha))
        assert isinstance(p, Partial)
        for i in range(p.nchunks):
            w = p.claim(i)
            assert w is not None
            w.write(data[w.start : w.end])
            w.commit()
        b3 = p.finalize()
        assert b3 is not None
        later = time.time() + 3600  # as if gc ran an hour later: the grace period is over
        plan = plan_gc(gc_side, 0, now=later)
        assert plan.victims == [] and [(k.name, k.reason) for k in plan.kept] == [(b3, "open")]
        filler.release(p)  # the filler lets go of the partial (and so of the blob's inode)
        assert execute_gc(gc_side, plan_gc(gc_side, 0, now=later)).removed == 1
        assert gc_side.blob(b3) is None
    finally:
        filler.close()
        gc_side.close()


# -- item 4: one removal path, a clean store after it ----------------------------------------------


def test_verify_drops_a_dangling_alias_with_its_reverse_entry(store: Store) -> None:
    ghost = "f" * 64  # a blob the index does not have
    store.add_alias("sha256:" + "1" * 64, ghost)
    report = verify(store, select_blobs(store))
    assert [f.kind for f in report.findings] == ["dangling_alias"] and report.repaired
    with store.index.read() as txn:
        assert store.index.aliases_of(ghost, txn) == []
    assert store.resolve("sha256:" + "1" * 64) is None
    assert verify(store, select_blobs(store)).ok


def test_gc_rm_and_verify_leave_a_clean_store(store: Store, tmp_path: Path) -> None:
    from hoard.store.address import parse_address
    from hoard.store.catalog import execute_remove, plan_remove

    blobs = []
    for i in range(4):
        b3, _ = store.add_bytes(os.urandom(2000 + i), aliases=[f"sha256:{i:064x}"])
        used_ago(store, b3, 3600 if i < 2 else 7200)  # the two no snapshot uses are older
        blobs.append(b3)
    files = {f"f{i}": TreeEntry.of_hash(2000 + i, ExpectedHash("sha256", f"{i:064x}")) for i in range(2)}
    store.put_snapshot("huggingface/org/m", "e" * 40, Snapshot(files, 1), refs=["main"])
    execute_gc(store, plan_gc(store, 2000 + 2001))
    assert sorted(b for b in blobs if store.blob(b) is not None) == sorted(blobs[:2])
    assert verify(store, select_blobs(store)).ok
    execute_remove(store, plan_remove(store, parse_address("huggingface/org/m")))
    assert store.usage()["blobs"] == 0 and store.repos() == []
    assert verify(store, select_blobs(store)).ok
    with store.index.read() as txn:
        assert list(store.index.iter_aliases(txn)) == [] and list(store.index.iter_reverse_aliases(txn)) == []


# -- item 5: bundles and damage of content no origin can give back -------------------------------


def _origin_less_bundle(tmp_path: Path, kind: str) -> tuple[Path, str, str, dict[str, bytes]]:
    """A `hoard export --format hoard` bundle of two files no origin can give back: a ``local``
    repo, or a Hugging Face repo whose revision is marked ``no_origin`` (pushed content)."""
    files = {"a.bin": os.urandom(40_000), "b.bin": os.urandom(50_000)}
    with Store(StoreConfig(tmp_path / "source-home")) as src:
        if kind == "local":
            folder = tmp_path / "src"
            folder.mkdir()
            for name, data in files.items():
                (folder / name).write_bytes(data)
            repo = "local/me/m"
            rev, _ = add_directory(src, folder, parse_address(repo))
        else:
            entries = {}
            for name, data in files.items():
                b3, _ = src.add_bytes(data)
                entries[name] = TreeEntry.of_hash(len(data), ExpectedHash("blake3", b3))
            repo, rev = "huggingface/me/pushed", "b" * 40
            src.put_snapshot(repo, rev, Snapshot(entries, 1, {"no_origin": True}), refs=["main"])
        export(src, parse_address(repo), tmp_path / "bundle", "hoard")
    return tmp_path / "bundle", repo, rev, files


@pytest.mark.parametrize("kind", ["local", "no_origin"])
def test_import_adds_again_what_gc_took_before_the_revision_was_recorded(tmp_path: Path, kind: str) -> None:
    bundle, repo, rev, files = _origin_less_bundle(tmp_path, kind)
    with Store(StoreConfig(tmp_path / "home", gc_grace=0)) as store:
        added = 0
        collected: list[int] = []

        def progress(n: int) -> None:
            """a.bin is in the store and b.bin on its way when gc runs (once)."""
            nonlocal added
            added += n
            if added > len(files["a.bin"]) and not collected:
                collected.append(execute_gc(store, plan_gc(store, 0)).removed)

        report = import_path(store, bundle, progress)
        assert collected == [1]  # a.bin's blob: nothing kept it before its revision was recorded
        assert report.revisions == [f"{repo}@{rev}"]
        snap = store.get_snapshot(repo, rev)
        assert snap is not None
        for path, data in files.items():
            b3 = store.resolve(snap.files[path].identity)
            assert b3 is not None, path
            assert store.blob_path(b3).read_bytes() == data
        plan = plan_gc(store, 0)  # from now on the revision keeps them
        assert plan.victims == [] and {k.reason for k in plan.kept} == {f"no origin ({repo}@{rev})"}


def test_put_snapshot_if_absent_never_replaces_a_stored_revision(store: Store, home: Path) -> None:
    repo, rev = "huggingface/me/pushed", "c" * 40
    one, _ = store.add_bytes(b"one")
    two, _ = store.add_bytes(b"two")
    first = Snapshot({"f": TreeEntry.of_hash(3, ExpectedHash("blake3", one))}, 1)
    assert store.put_snapshot_if_absent(repo, rev, first, ["main"]) is None
    # the same tree again (other info): nothing written, no ref moved
    again = Snapshot(first.files, 2, {"note": "again"})
    assert store.put_snapshot_if_absent(repo, rev, again, ["main", "v1"]) is None
    # another tree: the stored one comes back, nothing is written, no ref moves
    other = Snapshot({"f": TreeEntry.of_hash(3, ExpectedHash("blake3", two))}, 3)
    assert store.put_snapshot_if_absent(repo, rev, other, ["main", "v2"]) == first
    with Store(StoreConfig(home)) as fresh:  # what the index holds, not this process's cache
        assert fresh.get_snapshot(repo, rev) == first
        assert sorted(fresh.refs(repo)) == ["main"] and fresh.refs(repo)["main"].revision == rev


def test_identity_users_names_every_revision_using_an_identity(store: Store) -> None:
    identity = ExpectedHash("sha256", "1" * 64)
    entry = TreeEntry.of_hash(3, identity)
    store.put_snapshot("huggingface/org/pub", "a" * 40, Snapshot({"f": entry}, 1))
    store.put_snapshot("huggingface/org/priv", "b" * 40, Snapshot({"g": entry}, 1, {"private": True}))
    assert store.identity_users("sha256:" + "1" * 64) == [
        ("huggingface/org/priv", "b" * 40, True),
        ("huggingface/org/pub", "a" * 40, False),
    ]
    assert store.identity_users("sha256:" + "2" * 64) == []


def _damage(path: Path) -> bytes:
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xde\xad\xbe\xef")
    return path.read_bytes()


def test_verify_moves_damaged_local_content_to_the_quarantine(
    hoard_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(200_000))
    rev = hoard_json(hoard_env, "add", str(src), "local/me/m")["revision"]
    local, local_path = blob_of(hoard_env, "local/me/m/w.bin")
    hub_data = os.urandom(100_000)
    sha = ExpectedHash("sha256", hashlib.sha256(hub_data).hexdigest())
    with Store(StoreConfig(home)) as s:  # a Hub file: its origin gives it back
        hub, _ = s.add_bytes(hub_data, expected=sha)
        s.put_snapshot("huggingface/org/m", "a" * 40, Snapshot({"w.bin": TreeEntry.of_hash(len(hub_data), sha)}, 1))
        hub_path = s.blob_path(hub)
    damaged = _damage(local_path)
    _damage(hub_path)
    quarantine = home / "quarantine" / local

    dry = json.loads(hoard(hoard_env, "verify", "--dry-run", "--json", code=5).stdout)
    assert sorted(f["name"] for f in dry["findings"]) == sorted([local, hub])
    assert dry["quarantined"] == [{"blob": local, "path": str(quarantine), "used_by": f"local/me/m@{rev}"}]
    assert local_path.exists() and not quarantine.exists()

    out = hoard(hoard_env, "verify", code=5).stdout
    assert f"quarantined: {local}: {quarantine} (no origin can give it back: local/me/m@{rev}" in out, out
    assert quarantine.read_bytes() == damaged  # moved aside, not lost
    assert not local_path.exists() and not hub_path.exists()
    assert list(quarantine.parent.iterdir()) == [quarantine]  # the Hub's blob was deleted
    # out of the index: never served as valid, and the store is clean
    assert hoard_json(hoard_env, "info", "local/me/m/w.bin")["blake3"] is None
    again = hoard_json(hoard_env, "verify")
    assert again["ok"] and again["quarantined"] == []
    # gc leaves the quarantine alone
    no_grace(home)
    hoard_json(hoard_env, "gc", "--max-size", "0")
    assert quarantine.read_bytes() == damaged
