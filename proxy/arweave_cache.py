"""The Arweave face's pass-through to the gateways, with answers kept in the store.

Metadata a Ritual client asks a gateway for (``POST /graphql``, ``/tx/{id}``, its fields, its
offset) is not hoard content, but a repo downloaded once must download again while the gateway
is down, and the clients ask for it every time. :class:`GatewayPassthrough`:

* **forwards** a request (its method, a path the face rebuilt from checked segments, the body,
  and only the ``Accept``/``x-packing`` headers — never a credential) to the configured gateways
  in order, the next one when one is unreachable or answers 5xx/429, and returns the first
  definite answer (status, body, a few headers) as it came. It never returns 429 (ar.Peer
  loops forever on one); no gateway answering is :class:`OriginUnavailable` (a 503).
* **keeps** each non-empty 200 answer of a request it is told to keep as a small blob aliased
  ``argw:<sha256 of method, path and normalised body>`` (GraphQL bodies are re-serialised with
  sorted keys, so the same query asked twice is one key). A kept answer is used only when no
  gateway answers: GraphQL's "latest" stays latest while a gateway is up.
* **keeps manifests' bytes**: the data of a manifest transaction (a repo manifest, a sectioned
  file's manifest) is immutable, so once kept (blob aliased ``armanifest:<txid>``, verified by
  length only) it is served from the store without asking.

Calls go through :meth:`Catalog.origin_call` for the ``arweave`` source, so the catalog's
origin health applies: while the gateways are known unreachable nothing waits for them, kept
answers go out at once, and one background probe at a time asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from hoard.store.errors import HoardError, OriginUnavailable
from hoard.store.store import Store

from .httpbase import TRANSIENT_STATUSES, Reply, host_of
from .service import Services

__all__ = ["Answer", "GatewayPassthrough", "answer_key", "manifest_key"]

log = logging.getLogger("hoard.arweave")

SOURCE = "arweave"
_FORWARD_HEADERS = ("Accept", "x-packing")
_RETURN_HEADERS = ("arweave-absolute-end-offset", "arweave-denomination")
_MAX_KEPT = 1 << 20  # answers larger than this (a /tx/{id}/data text) are not kept
_MAX_MANIFEST = 16 << 20
_FORMAT = 1  # version of a kept answer's header line


@dataclass(frozen=True)
class Answer:
    """A gateway's answer (or a kept one: ``from_store``)."""

    status: int
    body: bytes
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    from_store: bool = False

    def json(self) -> Any:
        return json.loads(self.body)


def answer_key(method: str, path: str, body: bytes | None) -> str:
    """The alias a kept answer is stored under."""
    h = hashlib.sha256(f"{method.upper()}\0{path}\0".encode())
    h.update(_normalised(body))
    return f"argw:{h.hexdigest()}"


def manifest_key(txid: str) -> str:
    return f"armanifest:{txid}"


def _normalised(body: bytes | None) -> bytes:
    """A JSON body re-serialised canonically (the same query, one key); other bodies as-is."""
    if not body:
        return b""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _encode(answer: Answer) -> bytes:
    head = {"v": _FORMAT, "type": answer.content_type, "headers": answer.headers}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + answer.body


def _decode(payload: bytes) -> Answer | None:
    head, sep, body = payload.partition(b"\n")
    try:
        meta = json.loads(head) if sep else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("v") != _FORMAT or not body:
        return None
    headers = meta.get("headers") if isinstance(meta.get("headers"), dict) else {}
    kind = meta.get("type") if isinstance(meta.get("type"), str) else None
    return Answer(200, body, kind, {str(k): str(v) for k, v in headers.items()}, from_store=True)


def _read_blob(store: Store, alias: str, limit: int) -> bytes | None:
    """(In a thread.) The bytes of a small blob named by ``alias``, or None."""
    b3 = store.resolve(alias)
    if b3 is None:
        return None
    fd = store.open_blob(b3)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            return None
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    store.touch(b3)
    return data if len(data) == size else None


