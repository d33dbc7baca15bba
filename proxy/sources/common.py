"""Helpers shared by origin adapters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from hoard.store.errors import OriginError, OriginUnavailable

__all__ = ["body_range"]

_READ_BLOCK = 1 << 20


async def body_range(resp: Any, start: int, end: int, what: str) -> AsyncIterator[bytes]:
    """Yield bytes [start, end) of a 200 or 206 answer; check the range the origin chose."""
    skip = 0
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != start:
            raise OriginError(f"{what}: origin answered range {resp.headers.get('Content-Range')!r} for {start}-{end - 1}")
    else:
        skip = start  # the origin ignored Range: read past what we do not need
    want = end - start
    async for block in resp.content.iter_chunked(_READ_BLOCK):
        if skip:
            if len(block) <= skip:
                skip -= len(block)
                continue
            block = block[skip:]
            skip = 0
        if len(block) > want:
            block = block[:want]
        want -= len(block)
        yield block
        if want == 0:
            return
    if want > 0:
        raise OriginUnavailable(f"{what}: connection closed {want} bytes early")

