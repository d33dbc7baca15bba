"""Hashing in one pass: BLAKE3 (the store's key) plus the upstream's own hash, if any.

The two run side by side: for a large block, BLAKE3 goes to a small thread pool of its own
while the caller's thread computes the upstream hash (SHA-256: ~0.3 s per 512 MiB here, the
longer of the two), and the block is done when both are. Both release the GIL, and each
hash still sees the bytes in file order (the caller hashes one block at a time).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import blake3

from .errors import IntegrityError
from .records import ExpectedHash

__all__ = ["ContentHasher", "git_blob_sha1", "new_blake3"]

# Files of many MiB hash faster on more cores; blake3 parallelises large updates itself.
_B3_THREADS = blake3.blake3.AUTO


#: blocks at least this large are hashed by both hashes at once
_SIDE_BY_SIDE = 1 << 20
_B3_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hoard-blake3")


def new_blake3() -> Any:
    return blake3.blake3(max_threads=_B3_THREADS)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub sends as ETag for files not in LFS."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


class ContentHasher:
    """Feeds bytes, in file order, to BLAKE3 and to the hash the upstream promised.

    :meth:`finish` checks the length and the upstream hash and returns the BLAKE3 hex; a
    mismatch raises :class:`IntegrityError`, so a caller can never publish wrong bytes by
    forgetting to compare.
    """

    def __init__(self, size: int, expected: ExpectedHash | None = None) -> None:
        self.size = size
        self.expected = expected
        self.count = 0
        self._b3 = new_blake3()
        self._up: Any = None
        if expected is None:
            # nothing promised: the sha256 is still worth knowing (the Hub, Repr-Digest and
            # most manifests name content by it), and costs less now than hashing again later
            self._up = hashlib.sha256()
        elif expected.kind == "sha256":
            self._up = hashlib.sha256()
        elif expected.kind == "gitsha1":
            self._up = hashlib.sha1(b"blob %d\0" % size)
        # kind "blake3": the BLAKE3 we compute anyway is compared

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes of the file (the caller keeps them unchanged until it returns)."""
        if self._up is not None and len(data) >= _SIDE_BY_SIDE:
            b3 = _B3_POOL.submit(self._b3.update, data)
            try:
                self._up.update(data)
            finally:
                b3.result()
        else:
            self._b3.update(data)
            if self._up is not None:
                self._up.update(data)
        self.count += len(data)

    def upstream_hex(self) -> str | None:
        return None if self._up is None else self._up.hexdigest()

    def learned_aliases(self) -> list[str]:
        """(After :meth:`finish`.) Aliases the bytes earned beyond the expected one: the whole
        hash behind a prefix expectation, or the sha256 of content nothing promised a hash for."""
        up = self.upstream_hex()
        exp = self.expected
        if up is None:
            return []
        if exp is None:
            return [f"sha256:{up}"]
        return [f"{exp.kind}:{up}"] if exp.prefix else []

    def finish(self) -> str:
        if self.count != self.size:
            raise IntegrityError(f"length mismatch: expected {self.size} bytes, got {self.count}")
        b3 = self._b3.hexdigest()
        exp = self.expected
        if exp is not None:
            got = b3 if exp.kind == "blake3" else self._up.hexdigest()
            ok = got.startswith(exp.hex) if exp.prefix else got == exp.hex
            if not ok:
                raise IntegrityError(f"{exp.kind} mismatch: expected {exp.hex}, got {got}")
        return b3
