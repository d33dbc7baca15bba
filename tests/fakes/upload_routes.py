"""The Hub's write side, as huggingface_hub 2.4 calls it (``create_repo``, ``create_branch``,
``create_commit``/``upload_folder`` without Xet), for the fake Hub.

Routes (read in huggingface_hub's ``hf_api.py``, ``_commit_api.py`` and ``lfs.py``):

* ``POST /api/repos/create`` ``{name, organization, type, visibility}`` → ``{url, name, id}``;
  409 when it exists (``exist_ok`` callers go on). The new repo has the Hub's "initial
  commit" holding ``.gitattributes``; its creator's token may read it when it is private;
* ``POST /api/{type}s/{repo}/branch/{branch}`` ``{startingPoint?}`` → ``{}``; 409 if it exists;
* ``POST /api/{type}s/{repo}/preupload/{rev}`` ``{files: [{path, sample, size}]}`` →
  ``{files: [{path, uploadMode: lfs|regular, shouldIgnore, oid}], commitOid}``; LFS by the
  repo's ``.gitattributes`` patterns and the 10 MB rule; ``oid`` is the existing file's
  (sha256 for LFS, git sha1 otherwise) so unchanged files are left out of the commit;
* ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` (git-lfs batch API, ``basic``
  transfer) → per object either nothing to do (the bytes are known) or an ``upload`` action
  (a signed PUT URL on the CDN origin, as S3 is another host) and a ``verify`` action;
* ``PUT {cdn}/lfs-upload/{oid}?size=&sig=`` stores the bytes after checking their length and
  sha256 (400 ``BadDigest`` otherwise); ``POST /{prefix}{repo}.git/info/lfs/objects/verify``
  ``{oid, size}`` → 200 once they are stored, else 404;
* ``POST /api/{type}s/{repo}/commit/{rev}`` NDJSON (``header``, then ``file`` with base64
  content, ``lfsFile`` naming an uploaded oid, ``deletedFile``/``deletedFolder``) →
  ``{success, commitOid, commitUrl}``. The branch moves to the new commit, so downloads see
  it at once; an ``lfsFile`` whose bytes never arrived is refused (422), as is a stale
  ``parentCommit`` (412).

Writes need a bearer token (401 without; with ``FakeHub(tokens=...)`` only a listed one);
a private repo takes writes only from its allowed tokens (others get its 404).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .api_routes import ApiRoutes
from .content import Content
from .file_routes import bearer
from .model import DEFAULT_LFS_PATTERNS, SINGULAR, URL_PREFIX, Repo, RepoType

__all__ = ["UploadRoutes"]

_LFS_JSON = "application/vnd.git-lfs+json"


class UploadRoutes(ApiRoutes):
    """The write routes, tried before the read routes (a base of `FakeHub`)."""

    @property
    def lfs_uploads(self) -> dict[str, Content]:
        """Bytes PUT to the CDN by oid (sha256), waiting for a commit to name them."""
        return self.__dict__.setdefault("_lfs_uploads", {})  # type: ignore[no-any-return]

    async def _hub_route(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            segs = [unquote(s) for s in request.raw_path.partition("?")[0].split("/")[1:]]
            if segs[:3] == ["api", "repos", "create"]:
                return await self._create_repo(request)
            if len(segs) >= 4 and segs[0] == "api" and segs[1] in SINGULAR:
                action = segs[4] if len(segs) > 4 else ""
                if action in ("preupload", "commit", "branch") and len(segs) > 5:
                    return await self._repo_write(request, SINGULAR[segs[1]], "/".join(segs[2:4]), action, segs[5:])
            if len(segs) in (6, 7) and segs[-4:-1] == ["info", "lfs", "objects"] and segs[-5].endswith(".git"):
                kind = "model" if len(segs) == 6 else SINGULAR.get(segs[0])
                if kind is not None:  # /{org}/{name}.git/... or /{datasets|spaces}/{org}/{name}.git/...
                    return await self._lfs(request, kind, f"{segs[-6]}/{segs[-5][:-4]}", segs[-1])
        return await super()._hub_route(request)

    async def _cdn_route(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        if request.method == "PUT" and path.startswith("/lfs-upload/"):
            return await self._lfs_put(request, path.rsplit("/", 1)[-1])
        return await super()._cdn_route(request)

    # -- access ----------------------------------------------------------------------------

    async def _unknown_token(self, request: web.Request) -> web.StreamResponse | None:
        """401 unless the request carries a token the Hub knows."""
        token = bearer(request)
        if token is None or (self.tokens is not None and token not in self.tokens):
            return await self._error(request, 401, None, "Invalid credentials in Authorization header", api=True)
        return None

    async def _writer(self, request: web.Request, repo: Repo | None) -> web.StreamResponse | None:
        """An error answer unless the request's token may write to ``repo``."""
        denied = await self._unknown_token(request)
        if denied is not None:
            return denied
        token = bearer(request)
        if repo is None or (repo.private and token not in repo.allowed_tokens):
            return await self._error(request, 404, "RepoNotFound", "Repository not found", api=True)
        return None

    def _repo_named(self, kind: str, repo_id: str) -> Repo | None:
        repo, _ = self._lookup(kind, repo_id)
        return repo

    # -- repos and branches ----------------------------------------------------------------

    async def _create_repo(self, request: web.Request) -> web.StreamResponse:
        denied = await self._unknown_token(request)
        if denied is not None:
            return denied
        body, token = await request.json(), bearer(request)
        kind: RepoType = body.get("type") or "model"
        if kind not in URL_PREFIX:
            return await self._error(request, 400, None, f"Invalid repo type: {kind}", api=True)
        repo_id = f"{body.get('organization') or 'fake-user'}/{body['name']}"
        url = f"{self.url}/{URL_PREFIX[kind]}{repo_id}"
        if self._repo_named(kind, repo_id) is not None:
            return await self._send(
                request,
                409,
                {"Content-Type": "application/json"},
                json.dumps({"error": f"You already created this {kind} repo", "url": url}).encode(),
            )
        attrs = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS)
        private = body.get("visibility") == "private" or bool(body.get("private"))
        self.add_repo(
            repo_id,
            {".gitattributes": attrs},
            repo_type=kind,
            private=private,
            allowed_tokens=[token] if token else [],
            gitattributes=False,
            message="initial commit",
        )
        repo = self._repo_named(kind, repo_id)
        assert repo is not None
        return await self._json(request, {"url": url, "name": repo_id, "id": repo.object_id})

    async def _repo_write(
        self, request: web.Request, kind: str, repo_id: str, action: str, rest: list[str]
    ) -> web.StreamResponse:
        repo = self._repo_named(kind, repo_id)
        denied = await self._writer(request, repo)
        if denied is not None:
            return denied
        assert repo is not None
        rev = "/".join(rest)
        if action == "branch":
            return await self._branch(request, repo, rev)
        with self._lock:
            sha = repo.resolve(rev)
        if sha is None:
            return await self._error(request, 404, "RevisionNotFound", f"Invalid rev id: {rev}", api=True)
        if action == "preupload":
            return await self._preupload(request, repo, sha)
        return await self._commit_ndjson(request, repo, rev, sha)

    async def _branch(self, request: web.Request, repo: Repo, branch: str) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else {}
        with self._lock:
            start = repo.resolve(body.get("startingPoint") or "main")
            if start is None:
                return await self._error(request, 404, "RevisionNotFound", "Invalid starting point", api=True)
            if branch in repo.branches:
                return await self._error(request, 409, None, "Reference already exists", api=True)
            repo.branches[branch] = start
        return await self._json(request, {})

    # -- commits ---------------------------------------------------------------------------

    async def _preupload(self, request: web.Request, repo: Repo, sha: str) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            commit = repo.commits[sha]
        out = []
        for item in body.get("files", []):
            path, size = str(item["path"]), int(item["size"])
            old = commit.files.get(path)
            out.append({
                "path": path,
                "uploadMode": "lfs" if size > 0 and repo.is_lfs(path, size) else "regular",
                "shouldIgnore": False,
                "oid": None if old is None else (old.sha256 if old.lfs else old.oid),
            })  # fmt: skip
        return await self._json(request, {"files": out, "commitOid": sha})

    async def _commit_ndjson(self, request: web.Request, repo: Repo, rev: str, sha: str) -> web.StreamResponse:
        lines = [json.loads(line) for line in (await request.read()).splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return await self._error(request, 400, None, "the first line must be the commit header", api=True)
        header = lines[0]["value"]
        files: dict[str, Content] = {}
        delete: list[str] = []
        for op in lines[1:]:
            key, value = op.get("key"), op.get("value") or {}
            if key == "file":
                files[value["path"]] = Content.from_bytes(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                with self._lock:
                    content = self.lfs_uploads.get(value["oid"]) or self._objects.get(value["oid"])
                if content is None or content.size != int(value["size"]):
                    return await self._error(
                        request, 422, None, f"LFS object {value['oid']} was not uploaded", api=True
                    )
                files[value["path"]] = content
            elif key in ("deletedFile", "deletedFolder"):
                delete.append(value["path"])
            else:
                return await self._error(request, 400, None, f"unknown operation {key!r}", api=True)
        with self._lock:
            if repo.resolve(rev) != sha or (header.get("parentCommit") not in (None, sha)):
                return await self._error(
                    request, 412, None, "A commit has happened since. Please refresh and try again.", api=True
                )
            head = self._make_commit(repo, repo.commits[sha], files, tuple(delete), header.get("summary") or "commit")
            repo.set_ref(rev, head.sha)
        url = f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{head.sha}"
        return await self._json(request, {"success": True, "commitOid": head.sha, "commitUrl": url, "hookOutput": ""})

    # -- LFS -------------------------------------------------------------------------------

    def _upload_sig(self, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"lfs-upload\n{oid}\n{size}".encode(), hashlib.sha256).hexdigest()

    async def _lfs(self, request: web.Request, kind: str, repo_id: str, verb: str) -> web.StreamResponse:
        repo = self._repo_named(kind, repo_id)
        denied = await self._writer(request, repo)
        if denied is not None:
            return denied
        body = await request.json()
        if verb == "verify":
            with self._lock:
                content = self.lfs_uploads.get(body.get("oid", "")) or self._objects.get(body.get("oid", ""))
            if content is None or content.size != int(body.get("size", -1)):
                return await self._error(request, 404, None, "Object not found", api=True)
            return await self._json(request, {"success": True})
        if verb != "batch" or body.get("operation") != "upload":
            return await self._error(request, 400, None, "only the upload batch is implemented", api=True)
        objects = [self._batch_object(request, repo_id, kind, o) for o in body.get("objects", [])]
        reply = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        return await self._send(request, 200, {"Content-Type": _LFS_JSON}, reply)

    def _batch_object(self, request: web.Request, repo_id: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        oid, size = str(obj["oid"]), int(obj["size"])
        with self._lock:
            known = self.lfs_uploads.get(oid) or self._objects.get(oid)
        if known is not None and known.size == size:
            return {"oid": oid, "size": size}  # the bytes are there: no action
        href = f"{self.cdn_url}/lfs-upload/{oid}?size={size}&sig={self._upload_sig(oid, size)}"
        verify = f"{self.url}/{URL_PREFIX[kind]}{repo_id}.git/info/lfs/objects/verify"
        auth = {"Authorization": request.headers.get("Authorization", "")}
        return {
            "oid": oid,
            "size": size,
            "authenticated": True,
            "actions": {"upload": {"href": href, "header": {}}, "verify": {"href": verify, "header": auth}},
        }

    async def _lfs_put(self, request: web.Request, oid: str) -> web.StreamResponse:
        size = request.query.get("size", "")
        if not size.isdigit() or not hmac.compare_digest(
            request.query.get("sig", ""), self._upload_sig(oid, int(size))
        ):
            return await self._cdn_denied(request, 403, "Access denied")
        data = bytearray()
        async for block in request.content.iter_chunked(1 << 20):
            data.extend(block)
        if len(data) != int(size) or hashlib.sha256(data).hexdigest() != oid:
            return await self._cdn_denied(request, 400, "BadDigest")
        with self._lock:
            self.lfs_uploads[oid] = Content.from_bytes(bytes(data))
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        return await self._send(request, 200, {"ETag": etag, "Content-Type": "text/plain"}, b"")
