"""The file hosts: raw.githubusercontent.com, media.githubusercontent.com and the LFS object
storage behind it.

* raw — ``GET /{o}/{r}/{ref}/{path}`` (ref: branch, tag, ``refs/heads/X``, full or short sha;
  a ref may hold slashes) answers the file *as stored in git*: for an LFS-tracked file that
  is the pointer text, never the object. ``Content-Type: text/plain; charset=utf-8`` whatever
  the file, a strong ``ETag`` (304 on ``If-None-Match``), ``Cache-Control: max-age=300``,
  ranges, and gzip for a client that accepts it on whole-body GETs (a Fastly edge does;
  switch ``raw_gzip``). Anything unknown: 404 with the text ``404: Not Found``. With
  ``raw_cache`` the edge keeps serving what a URL first answered (so a branch URL lags a
  moved branch, as for up to five minutes on the live host) until `purge_raw_cache`.
* media — ``GET /media/{o}/{r}/{ref}/{path}`` answers the LFS *object* for an LFS file (404
  if the LFS store does not hold it) and the plain bytes for any other file, with ranges.
  The live host answers the bytes itself; with ``media_redirect`` it 302s to a signed,
  expiring URL on the objects origin instead (as github.com's ``/raw/`` and the LFS batch
  API do), so a client must follow a cross-origin redirect.
* objects — ``GET /github-production-media/{oid}?X-Amz-...`` checks the signature and the
  expiry (403 S3 XML errors otherwise) and serves the object; it ignores ``Authorization``.

`WrongBytes` switches make raw/media/objects serve other bytes of the same size, so that
what arrives matches neither the tree's blob sha nor the pointer's oid.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from aiohttp import web

from ..content import Content
from .git import Blob, GitRepo
from .state import GitHubState, segments

__all__ = ["HostRoutes", "WrongBytes"]

_S3_ERROR = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{msg}</Message></Error>'


@dataclass
class WrongBytes:
    """Serve wrong bytes for ``repo`` (``path`` None: every file) on ``host`` (None: raw and
    media/objects). ``active = False`` (or `FakeGitHub.clear_wrong_bytes`) turns it off."""

    repo: str
    path: str | None
    host: str | None
    active: bool = True
    hits: int = 0


def wrong_content(content: Content) -> Content:
    return Content(b"wrong-bytes\0" + content.sha256.encode(), content.size)


class HostRoutes(GitHubState):
    """Routes of the raw, media and objects origins (a base of `FakeGitHub`)."""

    raw_gzip: bool
    raw_cache: bool
    _raw_cache: dict[str, Content]
    media_redirect: bool
    url_ttl: float
    _wrong: list[WrongBytes]
    _secret: bytes
    _md5: dict[str, str]

    def _is_wrong(self, repo: GitRepo, path: str | None, host: str, oid: str | None = None) -> bool:
        with self._lock:
            for w in self._wrong:
                if not w.active or w.repo.lower() != repo.full_name.lower() or w.host not in (None, host):
                    continue
                if w.path is None or w.path == path or (oid is not None and self._path_has_oid(repo, w.path, oid)):
                    w.hits += 1
                    return True
        return False

    @staticmethod
    def _path_has_oid(repo: GitRepo, path: str, oid: str) -> bool:
        return any(
            (b := c.files.get(path)) is not None and b.lfs and b.content.sha256 == oid for c in repo.commits.values()
        )

    def _locate(self, parts: list[str]) -> tuple[GitRepo, str, Blob] | None:
        """``[o, r, ref..., path...]`` -> (repo, path, blob) or None."""
        if len(parts) < 4:
            return None
        with self._lock:
            repo = self._repo(parts[0], parts[1])
            split = repo.split_ref(parts[2:]) if repo is not None else None
            if repo is None or split is None:
                return None
            path = "/".join(split[2])
            blob = split[1].files.get(path)
        return None if blob is None else (repo, path, blob)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return await self.send(request, 404, {"Content-Type": "text/plain; charset=utf-8"}, b"404: Not Found")

    def _edge_headers(self) -> dict[str, str]:
        now = self._now()
        return {
            "Cache-Control": "max-age=300",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            "Strict-Transport-Security": "max-age=31536000",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "deny",
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
            "Via": "1.1 varnish",
            "X-Cache": "MISS",
            "Vary": "Authorization,Accept-Encoding,Origin",
            "Expires": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 300)),
            "Source-Age": "0",
        }

    async def _raw_route(self, request: web.Request) -> web.StreamResponse:
        key = request.raw_path.partition("?")[0]
        with self._lock:
            cached = self._raw_cache.get(key) if self.raw_cache else None
        headers = {"Content-Type": "text/plain; charset=utf-8", **self._edge_headers()}
        if cached is not None:  # the edge still holds what this URL meant when first asked
            headers.update({"X-Cache": "HIT", "Age": "1"})
            return await self.serve(request, cached, headers, etag=f'"{cached.sha256}"', gzip_ok=self.raw_gzip)
        found = self._locate(segments(request)) if request.method in ("GET", "HEAD") else None
        if found is None:
            return await self._not_found(request)
        repo, path, blob = found
        content = blob.stored
        if self._is_wrong(repo, path, "raw"):
            content = wrong_content(content)
        if self.raw_cache:
            with self._lock:
                self._raw_cache[key] = content
        return await self.serve(request, content, headers, etag=f'"{content.sha256}"', gzip_ok=self.raw_gzip)

    def purge_raw_cache(self) -> None:
        """Forget what the raw edge cached (its ``max-age=300`` has run out)."""
        with self._lock:
            self._raw_cache.clear()

    async def _media_route(self, request: web.Request) -> web.StreamResponse:
        parts = segments(request)
        found = self._locate(parts[1:]) if parts[:1] == ["media"] and request.method in ("GET", "HEAD") else None
        if found is None:
            return await self._not_found(request)
        repo, path, blob = found
        if not blob.lfs:
            content = wrong_content(blob.content) if self._is_wrong(repo, path, "media") else blob.content
            return await self._object_reply(request, content)
        oid = blob.content.sha256
        with self._lock:
            stored = repo.lfs_objects.get(oid)
        if stored is None:
            return await self._not_found(request)
        content = stored
        if self.media_redirect:
            return await self.send_redirect(request, 302, self.signed_object_url(repo, oid))
        if self._is_wrong(repo, path, "media"):
            content = wrong_content(content)
        return await self._object_reply(request, content)

    async def _object_reply(self, request: web.Request, content: Content) -> web.StreamResponse:
        headers = {"Content-Type": "application/octet-stream", **self._edge_headers()}
        return await self.serve(request, content, headers, etag=f'"{self._md5_of(content)}"')

    def _md5_of(self, content: Content) -> str:
        """An S3-style ETag (md5 of the bytes): opaque, never the sha256 a client wants."""
        key = content.sha256
        with self._lock:
            if key not in self._md5:
                md5 = hashlib.md5()
                for block in content.iter_range(0, None, 8 << 20):
                    md5.update(block)
                self._md5[key] = md5.hexdigest()
            return self._md5[key]

    # -- LFS object storage (signed URLs) ------------------------------------------------

    def _signature(self, oid: str, repo_id: int, date: str, expires: str) -> str:
        return hmac.new(self._secret, f"{oid}\n{repo_id}\n{date}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def signed_object_url(self, repo: GitRepo, oid: str) -> str:
        """A URL on the objects origin valid for ``url_ttl`` seconds from now."""
        date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._now()))
        expires = str(int(self.url_ttl))
        sig = self._signature(oid, repo.id, date, expires)
        query = (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={quote('FAKEKEY/us-east-1/s3/aws4_request')}"
                 f"&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-Signature={sig}&X-Amz-SignedHeaders=host"
                 f"&actor_id=0&key_id=0&repo_id={repo.id}")  # fmt: skip
        return f"{self.origin_url('objects')}/github-production-media/{oid}?{query}"

    async def _objects_route(self, request: web.Request) -> web.StreamResponse:
        parts = segments(request)
        q = {k: v[-1] for k, v in parse_qs(request.query_string).items()}
        xml = {"Content-Type": "application/xml"}
        if len(parts) != 2 or parts[0] != "github-production-media" or request.method not in ("GET", "HEAD"):
            return await self.send(request, 404, xml, _S3_ERROR.format(code="NoSuchKey", msg="Not Found").encode())
        oid = parts[1]
        try:
            repo_id = int(q.get("repo_id", "-1"))
            issued = calendar.timegm(time.strptime(q.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ"))
            ttl = int(q.get("X-Amz-Expires", ""))
        except ValueError:
            repo_id, issued, ttl = -1, 0, 0
        repo = self._repo_by_id(repo_id)
        good = self._signature(oid, repo_id, q.get("X-Amz-Date", ""), q.get("X-Amz-Expires", ""))
        if repo is None or not hmac.compare_digest(good, q.get("X-Amz-Signature", "")):
            msg = "The request signature we calculated does not match the signature you provided."
            return await self.send(request, 403, xml, _S3_ERROR.format(code="SignatureDoesNotMatch", msg=msg).encode())
        if self._now() > issued + ttl:
            return await self.send(
                request, 403, xml, _S3_ERROR.format(code="AccessDenied", msg="Request has expired").encode()
            )
        with self._lock:
            content = repo.lfs_objects.get(oid)
        if content is None:
            return await self.send(request, 404, xml, _S3_ERROR.format(code="NoSuchKey", msg="Not Found").encode())
        if self._is_wrong(repo, None, "media", oid=oid):
            content = wrong_content(content)
        headers = {"Content-Type": "application/octet-stream", "x-amz-request-id": oid[:16].upper()}
        return await self.serve(request, content, headers, etag=f'"{self._md5_of(content)}"')
