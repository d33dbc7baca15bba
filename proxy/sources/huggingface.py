"""The Hugging Face Hub as an origin (see shared/reference/hf_protocol.md).

Names: ``huggingface/[datasets|spaces/]<ns>/<name>@<rev>/<path>``. A ref (branch, tag,
``refs/pr/N``) resolves to a 40-hex commit with ``/api/{kind}/{repo}/revision/{rev}``; a
commit's tree comes from ``/tree/{commit}?recursive=true`` (paged by ``Link: rel="next"``).
A file's identity is its LFS sha256, else its git blob sha1 — both are the content hashes the
Hub itself promises, so they are checked before anything is published. Names in a tree are
untrusted like a client's: an entry whose path fails the client-path rules, or whose hashes are
not the hex hoard can verify, is dropped with a warning (logger ``hoard.sources``) and is never
listed, fetched or exported.

Bytes come from ``/{repo}/resolve/{commit}/{path}`` with ``Range``. The Hub answers LFS files
with a 302 to a signed CDN URL on another origin: the token is never sent there (the signature
authorizes), and the signed URL is reused for a few minutes so that later chunks skip the Hub.
Xet is never used: hoard reads the plain HTTP path the CDN also serves.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urljoin

from hoard.store.address import Address, check_path
from hoard.store.errors import (
    AccessDenied,
    EntryNotFound,
    GatedRepo,
    InvalidAddress,
    NotFound,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
    RepoNotFound,
    RevisionNotFound,
)
from hoard.store.records import Snapshot, TreeEntry
from hoard.store.untrusted import check_entry

from hoard.store.records import ExpectedHash
from hoard.store.sources import SourceInfo

from ..httpbase import TRANSIENT_STATUSES, Reply
from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from . import BuildContext, Setting, SourceSpec

__all__ = ["HuggingFace", "SPEC", "hf_error", "KIND_API", "KIND_PREFIX"]

log = logging.getLogger("hoard.sources")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_HF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
KIND_API = {"": "models", "datasets": "datasets", "spaces": "spaces"}
KIND_PREFIX = {"": "", "datasets": "datasets/", "spaces": "spaces/"}
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
# keys the Hub adds that must not reach clients through us (they would switch them to Xet)
_XET_KEYS = ("xetHash", "xet_hash", "xetEnabled")


def hf_error(reply: Reply, what: str) -> Exception:
    """Translate a Hub error answer into the hoard error tree."""
    code = reply.headers.get("X-Error-Code", "")
    message = reply.headers.get("X-Error-Message") or _body_message(reply) or f"HTTP {reply.status}"
    if code == "RepoNotFound":
        return RepoNotFound(f"{what}: {message}")
    if code == "RevisionNotFound":
        return RevisionNotFound(f"{what}: {message}")
    if code == "EntryNotFound":
        return EntryNotFound(f"{what}: {message}", reply.headers.get("X-Repo-Commit"))
    if code == "GatedRepo":
        return GatedRepo(f"{what}: {message}", reply.status)
    if reply.status == 401:
        # The Hub answers unknown *and* private repos with a bare 401 so as not to tell them
        # apart; for a client the name does not exist.
        return RepoNotFound(f"{what}: repository not found (or private: pass a token that can read it)")
    if reply.status == 403:
        return AccessDenied(f"{what}: {message}", 403)
    if reply.status == 404:
        return NotFound(f"{what}: {message}")
    if reply.status == 416:
        return RangeNotSatisfiable(f"{what}: {message}")
    if reply.status in TRANSIENT_STATUSES:
        return OriginUnavailable(f"{what}: Hub answered {reply.status}")
    return OriginError(f"{what}: Hub answered {reply.status}: {message}", reply.status)


def _body_message(reply: Reply) -> str:
    try:
        doc = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError):
        text = reply.body[:200].decode("utf-8", "replace").strip()
        return "" if text.startswith("<") else text
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, list):
            return "; ".join(map(str, err))
        if err:
            return str(err)
    return ""


def _usable_dir(addr: Address, commit: str, path: Any) -> bool:
    """A folder of the Hub's tree passes the client-path rules, or is dropped with a warning."""
    try:
        check_path(path)
    except (InvalidAddress, TypeError, AttributeError) as exc:
        log.warning("%s@%s: dropped folder %r from the Hub's tree: %s", addr.repo_key, commit, path, exc)
        return False
    return True


