"""What an origin saw and what it should break: the request log entry, the fault switches,
and the body writer that applies them.

Every request becomes a `RequestRecord` (stored on the request under `REC`); all `Fault`s
matching it are merged by `merge_faults` into one plan (stored under `PLAN`). The answer's
body then goes out through `pump`, which streams it in blocks and applies the plan: drops,
stalls, throttling, corruption (`flip`) and wrong lengths, counting what reached the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web

from .content import Content

__all__ = ["PLAN", "REC", "Fault", "Origin", "RequestRecord", "flip", "merge_faults", "pump"]

Origin = Literal["hub", "cdn"]


@dataclass
class RequestRecord:
    """One request as the origin saw it. ``headers`` keys are lower-case."""

    origin: Origin
    method: str
    path: str  # raw, percent-encoded
    query: str  # raw query string
    headers: dict[str, str]
    status: int | None = None
    body_length: int | None = None  # payload bytes the response meant to send (None: none)
    bytes_sent: int = 0  # payload bytes handed to the socket
    aborted: bool = False  # the fake cut the connection (drop_after / wrong_length)

    @property
    def completed(self) -> bool:
        """The whole intended body went out (False after a drop or a client abort)."""
        return not self.aborted and self.bytes_sent >= (self.body_length or 0)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def target(self) -> str:
        """Raw path + query (as sent, percent-encoded)."""
        return self.path + ("?" + self.query if self.query else "")

    def has(self, needle: str) -> bool:
        """Whether ``needle`` occurs in the raw or the percent-decoded path + query; what
        `Fault.path_contains` and `FakeHub.find` match."""
        return needle in self.target or needle in unquote(self.target)


@dataclass
class Fault:
    """A fault switch. Scope: ``path_contains`` (`RequestRecord.has`), ``origin``,
    ``method``, and ``times`` (None = every matching request). All matching faults of a
    request are merged. Effects:

    * ``latency``: seconds before the response headers;
    * ``status``: answer this status instead (429 adds ``Retry-After: retry_after``);
    * ``drop_after``: close the connection after this many body bytes;
    * ``stall``/``stall_at``: pause ``stall`` seconds once ``stall_at`` body bytes were sent
      (headers are flushed first);
    * ``slow``: throttle the body to this many bytes per second;
    * ``rate``: pace the body at this many bytes per second from its first byte, as a CDN
      caps each connection (`FakeHub` ``per_connection_rate`` sets it on every answer; a
      connection carries one answer at a time, so this is the connection's speed);
    * ``corrupt``: flip the last byte of every written block (length unchanged);
    * ``wrong_length``: send ``size + wrong_length`` body bytes; ``Content-Length`` stays the
      true size and the connection is closed after them, unless ``wrong_length_header`` makes
      the header agree with the wrong body (only a size check against metadata catches it);
    * ``ignore_range``: answer 200 with the full body to ranged GETs.
    """

    path_contains: str | None = None
    origin: Origin | None = None
    method: str | None = None
    times: int | None = None
    latency: float = 0.0
    status: int | None = None
    retry_after: int = 1
    drop_after: int | None = None
    stall: float = 0.0
    stall_at: int = 0
    slow: int | None = None
    rate: float | None = None
    corrupt: bool = False
    wrong_length: int = 0
    wrong_length_header: bool = False
    ignore_range: bool = False
    hits: int = 0

    def matches(self, record: RequestRecord) -> bool:
        return (
            (self.times is None or self.times > 0)
            and (self.origin is None or self.origin == record.origin)
            and (self.method is None or self.method.upper() == record.method)
            and (self.path_contains is None or record.has(self.path_contains))
        )


def merge_faults(faults: list[Fault]) -> Fault:
    plan = Fault()
    for f in faults:
        plan.latency = max(plan.latency, f.latency)
        if plan.status is None and f.status is not None:
            plan.status, plan.retry_after = f.status, f.retry_after
        if f.drop_after is not None:
            plan.drop_after = min(f.drop_after, plan.drop_after if plan.drop_after is not None else f.drop_after)
        if f.stall > plan.stall:
            plan.stall, plan.stall_at = f.stall, f.stall_at
        if f.slow is not None:
            plan.slow = min(f.slow, plan.slow or f.slow)
        if f.rate is not None:
            plan.rate = min(f.rate, plan.rate or f.rate)
        if f.wrong_length and not plan.wrong_length:
            plan.wrong_length, plan.wrong_length_header = f.wrong_length, f.wrong_length_header
        plan.corrupt |= f.corrupt
        plan.ignore_range |= f.ignore_range
    return plan


# Per-request storage keys (typed keys where aiohttp has them, >= 3.12).
REC: Any = web.RequestKey("fakehub_record", RequestRecord) if hasattr(web, "RequestKey") else "fakehub_record"
PLAN: Any = web.RequestKey("fakehub_plan", Fault) if hasattr(web, "RequestKey") else "fakehub_plan"


def flip(data: bytes) -> bytes:
    """Corrupt a block without changing its length (last byte inverted)."""
    return data[:-1] + bytes([data[-1] ^ 0xFF]) if data else data


async def pump(
    request: web.Request,
    response: web.StreamResponse,
    chunks: Iterable[bytes],
    length: int | None,
    plan: Fault,
    corrupt: bool,
    count: Callable[[Origin, int], None],
) -> None:
    """Stream ``chunks`` in blocks, honouring drop/stall/slow/corrupt/wrong_length;
    ``count(origin, n)`` tallies the payload bytes per origin.

    Accounting happens *before* each transport write and the abort flag before each
    close, so a test that has just read the response already sees both."""
    record: RequestRecord = request[REC]
    limit = None if length is None or plan.wrong_length >= 0 else length + plan.wrong_length
    stall_pending = plan.stall > 0
    sent = 0
    loop = asyncio.get_running_loop()
    paced_from: float | None = None  # loop time of the first body byte (``rate``)

    def account(n: int) -> None:
        nonlocal sent
        sent += n
        record.bytes_sent += n
        count(record.origin, n)

    def abort(extra: bytes = b"") -> None:
        record.aborted = True
        if request.transport is not None:
            account(len(extra))
            request.transport.write(extra)
            request.transport.close()  # flushes what was written, then FIN: a truncated body

    await response.write(b"")  # flush the headers now, so stalls happen mid-response
    for chunk in chunks:
        view = flip(chunk) if corrupt else chunk
        while view and (limit is None or sent < limit):
            if stall_pending and sent >= plan.stall_at:
                stall_pending = False
                await asyncio.sleep(plan.stall)
            if plan.drop_after is not None and sent >= plan.drop_after:
                return abort()
            step = min(len(view), max(1, plan.slow // 20)) if plan.slow else len(view)
            if plan.rate:
                step = min(step, max(1 << 16, int(plan.rate // 100)))  # ~10 ms of bytes at a time
            for boundary in (plan.drop_after, limit, plan.stall_at if stall_pending else None):
                if boundary is not None and sent < boundary < sent + step:
                    step = boundary - sent
            piece, view = view[:step], view[step:]
            if plan.rate and paced_from is None:
                paced_from = loop.time()
            account(len(piece))
            await response.write(piece)
            if plan.slow:
                await asyncio.sleep(len(piece) / plan.slow)
            if plan.rate and paced_from is not None:
                # by the deadline, not by the piece: time spent writing counts too
                ahead = paced_from + sent / plan.rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
    if stall_pending:
        await asyncio.sleep(plan.stall)
    if plan.wrong_length and length is not None:
        extra = Content(b"wrong-length", max(0, plan.wrong_length)).read()
        if not plan.wrong_length_header:
            return abort(extra)  # body length != Content-Length: the peer sees a broken message
        account(len(extra))
        await response.write(extra)
    await response.write_eof()
