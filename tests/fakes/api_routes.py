"""The hub origin's entry point and its ``/api`` routes.

`ApiRoutes._hub_route` sends ``/api/...`` here and everything else to the file routes.
Answers follow huggingface.co: repo info (``siblings``, ``expand=``, ``blobs=``),
``tree`` listings paginated by cursor (absolute ``Link: <...>; rel="next"``, smaller pages
with ``expand=true``), ``paths-info``, ``refs``, ``commits`` paginated by page number with
``X-Total-Count``, ``whoami-v2``; a renamed or miscased repo 307s to its canonical name;
``xet-read-token`` answers 404 (Xet is advertised but not implemented).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from aiohttp import web

from .file_routes import FileRoutes, bearer
from .model import SINGULAR, Commit, Repo

__all__ = ["ApiRoutes"]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


class ApiRoutes(FileRoutes):
    """Routing of the hub origin and its ``/api`` answers (a base of `FakeHub`, which sets
    the attributes below in its ``__init__``)."""

    page_size: int
    expand_page_size: int

    async def _hub_route(self, request: web.Request) -> web.StreamResponse:
        # Split the RAW path: %2F inside a segment (refs%2Fpr%2F1, sub%2Fdir) stays in it.
        raw = request.raw_path.partition("?")[0].split("/")[1:]
        segs = [unquote(s) for s in raw]
        if segs[:1] == ["api"]:
            return await self._api(request, raw[1:], segs[1:])
        return await self._resolve(request, raw, segs)

    # -- /api ----------------------------------------------------------------------------

    async def _api(self, request: web.Request, raw: list[str], segs: list[str]) -> web.StreamResponse:
        head = segs[0] if segs else ""
        if head == "resolve-cache":
            return await self._resolve_cache(request, segs[1:])
        if head == "whoami-v2":
            token = bearer(request)
            if token is None or (self.tokens is not None and token not in self.tokens):
                message = "Invalid credentials in Authorization header" if token else "Invalid username or password."
                return await self._error(request, 401, None, message, api=True)
            return await self._json(request, {"type": "user", "name": "fake-user", "auth": {"type": "access_token"}})
        if head not in SINGULAR or len(segs) < 2:
            return await self._error(request, 404, None, "Sorry, we can't find the page you are looking for.", api=True)
        repo_type = SINGULAR[head]
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
