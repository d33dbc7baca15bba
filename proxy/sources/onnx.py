"""The ONNX Model Hub as an origin: ``onnx/<owner>/<repo>[@<ref>]/<model_path>``.

This reads a model zoo the way onnx ≤ 1.20.1's ``onnx.hub`` did (shared/reference/sources.md
§4), with the GitHub source's raw and media hosts (``github_url``, ``github_media_url``) and
nothing else — no API call, so no rate limit:

* **Revisions.** A ref (default ``main`` of ``onnx/models``) is read as
  ``{raw}/{o}/{r}/{ref}/ONNX_HUB_MANIFEST.json``; the revision is the sha256 of those bytes
  (64 hex), so a changed manifest is a new, immutable revision and an unchanged one is the
  same, whichever ref led to it. Refs are re-read after the refs TTL. A manifest id can only
  be fetched while some ref still serves it: a pinned id this store has not seen is looked
  for at the default ref, and is RevisionNotFound if the manifest there has moved on.
* **Trees.** The manifest's ``model_path``s and ``model_with_data_path``s (test-data
  tarballs) are the files — whether or not they are still in the git tree: the manifest names
  them and the media host is asked. Each is identified and verified by its sha256
  (``model_sha``, ``model_with_data_sha``): the same bytes from the Hub or GitHub are one blob,
  and a mismatch is an integrity error, never published. Sizes come from ``model_bytes`` /
  ``model_with_data_bytes``. An entry without a sha256 or a size, or whose path breaks the
  client-path rules, is left out with a warning. The manifest itself is a file of the tree
  (``ONNX_HUB_MANIFEST.json``, its sha256 being the revision), stored as soon as it is read.
* **Metadata.** Each model's manifest entry (name, opset, tags, ``io_ports``, sizes) stays in
  its tree entry (``meta["onnx"]``), for :func:`filter_models` (``hoard ls``) and
  :func:`describe` (``hoard info``).
* **Bytes** come from ``{media}/{o}/{r}/{ref}/{path}`` (the manifest from the raw host), by
  the ref the revision was read at. A ref is a branch, so the bytes may change under it; the
  sha256 keeps that from ever reaching a reader as the old file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hoard.store.address import Address
from hoard.store.errors import HoardError, InvalidAddress, NotFound, OriginError, RevisionNotFound
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry
from hoard.store.sources import SourceInfo
from hoard.store.untrusted import check_entry, is_hex

from ..httpbase import Reply, host_of
from ..origin import Credentials, RemoteFile, ResolvedRef, Source
from . import BuildContext, SourceSpec
from ._github_api import host_error
from .github import MEDIA_URL, RAW_URL, file_url

__all__ = ["OnnxHub", "SPEC", "MANIFEST", "OnnxModel", "parse_manifest", "filter_models", "describe"]

log = logging.getLogger("hoard.sources")

MANIFEST = "ONNX_HUB_MANIFEST.json"
_MODEL, _DATA, _ROLE_MANIFEST = "model", "model_with_data", "manifest"


@dataclass(frozen=True)
class OnnxModel:
    """One model of a manifest, as a tree lists it."""

    path: str
    model: str
    opset: int
    tags: tuple[str, ...]
    size: int
    sha256: str
    #: the manifest entry as the hub wrote it (``onnx.hub.ModelInfo(raw)`` takes it)
    raw: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.raw.get("metadata")
        return meta if isinstance(meta, dict) else {}


def _host_error(reply: Reply, what: str) -> Exception:
    """The raw and media hosts' answers; a 404 says the manifest names a file the repository
    does not hold (legacy entries of onnx/models do)."""
    if reply.status == 404:
        return NotFound(f"{what}: {host_of(reply.url)} has no such file: the hub's manifest names it, "
                        "but the repository does not hold it (or no longer does)")  # fmt: skip
    return host_error(reply, what)


def _sha(value: Any) -> str | None:
    text = value.lower() if isinstance(value, str) else None
    return text if is_hex(text, 64) else None


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _add(files: dict[str, TreeEntry], path: Any, entry: TreeEntry, what: str) -> None:
    """Add one file of the manifest, unless its name is unsafe or its path is taken."""
    try:
        check_entry(path, entry)
    except InvalidAddress as exc:
        log.warning("%s: left out %r: %s", what, str(path)[:200], exc)
        return
    if path in files or path == MANIFEST:
        if path == MANIFEST or files[path].identity != entry.identity:
            log.warning("%s: left out a second file named %r", what, path)
        return
    files[path] = entry


def parse_manifest(raw: bytes, ref: str, what: str) -> dict[str, TreeEntry]:
    """An ``ONNX_HUB_MANIFEST.json`` as tree entries: every model and test-data tarball."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise OriginError(f"{what}: {MANIFEST} is not JSON") from None
    if not isinstance(doc, list):
        raise OriginError(f"{what}: {MANIFEST} is not a list of models")
    files: dict[str, TreeEntry] = {}
    for index, item in enumerate(doc):
        meta = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(meta, dict) or not isinstance(item.get("model"), str):
            log.warning("%s: manifest entry %d is not a model; left out", what, index)
            continue
        sha, size = _sha(meta.get("model_sha")), _size(meta.get("model_bytes"))
        if sha is None or size is None or not isinstance(item.get("opset_version"), int):
            log.warning("%s: %r has no model_sha, model_bytes or opset; left out", what, item["model"][:100])
            continue
        info = {"ref": ref, "onnx": {"role": _MODEL, "index": index, "entry": item}}
        _add(files, item.get("model_path"), TreeEntry.of_hash(size, ExpectedHash("sha256", sha), info), what)
        data_sha, data_size = _sha(meta.get("model_with_data_sha")), _size(meta.get("model_with_data_bytes"))
        if data_sha is not None and data_size is not None:
            data = {"ref": ref, "onnx": {"role": _DATA, "index": index, "model_path": item.get("model_path")}}
            _add(files, meta.get("model_with_data_path"),
                 TreeEntry.of_hash(data_size, ExpectedHash("sha256", data_sha), data), what)  # fmt: skip
    return files


