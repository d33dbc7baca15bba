"""The download routes: ``/{repo}/resolve/{rev}/{path}``, its ``/api/resolve-cache/...``
target, and the CDN origin, under the Hub's access rules.

As on huggingface.co: a non-LFS file on a branch or tag 307s to a *relative*
``/api/resolve-cache`` URL and is served directly on a 40-hex commit; an LFS file 302s to an
*absolute* URL on the CDN origin, HMAC-signed and expiring, with ``X-Linked-Size``/
``X-Linked-Etag`` (and, with Xet on, ``X-Xet-Hash`` and ``Link`` rels). The CDN checks
signature and expiry, ignores ``Authorization`` and sends the Xet hash (or an S3 etag) as
``ETag``. Unknown or private repos answer a bare 401 to anonymous callers, 404 to token
holders; gated repos 401/403 ``GatedRepo`` on files.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

from .model import PLURAL, SINGULAR, Commit, FileEntry, MiB, Repo
from .replies import Replies
from .repos import Repositories

__all__ = ["FileRoutes", "bearer"]

_Denial = tuple[int, str | None, str]  # status, X-Error-Code, X-Error-Message
_TEXT_SUFFIXES = frozenset(
    {".json", ".txt", ".md", ".py", ".jinja", ".yaml", ".yml", ".csv", ".tsv", ".cfg", ".ini", ".toml", ".html"}
)


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


class FileRoutes(Repositories, Replies):
    """``/resolve``, ``/api/resolve-cache`` and the CDN (a base of `FakeHub`, which sets the
    attributes below in its ``__init__``)."""

    xet: bool
    url_ttl: float
    tokens: set[str] | None
    url: str
    cdn_url: str
    _secret: bytes

    def _access_error(self, request: web.Request, repo: Repo | None, *, files: bool) -> _Denial | None:
        """The Hub's access rules: (status, X-Error-Code, message) to answer, or None."""
        token = bearer(request)
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

    # -- hub origin: /resolve ------------------------------------------------------------

    async def _resolve(self, request: web.Request, raw: list[str], segs: list[str]) -> web.StreamResponse:
        repo_type = SINGULAR[segs[0]] if segs[0] in ("datasets", "spaces") else "model"
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
        cache = f"/api/resolve-cache/{PLURAL[repo_type]}/{repo.repo_id}/{commit.sha}/{quote(path)}"
        origin_key = quote(request.raw_path.partition("?")[0], safe="")
        location = f"{cache}?{origin_key}=&etag=%22{entry.oid}%22"
        headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes", "ETag": f'"{entry.oid}"'}
        return await self._redirect(request, 307, location, headers)

    async def _resolve_cache(self, request: web.Request, segs: list[str]) -> web.StreamResponse:
        """``/api/resolve-cache/{type}s/{ns}/{name}/{commit}/{path}``: the 307 target."""
        if len(segs) < 5 or segs[0] not in SINGULAR or request.method not in ("GET", "HEAD"):
            return await self._error(request, 404, None, "Not Found", api=True)
        repo, _ = self._lookup(SINGULAR[segs[0]], "/".join(segs[1:3]))
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
            plural = PLURAL[repo.repo_type]
            headers["X-Xet-Hash"] = entry.xet_hash
            headers["Link"] = (
                f'<{self.url}/api/{plural}/{repo.repo_id}/xet-read-token/{commit.sha}>; rel="xet-auth", '
                f'<{self.cdn_url}/cas/reconstruction/{entry.xet_hash}>; rel="xet-reconstruction-info"'
            )
        return await self._redirect(request, 302, f"{self.cdn_url}{path}?{urlencode(params)}", headers)

    def _sign(self, path: str, expires: str, disposition: str) -> str:
        message = f"{path}\n{expires}\n{disposition}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- CDN origin ----------------------------------------------------------------------

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
