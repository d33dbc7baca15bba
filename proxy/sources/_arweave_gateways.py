"""Talking to Arweave gateways: GraphQL with paging, small data, byte ranges, pending probes.

One :class:`ArweaveGateways` holds the configured gateways (``--arweave-gateway``, in order)
and is the only code of the ``arweave`` source that makes requests
(shared/reference/sources.md §3):

* **In order, with memory.** Every request goes to the first gateway; one that cannot answer
  (unreachable, 5xx, a GraphQL error, data it does not hold) hands the request to the next.
  A gateway found unreachable is tried last for the next :data:`DOWN_FOR` seconds, so a dead
  first gateway costs each request nothing instead of a connect timeout.
* **GraphQL** (``POST /graphql``, variables) is paged with ``first``/``after`` until
  ``hasNextPage`` is false, all pages from one gateway (cursors are a gateway's own).
* **Small data** (manifests): ``/raw/{id}`` (ar.io), else ``/tx/{id}/data.`` (a node).
* **Bytes**: ``GET /{id}`` with ``Range`` through the shared :class:`~hoard.proxy.reader.RangeReader`;
  no credentials are ever sent to a gateway.
* **Pending.** A gateway answers 404 for data it does not serve yet. Before calling that "not
  found" it asks ``/tx/{id}``: ``202`` (still pending) or ``200`` (known, data not there
  yet) make the answer :class:`OriginUnavailable` — retried by the fetch core, a 503 when
  patience runs out — and only an unknown (404) or dropped (410) transaction is
  :class:`NotFound`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from hoard.store.errors import (
    AccessDenied,
    HoardError,
    NotFound,
    NotReady,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
    UsageError,
)

from ..httpbase import TRANSIENT_STATUSES, Reply, host_of
from ..reader import RangeReader

__all__ = ["ArweaveGateways", "gateway_error", "not_ready", "parse_gateways", "DOWN_FOR", "PAGE"]

log = logging.getLogger("hoard.sources.arweave")
T = TypeVar("T")

#: seconds a gateway found unreachable is tried last
DOWN_FOR = 30.0
#: GraphQL page size asked for: the most arweave.net returns (ar.io clamps larger values)
PAGE = 100
#: pages of one query at most (a million transactions): a gateway that never ends is refused
_MAX_PAGES = 10_000


def parse_gateways(value: object) -> tuple[str, ...]:
    """The gateway setting as URLs, in order: a tuple or a comma-separated string, each an
    ``http(s)://`` URL (trailing ``/`` dropped). UsageError for anything else."""
    items = value if isinstance(value, (list, tuple)) else [value] if value else []
    out: list[str] = []
    for item in items:
        for url in str(item).split(","):
            url = url.strip().rstrip("/")
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise UsageError(f"--arweave-gateway wants http(s) URLs, got {url!r}")
            out.append(url)
    if not out:
        raise UsageError("no Arweave gateway configured (--arweave-gateway URL)")
    return tuple(dict.fromkeys(out))


def not_ready(message: str) -> OriginUnavailable:
    """A gateway answered, but what was asked is not served yet (a pending transaction, data
    not there yet): retryable, like an unreachable gateway, though the gateway itself is up
    (so it does not mark the origin down)."""
    return NotReady(message)


def gateway_error(reply: Reply, what: str) -> HoardError:
    """A gateway's answer to a data or GraphQL request, in the hoard error tree."""
    status = reply.status
    host = host_of(reply.url)
    if status == 202:
        return not_ready(f"{what}: the transaction is still pending at {host}; try again shortly")
    if status in (404, 410):
        return NotFound(f"{what}: not found at {host}")
    if status == 416:
        return RangeNotSatisfiable(f"{what}: {host} cannot satisfy that range")
    if status in (401, 402, 403, 451):
        return AccessDenied(f"{what}: {host} refuses to serve it (HTTP {status})", 403)
    if status in TRANSIENT_STATUSES:
        return OriginUnavailable(f"{what}: {host} answered {status}")
    return OriginError(f"{what}: {host} answered {status}", status)


def _first(errors: list[HoardError]) -> HoardError:
    """The error to report when every gateway failed: a retryable one wins (an unreachable or
    pending answer means "try again", whatever the others said), naming what each said."""
    retryable = [e for e in errors if isinstance(e, OriginUnavailable)]
    if not retryable:
        return errors[0]
    if len(errors) == 1:
        return retryable[0]
    return OriginUnavailable("no Arweave gateway could answer: " + "; ".join(str(e) for e in errors))


