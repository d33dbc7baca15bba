"""GitHub's REST API as the GitHub source uses it, and GitHub's answers in the hoard error tree.

Three reads (docs.github.com/rest): ``GET /repos/{o}/{r}`` (the default branch),
``GET /repos/{o}/{r}/commits/{ref}`` with ``Accept: application/vnd.github.sha`` (a branch, tag
or sha prefix → the 40-hex commit, as bare text) and ``GET /repos/{o}/{r}/git/trees/{sha}``
(``?recursive=1``: every path, git blob id and size).

* **Credentials**: the token (``GITHUB_TOKEN`` for the local user, a client's bearer token on
  ``/v1``) goes to the API origin only, never to a host it redirects to, nor to the raw,
  media or object hosts, which serve public repos without one.
* **Rate limit**: 60 requests an hour without a token. Answers carry an ``ETag``; the next ask
  of the same URL sends ``If-None-Match``, and a ``304`` (which GitHub does not count) reuses
  the answer kept here, so re-resolving a branch that did not move costs nothing. A ``403`` or
  ``429`` with ``X-RateLimit-Remaining: 0`` (or a secondary limit's ``Retry-After``) is
  :class:`OriginUnavailable` — a retryable 503 naming the reset time and ``GITHUB_TOKEN`` —
  never a "not found" and never GitHub's 403 passed on.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

from hoard.store.address import Address
from hoard.store.errors import (
    AccessDenied,
    NotFound,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
    RepoNotFound,
    RevisionNotFound,
)

from ..httpbase import TRANSIENT_STATUSES, Reply, host_of
from ..origin import Credentials

__all__ = ["GitHubApi", "api_error", "host_error", "repo_path", "ref_path", "TOKEN_ENV"]

TOKEN_ENV = "GITHUB_TOKEN"
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
JSON = "application/vnd.github+json"
_KEEP = 512  # answers kept for conditional requests (a few hundred repos' refs and trees)


def repo_path(addr: Address) -> str:
    """``owner/repo`` for a URL; RepoNotFound for names GitHub cannot have (which must never
    reach a URL: ``?``, ``#`` or ``%2e%2e`` would change it)."""
    if not _OWNER.fullmatch(addr.owner) or not _REPO.fullmatch(addr.repo) or addr.repo in (".", ".."):
        raise RepoNotFound(f"{addr.repo_key}: not a GitHub repository name")
    return f"{addr.owner}/{addr.repo}"


def ref_path(ref: str) -> str:
    """A ref (``main``, ``feature/x``, ``v1.0``) quoted segment by segment for a URL path."""
    return "/".join(quote(seg, safe="") for seg in ref.split("/"))


def _message(reply: Reply) -> str:
    try:
        doc = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError):
        text = reply.body[:200].decode("utf-8", "replace").strip()
        return "" if text.startswith("<") else text
    return str(doc.get("message", "")) if isinstance(doc, dict) else ""


def _rate_limited(reply: Reply) -> str | None:
    """Why GitHub refuses to answer now (its rate limits), or None."""
    if reply.status not in (403, 429):
        return None
    headers = reply.headers
    if headers.get("X-RateLimit-Remaining") == "0":
        try:
            reset = int(headers.get("X-RateLimit-Reset", ""))
        except ValueError:
            return f"its API rate limit ({headers.get('X-RateLimit-Limit', '?')} requests an hour) is spent"
        minutes = max(0, round((reset - time.time()) / 60))
        at = time.strftime("%H:%M:%S UTC", time.gmtime(reset))
        return (f"its API rate limit ({headers.get('X-RateLimit-Limit', '?')} requests an hour) is spent "
                f"until {at} (in {minutes} min)")  # fmt: skip
    if "Retry-After" in headers or "rate limit" in _message(reply).lower():
        after = headers.get("Retry-After")
        return "its secondary rate limit applies: retry " + (f"after {after} s" if after else "in a minute or so")
    return None


def api_error(reply: Reply, what: str, *, token: bool) -> Exception:
    """A GitHub API answer other than 200 in the hoard error tree."""
    limited = _rate_limited(reply)
    if limited is not None:
        hint = ("the token in use has reached its own limit" if token else
                f"set {TOKEN_ENV} (a GitHub token, even one with no scopes) to raise it to 5000 an hour")
        return OriginUnavailable(f"{what}: GitHub refuses for now: {limited}; {hint}. Commits already cached "
                                 "are still served")  # fmt: skip
    message = _message(reply) or f"HTTP {reply.status}"
    if reply.status == 401:
        return AccessDenied(f"{what}: GitHub refuses the token ({message}): check {TOKEN_ENV} or the token sent", 401)
    if reply.status == 404:
        return RepoNotFound(f"{what}: no such GitHub repository (or it is private: hoard reads public repos)")
    if reply.status == 422:
        return RevisionNotFound(f"{what}: no branch, tag or commit of that name ({message})")
    if reply.status in (403, 451):
        return AccessDenied(f"{what}: GitHub refuses access: {message}", 403)
    if reply.status in TRANSIENT_STATUSES:
        return OriginUnavailable(f"{what}: GitHub's API answered {reply.status}")
    return OriginError(f"{what}: GitHub's API answered {reply.status}: {message}", reply.status)


