"""`FakeGitHub`: api.github.com, raw.githubusercontent.com, media.githubusercontent.com,
github.com, codeload.github.com and the LFS object storage, each a distinct origin.

Repositories are seeded with `add_repo` (files as bytes, str or `Content`; paths matching
the LFS patterns are stored as LFS pointers, their objects pushed to the LFS store, and a
``.gitattributes`` is written), then moved with `commit` (a new commit on a branch),
`tag` and `branch`. Switches: `wrong_bytes` (raw/media serve other bytes), `drop_lfs_object`
(a pointer whose object was never pushed), `reset_rate_limits`, `expire_signed_urls`, plus
the constructor's ``rate_limit``/``token_rate_limit``/``rate_limit_status``/``tokens``,
``raw_gzip``, ``raw_cache``, ``media_redirect``, ``ambiguous_300``, ``archive_lfs``, ``tree_limit``, and
the generic `FakeServers.fault` switches. See `api`, `hosts` and `web` for each origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from ..content import Content
from .api import ApiRoutes
from .git import DEFAULT_LFS_PATTERNS, Blob, Commit, GitRepo
from .hosts import HostRoutes, WrongBytes
from .servers import Route
from .web import WebRoutes

__all__ = ["FakeGitHub", "FileSpec"]

FileSpec = bytes | str | Content | Blob
AUTHOR = ("Fake Author", "author@example.com")
EPOCH = 1_700_000_000


class FakeGitHub(ApiRoutes, HostRoutes, WebRoutes):
    """``with FakeGitHub(tokens={"t"}) as gh: gh.add_repo("o/r", {...})``."""

    ORIGINS = ("api", "raw", "media", "web", "codeload", "objects")
    THREAD_NAME = "fake-github"

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (),
        rate_limit: int = 60,
        token_rate_limit: int = 5000,
        rate_limit_status: int = 403,
        tree_limit: int = 100_000,
        raw_gzip: bool = True,
        raw_cache: bool = False,
        media_redirect: bool = False,
        ambiguous_300: bool = False,
        archive_lfs: bool = False,
        url_ttl: float = 300.0,
        host: str = "127.0.0.1",
        block_size: int = 64 * 1024,
    ) -> None:
        super().__init__(host=host, block_size=block_size)
        self.tokens = set(tokens)
        self.rate_limit = rate_limit
        self.token_rate_limit = token_rate_limit
        self.rate_limit_status = rate_limit_status
        self.tree_limit = tree_limit
        self.raw_gzip = raw_gzip
        self.raw_cache = raw_cache
        self._raw_cache = {}
        self.media_redirect = media_redirect
        self.ambiguous_300 = ambiguous_300
        self.archive_lfs = archive_lfs
        self.url_ttl = url_ttl
        self._buckets = {}
        self._wrong: list[WrongBytes] = []
        self._md5: dict[str, str] = {}
        self._secret = hashlib.sha256(b"fake-github-objects-signing-key").digest()
        self._repos: dict[str, GitRepo] = {}
        self._clock = 0

    def route(self, origin: str) -> Route:
        return {
            "api": self._api_route,
            "raw": self._raw_route,
            "media": self._media_route,
            "web": self._web_route,
            "codeload": self._codeload_route,
            "objects": self._objects_route,
        }[origin]

    def raw_file_url(self, repo: str, ref: str, path: str) -> str:
        return f"{self.raw_url}/{repo}/{ref}/{quote(path)}"

    def media_file_url(self, repo: str, ref: str, path: str) -> str:
        return f"{self.media_url}/{repo}/{ref}/{quote(path)}"

    # -- repository state ----------------------------------------------------------------

    def repo(self, full_name: str) -> GitRepo:
        with self._lock:
            return self._repos[full_name.lower()]

    def head(self, full_name: str, ref: str | None = None) -> Commit:
        """The commit ``ref`` (default: the default branch) names now."""
        with self._lock:
            repo = self.repo(full_name)
            commit = repo.resolve(ref or repo.default_branch)
        assert commit is not None, f"{full_name}: no ref {ref}"
        return commit

    def add_repo(
        self,
        full_name: str,
        files: Mapping[str, FileSpec],
        *,
        default_branch: str = "main",
        branches: Iterable[str] = (),
        tags: Iterable[str] = (),
        lfs: Iterable[str] = DEFAULT_LFS_PATTERNS,
        message: str = "Initial commit",
    ) -> GitRepo:
        """A repository with one commit on ``default_branch`` (and on every name in
        ``branches``/``tags``). Returns it; `head` gives its commit."""
        owner, name = full_name.split("/")
        with self._lock:
            repo = GitRepo(owner, name, 1000 + len(self._repos), default_branch, tuple(lfs))
            self._repos[full_name.lower()] = repo
            sha = self._new_commit(repo, {}, files, (), message)
            repo.branches[default_branch] = sha
            for b in branches:
                repo.branches[b] = sha
            for t in tags:
                repo.tags[t] = sha
            return repo

    def commit(
        self,
        full_name: str,
        changes: Mapping[str, FileSpec | None],
        *,
        branch: str | None = None,
        message: str = "Update",
    ) -> str:
        """A new commit on ``branch`` (default branch): ``changes`` adds or replaces files
        (``None`` deletes one). Moves the branch; returns the new sha."""
        with self._lock:
            repo = self.repo(full_name)
            branch = branch or repo.default_branch
            parent = repo.branches.get(branch)
            base = repo.commits[parent].files if parent else {}
            sha = self._new_commit(repo, base, changes, (parent,) if parent else (), message)
            repo.branches[branch] = sha
            return sha

    def tag(self, full_name: str, name: str, ref: str | None = None) -> str:
        with self._lock:
            sha = self.head(full_name, ref).sha
            self.repo(full_name).tags[name] = sha
            return sha

    def branch(self, full_name: str, name: str, ref: str | None = None) -> str:
        with self._lock:
            sha = self.head(full_name, ref).sha
            self.repo(full_name).branches[name] = sha
            return sha

    def _new_commit(
        self,
        repo: GitRepo,
        base: Mapping[str, Blob],
        changes: Mapping[str, FileSpec | None],
        parents: tuple[str, ...],
        message: str,
    ) -> str:
        files = dict(base)
        for path, spec in changes.items():
            if spec is None:
                files.pop(path, None)
            else:
                files[path] = spec if isinstance(spec, Blob) else Blob(Content.of(spec), repo.is_lfs(path))
        if any(b.lfs for b in files.values()) and ".gitattributes" not in files:
            lines = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in repo.lfs_patterns)
            files[".gitattributes"] = Blob(Content.of(lines))
        for blob in files.values():
            if blob.lfs:
                repo.lfs_objects.setdefault(blob.content.sha256, blob.content)
        self._clock += 1
        commit, trees = Commit.make(files, parents, message, EPOCH + 3600 * self._clock, AUTHOR)
        repo.commits[commit.sha] = commit
        repo.trees.update(trees)
        return commit.sha

    # -- switches ------------------------------------------------------------------------

    def wrong_bytes(self, full_name: str, path: str | None = None, *, host: str | None = None) -> WrongBytes:
        """Make ``host`` ("raw", "media" — which covers the objects origin — or None for
        both) serve bytes of the right size that match neither blob sha nor LFS oid."""
        switch = WrongBytes(full_name, path, host)
        with self._lock:
            self._wrong.append(switch)
        return switch

    def clear_wrong_bytes(self) -> None:
        with self._lock:
            self._wrong.clear()

    def drop_lfs_object(self, full_name: str, oid: str) -> None:
        """Remove an object from the LFS store: the pointer stays in git, media answers 404."""
        with self._lock:
            self.repo(full_name).lfs_objects.pop(oid, None)

    def expire_signed_urls(self) -> None:
        """Every objects URL issued so far is now expired (403); new ones are valid."""
        with self._lock:
            self.time_shift += self.url_ttl + 1