def _model(path: str, entry: TreeEntry) -> tuple[int, OnnxModel] | None:
    """(manifest index, model) of a model file's tree entry; None for any other file (a
    tarball, the manifest, or metadata not shaped as this module writes it)."""
    onnx = entry.meta.get("onnx")
    raw = onnx.get("entry") if isinstance(onnx, dict) and onnx.get("role") == _MODEL else None
    if not isinstance(raw, dict) or entry.expected is None or not isinstance(raw.get("opset_version"), int):
        return None
    meta = raw.get("metadata")
    tags = meta.get("tags") if isinstance(meta, dict) else None
    index = onnx.get("index") if isinstance(onnx.get("index"), int) else 1 << 30  # type: ignore[union-attr]
    names = tuple(str(t) for t in tags) if isinstance(tags, list) else ()
    opset: int = raw["opset_version"]
    return index, OnnxModel(path, str(raw.get("model")), opset, names, entry.size, entry.expected.hex, raw)


def filter_models(
    snapshot: Snapshot,
    model: str | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    opset: int | None = None,
) -> list[OnnxModel]:
    """The models of an ``onnx`` revision, in manifest order, as ``onnx.hub.list_models``
    selects them: ``model`` matches a name exactly but case-insensitively, ``tags`` keeps
    models with any of them (case-insensitively); ``opset`` keeps that opset only."""
    found = sorted((m for p, e in snapshot.files.items() if (m := _model(p, e)) is not None),
                   key=lambda im: (im[0], im[1].path))  # fmt: skip
    wanted = {t.lower() for t in tags} if tags is not None else None
    return [
        m for _, m in found
        if (model is None or m.model.lower() == model.lower())
        and (wanted is None or wanted & {t.lower() for t in m.tags})
        and (opset is None or m.opset == opset)
    ]  # fmt: skip


def describe(entry: TreeEntry) -> dict[str, Any] | None:
    """What ``hoard info`` shows of an ONNX model file (None for other files): its name,
    opset, onnx version, tags, ``io_ports`` and sizes, from the manifest."""
    hit = _model("", entry)
    if hit is None:
        return None
    found = hit[1]
    meta = found.metadata
    return {
        "model": found.model, "opset": found.opset, "onnx_version": found.raw.get("onnx_version"),
        "tags": list(found.tags), "io_ports": meta.get("io_ports"), "model_bytes": found.size,
        "model_with_data_path": meta.get("model_with_data_path"),
        "model_with_data_bytes": meta.get("model_with_data_bytes"),
    }  # fmt: skip


