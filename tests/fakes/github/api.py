"""The REST API origin (api.github.com): the repository, commit, tree, blob, branch and tag
reads a model source needs, with GitHub's primary rate limit.

As the real API does (docs.github.com/rest):

* ``GET /repos/{o}/{r}`` (``default_branch``...); ``/commits/{ref}`` for a branch, tag, full sha
  or sha prefix, 422 "No commit found for SHA: {ref}" for a ref that names nothing, and the
  bare sha as text for ``Accept: application/vnd.github.sha``; ``/git/trees/{tree-ish}`` where
  the mere presence of ``recursive`` (any value) recurses and more than ``tree_limit``
  entries are cut with ``"truncated": true``; ``/git/blobs/{sha}`` (base64);
  ``/branches``, ``/branches/{name}`` and ``/tags`` paged by ``per_page`` (default 30, at most
  100) and ``page``, with ``Link`` rels, an empty list past the end; ``/zipball/{ref}`` 302s
  to codeload; unknown routes and repos answer 404 ``{"message": "Not Found", ...}``.
* Rate limit: ``rate_limit`` requests per hour per anonymous client address,
  ``token_rate_limit`` per valid token (``Authorization: token X`` or ``Bearer X``); every
  answer carries ``X-RateLimit-Limit/Remaining/Reset/Used/Resource``; once spent: 403 (or
  ``rate_limit_status``, e.g. 429) "API rate limit exceeded for ...", remaining 0. An unknown
  token is 401 "Bad credentials" (not counted). ``GET /rate_limit`` is free, and so is a
  conditional request answered 304 (JSON answers carry a weak ``ETag``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from aiohttp import web

from ..wire import REC
from .git import Commit, GitRepo, walk
from .state import GitHubState, segments

__all__ = ["ApiRoutes"]

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
WINDOW = 3600


@dataclass
class Bucket:
    limit: int
    reset: int
    used: int = 0


class ApiRoutes(GitHubState):
    """The API origin's routes (a base of `FakeGitHub`, which sets these attributes)."""

    rate_limit: int
    token_rate_limit: int
    rate_limit_status: int
    tree_limit: int
    tokens: set[str]
    _buckets: dict[tuple[str, str], Bucket]

    def reset_rate_limits(self) -> None:
        """Forget every client's usage (a new hour, without waiting)."""
        self._buckets.clear()

    def _who(self, request: web.Request) -> tuple[str, str] | None:
        """``("token", t)``, ``("anon", address)``, or None for bad credentials."""
        auth = request.headers.get("Authorization")
        if auth is None:
            return "anon", request.remote or "127.0.0.1"
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip() in self.tokens:
            return "token", value.strip()
        return None

    def _bucket(self, who: tuple[str, str]) -> Bucket:
        now = int(self._now())
        bucket = self._buckets.get(who)
        if bucket is None or now >= bucket.reset:
            limit = self.token_rate_limit if who[0] == "token" else self.rate_limit
            bucket = self._buckets[who] = Bucket(limit, now + WINDOW)
        return bucket

    @staticmethod
    def _rate_headers(bucket: Bucket) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(max(0, bucket.limit - bucket.used)),
            "X-RateLimit-Reset": str(bucket.reset),
            "X-RateLimit-Used": str(bucket.used),
            "X-RateLimit-Resource": "core",
        }

    async def _api_route(self, request: web.Request) -> web.StreamResponse:
        parts = segments(request)
        who = self._who(request)
        base = {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": hashlib.sha1(str(id(request[REC])).encode()).hexdigest()[:20].upper(),
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP,Accept-Encoding, Accept, X-Requested-With",
            "Access-Control-Expose-Headers": "ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, "
            "X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset",
        }
        with self._lock:
            bucket = self._bucket(who if who is not None else ("anon", request.remote or "127.0.0.1"))
            snapshot = Bucket(bucket.limit, bucket.reset, bucket.used)
        if who is None:
            body = {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
            return await self._api_json(request, 401, body, {**base, **self._rate_headers(snapshot)})
        if parts == ["rate_limit"]:
            core = {"limit": snapshot.limit, "used": snapshot.used, "remaining": snapshot.limit - snapshot.used,
                    "reset": snapshot.reset}  # fmt: skip
            out = {"resources": {"core": core}, "rate": core}
            return await self._api_json(request, 200, out, {**base, **self._rate_headers(snapshot)})
        if snapshot.used >= snapshot.limit:
            holder = f"user ID {self._user_id(who[1])}" if who[0] == "token" else who[1]
            message = f"API rate limit exceeded for {holder}."
            if who[0] == "anon":
                message += (" (But here's the good news: Authenticated requests get a higher rate limit. "
                            "Check out the documentation for more details.)")  # fmt: skip
            body = {"message": message, "documentation_url": RATE_DOCS}
            status = self.rate_limit_status
            return await self._api_json(request, status, body, {**base, **self._rate_headers(snapshot)})
        status, payload, extra = self._answer(request, parts)
        text = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        etag = extra.pop("ETag", None) or f'W/"{hashlib.sha256(text).hexdigest()}"'
        inm = request.headers.get("If-None-Match")
        not_modified = status == 200 and inm is not None and inm.removeprefix("W/") == etag.removeprefix("W/")
        with self._lock:
            if not not_modified:
                bucket.used += 1
            headers = {**base, **self._rate_headers(bucket), **extra}
        headers["Cache-Control"] = ("private" if who[0] == "token" else "public") + ", max-age=60, s-maxage=60"
        if status == 200:
            headers["ETag"] = etag
        if not_modified:
            return await self.send(request, 304, headers)
        if status in (301, 302):
            return await self.send(request, status, headers)
        return await self._api_json(request, status, text, headers)

    async def _api_json(
        self, request: web.Request, status: int, body: Any, headers: dict[str, str]
    ) -> web.StreamResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return await self.send(request, status, headers, data)

    def _user_id(self, token: str) -> int:
        return int(hashlib.sha1(token.encode()).hexdigest()[:7], 16)

    # -- the answers ---------------------------------------------------------------------

    def _answer(self, request: web.Request, parts: list[str]) -> tuple[int, Any, dict[str, str]]:
        not_found: tuple[int, Any, dict[str, str]] = (
            404,
            {"message": "Not Found", "documentation_url": DOCS, "status": "404"},
            {},
        )
        if len(parts) < 3 or parts[0] != "repos" or request.method not in ("GET", "HEAD"):
            return not_found
        with self._lock:
            repo = self._repo(parts[1], parts[2])
            if repo is None:
                return not_found
            rest = parts[3:]
            query = {k: v[-1] for k, v in parse_qs(request.query_string, keep_blank_values=True).items()}
            if not rest:
                return 200, self._repo_json(repo), {}
            if rest[0] == "commits" and len(rest) >= 2:
                ref = "/".join(rest[1:])
                commit = repo.resolve(ref)
                if commit is None:
                    msg = {"message": f"No commit found for SHA: {ref}", "documentation_url": DOCS, "status": "422"}
                    return 422, msg, {}
                if "application/vnd.github" in (accept := request.headers.get("Accept", "")) and ".sha" in accept:
                    kind = "application/vnd.github.sha; charset=utf-8"
                    return 200, commit.sha.encode(), {"Content-Type": kind, "ETag": f'"{commit.sha}"'}
                return 200, self._commit_json(repo, commit), {}
            if rest[:2] == ["git", "trees"] and len(rest) >= 3:
                return self._tree_answer(repo, "/".join(rest[2:]), "recursive" in query) or not_found
            if rest[:2] == ["git", "blobs"] and len(rest) == 3:
                return self._blob_answer(repo, rest[2]) or not_found
            if rest[0] in ("branches", "tags") and len(rest) == 1:
                return self._list_refs(repo, rest[0], query)
            if rest[0] == "branches" and len(rest) >= 2:
                name = "/".join(rest[1:])
                if name not in repo.branches:
                    return 404, {"message": "Branch not found", "documentation_url": DOCS, "status": "404"}, {}
                commit = repo.commits[repo.branches[name]]
                return 200, {"name": name, "commit": self._commit_json(repo, commit), "protected": False}, {}
            if rest[0] == "zipball" and len(rest) >= 2:
                ref = "/".join(rest[1:])
                commit = repo.resolve(ref)
                if commit is None:
                    return not_found
                return 302, b"", {"Location": self._codeload_location(repo, ref, commit)}
        return not_found

    def _repo_json(self, repo: GitRepo) -> dict[str, Any]:
        api, html = f"{self.api_url}/repos/{repo.full_name}", f"{self.web_url}/{repo.full_name}"
        owner = {"login": repo.owner, "id": repo.id * 7, "type": "User", "url": f"{self.api_url}/users/{repo.owner}"}
        return {
            "id": repo.id, "node_id": f"R_{repo.id:08d}", "name": repo.name, "full_name": repo.full_name,
            "private": False, "owner": owner, "html_url": html, "description": None, "fork": False, "url": api,
            "default_branch": repo.default_branch, "visibility": "public", "archived": False, "disabled": False,
            "trees_url": api + "/git/trees{/sha}", "commits_url": api + "/commits{/sha}",
            "archive_url": api + "/{archive_format}{/ref}",
        }  # fmt: skip

    def _commit_json(self, repo: GitRepo, c: Commit) -> dict[str, Any]:
        api, html = f"{self.api_url}/repos/{repo.full_name}", f"{self.web_url}/{repo.full_name}"
        person = {"name": c.author[0], "email": c.author[1], "date": c.date}
        before = repo.commits[c.parents[0]].files if c.parents else {}
        files = []
        for path in sorted(set(before) | set(c.files)):
            old, new = before.get(path), c.files.get(path)
            if old is not None and new is not None and old.sha == new.sha:
                continue
            status = "added" if old is None else "removed" if new is None else "modified"
            sha = (new or old).sha  # type: ignore[union-attr]
            files.append({"sha": sha, "filename": path, "status": status,
                          "raw_url": f"{html}/raw/{c.sha}/{quote(path)}"})  # fmt: skip
        return {
            "sha": c.sha,
            "node_id": f"C_{c.sha[:20]}",
            "commit": {
                "author": person,
                "committer": person,
                "message": c.message,
                "tree": {"sha": c.tree, "url": f"{api}/git/trees/{c.tree}"},
                "url": f"{api}/git/commits/{c.sha}",
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
            },
            "url": f"{api}/commits/{c.sha}",
            "html_url": f"{html}/commit/{c.sha}",
            "comments_url": f"{api}/commits/{c.sha}/comments",
            "author": None,
            "committer": None,
            "parents": [{"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/commit/{p}"} for p in c.parents],
            "files": files,
        }

    def _tree_answer(self, repo: GitRepo, ish: str, recursive: bool) -> tuple[int, Any, dict[str, str]] | None:
        sha = ish if ish in repo.trees else None
        if sha is None:
            commit = repo.resolve(ish)
            sha = commit.tree if commit is not None else None
        if sha is None:
            return None
        api = f"{self.api_url}/repos/{repo.full_name}/git"
        entries = []
        for path, e in walk(repo.trees, sha, recursive):
            item: dict[str, Any] = {"path": path, "mode": e.mode, "type": e.kind, "sha": e.sha}
            if e.blob is not None:
                item["size"] = e.blob.stored.size
            item["url"] = f"{api}/{e.kind}s/{e.sha}"
            entries.append(item)
        truncated = len(entries) > self.tree_limit
        body = {"sha": sha, "url": f"{api}/trees/{sha}", "tree": entries[: self.tree_limit], "truncated": truncated}
        return 200, body, {}

    def _blob_answer(self, repo: GitRepo, sha: str) -> tuple[int, Any, dict[str, str]] | None:
        for commit in repo.commits.values():
            for blob in commit.files.values():
                if blob.sha == sha:
                    raw = base64.encodebytes(blob.stored.read()).decode()
                    url = f"{self.api_url}/repos/{repo.full_name}/git/blobs/{sha}"
                    body = {"sha": sha, "node_id": f"B_{sha[:20]}", "size": blob.stored.size, "url": url,
                            "content": raw, "encoding": "base64"}  # fmt: skip
                    return 200, body, {}
        return None

    def _list_refs(self, repo: GitRepo, kind: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            per_page, page = 30, 1
        api = f"{self.api_url}/repos/{repo.full_name}"
        if kind == "branches":
            names = sorted(repo.branches)
            refs = repo.branches
        else:
            names = sorted(repo.tags, reverse=True)
            refs = repo.tags
        chunk = names[(page - 1) * per_page : page * per_page]
        items: list[dict[str, Any]] = []
        for name in chunk:
            commit = {"sha": refs[name], "url": f"{api}/commits/{refs[name]}"}
            if kind == "branches":
                items.append({"name": name, "commit": commit, "protected": False})
            else:
                items.append({"name": name, "zipball_url": f"{api}/zipball/refs/tags/{name}",
                              "tarball_url": f"{api}/tarball/refs/tags/{name}", "commit": commit,
                              "node_id": f"REF_{hashlib.sha1(name.encode()).hexdigest()[:12]}"})  # fmt: skip
        last = max(1, -(-len(names) // per_page))
        links = []
        url = f"{api}/{kind}?per_page={per_page}&page="
        if page < last:
            links += [f'<{url}{page + 1}>; rel="next"', f'<{url}{last}>; rel="last"']
        if page > 1:
            links += [f'<{url}{min(page - 1, last)}>; rel="prev"', f'<{url}1>; rel="first"']
        return 200, items, ({"Link": ", ".join(links)} if links else {})
