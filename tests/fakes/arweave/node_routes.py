"""The Arweave node routes an ar.io gateway proxies to its trusted node (ArweaveTeam/arweave
``ar_http_iface_middleware.erl``): transaction headers and fields, data, offsets, chunks,
anchors, prices, balances and the upload endpoints.

Reads: ``/tx/{id}`` (format-2 JSON, ``data`` always ""), ``/tx/{id}/status``, ``/tx/{id}/tags``
(base64url pairs), ``/tx/{id}/{field}`` (the raw JSON value as text: ``data_size`` → ``1234``)
answer 202 ``Pending`` for a mempool tx, 404 ``Not Found.`` for an unknown one and 410 with the
error codes of a dropped one; ``/tx/{id}/data`` (base64url text) and ``/tx/{id}/data.{ext}``
(raw bytes, ``content-type`` from the tag else ``text/html``) need the tx mined and its data
present, else the node's 404 HTML page — even while pending — and refuse data over 12 MiB
with ``400 {"error":"tx_data_too_big"}``; empty data is a 200 with an empty body.
``/tx/{id}/offset`` is ``{"offset","size"}`` (strings; absolute end offset, inclusive) or a 404
with an empty body; ``/chunk/{o}`` is the chunk holding 1-based weave offset ``o`` as JSON
``{chunk, data_path, packing, tx_path}`` plus ``arweave-absolute-end-offset`` (``data_path``
and ``tx_path`` are left empty here), 404 with an empty body when absent or when ``x-packing``
asks for a packing other than ``unpacked``/``any``.

Writes: ``POST /tx`` takes the JSON tx (base64url fields; the owner address is computed from
``owner``); the id must be ``sha256(signature)``, the anchor recent, the body data (if any) must
match ``data_size``/``data_root``; then ``200 OK`` and the tx is pending (mined now if
`auto_mine`). Larger data comes by ``POST /chunk`` (JSON ``{data_root, data_size, data_path,
offset, chunk}``; ``offset`` is the chunk's last byte), keyed by data root; the tx becomes
readable once every byte arrived and the chunks hash to its ``data_root``. RSA signatures are
not verified.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..content import Content
from .identity import (
    MAX_CHUNK_SIZE,
    b64url_decode,
    b64url_encode,
    chunk_bounds,
    data_root,
    txid_of_signature,
)
from .model import Tx
from .replies import GatewayRecord, Replies

__all__ = ["NodeRoutes"]

MAX_SERVED_TX_DATA_SIZE = 12 * 1024 * 1024
NOT_FOUND_HTML = (
    '<html><head><meta charset="utf-8"><title>Arweave</title></head>'
    "<body><h1>404</h1><p>Not Found. The data may not be available on this node.</p></body></html>\n"
)
TX_FIELDS = ("id", "last_tx", "owner", "target", "quantity", "data_size", "data_root", "reward", "signature")


def tx_json(tx: Tx) -> dict[str, Any]:
    """``ar_serialize:tx_to_json_struct`` of a format-2 tx (data is never inlined)."""
    return {
        "format": 2,
        "id": tx.id,
        "last_tx": tx.last_tx,
        "owner": tx.owner,
        "tags": [{"name": b64url_encode(n), "value": b64url_encode(v)} for n, v in tx.tags],
        "target": tx.target,
        "quantity": str(tx.quantity),
        "data": "",
        "data_size": str(tx.data_size),
        "data_tree": [],
        "data_root": tx.data_root,
        "reward": str(tx.reward),
        "signature": tx.signature,
    }


def _decodes(text: str) -> bool:
    try:
        b64url_decode(text)
        return True
    except ValueError:
        return False


class NodeRoutes(Replies):
    """The node routes (a base of `FakeGateway`, which sets these attributes)."""

    auto_mine: bool
    check_balance: bool
    default_balance: int
    price_base: int
    price_per_chunk: int
    balances: dict[str, int]

    async def _json_reply(
        self, request: web.Request, status: int, obj: Any, headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        body = json.dumps(obj, separators=(",", ":")).encode()
        return await self._text(request, status, body, {"Content-Type": "application/json", **(headers or {})})

    async def _missing_tx(self, request: web.Request, tx: Tx | None) -> web.StreamResponse:
        if tx is None:
            return await self._text(request, 404, "Not Found.")
        if tx.error_codes is not None:
            return await self._text(request, 410, " ".join(tx.error_codes))
        return await self._text(request, 202, "Pending")

    async def _node_route(self, request: web.Request, record: GatewayRecord) -> web.StreamResponse:
        route, txid = record.route, record.txid or ""
        if route == "post_tx":
            return await self._post_tx(request)
        if route == "post_chunk":
            return await self._post_chunk(request)
        if request.method != "GET":
            return await self._text(request, 400, "Request type not found.")
        if route == "tx_anchor":
            return await self._text(request, 200, self.weave.anchor())
        if route == "price":
            return await self._price(request)
        if route == "wallet":
            return await self._wallet(request)
        if route == "chunk":
            return await self._chunk(request)
        if not _decodes(txid):
            return await self._text(request, 400, "Invalid address." if route == "tx_status" else "Invalid hash.")
        tx = self.weave.get(txid)
        if route == "tx_offset":
            if tx is None or tx.base is None:
                return await self._text(request, 404, b"")
            return await self._json_reply(
                request, 200, {"offset": str(tx.base + tx.data_size), "size": str(tx.data_size)}
            )
        if route == "tx_data_raw":
            return await self._tx_data(request, tx, raw=True)
        if tx is None or tx.pending or tx.error_codes is not None:
            return await self._missing_tx(request, tx)
        if route == "tx":
            return await self._json_reply(request, 200, tx_json(tx))
        if route == "tx_status":
            b = self.weave.block(tx.height or 0)
            status = {
                "block_height": tx.height,
                "block_indep_hash": b.id,
                "number_of_confirmations": self.weave.confirmations(tx),
            }
            return await self._json_reply(request, 200, status)
        if route == "tx_tags":
            return await self._json_reply(request, 200, tx_json(tx)["tags"])
        if route == "tx_data":
            return await self._tx_data(request, tx, raw=False)
        field = request.path.rsplit("/", 1)[-1]
        if field not in TX_FIELDS:
            return await self._json_reply(request, 400, {"error": "invalid_field"})
        return await self._text(request, 200, str(tx_json(tx)[field]))

    async def _tx_data(self, request: web.Request, tx: Tx | None, *, raw: bool) -> web.StreamResponse:
        if tx is None or tx.pending or tx.error_codes is not None:
            if not raw:
                return await self._missing_tx(request, tx)
            return await self._text(request, 404, NOT_FOUND_HTML, {"content-type": "text/html; charset=utf-8"})
        kind = tx.tag_bytes("Content-Type") if raw else None
        if kind is not None and not all(32 <= c < 127 for c in kind):
            return await self._text(request, 421, b"")
        headers = {"content-type": kind.decode() if kind is not None else "text/html"} if raw else {}
        if tx.data_size == 0:
            return await self._text(request, 200, b"", headers)
        if tx.data is None:
            return await self._text(request, 404, NOT_FOUND_HTML, {"content-type": "text/html; charset=utf-8"})
        if tx.data_size > MAX_SERVED_TX_DATA_SIZE:
            return await self._json_reply(request, 400, {"error": "tx_data_too_big"})
        if raw:
            return await self._send(request, 200, headers, tx.data)
        return await self._text(request, 200, b64url_encode(tx.data.read()))

    async def _chunk(self, request: web.Request) -> web.StreamResponse:
        text = request.path.split("/")[2]
        try:
            offset = int(text)
        except ValueError:
            return await self._json_reply(request, 400, {"error": "invalid_offset"})
        if not 0 <= offset < 2**256:
            return await self._json_reply(request, 400, {"error": "offset_out_of_bounds"})
        packing = request.headers.get("x-packing", "unpacked")
        found = self.weave.locate(offset)
        if found is None or packing not in ("unpacked", "any"):
            return await self._text(request, 404, b"")
        tx, start, end = found
        assert tx.data is not None and tx.base is not None
        body = {"chunk": b64url_encode(tx.data.read(start, end)), "data_path": "", "packing": "unpacked", "tx_path": ""}
        return await self._json_reply(request, 200, body, {"arweave-absolute-end-offset": str(tx.base + end)})

    async def _price(self, request: web.Request) -> web.StreamResponse:
        segs = request.path.split("/")[2:]
        if not segs[0].lstrip("-").isdigit() or len(segs) > 2:
            return await self._json_reply(request, 400, {"error": "size_must_be_an_integer"})
        if len(segs) == 2 and not (len(segs[1]) == 43 and _decodes(segs[1])):
            return await self._text(request, 400, "Invalid address.")
        size = max(0, int(segs[0]))
        fee = self.price_base + self.price_per_chunk * -(-size // MAX_CHUNK_SIZE)
        if len(segs) == 2 and segs[1] not in self.balances:
            fee += self.price_per_chunk  # the new-wallet fee
        if request.headers.get("Accept") == "application/json":
            return await self._json_reply(
                request, 200, {"fee": str(fee), "denomination": 1}, {"arweave-denomination": "1"}
            )
        return await self._text(request, 200, str(fee), {"arweave-denomination": "1"})

    async def _wallet(self, request: web.Request) -> web.StreamResponse:
        segs = request.path.split("/")[2:]
        if len(segs) != 2 or segs[1] not in ("balance", "last_tx"):
            return await self._text(request, 400, "Request type not found.")
        if not (len(segs[0]) == 43 and _decodes(segs[0])):
            return await self._text(request, 400, "Invalid address.")
        if segs[1] == "balance":
            return await self._text(request, 200, str(self.balance(segs[0])))
        mine = [t for t in self.weave.find(owners=[segs[0]]) if not t.pending]
        return await self._text(request, 200, mine[0].id if mine else "")

    def balance(self, address: str) -> int:
        with self._lock:
            return self.balances.get(address, self.default_balance)

    async def _post_tx(self, request: web.Request) -> web.StreamResponse:
        try:
            obj = json.loads(await request.read())
            signature = b64url_decode(obj["signature"])
            owner, last_tx, data_root_text = obj["owner"], obj.get("last_tx", ""), obj.get("data_root", "")
            tags = [(b64url_decode(t["name"]), b64url_decode(t["value"])) for t in obj.get("tags", [])]
            data = b64url_decode(obj.get("data", ""))
            size, reward, quantity = (
                int(obj.get("data_size", "0")),
                int(obj["reward"]),
                int(obj.get("quantity", "0") or 0),
            )
            b64url_decode(owner)
        except (ValueError, KeyError, TypeError):
            return await self._text(request, 400, "Invalid JSON.")
        if obj.get("id") != txid_of_signature(signature):
            return await self._text(request, 400, "Invalid hash.")
        if self.weave.get(obj["id"]) is not None:
            return await self._text(request, 208, "Transaction already processed.")
        if not self.weave.valid_anchor(last_tx):
            return await self._text(request, 400, "Invalid anchor (last_tx).")
        body_root = b64url_encode(data_root(Content.from_bytes(data), chunk_bounds(len(data))))
        if data and (len(data) != size or body_root != data_root_text):
            return await self._text(request, 400, "Transaction verification failed.")
        tx = Tx(
            obj["id"],
            owner,
            tags,
            size,
            data_root_text,
            last_tx,
            reward,
            obj["signature"],
            obj.get("target", ""),
            quantity,
        )
        with self._lock:
            funded = not self.check_balance or self.balance(tx.owner_address) >= reward + quantity
            if funded:
                self.balances[tx.owner_address] = self.balance(tx.owner_address) - reward - quantity
        if not funded:
            return await self._text(request, 400, "Transaction verification failed.")
        if data or size == 0:
            tx.data = Content.from_bytes(data)
        self.weave.add(tx)
        if self.auto_mine:
            self.weave.mine([tx.id])
        return await self._text(request, 200, "OK")

    async def _post_chunk(self, request: web.Request) -> web.StreamResponse:
        try:
            obj = json.loads(await request.read())
            root, size, chunk = obj["data_root"], int(obj["data_size"]), b64url_decode(obj["chunk"])
        except (ValueError, KeyError, TypeError):
            return await self._json_reply(request, 400, {"error": "invalid_json"})
        if len(chunk) > MAX_CHUNK_SIZE:
            return await self._json_reply(request, 400, {"error": "chunk_too_big"})
        if "offset" not in obj:
            return await self._json_reply(request, 400, {"error": "offset_field_required"})
        error = self._store_chunk(root, size, int(obj["offset"]), chunk)
        if error is not None:
            return await self._json_reply(request, 400, {"error": error})
        return await self._text(request, 200, b"")

    def _store_chunk(self, root: str, size: int, offset: int, chunk: bytes) -> str | None:
        """Add a chunk to every tx waiting for this data root; the node's error code, or None."""
        with self.weave.lock:
            waiting = [t for t in self.weave.txs.values() if t.data_root == root and t.data_size == size]
            if not waiting:
                return "data_root_not_found"
            start = offset + 1 - len(chunk)
            if start < 0 or start + len(chunk) > size or not chunk:
                return "invalid_proof"
            for tx in waiting:
                if tx.data is None:
                    try:
                        tx.add_chunk(start, chunk)
                    except ValueError:
                        return "invalid_proof"
        return None
