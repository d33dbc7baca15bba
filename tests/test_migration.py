"""Stores written by older hoards open with this one, migrated in place.

``tests/data/store-format1.tar.gz`` is a store written by hoard at format 1 (before the
``users`` database): a Hugging Face repo ``org/tiny`` fetched through the proxy (``config.json``
as a git blob, ``model.safetensors`` over LFS; its revision pinned) and a local repo
``local/me/m@v1`` added from a directory.

``tests/data/store-format2.tar.gz`` is a store written by hoard at format 2 (snapshot records
of version 1: no expected hash in tree entries), by the code of commit
``9bd693f98e336a85eec39ec62111357cbd14009d``, the last commit of main whose ``store/index.py``
has ``FORMAT_VERSION = 2`` (``git log -p -- store/index.py``: ``66047b4`` made it 3). It was
made with that commit's own proxy, fake Hub and CLI by ``tests/data/make_store_format2.py``
(its docstring has the details; the contents below are its constants)::

    git worktree add /tmp/hoard-fmt2 9bd693f
    .venv/bin/python tests/data/make_store_format2.py /tmp/hoard-fmt2 tests/data/store-format2.tar.gz
    git worktree remove --force /tmp/hoard-fmt2

It holds ``huggingface/org/tiny`` (refs ``main`` and tag ``v1`` on one commit; ``config.json``
a git blob, ``model.safetensors`` over LFS, both complete; ``big.bin`` over LFS with only its
first 2 of 5 chunks present, a partial; ``.gitattributes`` listed but never fetched; the
revision pinned), and ``local/me/m@v1`` (``config.json`` with the Hub's bytes: one blob, two
users; ``weights.bin`` pinned by itself; ``sub/notes.txt``).

Each format-2 check opens the unpacked store with this hoard: the first open migrates it
(index format 3, every snapshot record rewritten at version 2 with its files' expected
hashes, nothing else changed), a second open changes nothing, and everything the old hoard
held is still there: refs, snapshots, pins, aliases, the users of each identity, the partial's
chunks. Every file then reads back byte-exact from the store and through the in-process
proxy (the partial completed from the fake Hub with only its missing bytes, verified against
the migrated expected hash), and ``hoard verify --deep`` is clean.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import blake3
import lmdb

from hoard.store.config import StoreConfig
from hoard.store.index import FORMAT_VERSION
from hoard.store.records import ExpectedHash, Snapshot
from hoard.store.store import Store
from tests.data.make_store_format2 import (
    CHUNK,
    HF_FILES,
    HF_REPO,
    LOCAL_ADDRESS,
    LOCAL_FILES,
    PARTIAL_CHUNKS,
    PARTIAL_FILE,
    PINNED_FILE,
)
from tests.fakes.hub import FakeHub
from tests.fakes.model import DEFAULT_LFS_PATTERNS
from tests.harness import ProxyThread
from tests.httpcalls import call

DATA = Path(__file__).parent / "data"
HF_COMMIT = "f3cd2318250309816e4ef1f96c8c81c0574af5bd"

#: what the format-2 fixture's old hoard wrote (printed by make_store_format2.py)
F2_HF = f"huggingface/{HF_REPO}"
F2_COMMIT = "0abed200ad656ce1189bb90fa4c0a6a315ac5527"
F2_LOCAL, _, F2_LOCAL_REF = LOCAL_ADDRESS.partition("@")
F2_LOCAL_REV = "91650eb9c6522d99848a7e17bfc79bd0a6623bce"
#: the ``.gitattributes`` the fake Hub writes into a new repo (listed in the snapshot, not cached)
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS).encode()
F2_HF_FILES = {**HF_FILES, ".gitattributes": GITATTRIBUTES}
F2_COMPLETE = ("config.json", "model.safetensors")  # the Hub files the old hoard fetched whole
#: the index's databases (store/records.py's table)
DATABASES = ("meta", "blobs", "aliases", "byblob", "refs", "snapshots", "partials", "chunks", "pins", "users")


def _unpack(name: str, dest: Path) -> Path:
    with tarfile.open(DATA / name) as tar:
        tar.extractall(dest, filter="data")
    return dest / "home"


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gitsha1(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub names a non-LFS file by)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _hub_expected(path: str) -> ExpectedHash:
    """The hash the Hub promises for one of org/tiny's files: LFS sha256, else git sha1."""
    data = F2_HF_FILES[path]
    if path.endswith((".safetensors", ".bin")):
        return ExpectedHash("sha256", _sha256(data))
    return ExpectedHash("gitsha1", _gitsha1(data))