class ArweaveGateways:
    """The configured gateways of one process (see the module docstring)."""

    def __init__(
        self, http: Any, reader: RangeReader, gateways: tuple[str, ...], *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.reader = reader
        self.gateways = parse_gateways(gateways)
        self.clock = clock
        self._down: dict[str, float] = {}

    # -- order ------------------------------------------------------------------------------

    def order(self) -> list[str]:
        """The gateways in configured order, those recently unreachable last."""
        now = self.clock()
        up = [g for g in self.gateways if self._down.get(g, 0.0) <= now]
        return up + [g for g in self.gateways if g not in up]

    def _mark(self, gw: str, reachable: bool) -> None:
        if reachable:
            self._down.pop(gw, None)
        else:
            if gw not in self._down or self._down[gw] <= self.clock():
                log.info("Arweave gateway %s unreachable; trying it last for %.0fs", gw, DOWN_FOR)
            self._down[gw] = self.clock() + DOWN_FOR

    async def each(self, attempt: Callable[[str], Awaitable[T]]) -> T:
        """``attempt(gateway)`` on each gateway in turn until one succeeds."""
        errors: list[HoardError] = []
        for gw in self.order():
            try:
                return await attempt(gw)
            except HoardError as exc:
                errors.append(exc)
        raise _first(errors)

    async def _request(self, gw: str, method: str, path: str, **kwargs: Any) -> Reply:
        """One request to a gateway (the HTTP client retries transient faults); marks it
        unreachable or reachable by the outcome."""
        try:
            reply: Reply = await self.http.request(method, gw + path, **kwargs)
        except OriginUnavailable:
            self._mark(gw, False)
            raise
        self._mark(gw, reply.status not in TRANSIENT_STATUSES)
        return reply

    # -- GraphQL ----------------------------------------------------------------------------

    async def _graphql_at(self, gw: str, query: str, variables: dict[str, Any], what: str) -> dict[str, Any]:
        reply = await self._request(
            gw, "POST", "/graphql", data=json.dumps({"query": query, "variables": variables}),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if reply.status != 200:
            raise gateway_error(reply, f"{what} (GraphQL)")
        try:
            doc = reply.json()
        except ValueError:
            raise OriginError(f"{what}: {host_of(gw)}'s GraphQL answer is not JSON") from None
        if not isinstance(doc, dict) or doc.get("errors") or not isinstance(doc.get("data"), dict):
            detail = doc.get("errors") if isinstance(doc, dict) else doc
            raise OriginError(f"{what}: GraphQL error at {host_of(gw)}: {str(detail)[:300]}")
        data: dict[str, Any] = doc["data"]
        return data

    async def pages_at(self, gw: str, query: str, variables: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """Every node of a ``transactions`` query at gateway ``gw``, page after page."""
        nodes: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(_MAX_PAGES):
            data = await self._graphql_at(gw, query, {**variables, "after": after}, what)
            conn = data.get("transactions")
            edges = conn.get("edges") if isinstance(conn, dict) else None
            if not isinstance(edges, list):
                raise OriginError(f"{what}: {host_of(gw)} sent no transactions list")
            nodes += [e["node"] for e in edges if isinstance(e, dict) and isinstance(e.get("node"), dict)]
            more = (conn.get("pageInfo") or {}).get("hasNextPage") if isinstance(conn, dict) else False
            cursor = edges[-1].get("cursor") if edges and isinstance(edges[-1], dict) else None
            if not more or not isinstance(cursor, str):
                return nodes
            after = cursor
        raise OriginError(f"{what}: {host_of(gw)} kept sending GraphQL pages")

    async def pages(self, query: str, variables: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """Every node of a ``transactions`` query (``$after`` is set here), from one gateway."""
        return await self.each(lambda gw: self.pages_at(gw, query, variables, what))

    # -- data -------------------------------------------------------------------------------

    async def _not_served(self, gw: str, txid: str, what: str, missing: HoardError) -> HoardError:
        """Why a gateway does not serve a transaction's data: ask ``/tx/{id}``."""
        try:
            reply = await self._request(gw, "GET", f"/tx/{txid}", retries=0)
        except OriginUnavailable as exc:
            return exc
        host = host_of(gw)
        if reply.status == 202:
            return not_ready(f"{what}: transaction {txid} is still pending at {host}; try again shortly")
        if reply.status == 200:
            return not_ready(f"{what}: {host} does not serve the data of {txid} yet; try again shortly")
        if reply.status == 410:
            return NotFound(f"{what}: transaction {txid} was dropped ({reply.body[:80].decode('utf-8', 'replace')})")
        return missing

    async def _data_at(self, gw: str, txid: str, what: str, limit: int) -> bytes:
        reply = await self._request(gw, "GET", f"/raw/{txid}")
        if reply.status != 200 and reply.status not in TRANSIENT_STATUSES:
            reply = await self._request(gw, "GET", f"/tx/{txid}/data.")
        if reply.status == 404:
            raise await self._not_served(gw, txid, what, gateway_error(reply, what))
        if reply.status != 200:
            raise gateway_error(reply, what)
        if len(reply.body) > limit:
            raise OriginError(f"{what}: transaction {txid} holds more than {limit} bytes; not a manifest")
        return reply.body

    async def data(self, txid: str, what: str, limit: int) -> bytes:
        """The whole (small) data of a transaction, at most ``limit`` bytes."""
        return await self.each(lambda gw: self._data_at(gw, txid, what, limit))

    async def read(self, txid: str, start: int, end: int, what: str) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a transaction's data, from the first gateway that has
        them. Once bytes went out, a failure is raised as it is (the caller resumes)."""
        errors: list[HoardError] = []
        for gw in self.order():
            got = 0
            try:
                async for block in self.reader.read(f"{gw}/{txid}", start, end, what=what, translate=gateway_error):
                    got += len(block)
                    yield block
                self._mark(gw, True)
                return
            except NotFound as exc:
                if got:
                    raise
                self._mark(gw, True)
                errors.append(await self._not_served(gw, txid, what, exc))
            except HoardError as exc:
                if got:
                    raise
                if isinstance(exc, OriginUnavailable):
                    self._mark(gw, False)
                errors.append(exc)
        raise _first(errors)
