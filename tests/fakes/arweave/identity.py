"""Arweave identities as the network computes them: base64url, addresses, tx ids, data roots.

* base64url is RFC 4648 §5 **without padding**; a 43-character id is the encoding of 32 bytes,
  and ar.io rejects a 43-character id that does not round-trip (``400 Invalid ID``);
* a wallet address is ``b64url(sha256(n))`` where ``n`` is the raw RSA modulus (the JWK ``n``
  field, itself base64url); the tx ``owner`` field carries ``n``;
* a transaction id is ``b64url(sha256(signature))``;
* ``data_root`` is the root of Arweave's Merkle tree over the data's chunks (SHA-256): a leaf is
  ``H(H(sha256(chunk)) || H(note(end)))``, a branch ``H(H(left) || H(right) || H(note(left.end)))``
  with 32-byte big-endian notes, an odd node is carried up unchanged. ritual-pyarweave cuts
  chunks at fixed 256 KiB boundaries (`chunk_bounds`); arweave-js would balance the last two;
* amounts are integers of winston (10^-12 AR); GraphQL also shows them in AR (`winston_to_ar`).

`FakeWallet` stands for a key pair whose public modulus is derived from a seed: enough for an
owner address, an owner key and deterministic signatures, not for real RSA signing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal

from ..content import Content

__all__ = [
    "MAX_CHUNK_SIZE",
    "FakeWallet",
    "b64url_decode",
    "b64url_encode",
    "chunk_bounds",
    "data_root",
    "is_b64url_id",
    "owner_address",
    "txid_of_signature",
    "winston_to_ar",
]

MAX_CHUNK_SIZE = 256 * 1024
NOTE_SIZE = 32
_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str | bytes) -> bytes:
    """Decode base64url with or without padding; raises ``ValueError`` on bad input."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    if not re.fullmatch(rb"[A-Za-z0-9_-]*=*", raw) or len(raw.rstrip(b"=")) % 4 == 1:
        raise ValueError(f"not base64url: {raw[:60]!r}")
    raw = raw.rstrip(b"=")
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def is_b64url_id(text: str) -> bool:
    """A 43-character canonical base64url string (what ar.io accepts as a data id)."""
    return bool(_ID.match(text)) and b64url_encode(b64url_decode(text)) == text


def owner_address(owner: str) -> str:
    """The wallet address of an ``owner`` (base64url RSA modulus ``n``)."""
    return b64url_encode(hashlib.sha256(b64url_decode(owner)).digest())


def txid_of_signature(signature: bytes) -> str:
    return b64url_encode(hashlib.sha256(signature).digest())


def winston_to_ar(winston: int | str) -> str:
    """arweave-js ``winstonToAr``: 12 decimals, trailing zeros (and a bare dot) trimmed."""
    text = f"{Decimal(int(winston)).scaleb(-12):.12f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def chunk_bounds(size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each chunk of ``size`` bytes, cut like ritual-pyarweave does: fixed
    256 KiB steps, the last one shorter, no chunk at all for empty data."""
    return [(start, min(start + MAX_CHUNK_SIZE, size)) for start in range(0, size, MAX_CHUNK_SIZE)]


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _note(n: int) -> bytes:
    return n.to_bytes(NOTE_SIZE, "big")


def data_root(content: Content, bounds: list[tuple[int, int]]) -> bytes:
    """The Merkle root over ``content`` cut at ``bounds`` (b"" for empty data)."""
    if not bounds:
        return b""
    layer = [(_h(_h(hashlib.sha256(content.read(s, e)).digest()), _h(_note(e))), e) for s, e in bounds]
    while len(layer) > 1:
        nxt = []
        for i in range(0, len(layer), 2):
            if i + 1 == len(layer):
                nxt.append(layer[i])
                continue
            (left, left_end), (right, right_end) = layer[i], layer[i + 1]
            nxt.append((_h(_h(left), _h(right), _h(_note(left_end))), right_end))
        layer = nxt
    return layer[0][0]


@dataclass(frozen=True)
class FakeWallet:
    """An uploader identity: a 512-byte modulus derived from ``seed`` (RSA-4096 sized)."""

    seed: str
    n: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = bytearray(Content(b"arweave-wallet:" + self.seed.encode(), 512).read())
        raw[0] |= 0x80  # a full 4096-bit modulus, as Arweave requires
        raw[-1] |= 1  # odd, like any RSA modulus
        object.__setattr__(self, "n", bytes(raw))

    @property
    def owner(self) -> str:
        """The ``owner`` field of this wallet's transactions (and GraphQL ``owner.key``)."""
        return b64url_encode(self.n)

    @property
    def address(self) -> str:
        return owner_address(self.owner)

    def signature(self, message: bytes) -> bytes:
        """A deterministic 512-byte stand-in for an RSA-PSS signature of ``message``."""
        return Content(b"arweave-signature:" + self.n + hashlib.sha384(message).digest(), 512).read()