def _tree_entry(addr: Address, commit: str, item: dict[str, Any]) -> TreeEntry | None:
    """A file of the Hub's tree as a :class:`TreeEntry`, or None (and a warning) when its path
    or its hashes break the rules for names (:mod:`hoard.store.untrusted`): such a name would
    become a URL at the Hub and a file path in exports, so it is never listed nor fetched."""
    path = item.get("path", "")
    lfs = item.get("lfs")
    meta: dict[str, Any] = {"oid": item.get("oid", "")}
    try:
        if lfs:
            meta["lfs"] = {"oid": lfs["oid"], "size": lfs["size"], "pointerSize": lfs.get("pointerSize", 0)}
            expected = ExpectedHash("sha256", lfs["oid"])  # the LFS oid: the sha256 of the content
        else:
            expected = ExpectedHash("gitsha1", item["oid"])  # the git blob id of the content
        entry = TreeEntry.of_hash(int(item.get("size", 0)), expected, meta)
        check_entry(path, entry)
    except (InvalidAddress, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("%s@%s: dropped %r from the Hub's tree: %s", addr.repo_key, commit, path, exc)
        return None
    return entry


def strip_xet(obj: Any) -> Any:
    """Remove Xet fields from Hub JSON (recursively), so clients stay on plain HTTP."""
    if isinstance(obj, dict):
        return {k: strip_xet(v) for k, v in obj.items() if k not in _XET_KEYS}
    if isinstance(obj, list):
        return [strip_xet(v) for v in obj]
    return obj


class HuggingFace(Source):
    name = "huggingface"

    def __init__(self, ctx: BuildContext) -> None:
        self.http = ctx.http
        self.reader = ctx.reader
        self.endpoint = str(ctx.settings["hf_endpoint"]).rstrip("/")

    # -- names ------------------------------------------------------------------------------

    @staticmethod
    def _repo_path(addr: Address) -> str:
        # the Hub's names are letters, digits, '-', '_' and '.'; anything else is no repo
        # there (and must never reach a URL unquoted: '?', '#', '%2e%2e' would change it)
        for seg in (addr.owner, addr.repo):
            if not _HF_NAME.fullmatch(seg):
                raise RepoNotFound(f"{addr.repo_key}: not a Hugging Face repo name")
        return f"{quote(addr.owner, safe='')}/{quote(addr.repo, safe='')}"

    def api_url(self, addr: Address, *tail: str) -> str:
        url = f"{self.endpoint}/api/{KIND_API[addr.kind]}/{self._repo_path(addr)}"
        return url + "".join("/" + t for t in tail)

    def resolve_url(self, addr: Address, revision: str, path: str) -> str:
        return (
            f"{self.endpoint}/{KIND_PREFIX[addr.kind]}{self._repo_path(addr)}"
            f"/resolve/{quote(revision, safe='')}/{quote(path)}"
        )

    def with_visibility(self, snap: Snapshot, info: dict[str, Any]) -> Snapshot | None:
        private = bool(info.get("private"))
        gated = info.get("gated") or False
        if not info or (private, gated) == (bool(snap.info.get("private")), snap.info.get("gated") or False):
            return None
        repo_info = dict(snap.info.get("repo_info") or {}) | {"private": private, "gated": gated}
        return Snapshot(snap.files, snap.created, snap.info | {"private": private, "gated": gated, "repo_info": repo_info})

    async def api(self, addr: Address, creds: Credentials, *tail: str, params: Any = None) -> Reply:
        """GET an API path of the repo, following same-origin redirects (renamed repos)."""
        return await self.http.follow(
            "GET", self.api_url(addr, *tail), headers=creds.bearer(self.name), auth_origin=self.endpoint, params=params
        )

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        reply = await self.api(addr, creds, "revision", quote(ref, safe=""))
        if reply.status != 200:
            raise hf_error(reply, f"{addr.repo_key}@{ref}")
        info = strip_xet(reply.json())
        sha = info.get("sha")
        if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
            raise OriginError(f"{addr.repo_key}@{ref}: the Hub sent no commit id")
        return ResolvedRef(sha, info)

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        commit = resolved.revision
        info = resolved.info
        if not info:
            info = (await self.resolve(addr, commit, creds)).info
        files: dict[str, TreeEntry] = {}
        dirs: dict[str, str] = {}
        params: Any = {"recursive": "true", "expand": "false"}
        url: str | None = self.api_url(addr, "tree", commit)
        while url is not None:
            reply = await self.http.follow(
                "GET", url, headers=creds.bearer(self.name), auth_origin=self.endpoint, params=params
            )
            if reply.status != 200:
                raise hf_error(reply, f"{addr.repo_key}@{commit}")
            for item in reply.json():
                if not isinstance(item, dict):
                    continue
                path = item.get("path", "")
                if item.get("type") == "directory":
                    if _usable_dir(addr, commit, path):
                        dirs[path] = item.get("oid", "")
                    continue
                entry = _tree_entry(addr, commit, item)
                if entry is not None:
                    files[path] = entry
            nxt = _LINK_NEXT.search(reply.headers.get("Link", ""))
            url = urljoin(url, nxt.group(1)) if nxt else None
            params = None  # the next URL carries its own query
        info = {k: v for k, v in info.items() if k != "siblings"}
        return Snapshot(
            files,
            int(time.time()),
            {
                "repo_info": info,
                "dirs": dirs,
                "private": bool(info.get("private")),
                "gated": info.get("gated") or False,
            },
        )

    # -- access -----------------------------------------------------------------------------

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        """Ask the Hub whether these credentials may read this revision's files."""
        commit = addr.revision or ""
        path = addr.path or next(iter(sorted(snap.files)), "")
        if not path:
            reply = await self.api(addr, creds, "revision", commit)
        else:
            reply = await self.http.request("HEAD", self.resolve_url(addr, commit, path), headers=creds.bearer(self.name))
        if reply.status in (200, 206, 301, 302, 303, 307, 308):
            return
        err = hf_error(reply, addr.repo_key)
        if isinstance(err, (AccessDenied, NotFound)):
            raise err if not isinstance(err, EntryNotFound) else AccessDenied(str(err))
        raise err

    # -- bytes ------------------------------------------------------------------------------

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes from ``/resolve/<commit>/<path>``; the Hub sends LFS files to its CDN with a
        signed URL, which the range reader reuses for later chunks and refreshes when refused."""
        addr = rf.address
        async for block in self.reader.read(
            self.resolve_url(addr, addr.revision or "", addr.path), start, end,
            translate=hf_error, what=str(addr),
            auth=rf.creds.bearer(self.name), auth_origin=self.endpoint,
            key=(self.name, rf.identity, rf.creds.fingerprint),
        ):
            yield block


def _build(ctx: BuildContext) -> Source:
    return HuggingFace(ctx)


SPEC = SourceSpec(
    info=SourceInfo(
        "huggingface",
        default_ref="main",
        kinds=("datasets", "spaces"),
        revision_id=r"[0-9a-f]{40}",
        summary="the Hugging Face Hub: models, datasets (huggingface/datasets/...) and spaces",
    ),
    settings=(
        Setting("hf_endpoint", "https://huggingface.co", "Hugging Face Hub endpoint.", env="HOARD_HF_ENDPOINT"),
    ),
    token_env="HF_TOKEN",
    build=_build,
    order=10,
)
