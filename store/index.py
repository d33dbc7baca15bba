"""The LMDB index: one environment, named databases, a format version.

LMDB gives what a store shared by several processes needs: readers never block, one writer at
a time across all processes (LMDB's own lock), and a crash leaves the last committed state.
Each method here is one short transaction; callers that need several changes to be atomic use
:meth:`Index.write` and the ``*_in`` helpers with the transaction it yields.

The environment records its format in ``meta/format``. Opening an index whose format this
code does not know raises :class:`StoreFormatError` rather than guessing.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import lmdb

from .errors import StoreFormatError, StoreFull
from .records import (
    BlobRecord,
    PartialRecord,
    PinRecord,
    RefRecord,
    Snapshot,
    decode_chunk_sum,
    encode_chunk_sum,
)

__all__ = ["Index", "FORMAT_VERSION", "b3_key", "b3_hex"]

#: Bump when any record layout or key scheme changes (and teach :meth:`Index._migrate` the step).
FORMAT_VERSION = 3

_DBS = ("meta", "blobs", "aliases", "byblob", "refs", "snapshots", "partials", "chunks", "pins", "users")

# LMDB reserves address space, not disk: the file grows as records are written. 1 TiB of
# address space is free on 64-bit Linux and far above any index we expect (1M aliases ~ 200 MB).
_MAP_SIZE = 1 << 40


_OPEN: dict[str, tuple[lmdb.Environment, dict[str, lmdb._Database], int]] = {}
_OPEN_LOCK = threading.Lock()


def b3_key(b3hex: str) -> bytes:
    return bytes.fromhex(b3hex)


def b3_hex(key: bytes) -> str:
    return key.hex()


def _chunk_key(alias: str, index: int) -> bytes:
    return alias.encode() + b"\0" + index.to_bytes(4, "big")


def _is_space_error(exc: lmdb.Error) -> bool:
    """True for LMDB errors that mean the index could not grow: a full map or filesystem,
    or the I/O error some filesystems report instead of ENOSPC."""
    if isinstance(exc, (lmdb.MapFullError, lmdb.DiskError)):
        return True
    text = str(exc)
    return "No space left" in text or "Input/output error" in text or "Disk quota" in text


def _space_error(exc: lmdb.Error, what: str) -> StoreFull:
    return StoreFull(f"{what}: {exc} (the store's filesystem is full or failing; `hoard gc` frees room)")


class Index:
    """Typed access to the LMDB databases of one store."""

    def __init__(self, path: Path, *, map_size: int = _MAP_SIZE, readonly: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._key = os.path.realpath(path)
        with _OPEN_LOCK:
            shared = _OPEN.get(self._key)
            if shared is not None:
                # LMDB allows one environment per file per process: share it, refcounted
                self.env, self._db, count = shared
                _OPEN[self._key] = (self.env, self._db, count + 1)
                return
            try:
                self.env = lmdb.open(
                    str(path),
                    map_size=map_size,
                    max_dbs=len(_DBS) + 2,
                    max_readers=512,
                    subdir=True,
                    readonly=readonly,
                    lock=True,
                    # one fsync per commit instead of two: a machine crash may undo the last
                    # commit (a chunk fetched again, an orphan blob file gc removes) but never
                    # corrupts the index
                    metasync=False,
                )
            except lmdb.Error as exc:
                raise StoreFormatError(f"cannot open index at {path}: {exc}") from exc
            try:
                self._db = {name: self.env.open_db(name.encode(), create=not readonly) for name in _DBS}
                self._check_format(readonly)
            except BaseException:
                self.env.close()
                raise
            _OPEN[self._key] = (self.env, self._db, 1)

    def _check_format(self, readonly: bool) -> None:
        with self.env.begin(write=not readonly) as txn:
            raw = txn.get(b"format", db=self._db["meta"])
            if raw is None:
                if readonly:
                    raise StoreFormatError("index has no format record")
                txn.put(b"format", str(FORMAT_VERSION).encode(), db=self._db["meta"])
                txn.put(b"created", str(int(time.time())).encode(), db=self._db["meta"])
                return
            try:
                version = int(raw)
            except ValueError:
                raise StoreFormatError(f"index format record is not a number: {raw!r}") from None
            if version < FORMAT_VERSION and not readonly:
                self._migrate(txn, version)
                return
            if version != FORMAT_VERSION:
                raise StoreFormatError(
                    f"index format {version} is not the format {FORMAT_VERSION} this hoard "
                    "reads; use a matching hoard version or a new HOARD_HOME"
                )

    def _migrate(self, txn: lmdb.Transaction, version: int) -> None:
        """Upgrade an index written by an older hoard, in the opening transaction.

        1 → 2: the ``users`` database (which snapshots use each identity) is built from the
        snapshots. 2 → 3: snapshot records are rewritten with each file's expected hash.
        """
        if version < 1:
            raise StoreFormatError(f"index format {version} is too old for this hoard")
        if version < 2:
            for repo, rev, snap in self.iter_snapshots(txn):
                self._put_users_in(txn, repo, rev, snap)
        if version < 3:
            # snapshot records gain each file's expected hash (read from version-1 records
            # the way hoard used to derive it); rewritten once, here
            for repo, rev, snap in list(self.iter_snapshots(txn)):
                txn.put(self._snap_key(repo, rev), snap.encode(), db=self._db["snapshots"])
        txn.put(b"format", str(FORMAT_VERSION).encode(), db=self._db["meta"])

    def close(self) -> None:
        with _OPEN_LOCK:
            shared = _OPEN.get(self._key)
            if shared is None or shared[0] is not self.env:
                return
            if shared[2] > 1:
                _OPEN[self._key] = (shared[0], shared[1], shared[2] - 1)
                return
            del _OPEN[self._key]
        self.env.close()

    # -- transactions -------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction, committed when the block ends (aborted if it raises).

        Any LMDB error at commit means the pages could not reach the disk (no space, a full
        map, an I/O error of the filesystem under it): it is :class:`StoreFull`, so every
        edge reports 507 / ENOSPC / exit 8 and gc can free room. Inside the block only the
        errors that mean the same are translated; others (a bad key, say) stay bugs.
        """
        try:
            txn = self.env.begin(write=True)
        except lmdb.Error as exc:
            if _is_space_error(exc):
                raise _space_error(exc, "cannot start an index write") from exc
            raise
        try:
            yield txn
        except lmdb.Error as exc:
            txn.abort()
            if _is_space_error(exc):
                raise _space_error(exc, "index write failed") from exc
            raise
        except BaseException:
            txn.abort()
            raise
        try:
            txn.commit()
        except lmdb.Error as exc:
            raise _space_error(exc, "index commit failed") from exc

    def sync(self) -> None:
        """Force committed transactions to disk (``metasync=False`` leaves the last one to
        the next commit or this call); failures are :class:`StoreFull` like commits."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise _space_error(exc, "index sync failed") from exc

    def read(self) -> lmdb.Transaction:
        return self.env.begin(write=False)

    def db(self, name: str) -> lmdb._Database:
        return self._db[name]

    # -- blobs and aliases ----------------------------------------------------------------

    def get_blob(self, b3: str, txn: lmdb.Transaction | None = None) -> BlobRecord | None:
        if txn is None:
            with self.read() as txn:
                return self.get_blob(b3, txn)
        raw = txn.get(b3_key(b3), db=self._db["blobs"])
        return None if raw is None else BlobRecord.decode(raw)

    def put_blob_in(self, txn: lmdb.Transaction, b3: str, rec: BlobRecord) -> None:
        txn.put(b3_key(b3), rec.encode(), db=self._db["blobs"])

    def iter_blobs(self, txn: lmdb.Transaction) -> Iterator[tuple[str, BlobRecord]]:
        for key, raw in txn.cursor(db=self._db["blobs"]):
            yield b3_hex(key), BlobRecord.decode(raw)

    def resolve(self, alias: str, txn: lmdb.Transaction | None = None) -> str | None:
        """The BLAKE3 a name points at, if the blob is complete and indexed."""
        if alias.startswith("b3:"):
            b3 = alias[3:]
            return b3 if self.get_blob(b3, txn) is not None else None
        if txn is None:
            with self.read() as txn:
                return self.resolve(alias, txn)
        raw = txn.get(alias.encode(), db=self._db["aliases"])
        return None if raw is None else b3_hex(raw)

    def alias_target(self, alias: str, txn: lmdb.Transaction) -> str | None:
        """The BLAKE3 an alias record names, whether or not that blob is indexed."""
        raw = txn.get(alias.encode(), db=self._db["aliases"])
        return None if raw is None else b3_hex(raw)

    def put_alias_in(self, txn: lmdb.Transaction, alias: str, b3: str) -> None:
        if alias.startswith("b3:"):
            return  # a blob's own name needs no alias record
        key = b3_key(b3)
        old = txn.get(alias.encode(), db=self._db["aliases"])
        if old is not None and old != key:
            txn.delete(old + alias.encode(), db=self._db["byblob"])
        txn.put(alias.encode(), key, db=self._db["aliases"])
        txn.put(key + alias.encode(), b"", db=self._db["byblob"])

    def aliases_of(self, b3: str, txn: lmdb.Transaction) -> list[str]:
        key = b3_key(b3)
        out = []
        cur = txn.cursor(db=self._db["byblob"])
        if cur.set_range(key):
            for k in cur.iternext(values=False):
                if not k.startswith(key):
                    break
                out.append(k[len(key) :].decode())
        return out

    def delete_alias_in(self, txn: lmdb.Transaction, alias: str) -> None:
        """Remove an alias and its reverse (``byblob``) entry, so neither is left dangling."""
        raw = txn.get(alias.encode(), db=self._db["aliases"])
        if raw is not None:
            txn.delete(raw + alias.encode(), db=self._db["byblob"])
        txn.delete(alias.encode(), db=self._db["aliases"])

    def delete_reverse_alias_in(self, txn: lmdb.Transaction, b3: str, alias: str) -> None:
        """Remove one reverse entry (b3 → alias) whose alias points elsewhere or nowhere."""
        txn.delete(b3_key(b3) + alias.encode(), db=self._db["byblob"])

    def delete_blob_in(self, txn: lmdb.Transaction, b3: str) -> None:
        """Remove a blob and every alias pointing at it (the file is the caller's to unlink)."""
        key = b3_key(b3)
        for alias in self.aliases_of(b3, txn):
            if txn.get(alias.encode(), db=self._db["aliases"]) == key:
                txn.delete(alias.encode(), db=self._db["aliases"])
            txn.delete(key + alias.encode(), db=self._db["byblob"])
        txn.delete(key, db=self._db["blobs"])

    def iter_aliases(self, txn: lmdb.Transaction) -> Iterator[tuple[str, str]]:
        for key, raw in txn.cursor(db=self._db["aliases"]):
            yield key.decode(), b3_hex(raw)

    def iter_reverse_aliases(self, txn: lmdb.Transaction) -> Iterator[tuple[str, str]]:
        """(b3, alias) of every reverse entry, as ``aliases_of`` sees them."""
        for key in txn.cursor(db=self._db["byblob"]).iternext(values=False):
            yield b3_hex(key[:32]), key[32:].decode()

    # -- refs and snapshots ---------------------------------------------------------------

    @staticmethod
    def _ref_key(repo: str, ref: str) -> bytes:
        return repo.encode() + b"\0" + ref.encode()

    def get_ref(self, repo: str, ref: str) -> RefRecord | None:
        with self.read() as txn:
            raw = txn.get(self._ref_key(repo, ref), db=self._db["refs"])
        return None if raw is None else RefRecord.decode(raw)

    def put_ref_in(self, txn: lmdb.Transaction, repo: str, ref: str, rec: RefRecord) -> None:
        txn.put(self._ref_key(repo, ref), rec.encode(), db=self._db["refs"])

    def delete_ref_in(self, txn: lmdb.Transaction, repo: str, ref: str) -> None:
        txn.delete(self._ref_key(repo, ref), db=self._db["refs"])

    def iter_refs(self, txn: lmdb.Transaction, prefix: str = "") -> Iterator[tuple[str, str, RefRecord]]:
        """(repo, ref, record) for every ref whose repo key starts with ``prefix``."""
        cur = txn.cursor(db=self._db["refs"])
        if not cur.set_range(prefix.encode()):
            return
        for key, raw in cur:
            if not key.startswith(prefix.encode()):
                break
            repo, _, ref = key.partition(b"\0")
            yield repo.decode(), ref.decode(), RefRecord.decode(raw)

    @staticmethod
    def _snap_key(repo: str, revision: str) -> bytes:
        return repo.encode() + b"@" + revision.encode()

    def get_snapshot(self, repo: str, revision: str, txn: lmdb.Transaction | None = None) -> Snapshot | None:
        if txn is None:
            with self.read() as txn:
                return self.get_snapshot(repo, revision, txn)
        raw = txn.get(self._snap_key(repo, revision), db=self._db["snapshots"])
        return None if raw is None else Snapshot.decode(raw)

    def put_snapshot_in(self, txn: lmdb.Transaction, repo: str, revision: str, snap: Snapshot) -> None:
        self._delete_users_in(txn, repo, revision)
        txn.put(self._snap_key(repo, revision), snap.encode(), db=self._db["snapshots"])
        self._put_users_in(txn, repo, revision, snap)

    def delete_snapshot_in(self, txn: lmdb.Transaction, repo: str, revision: str) -> None:
        self._delete_users_in(txn, repo, revision)
        txn.delete(self._snap_key(repo, revision), db=self._db["snapshots"])

    # -- users: which snapshots name each identity ----------------------------------------

    @staticmethod
    def _user_key(identity: str, repo: str, revision: str) -> bytes:
        return identity.encode() + b"\0" + repo.encode() + b"@" + revision.encode()

    def _put_users_in(self, txn: lmdb.Transaction, repo: str, revision: str, snap: Snapshot) -> None:
        flag = b"\1" if snap.restricted else b"\0"
        for entry in snap.files.values():
            txn.put(self._user_key(entry.identity, repo, revision), flag, db=self._db["users"])

    def _delete_users_in(self, txn: lmdb.Transaction, repo: str, revision: str) -> None:
        raw = txn.get(self._snap_key(repo, revision), db=self._db["snapshots"])
        if raw is None:
            return
        for entry in Snapshot.decode(raw).files.values():
            txn.delete(self._user_key(entry.identity, repo, revision), db=self._db["users"])

    def users_of(self, identity: str, txn: lmdb.Transaction) -> list[tuple[str, str, bool]]:
        """(repo, revision, restricted) of every snapshot with a file of this identity."""
        prefix = identity.encode() + b"\0"
        out = []
        cur = txn.cursor(db=self._db["users"])
        if cur.set_range(prefix):
            for key, flag in cur:
                if not key.startswith(prefix):
                    break
                repo, _, rev = key[len(prefix) :].decode().rpartition("@")
                out.append((repo, rev, flag == b"\1"))
        return out

    def iter_snapshot_keys(self, txn: lmdb.Transaction, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(repo, revision) of every snapshot whose key starts with ``prefix``."""
        cur = txn.cursor(db=self._db["snapshots"])
        if not cur.set_range(prefix.encode()):
            return
        for key in cur.iternext(values=False):
            if not key.startswith(prefix.encode()):
                break
            repo, _, rev = key.decode().rpartition("@")
            yield repo, rev

    def iter_snapshots(self, txn: lmdb.Transaction, prefix: str = "") -> Iterator[tuple[str, str, Snapshot]]:
        cur = txn.cursor(db=self._db["snapshots"])
        if not cur.set_range(prefix.encode()):
            return
        for key, raw in cur:
            if not key.startswith(prefix.encode()):
                break
            repo, _, rev = key.decode().rpartition("@")
            yield repo, rev, Snapshot.decode(raw)

    # -- partials -------------------------------------------------------------------------

    def get_partial(self, alias: str, txn: lmdb.Transaction | None = None) -> PartialRecord | None:
        if txn is None:
            with self.read() as txn:
                return self.get_partial(alias, txn)
        raw = txn.get(alias.encode(), db=self._db["partials"])
        return None if raw is None else PartialRecord.decode(raw)

    def put_partial_in(self, txn: lmdb.Transaction, alias: str, rec: PartialRecord) -> None:
        txn.put(alias.encode(), rec.encode(), db=self._db["partials"])

    def iter_partials(self, txn: lmdb.Transaction) -> Iterator[tuple[str, PartialRecord]]:
        for key, raw in txn.cursor(db=self._db["partials"]):
            yield key.decode(), PartialRecord.decode(raw)

    def chunk_sums(self, alias: str, txn: lmdb.Transaction | None = None) -> dict[int, int]:
        """Present chunks of a partial: index -> xxh3-64."""
        if txn is None:
            with self.read() as txn:
                return self.chunk_sums(alias, txn)
        prefix = alias.encode() + b"\0"
        out: dict[int, int] = {}
        cur = txn.cursor(db=self._db["chunks"])
        if cur.set_range(prefix):
            for key, raw in cur:
                if not key.startswith(prefix):
                    break
                out[int.from_bytes(key[-4:], "big")] = decode_chunk_sum(raw)
        return out

    def has_chunk(self, alias: str, index: int, txn: lmdb.Transaction | None = None) -> bool:
        if txn is None:
            with self.read() as txn:
                return self.has_chunk(alias, index, txn)
        return txn.get(_chunk_key(alias, index), db=self._db["chunks"]) is not None

    def put_chunk_in(self, txn: lmdb.Transaction, alias: str, index: int, xxh3: int) -> None:
        txn.put(_chunk_key(alias, index), encode_chunk_sum(xxh3), db=self._db["chunks"])

    def delete_chunk_in(self, txn: lmdb.Transaction, alias: str, index: int) -> None:
        txn.delete(_chunk_key(alias, index), db=self._db["chunks"])

    def delete_partial_in(self, txn: lmdb.Transaction, alias: str) -> None:
        for index in self.chunk_sums(alias, txn):
            txn.delete(_chunk_key(alias, index), db=self._db["chunks"])
        txn.delete(alias.encode(), db=self._db["partials"])

    # -- pins -----------------------------------------------------------------------------

    def get_pin(self, target: str, txn: lmdb.Transaction | None = None) -> PinRecord | None:
        if txn is None:
            with self.read() as txn:
                return self.get_pin(target, txn)
        raw = txn.get(target.encode(), db=self._db["pins"])
        return None if raw is None else PinRecord.decode(raw)

    def put_pin_in(self, txn: lmdb.Transaction, target: str, rec: PinRecord) -> None:
        txn.put(target.encode(), rec.encode(), db=self._db["pins"])

    def delete_pin_in(self, txn: lmdb.Transaction, target: str) -> bool:
        return bool(txn.delete(target.encode(), db=self._db["pins"]))

    def iter_pins(self, txn: lmdb.Transaction) -> Iterator[tuple[str, PinRecord]]:
        for key, raw in txn.cursor(db=self._db["pins"]):
            yield key.decode(), PinRecord.decode(raw)

    # -- stats ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.read() as txn:
            return {name: txn.stat(self._db[name])["entries"] for name in _DBS}
