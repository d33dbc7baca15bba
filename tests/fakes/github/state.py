"""What every GitHub origin of `FakeGitHub` shares: the repositories (by case-insensitive
``owner/name``), the origins' URLs, and how a path's segments and a ref map onto them."""

from __future__ import annotations

from urllib.parse import quote, unquote

from aiohttp import web

from .git import Commit, GitRepo
from .servers import FakeServers

__all__ = ["GitHubState", "segments"]


def segments(request: web.Request) -> list[str]:
    """The percent-decoded path segments (empty ones dropped)."""
    return [unquote(s) for s in request.raw_path.partition("?")[0].split("/") if s]


class GitHubState(FakeServers):
    """The base of the route mixins; `FakeGitHub` fills ``_repos``."""

    _repos: dict[str, GitRepo]

    @property
    def api_url(self) -> str:
        """Stands for https://api.github.com."""
        return self.origin_url("api")

    @property
    def raw_url(self) -> str:
        """Stands for https://raw.githubusercontent.com."""
        return self.origin_url("raw")

    @property
    def media_url(self) -> str:
        """Stands for https://media.githubusercontent.com/media (the ``/media`` included)."""
        return self.origin_url("media") + "/media"

    @property
    def web_url(self) -> str:
        """Stands for https://github.com."""
        return self.origin_url("web")

    @property
    def codeload_url(self) -> str:
        """Stands for https://codeload.github.com."""
        return self.origin_url("codeload")

    def _repo(self, owner: str, name: str) -> GitRepo | None:
        return self._repos.get(f"{owner}/{name}".lower())

    def _repo_by_id(self, repo_id: int) -> GitRepo | None:
        with self._lock:
            return next((r for r in self._repos.values() if r.id == repo_id), None)

    def _codeload_location(self, repo: GitRepo, ref: str, commit: Commit) -> str:
        """Where an archive request for ``ref`` is sent (``refs/heads/X``, ``refs/tags/X``, sha)."""
        if ref.startswith("refs/"):
            tail = ref
        elif ref in repo.branches:
            tail = f"refs/heads/{ref}"
        elif ref in repo.tags:
            tail = f"refs/tags/{ref}"
        else:
            tail = commit.sha
        return f"{self.codeload_url}/{repo.full_name}/legacy.zip/{quote(tail)}"
