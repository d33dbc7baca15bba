"""`FakeGateway`: a fake ar.io gateway (with the Arweave node routes it fronts) for tests with no
internet, in the house style of ``tests.fakes.hub.FakeHub``.

A real aiohttp server on 127.0.0.1, port 0, in a background thread with its own event loop;
``with FakeGateway() as gw:`` (or ``async with``, or ``start()``/``stop()``). It serves:

* ar.io data routes (`data_routes`): ``/{id}[/{path}]``, ``/raw/{id}`` — ranges, digests only on
  HEAD or cached items, manifests, 301/404/416/451 as ar.io does;
* ``/graphql`` (`graphql`): ``transactions`` / ``transaction`` with only the requested fields;
* node routes (`node_routes`): ``/tx/{id}[/...]``, ``/chunk/{o}``, ``/tx_anchor``, ``/price``,
  ``/wallet/{a}/balance``, ``POST /tx``, ``POST /chunk`` — so stock clients upload for real.

State lives in a `Weave` (``gw.weave``). Tests seed it with `add_tx` / `seed_ritual_repo`
(exactly what ritual-arweave's ``upload_repo`` writes), confirm pending txs with `mine`, and
flip switches: `fault` (a `GatewayFault`: status, latency = slow first byte, drops, stalls,
corruption, wrong lengths — scoped by path, route and/or txid), `pause`/`resume` (gateway
down: connections refused), `drop` (410), `block` (451), per-tx ``cached`` and the
``digests_on_head``/``cache_on_read``/``cache_all`` switches. Every request is logged
(`GatewayRecord`, origin ``"gateway"``); `bytes_sent` and `tx_bytes_sent` count payload bytes.
The fake never answers 429. The server, its log, byte counts and fault registry are
`tests.fakes.origins.FakeOrigins` (one origin, ``"gateway"``), shared with the other fakes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..content import Content
from ..origins import Route
from ..wire import REC, Fault
from .data_routes import DataRoutes
from .graphql import execute, target_txid
from .identity import FakeWallet
from .model import Tx, Weave
from .node_routes import NodeRoutes
from .replies import ORIGIN, GatewayFault, GatewayRecord, cannot, classify
from .ritual import MAX_UPLOAD_SIZE, RitualRepo, seed_repo

__all__ = ["FakeGateway"]


class FakeGateway(DataRoutes, NodeRoutes):
    """Fake ar.io gateway + Arweave node. See the module docstring."""

    ORIGINS = (ORIGIN,)
    THREAD_NAME = "fake-arweave"
    CLIENT_MAX_SIZE = 64 << 20
    FAULT = GatewayFault
    CANCEL_ON_STOP = True  # e.g. handlers still sleeping out a `latency`

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        max_page_size: int = 100,
        digests_on_head: bool = True,
        cache_on_read: bool = True,
        cache_all: bool = False,
        trusted: bool = True,
        auto_mine: bool = False,
        check_balance: bool = True,
        default_balance: int = 10**15,
        price_base: int = 1_000_000,
        price_per_chunk: int = 50_000_000,
        start_height: int = 1_500_000,
        max_upload_size: int = MAX_UPLOAD_SIZE,
    ) -> None:
        super().__init__(host=host)
        self.max_page_size = max_page_size  # GraphQL `first` cap (arweave.net 100, ar.io HEAD 1000)
        self.digests_on_head = digests_on_head  # ETag/X-AR-IO-Digest on HEAD of uncached items
        self.cache_on_read = cache_on_read  # a complete GET caches the item (later GETs: HIT + digests)
        self.cache_all = cache_all  # every item counts as cached (GETs carry digests)
        self.trusted = trusted  # X-AR-IO-Trusted; unstable Cache-Control 12 h (else 2 h)
        self.auto_mine = auto_mine  # mine each POSTed tx at once
        self.check_balance = check_balance  # POST /tx needs reward + quantity in the wallet
        self.default_balance = default_balance  # winston of a wallet never set with set_balance
        self.price_base, self.price_per_chunk = price_base, price_per_chunk
        self.max_upload_size = max_upload_size  # default for seed_ritual_repo
        self.balances: dict[str, int] = {}
        self.weave = Weave(start_height=start_height)
        self._clock = 1_717_171_717.123456  # Unix-Time of the next seeded upload
        self._tx_bytes: dict[str, int] = {}

    # -- origin --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — what ``RepoManager(gateways=[url])`` / ``api_url=url`` get
        (port 0 before the first `start`)."""
        return f"http://{self.host}:{self._ports.get(ORIGIN, 0)}"

    def route(self, origin: str) -> Route:
        return self._route

    # -- request log -----------------------------------------------------------------------

    def find(  # type: ignore[override]
        self,
        path_contains: str | None = None,
        *,
        method: str | None = None,
        status: int | None = None,
        route: str | None = None,
        txid: str | None = None,
    ) -> list[GatewayRecord]:
        """Logged requests matching every given criterion (``route``: see `replies.ROUTES`)."""
        return self._select(path_contains, method, status, route=route, txid=txid)  # type: ignore[return-value]

    @property
    def bytes_sent(self) -> int:  # type: ignore[override]
        """Body bytes written since the last `clear_log`."""
        return sum(super().bytes_sent.values())

    @property
    def tx_bytes_sent(self) -> dict[str, int]:
        """Data bytes written per txid (``/{id}``, ``/raw``, ``/tx/{id}/data*``, ``/chunk``)."""
        with self._lock:
            return dict(self._tx_bytes)

    def clear_log(self) -> None:
        with self._lock:
            super().clear_log()
            self._tx_bytes = {}

    # -- state -----------------------------------------------------------------------------

    @staticmethod
    def wallet(seed: str = "alice") -> FakeWallet:
        """A deterministic uploader identity (``.address``, ``.owner``)."""
        return FakeWallet(seed)

    def set_balance(self, address: str, winston: int) -> None:
        with self._lock:
            self.balances[address] = winston

    def tx(self, txid: str) -> Tx | None:
        return self.weave.get(txid)

    def add_tx(
        self,
        wallet: FakeWallet,
        tags: Iterable[tuple[str, str]] | Mapping[str, str],
        data: bytes | str | Content = b"",
        *,
        confirmations: int | None = 50,
        cached: bool = False,
    ) -> Tx:
        """One tx with its data; mined with ``confirmations`` (None: left pending)."""
        pairs = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
        tx = self.weave.create(wallet, pairs, Content.of(data))
        tx.cached = cached
        if confirmations is not None:
            self.weave.mine([tx.id], confirmations=confirmations)
        return tx

    def seed_ritual_repo(
        self,
        wallet: FakeWallet,
        name: str,
        files: Mapping[str, bytes | str | Content],
        *,
        confirmations: int | None = 50,
        unix_time: float | None = None,
        max_upload_size: int | None = None,
        **options: Any,
    ) -> RitualRepo:
        """What ``RepoManager.upload_repo(name, dir)`` writes for ``files`` (see `ritual.seed_repo`
        for ``app_version``, ``file_versions``, ``extra_file_tags``, ``wrong_sha256``,
        ``missing_sha256``, ``section_order``), all in one block (None: left pending)."""
        with self._lock:
            if unix_time is None:
                unix_time, self._clock = self._clock, self._clock + 1.0
        repo = seed_repo(
            self.weave,
            wallet,
            name,
            files,
            unix_time=unix_time,
            max_upload_size=self.max_upload_size if max_upload_size is None else max_upload_size,
            **options,
        )
        if confirmations is not None:
            self.weave.mine(repo.txids, confirmations=confirmations)
        return repo

    def mine(self, txids: Iterable[str] | None = None, *, confirmations: int = 1) -> int:
        """Confirm pending txs (default: all) in a new block; returns its height."""
        return self.weave.mine(txids, confirmations=confirmations)

    def drop(self, txid: str, codes: Iterable[str] = ("tx_dropped",)) -> None:
        """The tx failed/was dropped: the node answers 410 with ``codes``; it leaves GraphQL."""
        with self.weave.lock:
            self.weave.txs[txid].error_codes = list(codes)

    def block(self, txid: str) -> None:
        """Put a tx on the gateway's blocklist (451 on the data routes)."""
        with self.weave.lock:
            self.weave.txs[txid].blocked = True

    # -- dispatch --------------------------------------------------------------------------

    async def _record(self, origin: str, request: web.Request) -> GatewayRecord:
        """The log entry with the route hit and the tx concerned; for GraphQL, what the client
        asked (a ``transaction(id:)`` query names its tx)."""
        plain = await super()._record(origin, request)
        route, txid = classify(request.method, plain.path, self.weave)
        record = GatewayRecord(**vars(plain), route=route, txid=txid)
        if route == "graphql":
            record.graphql = await self._graphql_body(request)
            record.txid = target_txid(record.graphql)
        return record

    async def _respond(self, request: web.Request, handler: Handler, plan: Fault) -> web.StreamResponse:
        """As every fake answers, except that a client gone by the time the answer would start
        (e.g. its read timeout fired during ``latency``) gets none: its record says ``aborted``."""
        try:
            if plan.latency:
                await asyncio.sleep(plan.latency)
            if request.transport is None or request.transport.is_closing():
                raise ConnectionError("the client left")
            if plan.status is not None:
                return await self.fault_reply(request, plan.status, plan.retry_after)
            return await handler(request)
        except ConnectionError:
            request[REC].aborted = True  # the client hung up
            raise asyncio.CancelledError from None  # aiohttp drops it quietly

    @staticmethod
    async def _graphql_body(request: web.Request) -> Any:
        if request.method == "GET":
            q = request.query
            variables = q.get("variables")
            try:
                parsed_vars = json.loads(variables) if variables else None
            except ValueError:
                parsed_vars = variables
            return {"query": q.get("query"), "variables": parsed_vars, "operationName": q.get("operationName")}
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    async def _route(self, request: web.Request) -> web.StreamResponse:
        record: GatewayRecord = request[REC]
        if record.route in ("data", "raw"):
            return await self._data_route(request, record)
        if record.route == "graphql":
            if request.method not in ("GET", "POST"):
                return await self._text(request, 405, "Method Not Allowed")
            if not isinstance(record.graphql, dict):
                text = "POST body missing, invalid Content-Type, or JSON object has no keys."
                return await self._text(request, 400, text, {"Content-Type": "text/html; charset=utf-8"})
            status, body = execute(self.weave, record.graphql, max_page_size=self.max_page_size)
            payload = json.dumps(body, separators=(",", ":")).encode() + b"\n"
            return await self._text(request, status, payload, {"Content-Type": "application/json; charset=utf-8"})
        if record.route == "info":
            info = {
                "network": "arweave.N.1", "version": 5, "release": 69, "height": self.weave.tip,
                "current": self.weave.block(self.weave.tip).id, "blocks": self.weave.tip + 1,
                "peers": 0, "queue_length": 0, "node_state_latency": 0,
            }  # fmt: skip
            return await self._json_reply(request, 200, info)
        if record.route == "other":
            text = cannot(request.method, record.path)
            return await self._html(request, 404, text)
        return await self._node_route(request, record)
