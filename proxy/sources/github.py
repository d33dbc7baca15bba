"""Public GitHub repositories as an origin: ``github/<owner>/<repo>[@<ref>]/<path>``.

* **Names.** A ref (branch, tag, sha prefix) resolves to a 40-hex commit with the REST API
  (``GET /repos/{o}/{r}/commits/{ref}``); the default ref is ``HEAD``, the repo's default
  branch (``GET /repos/{o}/{r}``, then its commit). A commit is immutable: its tree, once
  stored, is never asked for again. Refs are re-resolved after the refs TTL, by conditional
  requests that GitHub's rate limit does not count when nothing moved (:mod:`._github_api`).
* **Trees.** ``GET /repos/{o}/{r}/git/trees/{commit}?recursive=1`` lists every path with its
  git blob id and size. A tree GitHub truncates (over 100,000 entries) is listed folder by
  folder instead; a single folder too large even for that fails clearly. Symbolic links and
  submodules are left out (a link could point outside the repo; a submodule is another repo),
  and names that break the client-path rules are dropped with a warning.
* **Git LFS.** Files the repo's ``.gitattributes`` track with ``filter=lfs`` and whose stored
  size could be a pointer (under 1024 bytes) are read from the raw host at the commit, checked
  against their git blob id, and parsed (:mod:`._gitattributes`): a pointer becomes the file
  it names — identity ``sha256:<oid>``, size from the pointer, bytes from the media host
  (``{media}/{o}/{r}/{commit}/{path}``, which may redirect to signed object storage). This
  costs one raw request per tracked file per commit (raw requests are not rate limited) and
  no API request; bytes already in hand (``.gitattributes``, a tracked file that is no
  pointer) go to the store at once.
* **Other files** are verified by their git blob id (``gitsha1:<sha>``) and read from the raw
  host (``{raw}/{o}/{r}/{commit}/{path}``).

Hoard reads public repositories: the token (``GITHUB_TOKEN``, or a client's bearer token on
``/v1``) only lifts the API's rate limit and is sent to the API host alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hoard.store.address import Address, check_path
from hoard.store.errors import HoardError, IntegrityError, InvalidAddress, OriginError
from hoard.store.hashing import git_blob_sha1
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry
from hoard.store.sources import SourceInfo
from hoard.store.untrusted import check_entry, is_hex

from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from . import BuildContext, Setting, SourceSpec
from ._gitattributes import POINTER_MAX, LfsRules, parse_pointer
from ._github_api import TOKEN_ENV, GitHubApi, host_error, ref_path, repo_path

__all__ = ["GitHub", "SPEC", "DEFAULT_BRANCH", "RAW_URL", "MEDIA_URL", "API_URL", "file_url"]

log = logging.getLogger("hoard.sources")

#: the default ref: whatever branch the repository names as its default
DEFAULT_BRANCH = "HEAD"
API_URL = "https://api.github.com"
RAW_URL = "https://raw.githubusercontent.com"
MEDIA_URL = "https://media.githubusercontent.com/media"
_ATTRIBUTES = ".gitattributes"
_FETCHES = 8  # raw requests in flight while a tree's pointers are read


def file_url(base: str, addr: Address, ref: str, path: str) -> str:
    """``{host}/{o}/{r}/{ref}/{path}``, the shape of the raw and the media hosts' URLs (the
    ref quoted segment by segment)."""
    return f"{base}/{repo_path(addr)}/{ref_path(ref)}/{quote(path)}"


@dataclass(frozen=True)
class _Blob:
    """A file of GitHub's tree listing."""

    path: str
    sha: str
    size: int


