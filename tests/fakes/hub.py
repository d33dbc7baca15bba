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
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import gzip
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .content import Content

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

RepoType = Literal["model", "dataset", "space"]
Gated = Literal[False, "auto", "manual"]
Origin = Literal["hub", "cdn"]
FileSpec = bytes | str | Content
_T = TypeVar("_T")
_Denial = tuple[int, str | None, str]  # status, X-Error-Code, X-Error-Message

MiB = 1 << 20
#: The Hub refuses plain-git files above 10 MB; anything this big goes to LFS.
DEFAULT_LFS_THRESHOLD = 10 * MiB
#: The patterns of the `.gitattributes` the Hub writes into every new repository (+ gguf).
# fmt: off
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle",
    "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)
# fmt: on
_TEXT_SUFFIXES = frozenset(
    {".json", ".txt", ".md", ".py", ".jinja", ".yaml", ".yml", ".csv", ".tsv", ".cfg", ".ini", ".toml", ".html"}
)
_PLURAL: dict[str, str] = {"model": "models", "dataset": "datasets", "space": "spaces"}
_SINGULAR = {v: k for k, v in _PLURAL.items()}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSATISFIABLE = (-1, -1)
#: Redirect bodies as the Hub's Express server writes them.
_REDIRECT_TEXT = {302: "Found", 307: "Temporary Redirect"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --------------------------------------------------------------------------------------
# Repository model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FileEntry:
    """One file at one commit. ``oid`` is the git blob id (of the pointer, for LFS)."""

    path: str
    content: Content
    lfs: bool

    @property
    def size(self) -> int:
        return self.content.size

    @property
    def sha256(self) -> str:
        return self.content.sha256

    @cached_property
    def pointer(self) -> bytes:
        """The git-lfs pointer file git stores instead of the bytes."""
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n").encode()

    @cached_property
    def oid(self) -> str:
        if not self.lfs:
            return self.content.git_sha1
        return hashlib.sha1(b"blob %d\0" % len(self.pointer) + self.pointer).hexdigest()

    @cached_property
    def xet_hash(self) -> str:
        """64 hex like a real Xet merkle hash, and (like it) different from sha256/blake3."""
        return hashlib.blake2b(b"xet-merkle\0" + bytes.fromhex(self.sha256), digest_size=32).hexdigest()

    @property
    def etag(self) -> str:
        """What the Hub reports as the file's identity: sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.oid


@dataclass(frozen=True, eq=False)
class Commit:
    """An immutable snapshot: ``files`` maps repo path to `FileEntry`."""

    sha: str
    parent: str | None
    title: str
    date: str
    files: Mapping[str, FileEntry]

    @cached_property
    def dir_oids(self) -> dict[str, str]:
        """Pseudo git tree ids for every directory (deterministic from the files below)."""
        hashers: dict[str, Any] = {}
        for path in sorted(self.files):
            parts = path.split("/")
            for i in range(1, len(parts)):
                hashers.setdefault("/".join(parts[:i]), hashlib.sha1(b"tree\0")).update(
                    f"{path}\0{self.files[path].oid}\n".encode()
                )
        return {d: h.hexdigest() for d, h in hashers.items()}


@dataclass(eq=False)
class Repo:
    """Mutable repository state (refs, access rules); guarded by the hub's lock."""

    repo_type: RepoType
    repo_id: str
    private: bool
    gated: Gated
    allowed_tokens: set[str]
    lfs_threshold: int
    lfs_patterns: tuple[str, ...]
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    converts: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)

    @property
    def object_id(self) -> str:
        return hashlib.sha1(f"{self.repo_type}/{self.repo_id}".encode()).hexdigest()[:24]

    def is_lfs(self, path: str, size: int) -> bool:
        name = path.rsplit("/", 1)[-1]
        return size >= self.lfs_threshold or any(
            fnmatch.fnmatchcase(path if "/" in pat else name, pat) for pat in self.lfs_patterns
        )

    def resolve(self, rev: str) -> str | None:
        """Commit sha for a branch, tag, ``refs/pr/N``, ``refs/convert/X`` or full sha."""
        if rev in self.commits:
            return rev
        if rev.startswith("refs/pr/") and rev[8:].isdigit():
            return self.prs.get(int(rev[8:]))
        if rev.startswith("refs/convert/"):
            return self.converts.get(rev[13:])
        return self.branches.get(rev) or self.tags.get(rev)

    def set_ref(self, ref: str, sha: str) -> None:
        if ref.startswith("refs/pr/"):
            self.prs[int(ref[8:])] = sha
        elif ref.startswith("refs/convert/"):
            self.converts[ref[13:]] = sha
        else:
            self.branches[ref] = sha


# --------------------------------------------------------------------------------------
# Request log and faults
# --------------------------------------------------------------------------------------


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