def _dump(home: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """Open the store with this hoard and return every record of every database."""
    with Store(StoreConfig(home)) as store, store.index.read() as txn:
        return {name: list(txn.cursor(db=store.index.db(name))) for name in DATABASES}


def _verify(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``hoard verify --json`` (this hoard's CLI, in a subprocess) on the store at ``home``."""
    return subprocess.run([sys.executable, "-m", "hoard.cli.main", "verify", "--json", *args],
                          env=dict(env, HOARD_HOME=str(home)), capture_output=True, text=True, timeout=120)


def test_format1_store_is_migrated_and_serves_what_it_held(tmp_path: Path, hoard_env: dict[str, str]) -> None:
    home = _unpack("store-format1.tar.gz", tmp_path)
    with Store(StoreConfig(home)) as store:
        with store.index.read() as txn:
            assert txn.get(b"format", db=store.index.db("meta")) == str(FORMAT_VERSION).encode()
            # every snapshot record was rewritten with its files' expected hashes (record v2)
            raws = [raw for _, raw in txn.cursor(db=store.index.db("snapshots"))]
            assert raws and all(raw[0] == 2 for raw in raws)
        snap = store.get_snapshot("huggingface/org/tiny", HF_COMMIT)
        assert snap is not None and set(snap.files) >= {"config.json", "model.safetensors"}
        weights = snap.files["model.safetensors"]
        assert weights.expected is not None and weights.expected.alias == weights.identity
        assert snap.files["config.json"].verified_by == "gitsha1"
        b3 = store.resolve(weights.identity)
        assert b3 is not None and store.blob_path(b3).read_bytes() == b"S" * 300_000
        assert ("huggingface/org/tiny", HF_COMMIT, False) in store.blob_users(b3)
        assert f"snapshot:huggingface/org/tiny@{HF_COMMIT}" in store.pins()
        local_rev = store.get_ref("local/me/m", "v1")
        assert local_rev is not None
        local = store.get_snapshot("local/me/m", local_rev.revision)
        assert local is not None and store.resolve(local.files["sub/notes.txt"].identity) is not None
    done = _verify(home, hoard_env)
    assert done.returncode == 0, done.stdout + done.stderr


# -- format 2 ------------------------------------------------------------------------------------


def _raw_dump(home: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record of every database, read with plain LMDB (read-only: nothing migrates)."""
    env = lmdb.open(str(home / "index"), readonly=True, max_dbs=len(DATABASES) + 2, lock=False)
    try:
        with env.begin() as txn:
            return {name: list(txn.cursor(db=env.open_db(name.encode(), txn=txn, create=False))) for name in DATABASES}
    finally:
        env.close()


def test_format2_store_is_migrated_on_first_open_and_only_then(tmp_path: Path) -> None:
    home = _unpack("store-format2.tar.gz", tmp_path)
    before = _raw_dump(home)
    assert dict(before["meta"])[b"format"] == b"2"
    assert all(raw[0] == 1 for _, raw in before["snapshots"])  # the old hoard's records
    after = _dump(home)
    assert dict(after["meta"]) == dict(before["meta"]) | {b"format": str(FORMAT_VERSION).encode()}
    # snapshot records are rewritten (record version 2) and say the same as before
    keys = [f"{F2_HF}@{F2_COMMIT}".encode(), f"{F2_LOCAL}@{F2_LOCAL_REV}".encode()]
    assert [k for k, _ in after["snapshots"]] == keys
    assert all(raw[0] == 2 for _, raw in after["snapshots"])
    for (_, old), (_, new) in zip(before["snapshots"], after["snapshots"], strict=True):
        assert Snapshot.decode(new) == Snapshot.decode(old)
    # nothing else changed: refs, pins, aliases, blobs, users, the partial and its chunks
    for name in DATABASES:
        if name not in ("meta", "snapshots"):
            assert after[name] == before[name], name
    # opening again is a no-op
    assert _dump(home) == after


def test_format2_store_keeps_what_it_held_with_expected_hashes_in_the_tree(
    tmp_path: Path, hoard_env: dict[str, str]
) -> None:
    home = _unpack("store-format2.tar.gz", tmp_path)
    with Store(StoreConfig(home)) as store:
        # refs: the Hub's branch and tag on one commit, the local version
        assert {ref: rec.revision for ref, rec in store.refs(F2_HF).items()} == {"main": F2_COMMIT, "v1": F2_COMMIT}
        assert store.refs(F2_LOCAL)[F2_LOCAL_REF].revision == F2_LOCAL_REV
        # tree entries carry the hash each file is verified by, as its origin states it
        hub = store.get_snapshot(F2_HF, F2_COMMIT)
        assert hub is not None and set(hub.files) == set(F2_HF_FILES)
        for path, entry in hub.files.items():
            want = _hub_expected(path)
            assert (entry.size, entry.expected, entry.identity) == (len(F2_HF_FILES[path]), want, want.alias), path
        local = store.get_snapshot(F2_LOCAL, F2_LOCAL_REV)
        assert local is not None and set(local.files) == set(LOCAL_FILES)
        for path, entry in local.files.items():
            assert entry.expected == ExpectedHash("blake3", _b3(LOCAL_FILES[path])), path
        # complete files: found by their identity and their aliases, byte-exact in the store
        for path in F2_COMPLETE:
            b3 = store.resolve(hub.files[path].identity)
            assert b3 == _b3(HF_FILES[path]) and store.blob_path(b3).read_bytes() == HF_FILES[path]
        for path, data in LOCAL_FILES.items():
            b3 = store.resolve(local.files[path].identity)
            assert b3 == _b3(data) and store.blob_path(b3).read_bytes() == data
        # one blob, two users: the Hub's config.json is the local repo's too
        assert sorted(store.blob_users(_b3(HF_FILES["config.json"]))) == [
            (F2_HF, F2_COMMIT, False), (F2_LOCAL, F2_LOCAL_REV, False)]
        # pins: the Hub revision and the local file
        pinned_b3 = _b3(LOCAL_FILES[PINNED_FILE])
        assert set(store.pins()) == {f"snapshot:{F2_HF}@{F2_COMMIT}", f"blob:{pinned_b3}"}
        pinned = store.blob(pinned_b3)
        assert pinned is not None and pinned.record.pins == 1
        # the partial: its first chunks present, the rest not, the whole never published
        big = hub.files[PARTIAL_FILE]
        assert store.partial_status(big.identity) == (PARTIAL_CHUNKS * CHUNK, len(HF_FILES[PARTIAL_FILE]))
        assert store.resolve(big.identity) is None
    done = _verify(home, hoard_env, "--deep")
    assert done.returncode == 0, done.stdout + done.stderr


def test_format2_store_serves_every_file_through_the_proxy(tmp_path: Path, hoard_env: dict[str, str]) -> None:
    home = _unpack("store-format2.tar.gz", tmp_path)
    with FakeHub() as hub:
        # the fake is deterministic: the same files make the commit the old hoard cached
        assert hub.add_repo(HF_REPO, HF_FILES, tags=["v1"]) == F2_COMMIT
        with ProxyThread(home, hub.url, chunk_size=CHUNK) as proxy:
            # the cached files come from the store, by commit and through both refs
            for rev in (F2_COMMIT, "main", "v1"):
                for path in F2_COMPLETE:
                    got = call("GET", f"{proxy.url}/{HF_REPO}/resolve/{rev}/{path}")
                    assert (got.status, got.body) == (200, HF_FILES[path]), (rev, path, got.error)
            for path, data in LOCAL_FILES.items():
                got = call("GET", f"{proxy.url}/v1/files/{LOCAL_ADDRESS}/{path}")
                assert (got.status, got.body) == (200, data), (path, got.error)
            assert hub.count("/resolve/") == 0 and hub.bytes_sent["cdn"] == 0
            # the trees the proxy serves carry the migrated expected hashes
            tree = call("GET", f"{proxy.url}/v1/trees/{F2_HF}@{F2_COMMIT}").json()
            assert {f["path"]: f["expected"] for f in tree["files"]} == {
                path: _hub_expected(path).text for path in F2_HF_FILES}
            tree = call("GET", f"{proxy.url}/v1/trees/{LOCAL_ADDRESS}").json()
            assert {f["path"]: f["expected"] for f in tree["files"]} == {
                path: f"blake3:{_b3(data)}" for path, data in LOCAL_FILES.items()}
            # the partial is completed with its missing chunks only, verified by its expected hash
            big = HF_FILES[PARTIAL_FILE]
            got = call("GET", f"{proxy.url}/{HF_REPO}/resolve/{F2_COMMIT}/{PARTIAL_FILE}")
            assert (got.status, got.body) == (200, big), got.error
            assert hub.bytes_sent["cdn"] == len(big) - PARTIAL_CHUNKS * CHUNK
            # a file the old hoard listed but never fetched is fetched and verified now
            got = call("GET", f"{proxy.url}/{HF_REPO}/resolve/{F2_COMMIT}/.gitattributes")
            assert (got.status, got.body) == (200, GITATTRIBUTES), got.error
    with Store(StoreConfig(home)) as store:
        for path, data in F2_HF_FILES.items():
            b3 = store.resolve(_hub_expected(path).text)
            assert b3 == _b3(data) and store.blob_path(b3).read_bytes() == data, path
        assert store.partial_status(_hub_expected(PARTIAL_FILE).text) is None
    done = _verify(home, hoard_env, "--deep")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["checked_blobs"] == len(F2_HF_FILES) + len(LOCAL_FILES) - 1  # config.json once
