"""Stores written by older hoards open with this one, migrated in place.

``tests/data/store-format1.tar.gz`` is a store written by hoard at format 1 (before the
``users`` database): a Hugging Face repo ``org/tiny`` fetched through the proxy (``config.json``
as a git blob, ``model.safetensors`` over LFS; its revision pinned) and a local repo
``local/me/m@v1`` added from a directory.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from hoard.store.config import StoreConfig
from hoard.store.index import FORMAT_VERSION
from hoard.store.store import Store

DATA = Path(__file__).parent / "data"
HF_COMMIT = "f3cd2318250309816e4ef1f96c8c81c0574af5bd"


def _unpack(name: str, dest: Path) -> Path:
    with tarfile.open(DATA / name) as tar:
        tar.extractall(dest, filter="data")
    return dest / "home"


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
    env = dict(hoard_env, HOARD_HOME=str(home))
    done = subprocess.run([sys.executable, "-m", "hoard.cli.main", "verify", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