class GatewayPassthrough:
    """Forward to the gateways, keep answers, answer from the store when they are down."""

    def __init__(self, svc: Services, gateways: tuple[str, ...]) -> None:
        self.svc = svc
        self.gateways = gateways
        self._kept: OrderedDict[str, str] = OrderedDict()  # alias -> digest of what is stored
        self._manifests: dict[str, asyncio.Task[Answer]] = {}  # manifest fetches in flight

    # -- the gateways -------------------------------------------------------------------------

    async def forward(self, method: str, path: str, *, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Answer:
        """The first definite answer of the gateways, in order (see the module docstring)."""
        sent = {k: v for k, v in (headers or {}).items() if k in _FORWARD_HEADERS}
        if body is not None:
            sent["Content-Type"] = "application/json"

        async def ask() -> Answer:
            failures: list[str] = []
            for gw in self.gateways:
                try:
                    reply = await self.svc.http.request(method, gw + path, data=body, headers=sent)
                except OriginUnavailable as exc:
                    failures.append(str(exc))
                    continue
                if reply.status in TRANSIENT_STATUSES:
                    failures.append(f"{host_of(gw)} answered {reply.status}")
                    continue
                return _answer(reply)
            raise OriginUnavailable(f"{path}: no Arweave gateway answered ({'; '.join(failures) or 'none configured'})")

        return await self.svc.catalog.origin_call(SOURCE, ask)

    async def ask(self, method: str, path: str, *, body: bytes | None = None,
                  headers: dict[str, str] | None = None, keep: bool = True) -> Answer:
        """Forward; keep a 200 answer (``keep``); when no gateway answers, the kept answer."""
        key = answer_key(method, path, body)
        try:
            answer = await self.forward(method, path, body=body, headers=headers)
        except OriginUnavailable:
            if keep:
                kept = await self._load(key, _MAX_KEPT + 4096)
                found = None if kept is None else _decode(kept)
                if found is not None:
                    log.info("no Arweave gateway answers; %s %s from the store", method, path)
                    return found
            raise
        if keep and answer.status == 200 and answer.body and len(answer.body) <= _MAX_KEPT:
            await self._keep(key, _encode(answer))
        return answer

    # -- manifests ----------------------------------------------------------------------------

    async def manifest(self, txid: str, path: str) -> Answer:
        """The data of a manifest transaction: kept bytes, else the gateways' answer to
        ``GET path`` (kept when it is a 200). Concurrent callers share one fetch."""
        task = self._manifests.get(txid)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._manifest(txid, path))
            self._manifests[txid] = task
            task.add_done_callback(lambda t: (self._manifests.pop(txid, None), t.cancelled() or t.exception()))
        return await asyncio.shield(task)

    async def _manifest(self, txid: str, path: str) -> Answer:
        kept = await self._load(manifest_key(txid), _MAX_MANIFEST)
        if kept:
            return Answer(200, kept, None, from_store=True)
        answer = await self.forward("GET", path)
        if answer.status == 200 and answer.body and len(answer.body) <= _MAX_MANIFEST:
            await self._keep(manifest_key(txid), answer.body)
        return answer

    # -- the store ----------------------------------------------------------------------------

    async def _load(self, alias: str, limit: int) -> bytes | None:
        store = self.svc.store
        return await asyncio.get_running_loop().run_in_executor(None, _read_blob, store, alias, limit)

    async def _keep(self, alias: str, payload: bytes) -> None:
        """Store ``payload`` under ``alias`` unless the same bytes are already there. A store
        that cannot take it (full, say) costs the answer nothing but a log line."""
        digest = hashlib.sha256(payload).hexdigest()
        if self._kept.get(alias) == digest:
            self._kept.move_to_end(alias)
            return
        store = self.svc.store
        try:
            await asyncio.get_running_loop().run_in_executor(None, lambda: store.add_bytes(payload, aliases=[alias]))
        except (HoardError, OSError) as exc:
            log.warning("could not keep a gateway answer (%s): %s", alias[:24], exc)
            return
        self._kept[alias] = digest
        while len(self._kept) > 10_000:
            self._kept.popitem(last=False)


def _answer(reply: Reply) -> Answer:
    headers = {k: reply.headers[k] for k in _RETURN_HEADERS if k in reply.headers}
    return Answer(reply.status, reply.body, reply.headers.get("Content-Type"), headers)
