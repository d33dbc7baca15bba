"""Deterministic synthetic file content whose any byte range is computable on demand.

A `Content` is either *generated* — the BLAKE3 extendable output (XOF) of a hasher
seeded with a domain tag and the caller's seed, truncated to ``size`` bytes — or
*literal* (wrapping a bytes object). Generated content is never held in memory:
``read(start, end)`` asks the XOF for ``end - start`` bytes at offset ``start``
(``digest(length=..., seek=...)``), so a 4 GiB file costs nothing until read, and
any slice of it can be recomputed by an origin, a test, or an assertion.

The three identities a Hugging Face style store cares about are computed lazily, in
one streaming pass of 8 MiB steps, and cached:

* ``sha256``   -- the LFS object id (what the Hub sends as ``X-Linked-Etag``);
* ``git_sha1`` -- ``sha1(b"blob <size>\\0" + data)``, the git blob id of a non-LFS file;
* ``blake3``   -- the plain BLAKE3-256 of the bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import blake3 as _blake3

__all__ = ["HASH_STEP", "Content"]

#: Step used when hashing; large enough to amortise call overhead, small enough for RAM.
HASH_STEP = 8 << 20
#: Domain tag so that fake content never collides with BLAKE3 of some real input.
_SEED_TAG = b"hoard.tests.fakes.content.v1\0"


class Content:
    """Immutable bytes of a known size, generated from a seed or wrapping literal data."""

    __slots__ = ("_data", "_digests", "_lock", "_seed", "_xof", "size")

    def __init__(self, seed: str | bytes, size: int) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        raw = seed.encode() if isinstance(seed, str) else bytes(seed)
        self._seed: bytes | None = raw
        self._data: bytes | None = None
        self._xof: _blake3.blake3 | None = _blake3.blake3(_SEED_TAG + raw)
        self.size = size
        self._digests: tuple[str, str, str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_bytes(cls, data: bytes) -> Content:
        """Wrap literal bytes (small files: configs, tokenizers, text)."""
        obj = cls.__new__(cls)
        obj._seed = None
        obj._data = bytes(data)
        obj._xof = None
        obj.size = len(data)
        obj._digests = None
        obj._lock = threading.Lock()
        return obj

    @classmethod
    def of(cls, value: bytes | str | Content) -> Content:
        """Coerce ``bytes``/``str`` (UTF-8) into a `Content`; return a `Content` unchanged."""
        if isinstance(value, Content):
            return value
        if isinstance(value, str):
            value = value.encode()
        return cls.from_bytes(value)

    # -- bytes -----------------------------------------------------------------------

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)``, clamped to the content (``end=None`` means to the end)."""
        stop = self.size if end is None else min(end, self.size)
        start = max(0, start)
        if start >= stop:
            return b""
        if self._data is not None:
            return self._data[start:stop]
        assert self._xof is not None
        return self._xof.digest(length=stop - start, seek=start)

    def iter_range(self, start: int = 0, end: int | None = None, block: int = 1 << 20) -> Iterator[bytes]:
        """Yield ``[start, end)`` in blocks of at most ``block`` bytes."""
        if block <= 0:
            raise ValueError("block must be positive")
        stop = self.size if end is None else min(end, self.size)
        pos = max(0, start)
        while pos < stop:
            nxt = min(pos + block, stop)
            yield self.read(pos, nxt)
            pos = nxt

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.read(0, self.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Content):
            return NotImplemented
        if self.size != other.size:
            return False
        if self._seed is not None and self._seed == other._seed:
            return True
        return self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash((self.size, self.sha256))

    def __repr__(self) -> str:
        kind = f"seed={self._seed!r}" if self._seed is not None else "literal"
        return f"Content({kind}, size={self.size})"

    # -- identities ------------------------------------------------------------------

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes (the LFS oid)."""
        return self._hashes()[0]

    @property
    def git_sha1(self) -> str:
        """Hex git blob id: ``sha1(b"blob %d\\0" % size + data)``."""
        return self._hashes()[1]

    @property
    def blake3(self) -> str:
        """Hex BLAKE3-256 of the bytes."""
        return self._hashes()[2]

    def _hashes(self) -> tuple[str, str, str]:
        digests = self._digests
        if digests is not None:
            return digests
        with self._lock:
            if self._digests is None:
                sha256 = hashlib.sha256()
                sha1 = hashlib.sha1(b"blob %d\0" % self.size)
                b3 = _blake3.blake3(max_threads=_blake3.blake3.AUTO)
                for chunk in self.iter_range(0, self.size, HASH_STEP):
                    sha256.update(chunk)
                    sha1.update(chunk)
                    b3.update(chunk)
                self._digests = (sha256.hexdigest(), sha1.hexdigest(), b3.hexdigest())
            return self._digests
