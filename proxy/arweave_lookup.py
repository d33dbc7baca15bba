"""Finding what a transaction id names, for the Arweave gateway face.

:class:`TxLookup` answers "what is ``<txid>``?" with a :class:`~.arweave_index.TxRef`:

1. from the in-memory :class:`~.arweave_index.TxIndex` (every Arweave revision in the store);
2. else from the store again (:meth:`TxIndex.refresh`: a revision stored meanwhile by another
   request or process), one scan at a time and at most one a second;
3. else from the gateway (one lookup per id at a time, however many clients ask): GraphQL
   ``transaction(id)`` gives its owner and tags.

   * A Ritual repo manifest (``App-Name=Ritual``, ``Type=manifest``, ``Repo-Name``) is
     resolved through the catalog as ``arweave/<owner>/<repo>@<txid>`` and indexed, so every
     file of the repo is known before its client asks for it.
   * A file or section of a Ritual upload (``Repo-Name``, ``Unix-Time``) is looked for in the
     repo manifests of the same upload (the same owner, repo and ``Unix-Time``), which are
     resolved and indexed the same way.
   * Anything else that is mined is a ``plain`` transaction, served as itself (identity
     ``ar:<txid>``, verified by its length only); a pending one is not served yet (404,
     as the gateway says), and an id the gateway does not know is None.

GraphQL goes through :class:`~.arweave_cache.GatewayPassthrough`, so the answers are kept and a
lookup made once works while the gateways are down. Resolution goes through the catalog (the
snapshot is stored and shared with ``/v1`` and the mount). A transaction is only resolved once
mined: a pending upload would be a transient failure that marks the origin down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from hoard.store.address import Address, check_segment
from hoard.store.errors import HoardError, NotFound, OriginError

from .arweave_cache import GatewayPassthrough
from .arweave_index import TxIndex, TxRef
from .catalog import Resolved
from .origin import ANONYMOUS, RemoteFile
from .service import Services
from .sources.arweave import MANIFEST_TYPE, TXID, tags_of

__all__ = ["TxLookup", "is_manifest"]

log = logging.getLogger("hoard.arweave")

_NODE = (
    "query($id: ID!) { transaction(id: $id) "
    "{ id owner { address } data { size type } tags { name value } block { height } } }"
)
_UPLOAD = (
    "query($owners: [String!], $repo: [String!]!, $time: [String!]!) { transactions(owners: $owners, "
    'tags: [{name: "App-Name", values: ["Ritual"]}, {name: "Repo-Name", values: $repo}, '
    '{name: "Type", values: ["manifest"]}, {name: "Unix-Time", values: $time}], first: 10) '
    "{ edges { node { id block { height } } } } }"
)
_REFRESH_EVERY = 1.0  # seconds between two scans of the store on index misses
_UNVERIFIED = "an Arweave transaction outside any Ritual repo: verified by its length only"


class TxLookup:
    """Transaction ids → :class:`TxRef`, and the :class:`RemoteFile` to serve one."""

    def __init__(self, svc: Services, gateway: GatewayPassthrough) -> None:
        self.svc = svc
        self.gw = gateway
        self.index = TxIndex()
        self._finding: dict[str, asyncio.Task[TxRef | None]] = {}
        self._scan: asyncio.Task[int] | None = None
        self._scanned_at = float("-inf")

    # -- the index ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Index every Arweave revision in the store (at start)."""
        await self._refresh(force=True)

    async def _refresh(self, force: bool = False) -> None:
        """Scan the store for revisions not indexed yet: one scan at a time, shared."""
        if self._scan is None or self._scan.done():
            if not force and time.monotonic() - self._scanned_at < _REFRESH_EVERY:
                return
            loop = asyncio.get_running_loop()
            self._scan = loop.create_task(asyncio.to_thread(self.index.refresh, self.svc.store))
            self._scan.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._scanned_at = time.monotonic()
        try:
            added = await asyncio.shield(self._scan)
        except Exception as exc:  # noqa: BLE001 - the index only saves lookups: never fail for it
            log.warning("indexing the store's Arweave revisions: %s", exc)
            return
        if added:
            log.info("indexed %d Arweave revision(s) from the store", added)

    async def find(self, txid: str, *, discover: bool = True) -> TxRef | None:
        """What ``txid`` names (see the module docstring); None if the gateway does not know
        it (or, without ``discover``, if the store does not)."""
        ref = self.index.get(txid)
        if ref is None:
            await self._refresh()
            ref = self.index.get(txid)
        if ref is not None or not discover:
            return ref
        task = self._finding.get(txid)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._discover(txid))
            self._finding[txid] = task
            task.add_done_callback(lambda t: (self._finding.pop(txid, None), t.cancelled() or t.exception()))
        return await asyncio.shield(task)

    # -- the gateway --------------------------------------------------------------------------

    async def _graphql(self, query: str, variables: dict[str, Any], what: str) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}, separators=(",", ":")).encode()
        answer = await self.gw.ask("POST", "/graphql", body=body)
        try:
            doc = answer.json() if answer.status == 200 else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
            raise OriginError(f"{what}: the gateway's GraphQL answer is unusable (HTTP {answer.status})")
        data: dict[str, Any] = doc["data"]
        return data

    async def _discover(self, txid: str) -> TxRef | None:
        data = await self._graphql(_NODE, {"id": txid}, txid)
        node = data.get("transaction")
        if not isinstance(node, dict):
            return None
        tags = tags_of(node)
        owner = _field(node, "owner", "address")
        if not isinstance(owner, str) or not TXID.fullmatch(owner):
            raise OriginError(f"{txid}: the gateway gives no owner address")
        mined = node.get("block") is not None
        repo = tags.get("Repo-Name")
        ritual = tags.get("App-Name") == "Ritual" and bool(repo) and mined
        if ritual and repo:
            if tags.get("Type") == "manifest" and "File-Type" not in tags:
                await self.resolve(owner, repo, txid)
            elif tags.get("Unix-Time"):
                await self._resolve_upload(owner, repo, tags["Unix-Time"], txid)
            found = self.index.get(txid)
            if found is not None:
                return found
        if not mined:
            raise NotFound(f"{txid}: the transaction is still pending at the gateway; its data is not served yet")
        size = _size(node)
        if size is None:
            raise OriginError(f"{txid}: the gateway gives no data size")
        kind = tags.get("Content-Type") or _field(node, "data", "type") or ""
        ref = TxRef("plain", owner, size=size, content_type=kind)
        if not ritual:
            self.index.add_plain(txid, ref)  # a Ritual tx may yet be found in a later lookup
        return ref

    async def _resolve_upload(self, owner: str, repo: str, unix_time: str, txid: str) -> None:
        """Resolve the repo manifests of one upload until one lists ``txid``."""
        data = await self._graphql(_UPLOAD, {"owners": [owner], "repo": [repo], "time": [unix_time]}, txid)
        conn = data.get("transactions")
        edges = conn.get("edges") if isinstance(conn, dict) else None
        for edge in edges if isinstance(edges, list) else ():
            node = edge.get("node") if isinstance(edge, dict) else None
            manifest = node.get("id") if isinstance(node, dict) else None
            if isinstance(manifest, str) and TXID.fullmatch(manifest) and node.get("block") is not None:
                await self.resolve(owner, repo, manifest)
                if self.index.get(txid) is not None:
                    return

    async def resolve(self, owner: str, repo: str, revision: str) -> Resolved | None:
        """Resolve and index ``arweave/<owner>/<repo>@<revision>``; None (logged) if it cannot
        be now. Arweave data is public: no access check."""
        try:
            addr = Address("arweave", check_segment(owner, "owner"), check_segment(repo, "repo"), revision)
            resolved = await self.svc.catalog.resolve(addr, ANONYMOUS, access="none")
        except HoardError as exc:
            log.info("arweave/%s/%s@%s not resolved: %s", owner, repo[:100], revision, exc)
            return None
        self.index.add_snapshot(addr.repo_key, revision, resolved.snapshot)
        return resolved

    # -- files --------------------------------------------------------------------------------

    async def remote_file(self, txid: str, ref: TxRef) -> RemoteFile:
        """The file whose bytes (or, for a section, whose window) ``txid`` names."""
        if ref.kind == "plain":
            meta = {"tx": txid, "content_type": ref.content_type, "unverified": _UNVERIFIED}
            addr = Address("arweave", ref.owner, "tx", txid, "data")
            return RemoteFile("arweave", addr, f"ar:{txid}", ref.size, None, ANONYMOUS, meta)
        addr = Address("arweave", ref.owner, ref.repo, ref.revision)
        resolved = await self.svc.catalog.resolve(addr, ANONYMOUS, access="none")
        return self.svc.catalog.file(resolved, ref.path, ANONYMOUS)


def _field(node: dict[str, Any], outer: str, inner: str) -> str | None:
    """``node[outer][inner]`` if it is a string (GraphQL answers are origin input)."""
    part = node.get(outer)
    value = part.get(inner) if isinstance(part, dict) else None
    return value if isinstance(value, str) else None


def _size(node: dict[str, Any]) -> int | None:
    data = node.get("data")
    try:
        size = int(data.get("size")) if isinstance(data, dict) else -1
    except (TypeError, ValueError):
        return None
    return size if size >= 0 else None


def is_manifest(ref: TxRef) -> bool:
    """True if the transaction's data is a manifest (JSON), not file bytes."""
    return ref.kind in ("repo", "sectioned") or (ref.kind == "plain" and ref.content_type == MANIFEST_TYPE)

