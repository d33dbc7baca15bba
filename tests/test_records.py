"""Golden bytes of every index record: changing a layout must be a deliberate format change."""

from __future__ import annotations

import json

import pytest
import zstandard

from hoard.store.errors import StoreFormatError
from hoard.store.index import FORMAT_VERSION, Index
from hoard.store.records import (
    BlobRecord,
    ExpectedHash,
    PartialRecord,
    PinRecord,
    RefRecord,
    Snapshot,
    TreeEntry,
    decode_chunk_sum,
    encode_chunk_sum,
)


def test_blob_record_bytes() -> None:
    rec = BlobRecord(size=1234, created=1700000000, last_access=1700000500, pins=2)
    raw = rec.encode()
    assert raw.hex() == (
        "01"  # version
        "d204000000000000"  # size
        "00f1536500000000"  # created
        "f4f2536500000000"  # last access
        "02000000"  # pins
    )
    assert BlobRecord.decode(raw) == rec


def test_ref_record_bytes() -> None:
    rec = RefRecord("a" * 40, 1700000000.5)
    raw = rec.encode()
    assert raw[:9].hex() == "01" + "00002040fc54d941"
    assert raw[9:] == b"a" * 40
    assert RefRecord.decode(raw) == rec


def test_partial_record_bytes() -> None:
    rec = PartialRecord(size=10, chunk_size=4096, created=5, tag="0011223344556677",
                        expected=ExpectedHash("sha256", "ab"))
    raw = rec.encode()
    assert raw.hex() == (
        "01" "0a00000000000000" "00100000" "0500000000000000" "0011223344556677"
        "01" "00" "02" "6162"
    )
    assert PartialRecord.decode(raw) == rec
    bare = PartialRecord(size=0, chunk_size=4096, created=0, tag="00" * 8)
    assert bare.encode()[-3:] == b"\0\0\0"
    assert PartialRecord.decode(bare.encode()) == bare


def test_expected_hash_prefix_and_kinds() -> None:
    exp = ExpectedHash("sha256", "f37072fd", prefix=True)
    got, rest = ExpectedHash.decode(exp.encode() + b"tail")
    assert got == exp and rest == b"tail"
    assert exp.alias is None
    assert ExpectedHash("gitsha1", "00" * 20).alias == "gitsha1:" + "00" * 20
    with pytest.raises(ValueError):
        ExpectedHash("md5", "00")
    with pytest.raises(ValueError):
        ExpectedHash("sha256", "ABC")


def test_pin_and_chunk_bytes() -> None:
    assert PinRecord(7, "why").encode().hex() == "01" "0700000000000000" + b"why".hex()
    assert encode_chunk_sum(0x0102030405060708).hex() == "0807060504030201"
    assert decode_chunk_sum(bytes.fromhex("0807060504030201")) == 0x0102030405060708


def test_snapshot_roundtrip_and_header() -> None:
    snap = Snapshot({"b.bin": TreeEntry(3, "sha256:" + "1" * 64, {"oid": "x"}), "a": TreeEntry(0, "b3:" + "2" * 64)},
                    created=9, info={"sha": "c" * 40})
    raw = snap.encode()
    assert raw[:9].hex() == "02" "0900000000000000"  # snapshot record version 2: expected hashes kept
    assert raw[9:13] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    assert Snapshot.decode(raw) == snap
    assert snap.size == 3
    doc = json.loads(zstandard.ZstdDecompressor().decompress(raw[9:]))
    assert doc["files"]["b.bin"] == [3, "sha256:" + "1" * 64, {"oid": "x"}, "sha256:" + "1" * 64]