class OnnxHub(Source):
    name = "onnx"
    #: public model zoos only: no revision is ever restricted to some clients
    may_restrict = False

    def __init__(self, ctx: BuildContext) -> None:
        self.http = ctx.http
        self.reader = ctx.reader
        self.store = ctx.store
        self.raw = str(ctx.settings.get("github_url") or RAW_URL).rstrip("/")
        self.media = str(ctx.settings.get("github_media_url") or MEDIA_URL).rstrip("/")

    async def _manifest(self, addr: Address, ref: str) -> bytes:
        """The manifest a ref serves now; RevisionNotFound when there is none."""
        reply = await self.http.request("GET", file_url(self.raw, addr, ref, MANIFEST))
        if reply.status == 404:
            raise RevisionNotFound(f"{addr.repo_key}@{ref}: no {MANIFEST} there (no such repo, ref or model hub)")
        if reply.status != 200:
            raise host_error(reply, f"{addr.repo_key}@{ref}/{MANIFEST}")
        return reply.body

    async def resolve(self, addr: Address, ref: str, creds: Credentials) -> ResolvedRef:
        raw = await self._manifest(addr, ref)
        return ResolvedRef(hashlib.sha256(raw).hexdigest(), {"ref": ref, "manifest": raw})

    async def snapshot(self, addr: Address, resolved: ResolvedRef, creds: Credentials) -> Snapshot:
        revision = resolved.revision
        raw, ref = resolved.info.get("manifest"), resolved.info.get("ref")
        if not isinstance(raw, bytes) or not isinstance(ref, str):
            ref = self.info.default_ref
            raw = await self._manifest(addr, ref)
            if hashlib.sha256(raw).hexdigest() != revision:
                raise RevisionNotFound(
                    f"{addr.repo_key}@{revision}: not a manifest this store holds, nor the one {ref} serves now"
                )
        what = f"{addr.repo_key}@{ref}"
        files = parse_manifest(raw, ref, what)
        files[MANIFEST] = TreeEntry.of_hash(len(raw), ExpectedHash("sha256", revision), {"ref": ref, "host": "raw",
                                            "onnx": {"role": _ROLE_MANIFEST}})  # fmt: skip
        await self._keep(raw, files[MANIFEST])
        models = sum(1 for e in files.values() if e.meta["onnx"]["role"] == _MODEL)
        return Snapshot(files, int(time.time()), {"ref": ref, "manifest": MANIFEST, "models": models})

    async def _keep(self, raw: bytes, entry: TreeEntry) -> None:
        """Store the manifest's bytes, already in hand (a full disk only costs a later fetch)."""
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.store.add_bytes(raw, expected=entry.expected)
            )
        except (HoardError, OSError) as exc:
            log.warning("could not keep %s in the store now: %s", MANIFEST, exc)

    async def read(self, rf: RemoteFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Models and tarballs from the media host (which may redirect to object storage: the
        target is reused for later chunks), the manifest from the raw host; no credential."""
        addr = rf.address
        ref = rf.meta.get("ref") if isinstance(rf.meta.get("ref"), str) else self.info.default_ref
        raw = rf.meta.get("host") == "raw"
        url = file_url(self.raw if raw else self.media, addr, ref, addr.path)
        async for block in self.reader.read(
            url, start, end, translate=_host_error, what=str(addr), key=None if raw else (self.name, rf.identity)
        ):
            yield block

    async def check_access(self, addr: Address, snap: Snapshot, creds: Credentials) -> None:
        """Public model zoos: nothing to check."""


def _build(ctx: BuildContext) -> Source:
    return OnnxHub(ctx)


SPEC = SourceSpec(
    info=SourceInfo(
        "onnx",
        default_ref="main",
        refs_move=True,
        revision_id=r"[0-9a-f]{64}",
        summary="ONNX Model Hub manifests on GitHub: onnx/<owner>/<repo> (onnx/onnx/models)",
    ),
    build=_build,
    order=40,
)
