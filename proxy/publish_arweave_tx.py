"""Arweave format-2 transactions, signed with arweave-python-client's wallet (``hoard[arweave]``).

Only the library's cryptography is used (shared/reference/sources.md §2): ``Wallet`` (the JWK
as an RSA key, its address ``b64url(sha256(n))``, RSA-PSS/SHA-256 signing), its Merkle tree
over 256 KiB chunks (``data_root`` and each chunk's proof) and its deep hash. Its HTTP calls
are not: they have no timeouts, a non-200 is only logged, its uploader's back-off path is
broken and the ``Transaction`` constructor fetches an anchor. Here a transaction is signed
from what the caller fetched (anchor, reward) and :mod:`.publish_arweave` sends it with
hoard's HTTP client.

A transaction's id is ``b64url(sha256(signature))`` and PSS signatures are salted, so the
same data and tags sign to a new id every time: resuming a push relies on the ids it
recorded (:mod:`.publish_record`), never on recomputing them.

Wire forms (ArweaveTeam/arweave ``ar_serialize``): ``POST /tx`` takes the header JSON
(base64url fields, tags as base64url name/value pairs); data of one chunk (256 KiB) or less
rides in its ``data`` field, larger data follows as ``POST /chunk`` bodies ``{data_root,
data_size, data_path, offset, chunk}`` where ``offset`` is the chunk's last byte.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoard.store.errors import IntegrityError, UsageError

__all__ = ["CHUNK", "ArWallet", "SignedTx", "b64url", "unb64url", "load_wallet", "sign_tx", "restore_tx"]

#: Arweave's chunk size: data of at most one chunk is posted inline with the header
CHUNK = 256 * 1024
_EXTRA = "publishing to Arweave needs arweave-python-client: pip install 'hoard[arweave]'"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _lib() -> Any:
    """The library's modules (imported on first use: the extra is optional)."""
    try:
        from arweave import arweave_lib, deep_hash, merkle
    except ImportError as exc:
        raise UsageError(f"{_EXTRA} ({exc})") from None
    return arweave_lib, deep_hash, merkle


@dataclass(frozen=True)
class ArWallet:
    """A loaded wallet: its address, its owner field (the modulus ``n``) and the signer."""

    address: str
    owner: str
    signer: Any  # arweave.arweave_lib.Wallet

    def sign(self, message: bytes) -> bytes:
        return bytes(self.signer.sign(message))


def load_wallet(path: Path) -> ArWallet:
    """The JWK wallet at ``path``; :class:`UsageError` (exit 2) for anything that is not an
    RSA-4096 private key, before any network call."""
    arweave_lib, _, _ = _lib()
    try:
        signer = arweave_lib.Wallet(str(path))
    except OSError as exc:
        raise UsageError(f"wallet {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - the library raises anything for a bad JWK
        raise UsageError(f"wallet {path}: not an Arweave wallet (an RSA JWK): {type(exc).__name__}: {exc}") from None
    rsa = signer.rsa
    if not rsa.has_private():
        raise UsageError(f"wallet {path}: holds no private key (it cannot sign)")
    if rsa.size_in_bits() != 4096:
        raise UsageError(f"wallet {path}: an Arweave key is RSA-4096, this one has {rsa.size_in_bits()} bits")
    return ArWallet(str(signer.address), str(signer.owner), signer)


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction: its header (JSON without data), its data and the chunk proofs."""

    header: dict[str, Any]
    data: bytes
    proofs: tuple[tuple[int, int, bytes, int], ...]  # (start, end, data_path, offset) per chunk

    @property
    def id(self) -> str:
        return str(self.header["id"])

    @property
    def inline(self) -> bool:
        """Its data goes in the ``POST /tx`` body (one chunk or less)."""
        return len(self.data) <= CHUNK

    @property
    def nchunks(self) -> int:
        return 0 if self.inline else len(self.proofs)

    def body(self) -> dict[str, Any]:
        """The ``POST /tx`` JSON."""
        return {**self.header, "data": b64url(self.data) if self.inline else ""}

    def chunk(self, i: int) -> tuple[dict[str, str], int]:
        """The ``POST /chunk`` JSON of chunk ``i``, and its length."""
        start, end, path, offset = self.proofs[i]
        body = {
            "data_root": self.header["data_root"],
            "data_size": self.header["data_size"],
            "data_path": b64url(path),
            "offset": str(offset),
            "chunk": b64url(self.data[start:end]),
        }
        return body, end - start


def _merkle(data: bytes) -> tuple[bytes, tuple[tuple[int, int, bytes, int], ...]]:
    """(data_root, proofs) of ``data`` by the library's tree; empty data has neither."""
    if not data:
        return b"", ()
    _, _, merkle = _lib()
    tree = merkle.generate_transaction_chunks(io.BytesIO(data))
    proofs = tuple(
        (c.min_byte_range, c.max_byte_range, bytes(p.proof), int(p.offset))
        for c, p in zip(tree["chunks"], tree["proofs"], strict=True)
    )
    return bytes(tree["data_root"]), proofs


def sign_tx(wallet: ArWallet, tags: Sequence[tuple[str, str]], data: bytes, *, anchor: str, reward: int) -> SignedTx:
    """Sign a data transaction (no target, no quantity) with the given anchor and reward."""
    _, deep_hash, _ = _lib()
    root, proofs = _merkle(data)
    raw_tags = [[n.encode(), v.encode()] for n, v in tags]
    message = deep_hash.deep_hash([
        b"2", unb64url(wallet.owner), b"", b"0", str(reward).encode(), unb64url(anchor),
        raw_tags, str(len(data)).encode(), root,
    ])  # fmt: skip
    signature = wallet.sign(message)
    header = {
        "format": 2,
        "id": b64url(hashlib.sha256(signature).digest()),
        "last_tx": anchor,
        "owner": wallet.owner,
        "tags": [{"name": b64url(n), "value": b64url(v)} for n, v in raw_tags],
        "target": "",
        "quantity": "0",
        "data_size": str(len(data)),
        "data_root": b64url(root),
        "reward": str(reward),
        "signature": b64url(signature),
    }
    return SignedTx(header, data, proofs)


def restore_tx(header: dict[str, Any], data: bytes, what: str) -> SignedTx:
    """A transaction signed by an earlier run, with its data read again; the data must hash to
    the recorded ``data_root`` (else the file changed since: :class:`IntegrityError`)."""
    root, proofs = _merkle(data)
    if b64url(root) != header.get("data_root") or str(len(data)) != header.get("data_size"):
        raise IntegrityError(f"{what} changed since the interrupted push sent it; run the push again")
    return SignedTx(dict(header), data, proofs)

