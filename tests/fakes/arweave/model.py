"""The fake weave: transactions, blocks, the global byte-offset space, and transaction queries.

What it mimics (Arweave node + ar.io index semantics):

* a `Tx` is a format-2 transaction: owner (RSA modulus), ordered tags of raw bytes, a data
  root and size, an anchor (``last_tx``), a reward; its id is ``sha256(signature)``. Its data
  arrives with the header (seeded, or small uploads) or later as chunks; it is readable once
  every chunk is in (`Tx.data` is not None);
* a new tx is **pending** (height None: ``/tx/{id}`` answers 202, GraphQL ``block: null``)
  until `Weave.mine` puts it into the next block; ``confirmations = tip - height + 1`` and
  data is *stable* (ar.io's 30-day cache header) from 18 confirmations on;
* a mined tx with data occupies ``(base, base + size]`` of the global 1-based weave offset
  space (bases are 256 KiB aligned, as after the strict data split): ``/tx/{id}/offset``
  gives ``base + size`` and ``/chunk/{o}`` the chunk whose range holds ``o``;
* `Weave.find` is the GraphQL ``transactions`` filter: ids / owners (address or key) /
  recipients / block range, tag filters AND-ed with values OR-ed inside one filter, in one
  total order — confirmed by (height, index in block), then pending by arrival; HEIGHT_DESC
  is that order reversed (pending first), HEIGHT_ASC as is.

All state is guarded by ``Weave.lock`` (tests seed from their thread, handlers run on the
gateway's loop thread).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..content import Content
from .identity import (
    MAX_CHUNK_SIZE,
    FakeWallet,
    b64url_encode,
    chunk_bounds,
    data_root,
    owner_address,
    txid_of_signature,
)

__all__ = ["STABLE_DEPTH", "Block", "Tx", "Weave"]

#: ar.io calls data stable once it is this many blocks deep (its max fork depth).
STABLE_DEPTH = 18
#: Where the fake weave's offset space starts (the real weave is hundreds of TB long).
WEAVE_START = 300 * 10**12
GENESIS_TIME = 1_528_000_000
BLOCK_TIME = 120


@dataclass(eq=False)
class Tx:
    id: str
    owner: str  # base64url RSA modulus
    tags: list[tuple[bytes, bytes]]
    data_size: int
    data_root: str  # base64url, "" for empty data
    last_tx: str
    reward: int
    signature: str
    target: str = ""
    quantity: int = 0
    data: Content | None = None  # None until every chunk arrived
    bounds: list[tuple[int, int]] = field(default_factory=list)  # chunk [start, end) of the data
    received: dict[int, bytes] = field(default_factory=dict, repr=False)  # uploads in progress
    height: int | None = None
    block_index: int | None = None
    indexed_at: int = 0  # arrival order (orders pending txs)
    base: int | None = None  # weave offset just before the data (None: not mined or empty)
    cached: bool = False  # ar.io "X-Cache: HIT": served from the gateway's own cache
    error_codes: list[str] | None = None  # dropped/failed: the node answers 410 with these
    blocked: bool = False  # ar.io blocklist: 451

    @property
    def owner_address(self) -> str:
        return owner_address(self.owner)

    @property
    def pending(self) -> bool:
        return self.height is None

    @property
    def str_tags(self) -> list[tuple[str, str]]:
        """Tags as GraphQL shows them (UTF-8 decoded)."""
        return [(n.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for n, v in self.tags]

    def tag(self, name: str) -> str | None:
        """The first tag value with this exact name, decoded."""
        for n, v in self.str_tags:
            if n == name:
                return v
        return None

    def tag_bytes(self, name: str) -> bytes | None:
        """The first raw tag value with this exact name (the node's ``lists:keyfind``)."""
        for n, v in self.tags:
            if n == name.encode():
                return v
        return None

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` tag (ar.io matches the name case-insensitively)."""
        for n, v in self.str_tags:
            if n.lower() == "content-type":
                return v
        return None

    @property
    def sha256_b64url(self) -> str:
        assert self.data is not None
        return b64url_encode(bytes.fromhex(self.data.sha256))

    def chunk_at(self, rel: int) -> tuple[int, int]:
        """The ``[start, end)`` chunk holding byte ``rel`` of the data."""
        i = bisect.bisect_right([s for s, _ in self.bounds], rel) - 1
        return self.bounds[i]

    def add_chunk(self, start: int, data: bytes) -> bool:
        """Store an uploaded chunk; once every byte is in, check the chunks hash to `data_root`:
        then `data` is set and True returned; a chunk that breaks the root is dropped again
        (``ValueError``), as a node rejects a chunk whose proof fails."""
        self.received[start] = data
        pos, parts = 0, []
        for s in sorted(self.received):
            if s != pos:
                return False
            parts.append(self.received[s])
            pos = s + len(self.received[s])
        if pos != self.data_size:
            return False
        bounds = [(s, s + len(self.received[s])) for s in sorted(self.received)]
        content = Content.from_bytes(b"".join(parts))
        if b64url_encode(data_root(content, bounds)) != self.data_root:
            del self.received[start]
            raise ValueError("invalid_proof")
        self.data, self.bounds, self.received = content, bounds, {}
        return True


@dataclass(frozen=True)
class Block:
    height: int
    id: str
    timestamp: int
    previous: str


def block_id(height: int) -> str:
    """A 48-byte (64-character) independent hash, like real block ids."""
    return b64url_encode(hashlib.sha384(b"fake-arweave-block:%d" % height).digest())


class Weave:
    """Transactions, blocks and offsets of the fake network (see the module docstring)."""

    def __init__(self, *, start_height: int = 1_500_000) -> None:
        self.lock = threading.RLock()
        self.txs: dict[str, Tx] = {}
        self.tip = start_height
        self.block_txs: dict[int, list[str]] = {}
        self.weave_size = WEAVE_START
        self._bases: list[int] = []  # sorted weave bases of mined txs with data
        self._by_base: dict[int, str] = {}
        self._arrivals = 0

    # -- blocks ----------------------------------------------------------------------------

    def block(self, height: int) -> Block:
        return Block(height, block_id(height), GENESIS_TIME + height * BLOCK_TIME, block_id(height - 1))

    def anchor(self) -> str:
        """What ``GET /tx_anchor`` suggests: a recent block id."""
        with self.lock:
            return block_id(max(0, self.tip - 1))

    def valid_anchor(self, last_tx: str) -> bool:
        """A block id of the last 50 blocks, or an existing tx id (the node's anchor rule)."""
        with self.lock:
            recent = {block_id(h) for h in range(max(0, self.tip - 50), self.tip + 1)}
            return last_tx in recent or last_tx in self.txs

    def confirmations(self, tx: Tx) -> int:
        return 0 if tx.height is None else self.tip - tx.height + 1

    def stable(self, tx: Tx) -> bool:
        return self.confirmations(tx) >= STABLE_DEPTH

    # -- transactions ----------------------------------------------------------------------

    def add(self, tx: Tx) -> Tx:
        """Register a new (pending) transaction."""
        with self.lock:
            if tx.id in self.txs:
                raise ValueError(f"duplicate tx {tx.id}")
            self._arrivals += 1
            tx.indexed_at = self._arrivals
            if tx.data is not None and not tx.bounds:
                tx.bounds = chunk_bounds(tx.data_size)
            self.txs[tx.id] = tx
            return tx

    def create(self, wallet: FakeWallet, tags: Iterable[tuple[str, str]], data: Content, *, reward: int = 0) -> Tx:
        """A new pending tx by ``wallet`` with its data already present (a seeded upload)."""
        pairs = [(n.encode(), v.encode()) for n, v in tags]
        root = b64url_encode(data_root(data, chunk_bounds(data.size)))
        with self.lock:
            anchor, nonce = self.anchor(), len(self.txs)
            fields = [wallet.owner, anchor, str(reward), root, str(data.size), str(nonce), *map(repr, pairs)]
            signature = wallet.signature(json.dumps(fields).encode())
            tx = Tx(
                id=txid_of_signature(signature),
                owner=wallet.owner,
                tags=pairs,
                data_size=data.size,
                data_root=root,
                last_tx=anchor,
                reward=reward,
                signature=b64url_encode(signature),
                data=data,
            )
            return self.add(tx)

    def get(self, txid: str) -> Tx | None:
        with self.lock:
            return self.txs.get(txid)

    def mine(self, txids: Iterable[str] | None = None, *, confirmations: int = 1) -> int:
        """Put the given pending txs (default: all) into block ``tip + 1``, give their data
        weave offsets, then advance the tip so that block has ``confirmations``; returns
        the block height."""
        if confirmations < 1:
            raise ValueError("a mined block has at least one confirmation")
        with self.lock:
            chosen = [self.txs[t] for t in txids] if txids is not None else list(self.txs.values())
            chosen = [t for t in chosen if t.height is None and t.error_codes is None]
            height = self.tip + 1
            ids = self.block_txs.setdefault(height, [])
            for tx in sorted(chosen, key=lambda t: t.indexed_at):
                tx.height, tx.block_index = height, len(ids)
                ids.append(tx.id)
                if tx.data_size > 0:
                    base = -(-self.weave_size // MAX_CHUNK_SIZE) * MAX_CHUNK_SIZE
                    tx.base, self.weave_size = base, base + tx.data_size
                    self._bases.append(base)
                    self._by_base[base] = tx.id
            self.tip = height + confirmations - 1
            return height

    def advance(self, blocks: int = 1) -> None:
        """Add empty blocks (deepens every confirmed tx)."""
        with self.lock:
            self.tip += blocks

    def locate(self, offset: int) -> tuple[Tx, int, int] | None:
        """The tx and chunk ``[start, end)`` (relative) holding 1-based weave ``offset``."""
        with self.lock:
            i = bisect.bisect_left(self._bases, offset) - 1
            if i < 0:
                return None
            tx = self.txs[self._by_base[self._bases[i]]]
            assert tx.base is not None
            rel = offset - tx.base - 1
            if not 0 <= rel < tx.data_size or tx.data is None:
                return None
            start, end = tx.chunk_at(rel)
            return tx, start, end

    # -- queries ---------------------------------------------------------------------------

    @staticmethod
    def order_key(tx: Tx) -> tuple[int, int, int]:
        """Ascending total order: confirmed by (height, index), then pending by arrival."""
        if tx.height is None:
            return (1, tx.indexed_at, 0)
        return (0, tx.height, tx.block_index or 0)

    def find(
        self,
        *,
        ids: list[str] | None = None,
        owners: list[str] | None = None,
        recipients: list[str] | None = None,
        tags: list[tuple[str, list[str]]] | None = None,
        min_height: int | None = None,
        max_height: int | None = None,
        bundled_in: list[str] | None = None,
        descending: bool = True,
    ) -> list[Tx]:
        """Every visible tx matching all filters, in the requested order."""
        owner_set = None if owners is None else {o if len(o) <= 43 else owner_address(o) for o in owners}
        with self.lock:
            found = []
            for tx in self.txs.values():
                if tx.error_codes is not None:
                    continue  # dropped from the mempool: gone from the index
                if ids is not None and tx.id not in ids:
                    continue
                if owner_set is not None and tx.owner_address not in owner_set:
                    continue
                if recipients is not None and tx.target not in recipients:
                    continue
                if bundled_in:  # every tx here is a layer-1 tx: nothing is bundled
                    continue
                if (min_height is not None or max_height is not None) and (
                    tx.height is None
                    or (min_height is not None and tx.height < min_height)
                    or (max_height is not None and tx.height > max_height)
                ):
                    continue
                pairs = tx.str_tags
                if tags and not all(any(n == name and v in values for n, v in pairs) for name, values in tags):
                    continue
                found.append(tx)
        found.sort(key=self.order_key, reverse=descending)
        return found
