"""A fake Hugging Face Hub origin and a fake CDN origin, for tests with no internet.

`FakeHub` runs two real aiohttp servers on 127.0.0.1 (port 0, so two distinct origins
and cross-origin auth stripping is exercised) inside a background thread with its own
event loop; tests drive it synchronously or with ``async with``. It answers the
download side of the Hub protocol the way huggingface.co does (see
``shared/reference/hf_protocol.md`` §1-§5, §9), *not* the way a kind server would:

* non-LFS files on a branch/tag 307 to a **relative** ``/api/resolve-cache/...`` URL;
  on a 40-hex commit they are served directly; LFS files 302 to an **absolute**,
  HMAC-signed, expiring URL on the CDN origin, which ignores ``Authorization``;
* Xet is advertised by default (``X-Xet-Hash``, ``Link rel="xet-auth"``, ``xetHash``
  in listings) — the proxy under test must strip it; ``/xet-read-token`` answers 404;
* the CDN ``ETag`` is the Xet hash (or an S3-style etag), never the sha256;
* unknown repos answer a **bare** 401 to anonymous callers, 404 ``RepoNotFound`` to
  token holders; gated repos keep public metadata but 401/403 ``GatedRepo`` on files;
* listings paginate with absolute ``Link: <...>; rel="next"`` URLs and a cursor;
* text bodies are gzip-encoded when the client accepts it (never on HEAD or ranges).

Every request is logged (`RequestRecord`), payload bytes are counted per origin, and
`Fault` switches inject latency, 5xx/429, mid-body drops, stalls, throttling,
corruption, wrong lengths and ignored ranges. Repository state is plain dataclasses
(`FileEntry`, `Commit`, `Repo`) guarded by one lock; commits are immutable, so a
commit-pinned answer never changes while branches move with `FakeHub.commit`.

Layout: `model` (files, commits, repos), `repos` (repository state and the API that shapes
it), `wire` (request log entries, fault switches and the body writer that applies them),
`replies` (how an answer is written), `file_routes` (``/resolve``, resolve-cache, the CDN),
`api_routes` (``/api``); this module assembles them into `FakeHub`. Its lifecycle (two
origins, ``"hub"`` and ``"cdn"``, on one loop thread; `pause`/`resume`/`restart`), request
log, byte counts and fault registry are `tests.fakes.origins.FakeOrigins`, shared with the
other fake origins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from urllib.parse import quote

from .upload_routes import UploadRoutes
from .content import Content
from .model import DEFAULT_LFS_PATTERNS, DEFAULT_LFS_THRESHOLD, URL_PREFIX, Commit, FileEntry, MiB, Repo, RepoType
from .origins import Route
from .wire import Fault, RequestRecord

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "DEFAULT_LFS_THRESHOLD",
    "Commit",
    "FakeHub",
    "Fault",
    "FileEntry",
    "Repo",
    "RequestRecord",
]


class FakeHub(UploadRoutes):
    """Fake huggingface.co + CDN. ``with FakeHub() as hub:`` or ``hub.start()/stop()``."""

    ORIGINS = ("hub", "cdn")
    THREAD_NAME = "fake-hub"
    CLIENT_MAX_SIZE = 16 * MiB

    def __init__(
        self,
        *,
        page_size: int = 1000,
        expand_page_size: int = 50,
        xet: bool = True,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        url_ttl: float = 3600.0,
        compress: bool = True,
        gzip_min_size: int = 0,
        ratelimit_headers: bool = True,
        tokens: Iterable[str] | None = None,
        block_size: int = 256 * 1024,
        host: str = "127.0.0.1",
        per_connection_rate: float | None = None,
    ) -> None:
        super().__init__(host=host)
        self.page_size = page_size  # tree/commits page size (the Hub uses 1000)
        self.expand_page_size = expand_page_size  # tree page size with expand=true (Hub: 50)
        self.xet = xet  # advertise Xet like the live Hub (headers + xetHash)
        self.lfs_threshold = lfs_threshold
        self.url_ttl = url_ttl  # lifetime of signed CDN URLs, seconds
        self.compress = compress  # gzip text/JSON GETs when the client accepts it
        self.gzip_min_size = gzip_min_size
        self.ratelimit_headers = ratelimit_headers
        self.warning: str | None = None  # "topic; message" sent as X-HF-Warning on hub answers
        self.tokens = None if tokens is None else set(tokens)  # None: every token is a valid user
        self.block_size = block_size
        #: bytes per second each answer's body is paced at (None: as fast as it goes): a CDN
        #: that caps every connection, as real ones do (tens to hundreds of MB/s)
        self.per_connection_rate = per_connection_rate
        self._secret = hashlib.sha256(b"fake-hub-cdn-signing-key").digest()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._objects: dict[str, Content] = {}  # CDN object key (sha256 / xet hash) -> bytes
        self._clock = 0
        self._ratelimit: dict[tuple[str, int], int] = {}

    # -- origins -------------------------------------------------------------------------

    def route(self, origin: str) -> Route:
        return self._hub_route if origin == "hub" else self._cdn_route

    @property
    def url(self) -> str:
        """Hub origin, e.g. ``http://127.0.0.1:PORT`` (what ``HF_ENDPOINT`` points at)."""
        return self.origin_url("hub")

    @property
    def cdn_url(self) -> str:
        """CDN origin (a different port: a different origin for auth stripping)."""
        return self.origin_url("cdn")

    def resolve_url(self, repo_id: str, path: str, rev: str = "main", *, repo_type: RepoType = "model") -> str:
        """The ``/resolve`` URL a client would build (``hf_hub_url``)."""
        return f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(rev, safe='')}/{quote(path)}"

    # -- faults --------------------------------------------------------------------------

    def expire_signed_urls(self) -> None:
        """Expire every signed CDN URL issued so far, now: the CDN answers them 403 "Request
        has expired", while URLs the Hub signs from now on are valid for ``url_ttl``. (It moves
        `time_shift` past the TTL: deterministic, no waiting for the wall clock.)"""
        with self._lock:
            self.time_shift += self.url_ttl + 1

    def _take_faults(self, record: RequestRecord) -> Fault:
        """The request's fault plan, paced at ``per_connection_rate`` at most."""
        plan = super()._take_faults(record)
        if self.per_connection_rate:
            plan.rate = min(plan.rate or self.per_connection_rate, self.per_connection_rate)
        return plan