def _merge(faults: list[Fault]) -> Fault:
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
        if f.wrong_length and not plan.wrong_length:
            plan.wrong_length, plan.wrong_length_header = f.wrong_length, f.wrong_length_header
        plan.corrupt |= f.corrupt
        plan.ignore_range |= f.ignore_range
    return plan


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` half-open, None to ignore the header, `_UNSATISFIABLE` for 416."""
    match = _RANGE.match(value.strip()) if value else None
    if match is None:  # absent, multi-range or garbage: RFC 9110 allows ignoring it
        return None
    first, last = match.groups()
    if first == "":
        if last == "":
            return None
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        if last != "" and int(last) < start:
            return None
        end = size if last == "" else min(int(last) + 1, size)
    return (start, end) if start < end else _UNSATISFIABLE


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _accepts_gzip(header: str) -> bool:
    for token in header.split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


# Per-request storage keys (typed keys where aiohttp has them, >= 3.12).
_REC: Any = web.RequestKey("fakehub_record", RequestRecord) if hasattr(web, "RequestKey") else "fakehub_record"
_PLAN: Any = web.RequestKey("fakehub_plan", Fault) if hasattr(web, "RequestKey") else "fakehub_plan"


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _flip(data: bytes) -> bytes:
    """Corrupt a block without changing its length (last byte inverted)."""
    return data[:-1] + bytes([data[-1] ^ 0xFF]) if data else data


# --------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------


class FakeHub:
    """Fake huggingface.co + CDN. ``with FakeHub() as hub:`` or ``hub.start()/stop()``."""

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
    ) -> None:
        self.page_size = page_size  # tree/commits page size (the Hub uses 1000)
        self.expand_page_size = expand_page_size  # tree page size with expand=true (Hub: 50)
        self.xet = xet  # advertise Xet like the live Hub (headers + xetHash)
        self.lfs_threshold = lfs_threshold
        self.url_ttl = url_ttl  # lifetime of signed CDN URLs, seconds
        self.time_shift = 0.0  # added to the clock: expire signed URLs without sleeping
        self.compress = compress  # gzip text/JSON GETs when the client accepts it
        self.gzip_min_size = gzip_min_size
        self.ratelimit_headers = ratelimit_headers
        self.warning: str | None = None  # "topic; message" sent as X-HF-Warning on hub answers
        self.tokens = None if tokens is None else set(tokens)  # None: every token is a valid user
        self.block_size = block_size
        self.host = host
        self._secret = hashlib.sha256(b"fake-hub-cdn-signing-key").digest()
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._objects: dict[str, Content] = {}  # CDN object key (sha256 / xet hash) -> bytes
        self._clock = 0
        self._log: list[RequestRecord] = []
        self._bytes: dict[str, int] = {"hub": 0, "cdn": 0}
        self._ratelimit: dict[tuple[str, int], int] = {}
        self._faults: list[Fault] = []
        self._ports: dict[str, int] = {}
        self._runners: dict[str, web.AppRunner] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Hub origin, e.g. ``http://127.0.0.1:PORT`` (what ``HF_ENDPOINT`` points at)."""
        return f"http://{self.host}:{self._ports['hub']}"

    @property
    def cdn_url(self) -> str:
        """CDN origin (a different port: a different origin for auth stripping)."""
        return f"http://{self.host}:{self._ports['cdn']}"

    def start(self) -> FakeHub:
        """Start both origins in a background event-loop thread (idempotent)."""
        if self._thread is None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=loop.run_forever, name="fake-hub", daemon=True)
            self._thread.start()
        self.resume()
        return self

    def stop(self) -> None:
        """Stop both origins and the loop thread."""
        if self._thread is None or self._loop is None:
            return
        self.pause()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = self._loop = None

    def pause(self, origin: Origin | None = None) -> None:
        """Make an origin (default both) unreachable: close the listener and every
        connection, so clients get *connection refused* until `resume`."""
        names: tuple[Origin, ...] = ("hub", "cdn") if origin is None else (origin,)
        for name in names:
            runner = self._runners.pop(name, None)
            if runner is not None:
                self._call(runner.cleanup())

    def resume(self, origin: Origin | None = None) -> None:
        """Listen again on the same port(s) (the first start picks free ports)."""
        names: tuple[Origin, ...] = ("hub", "cdn") if origin is None else (origin,)
        for name in names:
            if name not in self._runners:
                self._call(self._open(name))

    def restart(self) -> None:
        """Drop every connection and start again on the same ports."""
        self.pause()
        self.resume()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeHub:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None, "FakeHub is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _open(self, origin: Origin) -> None:
        app = web.Application(middlewares=[self._middleware(origin)], client_max_size=16 * MiB)
        app.router.add_route("*", "/{tail:.*}", self._hub_route if origin == "hub" else self._cdn_route)
        # shutdown_timeout: cancel stalled handlers quickly on pause/stop
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._ports.get(origin, 0))
        await site.start()
        self._ports[origin] = runner.addresses[0][1]
        self._runners[origin] = runner

    # -- repositories --------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, FileSpec],
        *,
        repo_type: RepoType = "model",
        branch: str = "main",
        tags: Iterable[str] = (),
        gated: Gated = False,
        private: bool = False,
        allowed_tokens: Iterable[str] = (),
        lfs_threshold: int | None = None,
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        gitattributes: bool = True,
        message: str = "Upload folder using huggingface_hub",
    ) -> str:
        """Create a repo like the Hub does (an "initial commit" holding `.gitattributes`
        unless ``gitattributes=False`` or given), then commit ``files``; return the head sha."""
        if repo_id.count("/") != 1:
            raise ValueError("repo ids are 'namespace/name' (old one-segment names: use rename)")
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise ValueError(f"{repo_type} {repo_id} exists")
            patterns = tuple(lfs_patterns)
            repo = Repo(
                repo_type=repo_type,
                repo_id=repo_id,
                private=private,
                gated=gated,
                allowed_tokens=set(allowed_tokens),
                lfs_patterns=patterns,
                lfs_threshold=self.lfs_threshold if lfs_threshold is None else lfs_threshold,
                created_at=_iso(self._tick()),
            )
            self._repos[(repo_type, repo_id)] = repo
            parent = None
            if gitattributes and ".gitattributes" not in files:
                attrs = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in patterns)
                parent = self._make_commit(repo, None, {".gitattributes": attrs}, (), "initial commit")
            head = self._make_commit(repo, parent, files, (), message)
            repo.set_ref(branch, head.sha)
            for tag in tags:
                repo.tags[tag] = head.sha
            return head.sha

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, FileSpec] | None = None,
        *,
        repo_type: RepoType = "model",
        branch: str = "main",
        delete: Iterable[str] = (),
        message: str | None = None,
    ) -> str:
        """Add a commit on ``branch`` (created from main if new; ``refs/pr/N`` and
        ``refs/convert/X`` accepted); ``delete`` removes files or whole folders."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            parent = repo.commits[repo.resolve(branch) or repo.branches["main"]]
            head = self._make_commit(repo, parent, files or {}, tuple(delete), message or "Update files")
            repo.set_ref(branch, head.sha)
            return head.sha

    def tag(self, repo_id: str, name: str, commit: str = "main", *, repo_type: RepoType = "model") -> str:
        """Point tag ``name`` at ``commit`` (a sha or any revision); return the sha."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            sha = repo.resolve(commit)
            if sha is None:
                raise KeyError(commit)
            repo.tags[name] = sha
            return sha

    def add_pr(
        self, repo_id: str, files: Mapping[str, FileSpec], *, repo_type: RepoType = "model", base: str = "main"
    ) -> tuple[int, str]:
        """Open pull request ``refs/pr/N`` with ``files`` on top of ``base``; return (N, sha)."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            number = max(repo.prs, default=0) + 1
            parent = repo.commits[repo.resolve(base) or repo.branches["main"]]
            head = self._make_commit(repo, parent, files, (), f"Upload files (PR #{number})")
            repo.prs[number] = head.sha
            return number, head.sha

    def rename(self, old_id: str, new_id: str, *, repo_type: RepoType = "model") -> None:
        """Move a repo; the old name then 307s (relative) to the canonical one."""
        with self._lock:
            repo = self._repos.pop((repo_type, old_id))
            repo.repo_id = new_id
            self._repos[(repo_type, new_id)] = repo
            self._aliases[(repo_type, old_id)] = new_id

    def alias(self, old_id: str, repo_id: str, *, repo_type: RepoType = "model") -> None:
        """Register a legacy name (e.g. one-segment ``gpt2``) redirecting to ``repo_id``."""
        with self._lock:
            self._repo(repo_type, repo_id)
            self._aliases[(repo_type, old_id)] = repo_id

    def delete_repo(self, repo_id: str, *, repo_type: RepoType = "model") -> None:
        with self._lock:
            del self._repos[(repo_type, repo_id)]

    def set_access(
        self,
        repo_id: str,
        *,
        repo_type: RepoType = "model",
        gated: Gated | None = None,
        private: bool | None = None,
        allowed_tokens: Iterable[str] | None = None,
    ) -> None:
        """Change gating, visibility or the set of tokens granted access."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if gated is not None:
                repo.gated = gated
            if private is not None:
                repo.private = private
            if allowed_tokens is not None:
                repo.allowed_tokens = set(allowed_tokens)

    def head(self, repo_id: str, rev: str = "main", *, repo_type: RepoType = "model") -> str:
        """The commit sha ``rev`` resolves to now."""
        with self._lock:
            sha = self._repo(repo_type, repo_id).resolve(rev)
            if sha is None:
                raise KeyError(rev)
            return sha

    def file(self, repo_id: str, path: str, rev: str = "main", *, repo_type: RepoType = "model") -> FileEntry:
        """The `FileEntry` at ``rev`` (expected bytes, size, sha256, oid, lfs flag)."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return repo.commits[self.head(repo_id, rev, repo_type=repo_type)].files[path]

    def resolve_url(self, repo_id: str, path: str, rev: str = "main", *, repo_type: RepoType = "model") -> str:
        """The ``/resolve`` URL a client would build (``hf_hub_url``)."""
        return f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(rev, safe='')}/{quote(path)}"

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r}") from None

    def _tick(self) -> datetime:
        self._clock += 1
        return _EPOCH + timedelta(minutes=self._clock)

    def _make_commit(
        self,
        repo: Repo,
        parent: Commit | None,
        files: Mapping[str, FileSpec],
        delete: tuple[str, ...],
        title: str,
    ) -> Commit:
        tree = dict(parent.files) if parent else {}
        for gone in delete:
            for path in [p for p in tree if p == gone or p.startswith(gone.rstrip("/") + "/")]:
                del tree[path]
        for path, spec in files.items():
            content = Content.of(spec)
            entry = FileEntry(path.strip("/"), content, repo.is_lfs(path, content.size))
            tree[entry.path] = entry
            if entry.lfs:
                self._objects[entry.sha256] = self._objects[entry.xet_hash] = content
        digest = hashlib.sha1(
            f"commit\0{repo.repo_type}/{repo.repo_id}\0{parent.sha if parent else ''}\0{title}".encode()
        )
        for path in sorted(tree):
            digest.update(f"\n{path}\0{tree[path].oid}".encode())
        commit = Commit(
            digest.hexdigest(), parent.sha if parent else None, title, _iso(self._tick()), MappingProxyType(tree)
        )
        repo.commits.setdefault(commit.sha, commit)
        return repo.commits[commit.sha]

    # -- request log ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def find(
        self,
        path_contains: str | None = None,
        *,
        method: str | None = None,
        origin: Origin | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        """Logged requests matching every given criterion (see `RequestRecord.has`)."""
        return [
            r
            for r in self.requests
            if (path_contains is None or r.has(path_contains))
            and (method is None or r.method == method.upper())
            and (origin is None or r.origin == origin)
            and (status is None or r.status == status)
        ]

    def count(
        self,
        path_contains: str | None = None,
        *,
        method: str | None = None,
        origin: Origin | None = None,
        status: int | None = None,
    ) -> int:
        """``len(find(...))``, e.g. ``hub.count("xet-read-token")``."""
        return len(self.find(path_contains, method=method, origin=origin, status=status))

    @property
    def bytes_sent(self) -> dict[str, int]:
        """Body bytes written per origin since the last `clear_log` (``{"hub": n, "cdn": n}``)."""
        with self._lock:
            return dict(self._bytes)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._bytes = {"hub": 0, "cdn": 0}

    # -- faults --------------------------------------------------------------------------

    def fault(
        self,
        *,
        path_contains: str | None = None,
        origin: Origin | None = None,
        method: str | None = None,
        times: int | None = None,
        latency: float = 0.0,
        status: int | None = None,
        retry_after: int = 1,
        drop_after: int | None = None,
        stall: float = 0.0,
        stall_at: int = 0,
        slow: int | None = None,
        corrupt: bool = False,
        wrong_length: int = 0,
        wrong_length_header: bool = False,
        ignore_range: bool = False,
    ) -> Fault:
        """Register a `Fault` (switches as documented there); returns it (``.hits`` counts uses)."""
        fault = Fault(
            path_contains=path_contains,
            origin=origin,
            method=method,
            times=times,
            latency=latency,
            status=status,
            retry_after=retry_after,
            drop_after=drop_after,
            stall=stall,
            stall_at=stall_at,
            slow=slow,
            corrupt=corrupt,
            wrong_length=wrong_length,
            wrong_length_header=wrong_length_header,
            ignore_range=ignore_range,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_faults(self, record: RequestRecord) -> Fault:
        with self._lock:
            hit = [f for f in self._faults if f.matches(record)]
            for f in hit:
                f.hits += 1
                if f.times is not None:
                    f.times -= 1
        return _merge(hit)

    def _now(self) -> float:
        return time.time() + self.time_shift

    # -- HTTP plumbing -------------------------------------------------------------------

    def _middleware(self, origin: Origin) -> Middleware:
        @web.middleware
        async def log_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
            path, _, query = request.raw_path.partition("?")
            record = RequestRecord(
                origin, request.method, path, query, {k.lower(): v for k, v in request.headers.items()}
            )
            with self._lock:
                self._log.append(record)
            plan = self._take_faults(record)
            request[_REC], request[_PLAN] = record, plan
            if plan.latency:
                await asyncio.sleep(plan.latency)
            if plan.status is not None:
                response = await self._fault_status(request, plan.status, plan.retry_after)
            else:
                response = await handler(request)
            record.status = response.status
            return response

        return log_and_fault

    async def _fault_status(self, request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
        headers: dict[str, str] = {}
        if status == 429:
            headers["Retry-After"] = str(retry_after)
            message = "You have been rate-limited; you can retry this action in about 5 minutes."
            return await self._error(request, status, None, message, api=True, headers=headers)
        if status == 500:
            return await self._error(
                request, status, None, "Internal Error - We're working hard to fix this as soon as possible!", api=True
            )
        html = f"<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>\n"
        return await self._send(request, status, {"Content-Type": "text/html"}, html.encode())

    def _origin_headers(self, request: web.Request, status: int, headers: dict[str, str]) -> None:
        """Headers the Hub adds to every answer (request id, rate limits, warnings)."""
        record: RequestRecord = request[_REC]
        if record.origin == "cdn":
            headers.setdefault("X-Cache", "Miss from cloudfront")
            return
        headers.setdefault("X-Powered-By", "huggingface-moon")
        headers.setdefault("X-Request-Id", "Root=1-" + hashlib.sha1(str(id(record)).encode()).hexdigest()[:24])
        headers.setdefault("Vary", "Origin, Accept")
        headers.setdefault(
            "Access-Control-Expose-Headers",
            "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,"
            "Content-Range,X-Linked-Size,X-Linked-ETag,X-Xet-Hash",
        )
        if self.warning:
            headers["X-HF-Warning"] = self.warning
        if self.ratelimit_headers:
            bucket, quota = ("resolvers", 3000) if "/resolve" in record.path else ("api", 1000)
            now = int(self._now())
            window = now // 300
            with self._lock:
                used = self._ratelimit[(bucket, window)] = self._ratelimit.get((bucket, window), 0) + 1
            left = 0 if status == 429 else max(0, quota - used)
            headers["RateLimit"] = f'"{bucket}";r={left};t={300 - now % 300}'
            headers["RateLimit-Policy"] = f'"fixed window";"{bucket}";q={quota};w=300'

    async def _send(
        self,
        request: web.Request,
        status: int,
        headers: dict[str, str],
        body: bytes | Content = b"",
        *,
        start: int = 0,
        end: int | None = None,
        gzip_ok: bool = False,
    ) -> web.StreamResponse:
        """Write one response, applying the request's fault plan to the body."""
        plan: Fault = request[_PLAN]
        content = Content.of(body)
        end = content.size if end is None else end
        headers = dict(headers)
        self._origin_headers(request, status, headers)
        chunks: Iterable[bytes] = content.iter_range(start, end, self.block_size)
        length: int | None = end - start  # None: no Content-Length (chunked gzip)
        body_length = end - start
        corrupt = plan.corrupt
        if (
            gzip_ok
            and self.compress
            and status == 200
            and request.method == "GET"
            and end - start >= self.gzip_min_size
            and _accepts_gzip(request.headers.get("Accept-Encoding", ""))
        ):
            raw = content.read(start, end)
            payload = gzip.compress(_flip(raw) if corrupt else raw, mtime=0)
            chunks, length, body_length, corrupt = [payload], None, len(payload), False
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = headers.get("Vary", "Origin") + ", Accept-Encoding"
        response = web.StreamResponse(status=status, headers=headers)
        record: RequestRecord = request[_REC]
        record.status = status  # before the client can see the answer
        if request.method != "HEAD" and status not in (204, 304):
            record.body_length = body_length
        if length is not None:
            declared = length + (plan.wrong_length if plan.wrong_length_header else 0)
            response.headers["Content-Length"] = str(max(0, declared))
        await response.prepare(request)
        if request.method == "HEAD" or status in (204, 304):
            await response.write_eof()
            return response
        await self._pump(request, response, chunks, length, plan, corrupt)
        return response

    async def _pump(
        self,
        request: web.Request,
        response: web.StreamResponse,
        chunks: Iterable[bytes],
        length: int | None,
        plan: Fault,
        corrupt: bool,
    ) -> None:
        """Stream ``chunks`` in blocks, honouring drop/stall/slow/corrupt/wrong_length.

        Accounting happens *before* each transport write and the abort flag before each
        close, so a test that has just read the response already sees both."""
        record: RequestRecord = request[_REC]
        limit = None if length is None or plan.wrong_length >= 0 else length + plan.wrong_length
        stall_pending = plan.stall > 0
        sent = 0

        def account(n: int) -> None:
            nonlocal sent
            sent += n
            record.bytes_sent += n
            with self._lock:
                self._bytes[record.origin] += n

        def abort(extra: bytes = b"") -> None:
            record.aborted = True
            if request.transport is not None:
                account(len(extra))
                request.transport.write(extra)
                request.transport.close()  # flushes what was written, then FIN: a truncated body

        await response.write(b"")  # flush the headers now, so stalls happen mid-response
        for chunk in chunks:
            view = _flip(chunk) if corrupt else chunk
            while view and (limit is None or sent < limit):
                if stall_pending and sent >= plan.stall_at:
                    stall_pending = False
                    await asyncio.sleep(plan.stall)
                if plan.drop_after is not None and sent >= plan.drop_after:
                    return abort()
                step = min(len(view), max(1, plan.slow // 20)) if plan.slow else len(view)
                for boundary in (plan.drop_after, limit, plan.stall_at if stall_pending else None):
                    if boundary is not None and sent < boundary < sent + step:
                        step = boundary - sent
                piece, view = view[:step], view[step:]
                account(len(piece))
                await response.write(piece)
                if plan.slow:
                    await asyncio.sleep(len(piece) / plan.slow)
        if stall_pending:
            await asyncio.sleep(plan.stall)
        if plan.wrong_length and length is not None:
            extra = Content(b"wrong-length", max(0, plan.wrong_length)).read()
            if not plan.wrong_length_header:
                return abort(extra)  # body length != Content-Length: the peer sees a broken message
            account(len(extra))
            await response.write(extra)
        await response.write_eof()

    async def _error(
        self,
        request: web.Request,
        status: int,
        code: str | None,
        message: str,
        *,
        api: bool,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """A Hub error: ``X-Error-Code`` (when the Hub sends one), ``X-Error-Message``, and a
        JSON ``{"error": ...}`` body on API routes or the bare message on file routes."""
        out = {"X-Error-Message": message, **(headers or {})}
        if code is not None:
            out["X-Error-Code"] = code
        if api:
            out["Content-Type"] = "application/json; charset=utf-8"
            return await self._send(request, status, out, json.dumps({"error": message}).encode())
        out["Content-Type"] = "text/plain; charset=utf-8"
        return await self._send(request, status, out, message.encode())

    async def _json(
        self, request: web.Request, obj: object, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        body = json.dumps(obj, separators=(",", ":")).encode()
        etag = f'W/"{len(body):x}-{base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]}"'
        out = {"Content-Type": "application/json; charset=utf-8", "ETag": etag, **(headers or {})}
        if request.headers.get("If-None-Match") == etag:
            return await self._send(request, 304, out)
        return await self._send(request, 200, out, body, gzip_ok=True)

    async def _redirect(
        self, request: web.Request, status: int, location: str, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        text = f"{_REDIRECT_TEXT.get(status, 'Redirect')}. Redirecting to {location}"
        out = {"Location": location, "Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        return await self._send(request, status, out, text.encode())

    async def _serve(
        self, request: web.Request, content: Content, headers: dict[str, str], *, gzip_ok: bool
    ) -> web.StreamResponse:
        """200/206/304/416 for a file body, honouring a single ``Range``."""
        etag = headers.get("ETag")
        if etag is not None and request.headers.get("If-None-Match") == etag:
            return await self._send(request, 304, headers)
        plan: Fault = request[_PLAN]
        headers = {"Accept-Ranges": "bytes", **headers}
        window = None if plan.ignore_range else _parse_range(request.headers.get("Range"), content.size)
        if window is None:
            return await self._send(request, 200, headers, content, gzip_ok=gzip_ok)
        if window == _UNSATISFIABLE:
            headers = {**headers, "Content-Range": f"bytes */{content.size}", "Content-Type": "text/plain"}
            return await self._send(request, 416, headers, b"Requested Range Not Satisfiable")
        start, end = window
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{content.size}"
        return await self._send(request, 206, headers, content, start=start, end=end)

    # -- hub origin: routing -------------------------------------------------------------

    async def _hub_route(self, request: web.Request) -> web.StreamResponse:
        # Split the RAW path: %2F inside a segment (refs%2Fpr%2F1, sub%2Fdir) stays in it.
        raw = request.raw_path.partition("?")[0].split("/")[1:]
        segs = [unquote(s) for s in raw]
        if segs[:1] == ["api"]:
            return await self._api(request, raw[1:], segs[1:])
        return await self._resolve(request, raw, segs)

    def _lookup(self, repo_type: str, repo_id: str) -> tuple[Repo | None, str | None]:
        """(repo, None) if canonical; (None, canonical_id) for renamed/miscased names."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is not None:
                return repo, None
            target = self._aliases.get((repo_type, repo_id))
            for _ in range(10):  # follow rename chains
                if target is None or (repo_type, target) in self._repos:
                    break
                target = self._aliases.get((repo_type, target))
            if target is None:
                folded = repo_id.casefold()
                target = next((rid for (t, rid) in self._repos if t == repo_type and rid.casefold() == folded), None)
            return None, target

    def _id_width(self, repo_type: str, segs: list[str]) -> int:
        """How many path segments the repo id takes (2, or 1 for legacy names like gpt2)."""
        if len(segs) >= 2 and any(self._lookup(repo_type, "/".join(segs[:2]))):
            return 2
        if segs and any(self._lookup(repo_type, segs[0])):
            return 1
        return min(2, len(segs))

    def _access_error(self, request: web.Request, repo: Repo | None, *, files: bool) -> _Denial | None:
        """The Hub's access rules: (status, X-Error-Code, message) to answer, or None."""
        token = _bearer(request)
        if token is not None and self.tokens is not None and token not in self.tokens:
            return 401, None, "Invalid credentials in Authorization header"
        if repo is None or (repo.private and token not in repo.allowed_tokens):
            if token is None:  # anti-enumeration: a bare 401, no X-Error-Code
                return 401, None, "Invalid username or password."
            return 404, "RepoNotFound", "Repository not found"
        if files and repo.gated and token not in repo.allowed_tokens:
            what = f"Access to {repo.repo_type} {repo.repo_id} is restricted"
            if token is None:
                return (
                    401,
                    "GatedRepo",
                    f"{what}. You must have access to it and be authenticated to access it. Please log in.",
                )
            return (
                403,
                "GatedRepo",
                f"{what} and you are not in the authorized list. Visit {self.url}/{repo.repo_id} to ask for access.",
            )
        return None

    # -- hub origin: /resolve --------------------------------------------------------------

    async def _resolve(self, request: web.Request, raw: list[str], segs: list[str]) -> web.StreamResponse:
        repo_type = _SINGULAR[segs[0]] if segs[0] in ("datasets", "spaces") else "model"
        i = 0 if repo_type == "model" else 1
        width = 2 if len(segs) > i + 2 and segs[i + 2] == "resolve" else 1
        if len(segs) < i + width + 3 or segs[i + width] != "resolve" or request.method not in ("GET", "HEAD"):
            return await self._error(request, 404, None, "Not Found", api=False)
        repo, canonical = self._lookup(repo_type, "/".join(segs[i : i + width]))
        rest = i + width + 1
        if canonical is not None:
            query = request.raw_path.partition("?")[2]
            location = "/" + "/".join([*raw[:i], quote(canonical), *raw[i + width :]]) + ("?" + query if query else "")
            return await self._redirect(request, 307, location)
        rev, rest = segs[rest], rest + 1
        if rev == "refs" and len(segs) > rest + 1 and segs[rest] in ("pr", "convert"):  # unencoded refs/pr/1
            rev, rest = f"refs/{segs[rest]}/{segs[rest + 1]}", rest + 2
        path = "/".join(segs[rest:])
        denied = self._access_error(request, repo, files=True)
        if denied is not None:
            return await self._error(request, *denied, api=False)
        assert repo is not None
        with self._lock:
            sha = repo.resolve(rev)
            commit = repo.commits.get(sha) if sha else None
        if commit is None:
            return await self._error(request, 404, "RevisionNotFound", f"Invalid rev id: {rev}", api=False)
        entry = commit.files.get(path)
        if entry is None:
            headers = {"X-Repo-Commit": commit.sha}
            return await self._error(request, 404, "EntryNotFound", "Entry not found", api=False, headers=headers)
        if entry.lfs:
            return await self._redirect_to_cdn(request, repo, commit, entry)
        if rev == commit.sha:
            return await self._serve_blob(request, commit, entry)
        cache = f"/api/resolve-cache/{_PLURAL[repo_type]}/{repo.repo_id}/{commit.sha}/{quote(path)}"
        origin_key = quote(request.raw_path.partition("?")[0], safe="")
        location = f"{cache}?{origin_key}=&etag=%22{entry.oid}%22"
        headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes", "ETag": f'"{entry.oid}"'}
        return await self._redirect(request, 307, location, headers)

    async def _resolve_cache(self, request: web.Request, segs: list[str]) -> web.StreamResponse:
        """``/api/resolve-cache/{type}s/{ns}/{name}/{commit}/{path}``: the 307 target."""
        if len(segs) < 5 or segs[0] not in _SINGULAR or request.method not in ("GET", "HEAD"):
            return await self._error(request, 404, None, "Not Found", api=True)
        repo, _ = self._lookup(_SINGULAR[segs[0]], "/".join(segs[1:3]))
        denied = self._access_error(request, repo, files=True)
        if denied is not None:
            return await self._error(request, *denied, api=False)
        assert repo is not None
        commit = repo.commits.get(segs[3])
        if commit is None:
            return await self._error(request, 404, "RevisionNotFound", f"Invalid rev id: {segs[3]}", api=False)
        entry = commit.files.get("/".join(segs[4:]))
        if entry is None:
            headers = {"X-Repo-Commit": commit.sha}
            return await self._error(request, 404, "EntryNotFound", "Entry not found", api=False, headers=headers)
        if entry.lfs:
            return await self._redirect_to_cdn(request, repo, commit, entry)
        return await self._serve_blob(request, commit, entry)

    async def _serve_blob(self, request: web.Request, commit: Commit, entry: FileEntry) -> web.StreamResponse:
        name = entry.path.rsplit("/", 1)[-1]
        text = "." + name.rsplit(".", 1)[-1] in _TEXT_SUFFIXES or name == ".gitattributes"
        headers = {
            "ETag": f'"{entry.oid}"',
            "X-Repo-Commit": commit.sha,
            "Content-Type": "text/plain; charset=utf-8" if text else "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
        }
        return await self._serve(request, entry.content, headers, gzip_ok=text)

    async def _redirect_to_cdn(
        self, request: web.Request, repo: Repo, commit: Commit, entry: FileEntry
    ) -> web.StreamResponse:
        """The LFS answer: 302 to a signed CDN URL carrying the linked file's identity."""
        name = entry.path.rsplit("/", 1)[-1]
        disposition = f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        if self.xet:
            path, params = f"/xet-bridge-us/{repo.object_id}/{entry.xet_hash}", [("X-Xet-Cas-Uid", "public")]
        else:
            bucket = hashlib.sha256(repo.object_id.encode()).hexdigest()
            path, params = f"/repos/{bucket[:2]}/{bucket[2:4]}/{bucket}/{entry.sha256}", []
        expires = str(int(self._now() + self.url_ttl))
        params += [
            ("response-content-disposition", disposition),
            ("Expires", expires),
            ("Signature", self._sign(path, expires, disposition)),
            ("Key-Pair-Id", "K3FAKEHUBKEYPAIR"),
        ]
        headers = {
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
            "X-Linked-Size": str(entry.size),
            "X-Linked-Etag": f'"{entry.sha256}"',
            "ETag": f'"{entry.sha256}"',
        }
        if self.xet:
            plural = _PLURAL[repo.repo_type]
            headers["X-Xet-Hash"] = entry.xet_hash
            headers["Link"] = (
                f'<{self.url}/api/{plural}/{repo.repo_id}/xet-read-token/{commit.sha}>; rel="xet-auth", '
                f'<{self.cdn_url}/cas/reconstruction/{entry.xet_hash}>; rel="xet-reconstruction-info"'
            )
        return await self._redirect(request, 302, f"{self.cdn_url}{path}?{urlencode(params)}", headers)

    def _sign(self, path: str, expires: str, disposition: str) -> str:
        message = f"{path}\n{expires}\n{disposition}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- hub origin: /api ------------------------------------------------------------------

    async def _api(self, request: web.Request, raw: list[str], segs: list[str]) -> web.StreamResponse:
        head = segs[0] if segs else ""
        if head == "resolve-cache":
            return await self._resolve_cache(request, segs[1:])
        if head == "whoami-v2":
            token = _bearer(request)
            if token is None or (self.tokens is not None and token not in self.tokens):
                message = "Invalid credentials in Authorization header" if token else "Invalid username or password."
                return await self._error(request, 401, None, message, api=True)
            return await self._json(request, {"type": "user", "name": "fake-user", "auth": {"type": "access_token"}})
        if head not in _SINGULAR or len(segs) < 2:
            return await self._error(request, 404, None, "Sorry, we can't find the page you are looking for.", api=True)
        repo_type = _SINGULAR[head]
        width = self._id_width(repo_type, segs[1:])
        repo, canonical = self._lookup(repo_type, "/".join(segs[1 : 1 + width]))
        if canonical is not None:
            query = request.raw_path.partition("?")[2]
            tail = raw[1 + width :]
            location = "/".join(["/api", head, quote(canonical), *tail]) + ("?" + query if query else "")
            return await self._redirect(request, 307, location)
        action, args = (segs[1 + width], segs[2 + width :]) if len(segs) > 1 + width else ("", [])
        if action == "xet-read-token":  # recorded by the middleware; Xet is not implemented.
            # 404, not 5xx: clients retry 5xx with back-off for ~20 s before failing.
            return await self._error(request, 404, None, "fake hub: Xet is not implemented", api=True)
        denied = self._access_error(request, repo, files=False)
        if denied is not None:
            return await self._error(request, *denied, api=True)
        assert repo is not None
        if action == "refs":
            return await self._json(request, self._refs(repo, _truthy(request.query.get("include_prs"))))
        if action not in ("", "revision", "tree", "paths-info", "commits"):
            return await self._error(request, 404, None, "Sorry, we can't find the page you are looking for.", api=True)
        rev, path = "main", ""
        if action == "tree" and args:
            rev, args = args[0], args[1:]
            if rev == "refs" and len(args) >= 2 and args[0] in ("pr", "convert"):
                rev, args = f"refs/{args[0]}/{args[1]}", args[2:]
            path = "/".join(args).strip("/")
        elif args:
            rev = "/".join(args)
        with self._lock:
            sha = repo.resolve(rev)
            commit = repo.commits.get(sha) if sha else None
        if commit is None:
            return await self._error(request, 404, "RevisionNotFound", f"Invalid rev id: {rev}", api=True)
        if action in ("", "revision"):
            return await self._json(request, self._info(repo, commit, request))
        if action == "tree":
            return await self._tree(request, repo, commit, rev, path)
        if action == "commits":
            return await self._commits(request, repo, commit)
        return await self._paths_info(request, repo, commit)

    def _info(self, repo: Repo, commit: Commit, request: web.Request) -> dict[str, Any]:
        blobs = _truthy(request.query.get("blobs"))
        siblings = []
        for path in sorted(commit.files):
            entry = commit.files[path]
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=entry.size, blobId=entry.oid)
                if entry.lfs:
                    sib["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
            siblings.append(sib)
        info: dict[str, Any] = {
            "_id": repo.object_id,
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        elif repo.repo_type == "space":
            info.update(sdk="static", runtime={"stage": "RUNNING", "hardware": {"current": None}})
        if _truthy(request.query.get("securityStatus")):
            info["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        expand = request.query.getall("expand", [])
        if expand:  # the Hub then returns only the requested properties
            info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
        return info

    def _entry_json(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.files.get(path)
        if entry is None:
            out: dict[str, Any] = {"type": "directory", "oid": commit.dir_oids[path], "size": 0, "path": path}
        else:
            out = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.lfs:
                out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
                if self.xet:
                    out["xetHash"] = entry.xet_hash
        if expand:
            last = self._last_commit(repo, commit, path, out["oid"])
            out["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
            if entry is not None:
                out["securityFileStatus"] = {"status": "safe", "avScan": {"status": "safe"}}
        return out

    def _last_commit(self, repo: Repo, commit: Commit, path: str, oid: str) -> Commit:
        """The oldest ancestor from which ``path`` kept this oid (git's "last commit")."""
        with self._lock:
            while commit.parent is not None:
                parent = repo.commits[commit.parent]
                prev = parent.files.get(path)
                if (prev.oid if prev else parent.dir_oids.get(path)) != oid:
                    break
                commit = parent
        return commit

    async def _tree(self, request: web.Request, repo: Repo, commit: Commit, rev: str, base: str) -> web.StreamResponse:
        recursive, expand = _truthy(request.query.get("recursive")), _truthy(request.query.get("expand"))
        prefix = base + "/" if base else ""
        if base and base not in commit.dir_oids:
            return await self._error(request, 404, "EntryNotFound", f'{base} does not exist on "{rev}"', api=True)
        paths: set[str] = set()
        for path in commit.files:
            if path.startswith(prefix):
                parts = path[len(prefix) :].split("/")
                if recursive:
                    paths.update(prefix + "/".join(parts[:k]) for k in range(1, len(parts) + 1))
                else:
                    paths.add(prefix + parts[0])
        ordered = sorted(paths)
        cursor = request.query.get("cursor")
        if cursor:
            after = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["file_name"]
            ordered = [p for p in ordered if p > after]
        size = self.expand_page_size if expand else self.page_size
        page, more = ordered[:size], len(ordered) > size
        headers = {}
        if more:
            token = base64.urlsafe_b64encode(json.dumps({"file_name": page[-1]}).encode()).decode().rstrip("=")
            headers["Link"] = f'<{self._next_url(request, "cursor", token)}>; rel="next"'
        return await self._json(request, [self._entry_json(repo, commit, p, expand) for p in page], headers)

    def _next_url(self, request: web.Request, key: str, value: str) -> str:
        """Absolute URL of the next page, on the public origin, keeping the other params."""
        path, _, query = request.raw_path.partition("?")
        params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != key]
        return f"{self.url}{path}?{urlencode([*params, (key, value)])}"

    async def _paths_info(self, request: web.Request, repo: Repo, commit: Commit) -> web.StreamResponse:
        if request.method != "POST":
            return await self._error(request, 404, None, "Sorry, we can't find the page you are looking for.", api=True)
        if request.content_type == "application/json":
            body = await request.json()
            paths, expand = list(body.get("paths", [])), bool(body.get("expand", False))
        else:
            form = await request.post()
            paths, expand = [str(p) for p in form.getall("paths", [])], _truthy(str(form.get("expand", "")))
        found: list[dict[str, Any]] = []
        for path in dict.fromkeys(p.strip("/") for p in paths):
            if path in commit.files or path in commit.dir_oids:
                found.append(self._entry_json(repo, commit, path, expand))
        return await self._json(request, found)

    def _refs(self, repo: Repo, include_prs: bool) -> dict[str, Any]:
        with self._lock:

            def refs(kind: str, items: Mapping[str, str]) -> list[dict[str, str]]:
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": s} for n, s in sorted(items.items())]

            out: dict[str, Any] = {
                "branches": refs("heads", repo.branches),
                "converts": refs("convert", repo.converts),
                "tags": refs("tags", repo.tags),
            }
            if include_prs:
                out["pullRequests"] = [
                    {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": s}
                    for n, s in sorted(repo.prs.items())
                ]
        return out

    async def _commits(self, request: web.Request, repo: Repo, commit: Commit) -> web.StreamResponse:
        history: list[Commit] = []
        with self._lock:
            node: Commit | None = commit
            while node is not None:
                history.append(node)
                node = repo.commits[node.parent] if node.parent else None
        page_no = int(request.query.get("p", "0") or 0)
        size = self.page_size
        page = history[page_no * size : (page_no + 1) * size]
        headers = {"X-Total-Count": str(len(history))}
        if (page_no + 1) * size < len(history):
            headers["Link"] = f'<{self._next_url(request, "p", str(page_no + 1))}>; rel="next"'
        items = [
            {
                "id": c.sha,
                "title": c.title,
                "message": "",
                "date": c.date,
                "authors": [{"user": "fake-user", "avatar": ""}],
            }
            for c in page
        ]
        return await self._json(request, items, headers)

    # -- CDN origin ------------------------------------------------------------------------

    async def _cdn_route(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        if request.method not in ("GET", "HEAD") or path.startswith("/cas/"):
            return await self._cdn_denied(request, 405 if request.method not in ("GET", "HEAD") else 500, "Unsupported")
        query = request.query
        expires, signature = query.get("Expires", ""), query.get("Signature", "")
        disposition = query.get("response-content-disposition", "")
        expected = self._sign(unquote(path), expires, disposition)
        if not expires.isdigit() or not hmac.compare_digest(signature, expected):
            return await self._cdn_denied(request, 403, "Access denied")
        if int(expires) < self._now():
            return await self._cdn_denied(request, 403, "Request has expired")
        key = path.rsplit("/", 1)[-1]
        with self._lock:
            content = self._objects.get(key)
        if content is None:
            return await self._cdn_denied(request, 404, "The specified key does not exist.")
        if path.startswith("/xet-bridge-us/"):
            etag = f'"{key}"'  # cas-bridge: ETag is the Xet hash, not the sha256
        else:  # S3: multipart-upload etag
            etag = f'"{hashlib.md5(key.encode()).hexdigest()}-{max(1, -(-content.size // (8 * MiB)))}"'
        headers = {
            "ETag": etag,
            "Content-Type": "application/octet-stream",
            "Content-Disposition": disposition,
            "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
            "Cache-Control": "public, max-age=604800, immutable, s-maxage=604800",
        }
        return await self._serve(request, content, headers, gzip_ok=False)

    async def _cdn_denied(self, request: web.Request, status: int, message: str) -> web.StreamResponse:
        code = {403: "AccessDenied", 404: "NoSuchKey"}.get(status, "InternalError")
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
        return await self._send(request, status, {"Content-Type": "application/xml"}, body.encode())
