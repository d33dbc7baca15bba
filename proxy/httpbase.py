"""HTTP facts every layer of the proxy shares, without importing aiohttp.

Origin adapters import these (a reply, what counts as the same origin, which statuses are
transient, the retry policy); only :mod:`hoard.proxy.http` holds the aiohttp session. That
keeps the source modules light enough for the CLI to load the source registry at start.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HttpConfig", "RetryPolicy", "Reply", "same_origin", "host_of", "redact", "TRANSIENT_STATUSES"]

#: answers worth asking again: the origin is busy, restarting or rate-limiting
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """The one retry policy: transient faults only, exponential backoff with jitter.

    Used by :class:`hoard.proxy.http.HttpClient` for metadata requests and by the fetch core
    when it resumes a dropped body; nothing else retries.
    """

    retries: int = 4
    backoff: float = 0.2
    max_backoff: float = 5.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (honouring ``Retry-After`` seconds)."""
        if retry_after:
            try:
                return max(0.0, min(float(retry_after), self.max_backoff * 4))
            except ValueError:
                pass
        base = min(self.backoff * (2**attempt), self.max_backoff)
        return base * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class HttpConfig:
    connect_timeout: float = 10.0
    #: longest silence while reading a body; a stalled origin fails after this
    read_timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.2
    max_backoff: float = 5.0
    max_per_host: int = 16
    user_agent: str = "hoard/0.1"

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.backoff, self.max_backoff)


@dataclass
class Reply:
    """A complete (small) response: status, headers, body, and the URL that produced it."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        return json.loads(self.body)


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def redact(url: str) -> str:
    """A URL without its query (signed URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