class GitHub(Source):
    name = "github"
    #: public repositories only: no revision is ever restricted to some clients, so nothing
    #: needs asking the origin who may read a cached commit
    may_restrict = False

    def __init__(self, ctx: BuildContext) -> None:
        settings = ctx.settings
        self.http = ctx.http
        self.reader = ctx.reader
        self.store = ctx.store
        self.api = GitHubApi(ctx.http, str(settings.get("github_api_url") or API_URL), self.name)
        self.raw = str(settings.get("github_url") or RAW_URL).rstrip("/")
        self.media = str(settings.get("github_media_url") or MEDIA_URL).rstrip("/")

    # -- names ------------------------------------------------------------------------------

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        """A ref to its commit; ``HEAD`` is the default branch, asked for first."""
        branch = await self.api.default_branch(addr, creds) if ref == DEFAULT_BRANCH else ref
        commit = await self.api.commit(addr, branch, creds)
        return ResolvedRef(commit, {"ref": ref, "branch": branch})

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        commit = resolved.revision
        what = f"{addr.repo_key}@{commit}"
        blobs, dirs = await self._listing(addr, commit, creds, what)
        rules, kept = await self._rules(addr, commit, blobs, what)
        candidates = [b for b in blobs if b.size < POINTER_MAX and rules.is_lfs(b.path)] if rules else []
        sem = asyncio.Semaphore(_FETCHES)
        read = await asyncio.gather(*(self._small(addr, commit, b, what, sem) for b in candidates))
        kept.update(zip(candidates, read, strict=True))
        files: dict[str, TreeEntry] = {}
        for blob in blobs:
            entry = _entry(blob, kept.get(blob))
            try:
                check_entry(blob.path, entry)
            except InvalidAddress as exc:
                log.warning("%s: dropped %r from GitHub's tree: %s", what, blob.path, exc)
                continue
            files[blob.path] = entry
        plain = [(b, data) for b, data in kept.items() if b.path in files and "lfs" not in files[b.path].meta]
        await self._keep(plain)
        return Snapshot(files, int(time.time()), {"commit": commit, "dirs": dirs})

    async def _listing(
        self, addr: Address, commit: str, creds: Credentials, what: str
    ) -> tuple[list[_Blob], dict[str, str]]:
        """Every file (and folder) of the commit: one recursive listing, or, where GitHub
        truncates one, that folder's own entries and a recursive listing of each sub-folder."""
        blobs: list[_Blob] = []
        dirs: dict[str, str] = {}

        async def walk(sha: str, prefix: str) -> None:
            doc = await self.api.tree(addr, sha, creds, recursive=True, what=what)
            if not doc.get("truncated"):
                _add_items(doc["tree"], prefix, blobs, dirs, what)
                return
            doc = await self.api.tree(addr, sha, creds, recursive=False, what=what)
            if doc.get("truncated"):
                raise OriginError(f"{what}: GitHub cannot list the folder {prefix or '/'} in full (too many entries)")
            for sub_sha, sub_prefix in _add_items(doc["tree"], prefix, blobs, dirs, what):
                await walk(sub_sha, sub_prefix)

        await walk(commit, "")
        return blobs, dirs

    async def _rules(
        self, addr: Address, commit: str, blobs: list[_Blob], what: str
    ) -> tuple[LfsRules, dict[_Blob, bytes]]:
        """The tree's LFS rules, from its ``.gitattributes`` files (each verified)."""
        found = [b for b in blobs if b.path.rsplit("/", 1)[-1] == _ATTRIBUTES]
        sem = asyncio.Semaphore(_FETCHES)
        data = await asyncio.gather(*(self._small(addr, commit, b, what, sem) for b in found))
        kept = dict(zip(found, data, strict=True))
        return LfsRules.parse({b.path: d for b, d in kept.items()}), kept

    async def _small(self, addr: Address, commit: str, blob: _Blob, what: str, sem: asyncio.Semaphore) -> bytes:
        """A small file's bytes from the raw host, checked against its git blob id."""
        async with sem:
            reply = await self.http.request("GET", file_url(self.raw, addr, commit, blob.path))
        if reply.status != 200:
            raise host_error(reply, f"{what}/{blob.path}")
        if git_blob_sha1(reply.body) != blob.sha:
            raise IntegrityError(f"{what}/{blob.path}: the raw host sent bytes that are not git blob {blob.sha}")
        return reply.body

    async def _keep(self, pending: list[tuple[_Blob, bytes]]) -> None:
        """Put bytes already in hand (and verified) in the store, so they are never fetched
        (a full disk only costs a fetch later)."""

        def put() -> None:
            for blob, data in pending:
                if self.store.resolve(f"gitsha1:{blob.sha}") is None:
                    self.store.add_bytes(data, expected=ExpectedHash("gitsha1", blob.sha))

        if pending:
            try:
                await asyncio.get_running_loop().run_in_executor(None, put)
            except (HoardError, OSError) as exc:
                log.warning("could not keep small files of a GitHub tree in the store now: %s", exc)

    # -- bytes ------------------------------------------------------------------------------

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """LFS objects from the media host (it may redirect to signed object storage: the
        target is reused for later chunks), other files from the raw host; no credential."""
        addr = rf.address
        lfs = bool(rf.meta.get("lfs"))
        url = file_url(self.media if lfs else self.raw, addr, addr.revision or "", addr.path)
        async for block in self.reader.read(
            url, start, end, translate=host_error, what=str(addr), key=(self.name, rf.identity) if lfs else None
        ):
            yield block

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        """Public repositories: nothing to check."""


