"""Binary encodings of the records kept in the LMDB index.

Every value starts with a one-byte record version so a future hoard can tell old records from
new ones; decoders refuse versions they do not know (:class:`StoreFormatError`). Fixed-size
records are little-endian ``struct`` layouts; snapshot trees are zstd-compressed canonical JSON.
``tests/test_records.py`` pins every layout with literal bytes: changing one is a format change
and must bump :data:`hoard.store.index.FORMAT_VERSION`.

Keys (see :mod:`hoard.store.index`):

========== =============================== ==========================================
database   key                             value
========== =============================== ==========================================
meta       ascii name                      ascii value
blobs      b3 (32 raw bytes)               :class:`BlobRecord`
aliases    alias text (``sha256:<hex>``)   b3 (32 raw bytes)
byblob     b3 + alias text                 empty (reverse of ``aliases``)
refs       repo key + ``\\0`` + ref name   :class:`RefRecord`
snapshots  repo key + ``@`` + revision     :class:`Snapshot` (record version 2)
partials   alias text                      :class:`PartialRecord`
chunks     alias text + ``\\0`` + u32 BE   xxh3-64 of the chunk (u64 LE)
pins       pin target text                 :class:`PinRecord`
users      identity + ``\\0`` + repo@rev   one byte: 1 if that snapshot is restricted
========== =============================== ==========================================
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import zstandard

from .errors import StoreFormatError

__all__ = [
    "BlobRecord",
    "RefRecord",
    "PartialRecord",
    "PinRecord",
    "TreeEntry",
    "Snapshot",
    "ExpectedHash",
    "HASH_IDENTITIES",
    "legacy_expected",
    "encode_chunk_sum",
    "decode_chunk_sum",
]

_V1 = 1


def _check_version(data: bytes, what: str) -> None:
    if not data:
        raise StoreFormatError(f"empty {what} record")
    if data[0] != _V1:
        raise StoreFormatError(
            f"{what} record has version {data[0]}, this hoard reads version {_V1}: "
            "the store was written by a newer hoard"
        )


@dataclass(frozen=True)
class ExpectedHash:
    """The upstream's whole-file hash a partial must match before it is published.

    ``kind`` is ``sha256`` (HF LFS, Arweave ``File-SHA256``, ONNX ``model_sha``), ``gitsha1``
    (git blob sha1 of a non-LFS HF file) or ``blake3``. ``prefix`` marks a hash known only by
    a prefix (torch weights name ``resnet18-f37072fd.pth``).
    """

    kind: str
    hex: str
    prefix: bool = False

    KINDS = ("sha256", "gitsha1", "blake3")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown hash kind {self.kind!r}")
        if not self.hex or any(c not in "0123456789abcdef" for c in self.hex):
            raise ValueError(f"hash must be lowercase hex, got {self.hex!r}")

    @property
    def text(self) -> str:
        """``kind:hex``, with a trailing ``*`` for a prefix (snapshot records, /v1 trees)."""
        return f"{self.kind}:{self.hex}" + ("*" if self.prefix else "")

    @classmethod
    def parse(cls, text: object) -> ExpectedHash:
        """The inverse of :attr:`text`; ValueError for anything else."""
        if not isinstance(text, str) or ":" not in text:
            raise ValueError(f"not an expected hash: {str(text)[:80]!r}")
        kind, _, value = text.partition(":")
        return cls(kind, value.removesuffix("*"), value.endswith("*"))

    @property
    def alias(self) -> str | None:
        """The alias this hash names, or None for a prefix (it names nothing by itself)."""
        return None if self.prefix else f"{self.kind}:{self.hex}"

    def encode(self) -> bytes:
        kind = self.KINDS.index(self.kind) + 1
        text = self.hex.encode()
        return struct.pack("<BBB", kind, 1 if self.prefix else 0, len(text)) + text

    @classmethod
    def decode(cls, data: bytes) -> tuple[ExpectedHash | None, bytes]:
        """Decode from the front of ``data``; returns the hash (or None) and the rest."""
        kind, prefix, n = struct.unpack_from("<BBB", data)
        rest = data[3 + n :]
        if kind == 0:
            return None, rest
        return cls(cls.KINDS[kind - 1], data[3 : 3 + n].decode(), bool(prefix)), rest


_NO_HASH = struct.pack("<BBB", 0, 0, 0)


@dataclass(frozen=True)
class BlobRecord:
    """A complete, verified blob: size, creation and last access (unix seconds), pin count."""

    size: int
    created: int
    last_access: int
    pins: int = 0

    _FMT = struct.Struct("<BQqqI")

    def encode(self) -> bytes:
        return self._FMT.pack(_V1, self.size, self.created, self.last_access, self.pins)

    @classmethod
    def decode(cls, data: bytes) -> BlobRecord:
        _check_version(data, "blob")
        _, size, created, last_access, pins = cls._FMT.unpack(data)
        return cls(size, created, last_access, pins)


@dataclass(frozen=True)
class RefRecord:
    """A mutable name resolved to an immutable revision, and when that was learnt."""

    revision: str
    fetched_at: float

    _HEAD = struct.Struct("<Bd")

    def encode(self) -> bytes:
        return self._HEAD.pack(_V1, self.fetched_at) + self.revision.encode()

    @classmethod
    def decode(cls, data: bytes) -> RefRecord:
        _check_version(data, "ref")
        _, fetched_at = cls._HEAD.unpack_from(data)
        return cls(data[cls._HEAD.size :].decode(), fetched_at)


@dataclass(frozen=True)
class PartialRecord:
    """A blob being filled chunk by chunk (its present chunks live in the ``chunks`` db).

    ``tag`` (16 hex digits, random) names this incarnation's file ``partial/<alias>.<tag>``:
    chunk records describe that file only, so a partial whose file was lost or replaced can
    never be mistaken for one whose chunks are present.
    """

    size: int
    chunk_size: int
    created: int
    tag: str
    expected: ExpectedHash | None = None

    _HEAD = struct.Struct("<BQIq8s")

    @property
    def nchunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    def encode(self) -> bytes:
        head = self._HEAD.pack(_V1, self.size, self.chunk_size, self.created, bytes.fromhex(self.tag))
        return head + (self.expected.encode() if self.expected else _NO_HASH)

    @classmethod
    def decode(cls, data: bytes) -> PartialRecord:
        _check_version(data, "partial")
        _, size, chunk_size, created, tag = cls._HEAD.unpack_from(data)
        expected, _ = ExpectedHash.decode(data[cls._HEAD.size :])
        return cls(size, chunk_size, created, tag.hex(), expected)


@dataclass(frozen=True)
class PinRecord:
    """Why something is pinned: when, and an optional free-text note."""

    created: int
    note: str = ""

    _HEAD = struct.Struct("<Bq")

    def encode(self) -> bytes:
        return self._HEAD.pack(_V1, self.created) + self.note.encode()

    @classmethod
    def decode(cls, data: bytes) -> PinRecord:
        _check_version(data, "pin")
        _, created = cls._HEAD.unpack_from(data)
        return cls(created, data[cls._HEAD.size :].decode())


_CHUNK_SUM = struct.Struct("<Q")


def encode_chunk_sum(xxh3: int) -> bytes:
    return _CHUNK_SUM.pack(xxh3)


def decode_chunk_sum(data: bytes) -> int:
    return _CHUNK_SUM.unpack(data)[0]


#: identity kinds that are themselves a whole-file hash, and the hash kind each names
HASH_IDENTITIES = {"sha256": "sha256", "gitsha1": "gitsha1", "b3": "blake3"}


@dataclass(frozen=True)
class TreeEntry:
    """One file of a snapshot: its size, its upstream identity, what verifies it, and extras.

    * ``identity`` is the alias that names the content: a hash (``sha256:…``, ``gitsha1:…``,
      ``b3:…``) or an origin's own immutable name (``ar:<txid>``, ``torch:<name>``, ``url:…``);
    * ``expected`` is the whole-file hash the bytes must match before they are published,
      stated by the source that built the entry and kept with it. A hash identity is its own
      expected hash (filled in here when not stated; the two must agree); an entry without
      one is verified by its length only, and ``meta`` says what revalidates it (an ETag, say);
    * ``meta`` holds what a source needs to answer its own API (for Hugging Face the git blob
      oid and the LFS sha256) and is not interpreted by the store.
    """

    size: int
    identity: str
    meta: dict[str, Any] = field(default_factory=dict)
    expected: ExpectedHash | None = None

    def __post_init__(self) -> None:
        kind, _, value = self.identity.partition(":")
        hash_kind = HASH_IDENTITIES.get(kind)
        if hash_kind is None:
            return
        exp = self.expected
        if exp is None:  # a hash identity is its own expected hash: stated once, here
            object.__setattr__(self, "expected", ExpectedHash(hash_kind, value))
        elif exp.kind != hash_kind or exp.prefix or exp.hex != value:
            raise ValueError(f"{self.identity!r} is verified by its own hash, not by {exp.text}")

    @classmethod
    def of_hash(cls, size: int, expected: ExpectedHash, meta: dict[str, Any] | None = None) -> TreeEntry:
        """An entry named by the hash that verifies it (``sha256:…``, ``gitsha1:…``, ``b3:…``)."""
        kind = {v: k for k, v in HASH_IDENTITIES.items()}[expected.kind]
        return cls(size, f"{kind}:{expected.hex}", meta or {}, expected)

    @property
    def verified_by(self) -> str:
        """How its bytes are checked, for people: ``sha256``, ``sha256 prefix``, ``length only``."""
        if self.expected is None:
            return "length only"
        return self.expected.kind + (" prefix" if self.expected.prefix else "")


def _expected_text(exp: ExpectedHash | None) -> str | None:
    return None if exp is None else exp.text


def _expected_from_text(text: object) -> ExpectedHash | None:
    if text is None:
        return None
    try:
        return ExpectedHash.parse(text)
    except ValueError as exc:
        raise StoreFormatError(f"bad expected hash in a snapshot record: {exc}") from None


def legacy_expected(identity: str) -> ExpectedHash | None:
    """What a version-1 record's identity promised (version 1 kept no expected hash): used only
    to read and migrate stores written before the hash lived in the tree entry."""
    kind, _, value = identity.partition(":")
    hash_kind = HASH_IDENTITIES.get(kind)
    return None if hash_kind is None else ExpectedHash(hash_kind, value)


#: snapshot records: 1 = [size, identity, meta]; 2 adds the expected hash
_SNAPSHOT_V2 = 2


@dataclass(frozen=True)
class Snapshot:
    """An immutable revision of a repo: its files, and source-specific info about the revision."""

    files: dict[str, TreeEntry]
    created: int
    info: dict[str, Any] = field(default_factory=dict)

    _HEAD = struct.Struct("<Bq")

    def encode(self) -> bytes:
        doc = {
            "files": {p: [e.size, e.identity, e.meta, _expected_text(e.expected)] for p, e in sorted(self.files.items())},
            "info": self.info,
        }
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return self._HEAD.pack(_SNAPSHOT_V2, self.created) + zstandard.ZstdCompressor(level=3).compress(raw)

    @classmethod
    def decode(cls, data: bytes) -> Snapshot:
        if not data:
            raise StoreFormatError("empty snapshot record")
        version = data[0]
        if version not in (_V1, _SNAPSHOT_V2):
            raise StoreFormatError(
                f"snapshot record has version {version}, this hoard reads versions 1-{_SNAPSHOT_V2}: "
                "the store was written by a newer hoard"
            )
        _, created = cls._HEAD.unpack_from(data)
        doc = json.loads(zstandard.ZstdDecompressor().decompress(data[cls._HEAD.size :]))
        files = {}
        for p, v in doc["files"].items():
            exp = legacy_expected(v[1]) if version == _V1 else _expected_from_text(v[3])
            files[p] = TreeEntry(v[0], v[1], v[2], exp)
        return cls(files, created, doc.get("info", {}))

    @property
    def size(self) -> int:
        return sum(e.size for e in self.files.values())

    @property
    def restricted(self) -> bool:
        """True if the origin gives this revision's files only to some clients (a private or
        gated repo, or one a parent hoard marked so): its bytes and hashes are not public."""
        info = self.info
        return bool(info.get("private") or info.get("gated") or info.get("parent_restricted"))
