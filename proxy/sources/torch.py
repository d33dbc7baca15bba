"""PyTorch's hub as an origin: ``torch/hub/checkpoints/<file>`` and ``torch/hub/<o>_<r>_<ref>/``.

The addresses mirror ``$TORCH_HOME/hub`` (:mod:`._torch_names`), so that with
``TORCH_HOME=/models/torch`` torch.hub and torchvision find weights and hub code in the mount
as if they had downloaded them, and make no request of their own. One owner, ``hub``, holds
two shapes of repo, told apart by the repo name:

* **Weights** — ``hub/checkpoints``. Nothing can list download.pytorch.org, so the source is
  unlistable (``listable=False``): a name is looked up when first asked for (:meth:`stat`,
  ``HEAD <torch_url>/models/<file>`` following the CDN's redirect) and joins the repo's one
  revision, ``latest``. A 404 or 403 is "not found" (S3 answers 403 for a missing key when
  it may not list), remembered briefly by the catalog. The entry is ``torch:<file>``,
  verified by the sha256 prefix the name carries (refused, never published, when the bytes'
  sha256 does not start with it); once a fetch has published it, the full sha256 the store
  recorded becomes the entry's identity and expected hash (learnt from the store, with no
  request, when the name is next looked up by address after the refs TTL: ``/v1``,
  ``hoard prefetch``; the mount keeps the entry it has). A name without a prefix is verified
  by its length only (``meta["unverified"]``). The snapshot says ``folders: False``: a name
  the origin does not know is no folder. Bytes are ranged GETs of the same URL, the CDN
  target reused for later chunks; no credential is ever sent there.
* **Hub code** — ``hub/<owner>_<repo>_<ref>``: GitHub's ``owner/repo`` at ``ref`` (where
  the name splits several ways, the longest repo name GitHub has with that ref wins; a ref
  torch wrote with ``/`` turned into ``_`` is found among the repo's branches and tags). The
  default ref, ``current``, resolves the ref the name holds to its commit (re-resolved after
  the refs TTL, like any branch); ``@<commit>`` pins one. The tree is the GitHub source's
  tree of that commit (:class:`~.github.GitHub`, reused: git blob sha1s, LFS objects by
  sha256, raw and media hosts), marked ``complete``: the whole listing, so names not in it do
  not exist and are never asked for. The torch source's token (``GITHUB_TOKEN``, a client's
  bearer token) goes to the GitHub API host only.

Health is tracked per origin (:meth:`origin_of`): the weights host and GitHub apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from hoard.store.address import Address
from hoard.store.errors import (
    AccessDenied,
    EntryNotFound,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
    RepoNotFound,
    RevisionNotFound,
)
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry
from hoard.store.sources import SourceInfo
from hoard.store.untrusted import is_hex

from ..httpbase import TRANSIENT_STATUSES, Reply, host_of
from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from . import BuildContext, Setting, SourceSpec
from ._github_api import TOKEN_ENV, repo_path
from ._torch_names import (
    CHECKPOINTS,
    HUB,
    SOURCE,
    HubName,
    check_weights_name,
    hub_candidates,
    normalized_ref,
    weights_expected,
    weights_url,
)
from .github import GitHub

__all__ = ["TorchHub", "SPEC", "TORCH_URL", "DEFAULT_REF", "WEIGHTS_REVISION", "weights_error"]

log = logging.getLogger("hoard.sources")

TORCH_URL = "https://download.pytorch.org"
#: the ref an address without ``@`` means: for a hub repo, the ref its name holds
DEFAULT_REF = "current"
#: the one revision of ``hub/checkpoints``: the names looked up so far
WEIGHTS_REVISION = "latest"
NO_PREFIX = "the file name carries no sha256 prefix (torch checks nothing then either): verified by its length only"
_LEARN = {"sha256": "learnt from the store once a fetch has published the file"}
_MAX_REF_PAGES = 10  # pages of 100 branches (and of tags) searched for a ref torch wrote with '_'


def weights_error(reply: Reply, what: str) -> Exception:
    """The weights host's (or its CDN's) answers in the hoard error tree."""
    status, host = reply.status, host_of(reply.url)
    if status in (403, 404, 410):
        why = " (S3 answers 403 for a key it does not hold)" if status == 403 else ""
        return EntryNotFound(f"{what}: {host} has no such file (HTTP {status}{why})", WEIGHTS_REVISION)
    if status == 401:
        return AccessDenied(f"{what}: {host} refuses to serve it (HTTP 401)", 403)
    if status == 416:
        return RangeNotSatisfiable(f"{what}: {host} says the range is outside the file")
    if status in TRANSIENT_STATUSES:
        return OriginUnavailable(f"{what}: {host} answered {status}")
    return OriginError(f"{what}: {host} answered {status}", status)


def _weights_entry(url: str, name: str, size: int, expected: ExpectedHash | None) -> TreeEntry:
    """A weights file as first looked up: ``torch:<name>``, verified by its name's prefix."""
    meta: dict[str, Any] = {"url": url}
    if expected is None:
        meta["unverified"] = NO_PREFIX
        return TreeEntry(size, f"{SOURCE}:{name}", meta, None)
    if not expected.prefix:  # the name holds the whole sha256
        return TreeEntry.of_hash(size, expected, meta)
    return TreeEntry(size, f"{SOURCE}:{name}", meta | {"revalidate": _LEARN}, expected)


