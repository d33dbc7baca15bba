"""Ritual's model repos on Arweave (shared/reference/sources.md §1, §3).

Names: ``arweave/<owner>/<repo>[@<manifest-txid>]/<path>``; the owner is the uploader's
wallet address (43 base64url characters), the repo its ``Repo-Name`` tag.

* **latest** (the default ref) is the repo-manifest transaction (``App-Name=Ritual``,
  ``Repo-Name=<repo>``, ``Type=manifest``) from ``<owner>`` with the greatest ``Unix-Time``,
  found with GraphQL at the gateway, every page of it. An upload still in flight (its
  manifest listed by GraphQL but its data not served yet) is passed over for the newest one
  whose manifest can be read, so ``latest`` never breaks while a new version is being
  mined; it becomes ``latest`` once served. A manifest tx id pins an upload and is the
  immutable revision.
* A revision's tree is the manifest's ``paths`` (read with ``/raw/{id}``, else
  ``/tx/{id}/data.``); each file's size and tags come from GraphQL, 100 ids per query. A file
  uploaded in sections (``File-Type: Sectioned``, ritual-arweave 0.2.0) is one file of the
  whole size whose bytes are its ``N.section`` transactions in order; a lazy read fetches
  only the sections it touches. Names that break the client-path rules are dropped with a
  warning. A file the gateway does not know yet fails the tree with a retryable error rather
  than leave it out: a revision, once stored, is never fetched again.
* Every file is verified against its ``File-SHA256`` tag (for a sectioned file, the tag its
  sections carry): its identity is ``sha256:<hex>``, so the same bytes from the Hub and from
  Arweave are one blob, and its tx id becomes the alias ``ar:<txid>`` (recorded when the blob
  is published, or at once when the blob is already in the store). A file without the tag
  has the identity ``ar:<txid>``, is verified by its length only, and its ``meta["unverified"]``
  says so (``hoard info`` shows it).
* Bytes come from the gateways in order (:mod:`._arweave_gateways`); a transaction still
  pending is a transient fault, retried by the fetch core. What the gateways say is judged
  in :mod:`._arweave_tree`.

Arweave data is public: no credential is ever sent to a gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from hoard.store.address import Address
from hoard.store.errors import InvalidAddress, NotFound, OriginError, RepoNotFound, RevisionNotFound
from hoard.store.records import Snapshot, TreeEntry
from hoard.store.sources import SourceInfo

from ..httpbase import host_of
from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from . import BuildContext, Setting, SourceSpec
from ._arweave_gateways import PAGE, ArweaveGateways, not_ready
from ._arweave_tree import (
    MANIFEST_TYPE,
    TXID,
    UNTAGGED,
    file_entry,
    height_of,
    is_repo_manifest,
    parse_manifest,
    read_plan,
    section_order,
    tags_of,
    unix_time,
    usable_paths,
)

__all__ = ["Arweave", "SPEC", "TXID", "MANIFEST_TYPE", "UNTAGGED", "tags_of", "parse_manifest"]

log = logging.getLogger("hoard.sources.arweave")

_MAX_MANIFEST = 16 << 20  # a node serves at most 12 MiB of data this way; no manifest is near
_LATEST_TRIES = 3  # uploads tried, newest first, when the newest manifest is not served yet

_NODE = "id owner { address } data { size type } tags { name value } block { height timestamp }"
_BY_IDS = (
    "query($ids: [ID!], $after: String) { transactions(ids: $ids, first: %d, after: $after) "
    "{ pageInfo { hasNextPage } edges { cursor node { %s } } } }" % (PAGE, _NODE)
)
_MANIFESTS = (
    "query($owners: [String!], $repo: [String!]!, $after: String) { transactions(owners: $owners, "
    'tags: [{name: "App-Name", values: ["Ritual"]}, {name: "Repo-Name", values: $repo}, '
    '{name: "Type", values: ["manifest"]}], sort: HEIGHT_DESC, first: %d, after: $after) '
    "{ pageInfo { hasNextPage } edges { cursor node { %s } } } }" % (PAGE, _NODE)
)


def _check_owner(addr: Address) -> None:
    if not TXID.fullmatch(addr.owner):
        raise InvalidAddress(
            f"{addr.repo_key}: an Arweave owner is a wallet address (43 base64url characters), not {addr.owner[:60]!r}"
        )


class Arweave(Source):
    name = "arweave"
    #: the permaweb is public: nothing there turns private
    may_restrict = False

    def __init__(self, ctx: BuildContext) -> None:
        self.gw = ArweaveGateways(ctx.http, ctx.reader, ctx.settings.get("arweave_gateway") or ())
        self.store = ctx.store

    # -- names ------------------------------------------------------------------------------

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        """``latest``: the newest upload whose manifest the gateways serve."""
        _check_owner(addr)
        if ref != SPEC.info.default_ref:
            raise RevisionNotFound(f"{addr.repo_key}@{ref}: an Arweave repo has 'latest' and manifest tx ids only")
        timed = await self.gw.each(lambda gw: self._uploads_at(gw, addr))
        first_error: Exception | None = None
        for _, node in timed[:_LATEST_TRIES]:
            try:
                paths = await self._manifest(node["id"], f"{addr.repo_key}@{node['id']}")
            except (OriginError, RevisionNotFound) as exc:  # pending, not served yet, or broken
                log.warning("%s: upload %s cannot be read (%s); trying the one before", addr.repo_key, node["id"], exc)
                first_error = first_error or exc
                continue
            return ResolvedRef(node["id"], {"node": node, "paths": paths})
        assert first_error is not None
        raise first_error

    async def _uploads_at(self, gw: str, addr: Address) -> list[tuple[float, dict[str, Any]]]:
        """The repo's uploads a gateway lists, newest ``Unix-Time`` first (among equal times
        the mined one, then the higher block). RepoNotFound when it lists none: the next
        gateway may have indexed them."""
        nodes = await self.gw.pages_at(gw, _MANIFESTS, {"owners": [addr.owner], "repo": [addr.repo]}, addr.repo_key)
        timed = [(t, n) for n in nodes if is_repo_manifest(n, addr.owner, addr.repo) and (t := unix_time(n)) is not None]
        if not timed:
            raise RepoNotFound(f"{addr.repo_key}: no Ritual repo of that name from that owner at {host_of(gw)}")
        timed.sort(key=lambda tn: (tn[0], tn[1].get("block") is not None, height_of(tn[1])), reverse=True)
        return timed

    async def _manifest(self, txid: str, what: str) -> dict[str, str]:
        """A manifest's paths; RevisionNotFound when no gateway knows its transaction."""
        try:
            raw = await self.gw.data(txid, what, _MAX_MANIFEST)
        except NotFound as exc:
            raise RevisionNotFound(f"{exc} (no such manifest)") from None
        return parse_manifest(raw, what)

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        _check_owner(addr)
        manifest_id = resolved.revision
        what = f"{addr.repo_key}@{manifest_id}"
        node = resolved.info.get("node") or (await self._nodes([manifest_id], what)).get(manifest_id)
        if node is None or not is_repo_manifest(node, addr.owner, addr.repo):
            raise RevisionNotFound(f"{what}: no upload of this repo by this owner has that manifest id")
        paths = resolved.info.get("paths")
        if paths is None:
            paths = await self._manifest(manifest_id, what)
        files = await self._tree(paths, what)
        await asyncio.get_running_loop().run_in_executor(None, self._name_present, files)
        tags = tags_of(node)
        created = unix_time(node)
        info = {"manifest": manifest_id, "unix_time": tags.get("Unix-Time"), "app_version": tags.get("App-Version")}
        return Snapshot(files, int(created) if created and created > 0 else 0, info)

    async def _nodes(self, ids: list[str], what: str) -> dict[str, dict[str, Any]]:
        """GraphQL nodes by id, ``PAGE`` ids per query."""
        out: dict[str, dict[str, Any]] = {}
        unique = sorted(set(ids))
        for i in range(0, len(unique), PAGE):
            for node in await self.gw.pages(_BY_IDS, {"ids": unique[i : i + PAGE]}, what):
                if isinstance(node.get("id"), str):
                    out[node["id"]] = node
        return out

    async def _tree(self, paths: dict[str, str], what: str) -> dict[str, TreeEntry]:
        """The tree entries of a manifest's paths (see :func:`~._arweave_tree.usable_paths`)."""
        safe = usable_paths(paths, what)
        nodes = await self._nodes(list(safe.values()), what)
        unknown = sorted(p for p, t in safe.items() if t not in nodes)
        if unknown:
            raise not_ready(
                f"{what}: the gateway does not know the transaction of {unknown[0]} ({safe[unknown[0]]}) yet; try again shortly"
            )
        sectioned = {t: n for t, n in nodes.items() if tags_of(n).get("File-Type") == "Sectioned"}
        sections = await self._sections(sectioned, what)
        files: dict[str, TreeEntry] = {}
        for path, txid in safe.items():
            entry = file_entry(nodes[txid], sections.get(txid), f"{what}/{path}")
            if entry is not None:
                files[path] = entry
        return files

    async def _sections(self, manifests: dict[str, dict[str, Any]], what: str) -> dict[str, list[dict[str, Any]]]:
        """Sectioned-file manifest id → its section nodes in order (those that are not a
        well-formed ``0.section`` … ``N.section`` list are left out, with a warning)."""
        order: dict[str, list[str]] = {}
        for txid in sorted(manifests):
            raw = await self.gw.data(txid, f"{what} (sections of {txid})", _MAX_MANIFEST)
            ids = section_order(parse_manifest(raw, what), f"{what} ({txid})")
            if ids is not None:
                order[txid] = ids
        nodes = await self._nodes([t for ts in order.values() for t in ts], what)
        out: dict[str, list[dict[str, Any]]] = {}
        for txid, ids in order.items():
            missing = [t for t in ids if t not in nodes]
            if missing:
                raise not_ready(f"{what}: the gateway does not know section {missing[0]} of {txid} yet")
            out[txid] = [nodes[t] for t in ids]
        return out

    def _name_present(self, files: dict[str, TreeEntry]) -> None:
        """(In a thread.) Name blobs already in the store (the same bytes from the Hub, say)
        by the tx ids of this tree's files too, as publishing them would have."""
        for entry in files.values():
            b3 = self.store.resolve(entry.identity)
            aliases = [a for a in entry.meta.get("aliases") or () if a != entry.identity]
            if b3 is not None and aliases and any(self.store.resolve(a) != b3 for a in aliases):
                self.store.add_aliases(aliases, b3)

    # -- bytes ------------------------------------------------------------------------------

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end): of the file's transaction, or of the sections they fall in."""
        what = str(rf.address)
        offset = 0
        for txid, size in read_plan(rf.meta, rf.identity, rf.size, what):
            lo, hi = max(start, offset), min(end, offset + size)
            if lo < hi:
                async for block in self.gw.read(txid, lo - offset, hi - offset, what):
                    yield block
            offset += size
            if offset >= end:
                return

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        """Arweave data is public: nothing to check."""


def _build(ctx: BuildContext) -> Source:
    return Arweave(ctx)


SPEC = SourceSpec(
    info=SourceInfo(
        "arweave",
        default_ref="latest",
        refs_move=True,
        revision_id=TXID.pattern,
        summary="Ritual (infernet-ml) model repos on Arweave: arweave/<wallet address>/<repo>",
    ),
    settings=(
        Setting("arweave_gateway", ("https://arweave.net",),
                "Arweave gateway URL; several (repeat the flag, or separate with commas) are tried in order.",
                env="HOARD_ARWEAVE_GATEWAY", multiple=True),
    ),
    build=_build,
    order=20,
)