def test_snapshot_records_keep_expected_hashes_of_every_kind() -> None:
    files = {
        "torch.pth": TreeEntry(10, "torch:resnet18-f37072fd.pth", {}, ExpectedHash("sha256", "f37072fd", prefix=True)),
        "ar.bin": TreeEntry(5, "ar:" + "A" * 43, {"unverified": "no File-SHA256 tag"}, None),
        "tagged.bin": TreeEntry(5, "sha256:" + "3" * 64, {"tx": "B" * 43}),
    }
    back = Snapshot.decode(Snapshot(files, 1).encode())
    assert back.files["torch.pth"].expected == ExpectedHash("sha256", "f37072fd", prefix=True)
    assert back.files["torch.pth"].verified_by == "sha256 prefix"
    assert back.files["ar.bin"].expected is None and back.files["ar.bin"].verified_by == "length only"
    assert back.files["tagged.bin"].expected == ExpectedHash("sha256", "3" * 64)
    with pytest.raises(ValueError):  # a hash identity is verified by that hash, nothing else
        TreeEntry(1, "sha256:" + "3" * 64, {}, ExpectedHash("gitsha1", "1" * 40))


def test_version_1_snapshot_records_still_decode() -> None:
    """What format-1/2 stores hold: [size, identity, meta], the expected hash implied."""
    doc = {"files": {"a": [3, "gitsha1:" + "1" * 40, {}], "b": [4, "ar:" + "C" * 43, {}]}, "info": {}}
    raw = bytes.fromhex("01" "0900000000000000") + zstandard.ZstdCompressor().compress(json.dumps(doc).encode())
    snap = Snapshot.decode(raw)
    assert snap.files["a"].expected == ExpectedHash("gitsha1", "1" * 40)
    assert snap.files["b"].expected is None


def test_unknown_record_version_is_refused() -> None:
    raw = bytearray(BlobRecord(1, 2, 3).encode())
    raw[0] = 9
    with pytest.raises(StoreFormatError, match="version 9"):
        BlobRecord.decode(bytes(raw))


def test_index_refuses_unknown_format(tmp_path) -> None:
    idx = Index(tmp_path / "index")
    with idx.write() as txn:
        txn.put(b"format", str(FORMAT_VERSION + 1).encode(), db=idx.db("meta"))
    idx.close()
    with pytest.raises(StoreFormatError, match="format"):
        Index(tmp_path / "index")


def test_format_1_index_is_migrated_on_open(tmp_path) -> None:
    """A store written before the ``users`` database existed gains it when opened."""
    idx = Index(tmp_path / "index")
    snap = Snapshot({"a.bin": TreeEntry(3, "sha256:" + "ab" * 32, {})}, 1_700_000_000, {"private": True})
    with idx.write() as txn:
        # what a format-1 hoard wrote: the snapshot, no users entries, format 1
        txn.put(b"huggingface/o/r@" + b"c" * 40, snap.encode(), db=idx.db("snapshots"))
        txn.put(b"format", b"1", db=idx.db("meta"))
    idx.close()
    idx = Index(tmp_path / "index")
    with idx.read() as txn:
        assert txn.get(b"format", db=idx.db("meta")) == str(FORMAT_VERSION).encode()
        assert idx.users_of("sha256:" + "ab" * 32, txn) == [("huggingface/o/r", "c" * 40, True)]
    idx.close()


def test_users_follow_snapshots(tmp_path) -> None:
    idx = Index(tmp_path / "index")
    ident = "gitsha1:" + "1" * 40
    public = Snapshot({"x": TreeEntry(1, ident, {})}, 1, {})
    with idx.write() as txn:
        idx.put_snapshot_in(txn, "huggingface/o/r", "a" * 40, public)
        idx.put_snapshot_in(txn, "huggingface/o/s", "b" * 40, Snapshot(public.files, 1, {"gated": "auto"}))
    with idx.read() as txn:
        assert idx.users_of(ident, txn) == [("huggingface/o/r", "a" * 40, False), ("huggingface/o/s", "b" * 40, True)]
    with idx.write() as txn:
        idx.put_snapshot_in(txn, "huggingface/o/r", "a" * 40, Snapshot({}, 1, {}))  # rewritten without the file
        idx.delete_snapshot_in(txn, "huggingface/o/s", "b" * 40)
    with idx.read() as txn:
        assert idx.users_of(ident, txn) == []
    idx.close()