class TorchHub(Source):
    name = SOURCE
    #: public weights and public GitHub repositories: nothing is restricted to some clients
    may_restrict = False

    def __init__(self, ctx: BuildContext) -> None:
        self.http = ctx.http
        self.reader = ctx.reader
        self.store = ctx.store
        self.base = str(ctx.settings.get("torch_url") or TORCH_URL).rstrip("/")
        self.github = GitHub(ctx)

    # -- which shape --------------------------------------------------------------------------

    @staticmethod
    def _shape(addr: Address) -> str:
        """``weights`` or ``code``; RepoNotFound for names that are neither."""
        if addr.owner == HUB and addr.repo == CHECKPOINTS:
            return "weights"
        if addr.owner == HUB and hub_candidates(addr.repo):
            return "code"
        raise RepoNotFound(f"{addr.repo_key}: not a torch hub name (torch/{HUB}/{CHECKPOINTS}/<file>, "
                           f"torch/{HUB}/<owner>_<repo>_<ref>/...)")  # fmt: skip

    def origin_of(self, addr: Address) -> str:
        """The weights host and GitHub are two origins: one down says nothing of the other."""
        return self.name if addr.repo == CHECKPOINTS else f"{self.name}/github"

    def _gh_creds(self, creds: Credentials) -> Credentials:
        """This source's token (a GitHub token), for the GitHub API alone."""
        return Credentials.for_source(self.github.name, creds.token(self.name))

    # -- names ----------------------------------------------------------------------------------

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        if self._shape(addr) == "weights":
            if ref != DEFAULT_REF:
                raise RevisionNotFound(f"{addr.repo_key}@{ref}: checkpoints has one revision, {WEIGHTS_REVISION!r}")
            return ResolvedRef(WEIGHTS_REVISION, {})
        if ref != DEFAULT_REF:
            raise RevisionNotFound(f"{addr.repo_key}@{ref}: a hub repo's ref is part of its name; "
                                   "pin a commit with @<40-hex sha>")  # fmt: skip
        hub, real_ref, commit = await self._find_hub(addr, self._gh_creds(creds))
        return ResolvedRef(commit, {"github": hub.full_name, "ref": real_ref})

    async def _find_hub(self, addr: Address, creds: Credentials) -> tuple[HubName, str, str]:
        """The repo and ref a hub name stands for, and the commit the ref names now."""
        existing: list[HubName] = []
        for hub in hub_candidates(addr.repo):
            try:
                return hub, hub.ref, await self.github.api.commit(hub.github, hub.ref, creds)
            except RepoNotFound:
                continue
            except RevisionNotFound:
                existing.append(hub)
        for hub in existing:  # the ref may be one torch wrote with '/' turned into '_'
            if "_" in hub.ref:
                ref = await self._slashed_ref(hub, creds)
                if ref is not None:
                    return hub, ref, await self.github.api.commit(hub.github, ref, creds)
        if existing:
            names = ", ".join(f"{h.full_name}@{h.ref}" for h in existing)
            raise RevisionNotFound(f"{addr.repo_key}: GitHub has no such ref ({names})")
        raise RepoNotFound(f"{addr.repo_key}: no GitHub repository of that name (or it is private)")

    async def _slashed_ref(self, hub: HubName, creds: Credentials) -> str | None:
        """The branch or tag whose name torch writes as ``hub.ref`` (``feature/x`` →
        ``feature_x``), from the repo's branch and tag listings."""
        for kind in ("branches", "tags"):
            for page in range(1, _MAX_REF_PAGES + 1):
                reply = await self.github.api.get(hub.github, f"/{kind}", creds, what=f"{hub.full_name} {kind}",
                                                  params={"per_page": "100", "page": str(page)})  # fmt: skip
                try:
                    items = reply.json() if reply.body else []
                except (ValueError, UnicodeDecodeError):
                    raise OriginError(f"{hub.full_name}: GitHub's {kind} listing is no JSON") from None
                if not isinstance(items, list) or not items:
                    break
                for item in items:
                    name = item.get("name") if isinstance(item, dict) else None
                    if isinstance(name, str) and "/" in name and normalized_ref(name) == hub.ref:
                        return name
        return None

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        if self._shape(addr) == "weights":
            if resolved.revision != WEIGHTS_REVISION:
                raise RevisionNotFound(f"{addr.repo_key}@{resolved.revision}: checkpoints has one revision, "
                                       f"{WEIGHTS_REVISION!r}")  # fmt: skip
            stored = self.store.get_snapshot(addr.repo_key, resolved.revision)
            return stored if stored is not None else Snapshot({}, int(time.time()), {"folders": False})
        if not is_hex(resolved.revision, 40):
            raise RevisionNotFound(f"{addr.repo_key}@{resolved.revision}: a hub repo's revisions are commits")
        return await self._code_tree(addr, resolved, self._gh_creds(creds))

    async def _code_tree(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        """GitHub's tree of the commit, each file marked with its repo (for reads)."""
        commit = resolved.revision
        named = resolved.info.get("github")
        hubs = [h for h in hub_candidates(addr.repo) if named in (None, h.full_name)]
        for hub in hubs:
            try:
                snap = await self.github.snapshot(hub.github.with_revision(commit), ResolvedRef(commit), creds)
            except (RepoNotFound, RevisionNotFound):
                if named is not None:
                    raise
                continue  # a pinned commit: another reading of the name may hold it
            files = {p: replace(e, meta=e.meta | {"github": hub.full_name}) for p, e in snap.files.items()}
            ref = resolved.info.get("ref", hub.ref)
            return Snapshot(files, snap.created, snap.info | {"github": hub.full_name, "ref": ref, "complete": True})
        raise RevisionNotFound(f"{addr.repo_key}@{commit}: GitHub has no such commit in a repo this name stands for")

    async def stat(
        self, addr: Address, resolved: ResolvedRef, creds: Credentials, previous: TreeEntry | None = None
    ) -> TreeEntry:
        """A weights file looked up at the origin (or, revalidated, its sha256 learnt from the
        store). A hub repo's tree is complete: a name not in it does not exist."""
        if self._shape(addr) == "code":
            raise EntryNotFound(f"{addr}: no such file in {addr.repo_key}@{resolved.revision}", resolved.revision)
        name = check_weights_name(addr.path, resolved.revision)
        if previous is not None:
            return await self._learnt(previous)
        expected = weights_expected(name)  # a name no sha256 can match is refused before asking
        url = weights_url(self.base, name)
        reply = await self.http.follow("HEAD", url, headers={"Accept-Encoding": "identity"})
        if reply.status != 200:
            raise weights_error(reply, str(addr))
        length = reply.headers.get("Content-Length", "").strip()
        if not length.isdigit():
            raise OriginError(f"{addr}: {host_of(reply.url)} does not say the file's size (no Content-Length)")
        return await self._learnt(_weights_entry(url, name, int(length), expected))

    async def _learnt(self, entry: TreeEntry) -> TreeEntry:
        """``entry`` named by its full sha256 once the store holds its content (which a
        published prefix-verified file always has: the store records the sha256 it hashed)."""
        if not entry.meta.get("revalidate"):
            return entry
        sha = await asyncio.get_running_loop().run_in_executor(None, self._stored_sha256, entry.identity)
        if sha is None or entry.expected is None or not sha.startswith(entry.expected.hex):
            return entry
        meta = {k: v for k, v in entry.meta.items() if k not in ("revalidate", "checked")}
        return TreeEntry.of_hash(entry.size, ExpectedHash("sha256", sha), meta | {"sha256_from": "its first fetch"})

    def _stored_sha256(self, identity: str) -> str | None:
        """(In a thread.) The sha256 alias of the blob ``identity`` names, if published."""
        b3 = self.store.resolve(identity)
        if b3 is None:
            return None
        with self.store.index.read() as txn:
            names = self.store.index.aliases_of(b3, txn)
        found = [n[7:] for n in names if n.startswith("sha256:") and is_hex(n[7:], 64)]
        return found[0] if found else None

    # -- bytes ------------------------------------------------------------------------------

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Weights by ranged GET of their URL (the CDN target reused for later chunks, no
        credential); hub code through the GitHub source's reads of the repo it came from."""
        addr = rf.address
        if addr.repo == CHECKPOINTS:
            url = weights_url(self.base, addr.path)
            blocks = self.reader.read(url, start, end, translate=weights_error, what=str(addr),
                                      key=(self.name, CHECKPOINTS, addr.path))  # fmt: skip
        else:
            blocks = self.github.read(self._github_file(rf), start, end)
        async for block in blocks:
            yield block

    def _github_file(self, rf: RemoteFile) -> RemoteFile:
        """The same file as the GitHub source names it (``github/<owner>/<repo>@<commit>/<path>``)."""
        full = rf.meta.get("github")
        owner, _, repo = full.partition("/") if isinstance(full, str) else ("", "", "")
        gh = Address(self.github.name, owner, repo, rf.address.revision, rf.address.path)
        repo_path(gh)  # RepoNotFound for a name GitHub cannot have (the meta may come from a bundle)
        return replace(rf, source=self.github.name, address=gh, creds=Credentials())

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        """Public weights and public repositories: nothing to check."""

    async def close(self) -> None:
        await self.github.close()


def _build(ctx: BuildContext) -> Source:
    return TorchHub(ctx)


SPEC = SourceSpec(
    info=SourceInfo(
        SOURCE,
        default_ref=DEFAULT_REF,
        refs_move=True,
        listable=False,
        revision_id=rf"[0-9a-f]{{40}}|{WEIGHTS_REVISION}",
        summary=f"PyTorch hub: torch/{HUB}/{CHECKPOINTS}/<file> (weights), torch/{HUB}/<owner>_<repo>_<ref>/ "
                "(hub code from GitHub); TORCH_HOME=<mount>/torch",
    ),
    settings=(
        Setting("torch_url", TORCH_URL, "PyTorch weights host (torch/hub/checkpoints/<file> is <url>/models/<file>).",
                env="HOARD_TORCH_URL"),
    ),
    token_env=TOKEN_ENV,
    build=_build,
    order=45,
)
