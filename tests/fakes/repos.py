"""The fake's repository state, and the API tests use to shape it.

`Repositories` (a base of `FakeHub`) keeps every `Repo` by (type, id), the names that
redirect to one (renames, legacy one-segment ids), the CDN objects (LFS bytes by sha256 and
by Xet hash) and a logical clock for dates. A new repo starts, as on the Hub, with an
"initial commit" holding `.gitattributes`; commit shas derive from type, id, parent, title
and tree, so the same history always gets the same shas. `_lookup` resolves a name the way
the Hub does: canonical, renamed (following chains), or differing only in case.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from .content import Content
from .model import DEFAULT_LFS_PATTERNS, Commit, FileEntry, FileSpec, Gated, Repo, RepoType

__all__ = ["Repositories"]

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Repositories:
    """Repository state guarded by ``_lock`` (a base of `FakeHub`, which sets the attributes
    below in its ``__init__``)."""

    lfs_threshold: int
    _lock: threading.RLock
    _repos: dict[tuple[str, str], Repo]
    _aliases: dict[tuple[str, str], str]
    _objects: dict[str, Content]
    _clock: int

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
