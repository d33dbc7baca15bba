"""The node routes an Arweave push uses, through hoard's HTTP client (shared/reference/sources.md
§3: an ar.io gateway such as arweave.net passes them to its trusted nodes).

``GET /tx_anchor`` and ``GET /price/{bytes}`` (plain text), ``GET /wallet/{address}/balance``
(winston, plain text), ``GET /tx/{id}/status`` (200 mined, 202 pending, 404 unknown, 410
dropped), ``POST /tx`` (200, or 208 "already processed"; 400 with the node's reason, e.g.
an anchor too old) and ``POST /chunk`` (200; 400 with a JSON error). Every answer is judged
here: transient statuses left after the client's retries and unreachable gateways are
:class:`OriginUnavailable`, anything else unusable is :class:`OriginError` quoting the node.
"""

from __future__ import annotations

import json

from hoard.store.errors import OriginError, OriginUnavailable

from .http import HttpClient
from .httpbase import TRANSIENT_STATUSES, Reply, host_of
from .publish_arweave_tx import SignedTx

__all__ = ["Gateway"]


class Gateway:
    """The node routes of one gateway, answers checked and translated here."""

    def __init__(self, http: HttpClient, url: str) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.host = host_of(self.url)

    async def call(self, method: str, path: str, body: bytes | None = None) -> Reply:
        headers = {"Content-Type": "application/json", "Accept": "text/plain"} if body is not None else None
        reply = await self.http.request(method, self.url + path, headers=headers, data=body)
        if reply.status in TRANSIENT_STATUSES:
            raise OriginUnavailable(
                f"{self.host}: {method} {path.split('/')[1]} answered {reply.status}; try again later"
            )
        return reply

    async def number(self, path: str, what: str) -> int:
        reply = await self.call("GET", path)
        try:
            if reply.status != 200:
                raise ValueError
            return int(reply.body.strip())
        except ValueError:
            raise OriginError(f"{self.host}: no {what} ({reply.status}: {_text(reply)})", reply.status) from None

    async def anchor(self) -> str:
        reply = await self.call("GET", "/tx_anchor")
        text = reply.body.decode("ascii", "replace").strip()
        if reply.status != 200 or not text:
            raise OriginError(f"{self.host}: no transaction anchor ({reply.status}: {_text(reply)})", reply.status)
        return text

    async def status(self, txid: str) -> str:
        """``held`` (mined or pending), ``missing`` (404) or ``dropped`` (410)."""
        reply = await self.call("GET", f"/tx/{txid}/status")
        if reply.status in (200, 202):
            return "held"
        if reply.status in (404, 410):
            return "missing" if reply.status == 404 else "dropped"
        raise OriginError(f"{self.host}: status of {txid}: {reply.status} {_text(reply)}", reply.status)

    async def post_tx(self, tx: SignedTx, what: str) -> bool:
        """Send a transaction; False when the gateway refuses its anchor (sign it again)."""
        reply = await self.call("POST", "/tx", json.dumps(tx.body(), separators=(",", ":")).encode())
        if reply.status in (200, 208):  # 208: already processed (an earlier send landed)
            return True
        if reply.status == 400 and b"anchor" in reply.body.lower():
            return False
        raise OriginError(
            f"{self.host} refused the transaction of {what} ({reply.status}: {_text(reply)})", reply.status
        )

    async def post_chunk(self, body: dict[str, str], what: str) -> None:
        reply = await self.call("POST", "/chunk", json.dumps(body, separators=(",", ":")).encode())
        if reply.status != 200:
            raise OriginError(f"{self.host} refused a chunk of {what} ({reply.status}: {_text(reply)})", reply.status)


def _text(reply: Reply) -> str:
    return reply.body[:200].decode("utf-8", "replace").strip() or "no message"