def _add_items(
    items: list[Any], prefix: str, blobs: list[_Blob], dirs: dict[str, str], what: str
) -> list[tuple[str, str]]:
    """Collect the files and folders of one listing; returns its sub-folders (sha, prefix)."""
    subtrees: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        path, kind, sha, mode = prefix + str(item.get("path", "")), item.get("type"), item.get("sha"), item.get("mode")
        try:
            check_path(path)
        except InvalidAddress as exc:
            log.warning("%s: dropped %r from GitHub's tree: %s", what, path[:200], exc)
            continue
        if not is_hex(sha, 40):
            log.warning("%s: dropped %r from GitHub's tree: no git object id", what, path[:200])
        elif kind == "tree":
            dirs[path] = sha
            subtrees.append((sha, path + "/"))
        elif kind == "blob" and mode in ("100644", "100755") and _is_size(item.get("size")):
            blobs.append(_Blob(path, sha, item["size"]))
        else:  # a symbolic link (120000), a submodule (commit), or an entry without a size
            log.info("%s: left out %r (%s %s)", what, path[:200], kind, mode)
    return subtrees


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(blob: _Blob, data: bytes | None) -> TreeEntry:
    """A file's tree entry: the object an LFS pointer names, else the git blob itself."""
    meta: dict[str, Any] = {"oid": blob.sha}
    pointer = parse_pointer(data) if data is not None else None
    if pointer is None:
        return TreeEntry.of_hash(blob.size, ExpectedHash("gitsha1", blob.sha), meta)
    oid, size = pointer
    meta["lfs"] = {"oid": oid, "size": size, "pointerSize": blob.size}
    return TreeEntry.of_hash(size, ExpectedHash("sha256", oid), meta)


def _build(ctx: BuildContext) -> Source:
    return GitHub(ctx)


SPEC = SourceSpec(
    info=SourceInfo(
        "github",
        default_ref=DEFAULT_BRANCH,
        refs_move=True,
        revision_id=r"[0-9a-f]{40}",
        summary="public GitHub repositories (Git LFS files included): github/<owner>/<repo>[@<ref>]",
    ),
    settings=(
        Setting("github_api_url", API_URL, "GitHub REST API (refs and trees).", env="HOARD_GITHUB_API_URL"),
        Setting("github_url", RAW_URL, "GitHub raw host (files as git stores them; ONNX hub manifests).",
                env="HOARD_GITHUB_URL"),
        Setting("github_media_url", MEDIA_URL, "GitHub LFS media host (LFS objects by path; ONNX hub models).",
                env="HOARD_GITHUB_MEDIA_URL"),
    ),
    token_env=TOKEN_ENV,
    build=_build,
    order=30,
)
