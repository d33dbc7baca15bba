"""github.com (the web host) and codeload.github.com (archives), as torch.hub meets them.

* ``GET /{o}/{r}/zipball/{ref}`` 302s to codeload: ``/{o}/{r}/legacy.zip/refs/heads/{b}`` for
  a branch, ``/refs/tags/{t}`` for a tag, ``/{sha}`` for a commit; 404 for an unknown ref.
  With ``ambiguous_300`` a name that is both a branch and a tag answers 300 Multiple
  Choices (torch.hub then retries with ``refs/heads/{ref}``).
* ``GET /{o}/{r}/archive/{ref}.zip`` 302s to ``/{o}/{r}/zip/refs/heads/{ref}`` (older clients).
* ``GET /{o}/{r}/tree/{ref}[/{dir}]`` 200 if it exists, else 404 (torch.hub probes
  ``tree/main/`` to choose between ``main`` and ``master``); ``GET /{o}/{r}`` likewise.
* ``GET /{o}/{r}/raw/{ref}/{path}`` 302s to the raw host, or to the media host for LFS files.
* codeload answers ``application/zip`` streamed chunked (no ``Content-Length``) with
  ``Content-Disposition: attachment; filename=...``. A legacy zipball has one root directory
  ``{o}-{r}-{sha7}/`` (its entry comes first), sub-directory entries before their files, the
  commit sha as the zip comment (as ``git archive`` writes it), and LFS files as their
  *pointers* unless ``archive_lfs`` (GitHub's "include Git LFS objects in archives").
"""

from __future__ import annotations

import io
import time
import zipfile
from urllib.parse import quote

from aiohttp import web

from .git import Commit, GitRepo, walk
from .state import GitHubState, segments

__all__ = ["WebRoutes", "zip_archive"]

_HTML = "<!DOCTYPE html><html><head><title>{t}</title></head><body>{t}</body></html>\n"


def zip_archive(repo: GitRepo, commit: Commit, root: str, *, lfs_objects: bool) -> bytes:
    """The zip codeload builds for ``commit``: everything under ``root/``."""
    stamp = time.gmtime(commit.timestamp)[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.comment = commit.sha.encode()

        def directory(name: str) -> None:
            info = zipfile.ZipInfo(name, stamp)
            info.create_system, info.external_attr = 3, (0o40775 << 16) | 0x10
            zf.writestr(info, b"")

        directory(root + "/")
        for path, entry in walk(repo.trees, commit.tree, True):
            if entry.kind == "tree":
                directory(f"{root}/{path}/")
                continue
            assert entry.blob is not None
            data = entry.blob.content if entry.blob.lfs and lfs_objects else entry.blob.stored
            info = zipfile.ZipInfo(f"{root}/{path}", stamp)
            info.create_system, info.external_attr = 3, int(entry.mode, 8) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data.read())
    return buf.getvalue()


class WebRoutes(GitHubState):
    """Routes of the web and codeload origins (a base of `FakeGitHub`)."""

    ambiguous_300: bool
    archive_lfs: bool

    async def _page(self, request: web.Request, status: int, title: str) -> web.StreamResponse:
        return await self.send(
            request, status, {"Content-Type": "text/html; charset=utf-8"}, _HTML.format(t=title).encode()
        )

    async def _web_route(self, request: web.Request) -> web.StreamResponse:
        parts = segments(request)
        with self._lock:
            repo = self._repo(parts[0], parts[1]) if len(parts) >= 2 else None
        if repo is None or request.method not in ("GET", "HEAD"):
            return await self._page(request, 404, "Not Found")
        if len(parts) == 2:
            return await self._page(request, 200, repo.full_name)
        kind, rest = parts[2], parts[3:]
        with self._lock:
            if kind == "zipball" and rest:
                ref = "/".join(rest)
                if self.ambiguous_300 and repo.ambiguous(ref):
                    return await self._page(request, 300, "Multiple Choices")
                commit = repo.resolve(ref)
                if commit is None:
                    return await self._page(request, 404, "Not Found")
                return await self.send_redirect(request, 302, self._codeload_location(repo, ref, commit))
            if kind == "archive" and rest and rest[-1].endswith(".zip"):
                ref = "/".join(rest)[: -len(".zip")]
                commit = repo.resolve(ref)
                if commit is None:
                    return await self._page(request, 404, "Not Found")
                tail = f"refs/heads/{ref}" if ref in repo.branches else f"refs/tags/{ref}" if ref in repo.tags else ref
                return await self.send_redirect(
                    request, 302, f"{self.origin_url('codeload')}/{repo.full_name}/zip/{tail}"
                )
            if kind == "tree" and rest:
                commit = repo.resolve("/".join(rest))
                split = None if commit is not None else repo.split_ref(rest)
                ok = commit is not None or (
                    split is not None and any(p.startswith("/".join(split[2]) + "/") for p in split[1].files)
                )
                return await self._page(request, 200 if ok else 404, "tree" if ok else "Not Found")
            if kind == "raw" and rest:
                split = repo.split_ref(rest)
                blob = split[1].files.get("/".join(split[2])) if split is not None else None
                if split is None or blob is None:
                    return await self._page(request, 404, "Not Found")
                target = f"{split[0]}/{'/'.join(quote(p) for p in split[2])}"
                if blob.lfs:
                    where = f"{self.origin_url('media')}/media/{repo.full_name}/{target}"
                else:
                    where = f"{self.origin_url('raw')}/{repo.full_name}/{target}"
                return await self.send_redirect(request, 302, where)
        return await self._page(request, 404, "Not Found")

    async def _codeload_route(self, request: web.Request) -> web.StreamResponse:
        parts = segments(request)
        with self._lock:
            repo = self._repo(parts[0], parts[1]) if len(parts) >= 4 else None
            commit = repo.resolve("/".join(parts[3:])) if repo is not None else None
        if (
            repo is None
            or commit is None
            or parts[2] not in ("legacy.zip", "zip")
            or request.method not in ("GET", "HEAD")
        ):
            return await self.send(request, 404, {"Content-Type": "text/plain; charset=utf-8"}, b"404: Not Found")
        ref = "/".join(parts[3:])
        if parts[2] == "legacy.zip":
            root = f"{repo.owner}-{repo.name}-{commit.sha[:7]}"
        else:
            name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
            if len(name) > 1 and name[0] == "v" and name[1].isdigit():
                name = name[1:]  # GitHub names the folder repo-1.2 for tag v1.2
            root = f"{repo.name}-{name.replace('/', '-')}"
        with self._lock:
            data = zip_archive(repo, commit, root, lfs_objects=self.archive_lfs)
        headers = {
            "Content-Type": "application/zip",
            "Content-Disposition": f"attachment; filename={root}.zip",
            "Access-Control-Allow-Origin": "https://render.githubusercontent.com",
            "X-Content-Type-Options": "nosniff",
            "Vary": "Authorization,Accept-Encoding,Origin",
        }
        return await self.send(request, 200, headers, data, length=False)