def host_error(reply: Reply, what: str) -> Exception:
    """An answer of the raw, media or object hosts other than 200/206 in the hoard error tree."""
    host = host_of(reply.url)
    if reply.status in (404, 410):
        return NotFound(f"{what}: {host} has no such file")
    if reply.status in (401, 403):
        return AccessDenied(f"{what}: {host} refuses to serve it (HTTP {reply.status})", 403)
    if reply.status == 416:
        return RangeNotSatisfiable(f"{what}: {host} says the range is outside the file")
    if reply.status in TRANSIENT_STATUSES:
        return OriginUnavailable(f"{what}: {host} answered {reply.status}")
    return OriginError(f"{what}: {host} answered {reply.status}", reply.status)


class GitHubApi:
    """The API reads of one source adapter (its conditional-request memory included)."""

    def __init__(self, http: Any, base: str, source: str) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.source = source
        self._kept: OrderedDict[tuple[str, str, str], tuple[str, Reply]] = OrderedDict()

    async def get(self, addr: Address, tail: str, creds: Credentials, *, what: str, accept: str = JSON,
                  params: dict[str, str] | None = None, keep: bool = True) -> Reply:
        """``GET {api}/repos/{o}/{r}{tail}``: a 200 answer (a 304 turned into the answer it
        confirms), else the hoard error for it. ``keep`` remembers the answer for the next
        conditional ask (pointless for a commit's tree, which is asked for once)."""
        url = f"{self.base}/repos/{repo_path(addr)}{tail}"
        key = (url + "?" + "&".join(f"{k}={v}" for k, v in sorted((params or {}).items())), accept, creds.fingerprint)
        headers = {"Accept": accept, "X-GitHub-Api-Version": "2022-11-28", **creds.bearer(self.source)}
        kept = self._kept.get(key)
        if kept is not None:
            headers["If-None-Match"] = kept[0]
        reply = await self.http.follow("GET", url, headers=headers, auth_origin=self.base, params=params)
        if reply.status == 304 and kept is not None:
            self._kept.move_to_end(key)
            return kept[1]
        if reply.status != 200:
            raise api_error(reply, what, token=creds.token(self.source) is not None)
        etag = reply.headers.get("ETag")
        if etag and keep:
            self._kept[key] = (etag, reply)
            while len(self._kept) > _KEEP:
                self._kept.popitem(last=False)
        return reply

    async def default_branch(self, addr: Address, creds: Credentials) -> str:
        reply = await self.get(addr, "", creds, what=addr.repo_key)
        branch = _json(reply, addr.repo_key).get("default_branch")
        if not isinstance(branch, str) or not branch:
            raise OriginError(f"{addr.repo_key}: GitHub names no default branch")
        return branch

    async def commit(self, addr: Address, ref: str, creds: Credentials) -> str:
        """The 40-hex commit a branch, tag or sha (prefix) names now."""
        what = f"{addr.repo_key}@{ref}"
        reply = await self.get(addr, f"/commits/{ref_path(ref)}", creds, what=what, accept="application/vnd.github.sha")
        sha = reply.body.decode("ascii", "replace").strip()
        if not _COMMIT.fullmatch(sha):
            raise OriginError(f"{what}: GitHub sent no commit id")
        return sha

    async def tree(self, addr: Address, sha: str, creds: Credentials, *, recursive: bool, what: str) -> dict[str, Any]:
        """One ``git/trees`` answer (a commit or tree sha): ``{"tree": [...], "truncated": bool}``."""
        params = {"recursive": "1"} if recursive else None
        try:
            reply = await self.get(addr, f"/git/trees/{sha}", creds, what=what, params=params, keep=False)
        except RepoNotFound:
            raise RevisionNotFound(f"{what}: GitHub has no such commit in {addr.repo_key} (or no such repo)") from None
        doc = _json(reply, what)
        if not isinstance(doc.get("tree"), list):
            raise OriginError(f"{what}: GitHub sent no tree")
        return doc


def _json(reply: Reply, what: str) -> dict[str, Any]:
    try:
        doc = reply.json()
    except (ValueError, UnicodeDecodeError):
        raise OriginError(f"{what}: GitHub's API sent no JSON") from None
    if not isinstance(doc, dict):
        raise OriginError(f"{what}: GitHub's API sent no JSON object")
    return doc
