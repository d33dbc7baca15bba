"""What ``hoard ls`` and ``hoard info`` report, as data: shared by the commands and ``import hoard``.

No click here: :mod:`.cmd_ls` and :mod:`.cmd_info` print these documents (as text, or as
they are with ``--json``), and :func:`hoard.ls` / :func:`hoard.info` return them.

* :func:`ls_data` — cached repos under a prefix (a list of repo summaries), the files of one
  repo (``{"repo", "revision", "files": [...]}``), or the models of an ONNX hub repo
  (``{"repo", "revision", "models": [...]}``, filtered like ``onnx.hub.list_models``). A repo
  the store has never seen is asked of its origin through ``online``.
* :func:`info_data` — a repo's refs, revisions and cached bytes, a file's hashes, presence and
  how it is verified (a list for a model id naming several files), or the store's summary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hoard.proxy.sources.onnx import describe as describe_onnx
from hoard.proxy.sources.onnx import filter_models
from hoard.store.address import Address, parse_prefix
from hoard.store.catalog import file_state, list_repos, resolve_cached
from hoard.store.errors import NotFound, UsageError
from hoard.store.records import Snapshot, TreeEntry
from hoard.store.sources import source_info
from hoard.store.store import Store

from .model_ids import Target, read_target

__all__ = ["OnlineResolver", "is_repo_address", "ls_data", "info_data", "verification", "store_data"]

#: (revision, tree) of a repo address the store has never seen, asked at its origin
OnlineResolver = Callable[[Address], tuple[str, Snapshot]]


def is_repo_address(prefix: str) -> bool:
    """Whether ``prefix`` names one repo (``<source>/[<kind>/]<owner>/<repo>...``)."""
    parts = parse_prefix(prefix)
    info = source_info(parts[0]) if parts else None
    need = 4 if info is not None and len(parts) > 1 and parts[1] in info.kinds else 3
    return len(parts) >= need


def ls_data(
    store: Store,
    prefix: str = "",
    *,
    online: OnlineResolver,
    pinned: bool = False,
    tags: Sequence[str] = (),
    model: str | None = None,
    opset: int | None = None,
) -> list[dict[str, Any]] | dict[str, Any]:
    """``hoard ls --json``: see the module docstring."""
    onnx_filters = bool(tags or model or opset is not None)
    if prefix and is_repo_address(prefix):
        if onnx_filters or prefix.startswith("onnx/"):
            return _onnx_models(store, prefix, online, tags, model, opset)
        return _repo_files(store, prefix, online)
    if onnx_filters:
        raise UsageError("--tag, --model and --opset list the models of an ONNX hub repo: hoard ls onnx/<owner>/<repo>")
    parts = parse_prefix(prefix)
    key = "/".join(parts) + ("/" if parts else "")
    return [r.as_dict() for r in list_repos(store, key) if r.pinned or not pinned]


def _revision(store: Store, addr: Address, online: OnlineResolver) -> tuple[str, Snapshot]:
    """The revision an address means: from the store, else asked at its origin."""
    try:
        return resolve_cached(store, addr)
    except NotFound:
        return online(addr.with_path(""))


def _onnx_models(store: Store, text: str, online: OnlineResolver, tags: Sequence[str], model: str | None,
                 opset: int | None) -> dict[str, Any]:  # fmt: skip
    addr = read_target(text).addr
    if addr.source != "onnx":
        raise UsageError("--tag, --model and --opset list the models of an ONNX hub repo (onnx/<owner>/<repo>)")
    rev, snap = _revision(store, addr, online)
    rows = []
    for m in filter_models(snap, model=model, tags=list(tags) or None, opset=opset):
        entry = snap.files[m.path]
        rows.append({"model": m.model, "opset": m.opset, "tags": list(m.tags), "path": m.path,
                     "size": entry.size, "cached": store.resolve(entry.identity) is not None})  # fmt: skip
    return {"repo": addr.repo_key, "revision": rev, "models": rows}


def _repo_files(store: Store, text: str, online: OnlineResolver) -> dict[str, Any]:
    target = read_target(text)
    addr = target.addr
    rev, snap = _revision(store, addr, online)
    missing = [f for f in target.files if f not in snap.files]
    if missing:
        raise NotFound(f"{addr.repo_key}@{rev}: no file {', '.join(map(repr, missing))}")
    states = [file_state(store, p, e).as_dict() for p, e in sorted(snap.files.items()) if _listed(target, p)]
    return {"repo": addr.repo_key, "revision": rev, "files": states}


def _listed(target: Target, path: str) -> bool:
    if target.files:
        return path in target.files
    under = target.addr.path
    return not under or path == under or path.startswith(under + "/")


def info_data(store: Store, address: str | None, *, max_size: int | None = None) -> Any:
    """``hoard info --json``: see the module docstring."""
    if not address:
        return store_data(store, max_size)
    target = read_target(address)
    rev, snap = resolve_cached(store, target.addr)
    if target.is_model_id or target.addr.path:
        docs = [_file_info(store, addr, rev, snap) for addr in target.addresses]
        return docs[0] if len(docs) == 1 else docs
    addr = target.addr
    pins = store.pins()
    return {
        "repo": addr.repo_key,
        "revision": rev,
        "refs": {k: v.revision for k, v in store.refs(addr.repo_key).items()},
        "revisions": store.revisions(addr.repo_key),
        "files": len(snap.files),
        "size": snap.size,
        "cached_bytes": sum(e.size for e in snap.files.values() if store.resolve(e.identity)),
        "pinned": f"snapshot:{addr.repo_key}@{rev}" in pins,
        "info": snap.info,
    }


def verification(entry: TreeEntry) -> dict[str, Any]:
    """How a file's bytes are checked before they are published."""
    return {
        "verified_by": entry.verified_by,
        "expected": entry.expected.text if entry.expected else None,
        "unverified": None if entry.expected else str(entry.meta.get("unverified") or "its source states no hash"),
    }


def _file_info(store: Store, addr: Address, rev: str, snap: Snapshot) -> dict[str, Any]:
    entry = snap.files.get(addr.path)
    if entry is None:
        raise NotFound(f"{addr.path} is not a file of {addr.repo_key}@{rev}")
    state = file_state(store, addr.path, entry)
    data: dict[str, Any] = state.as_dict() | verification(entry) | {
        "address": str(addr.with_revision(rev)),
        "revision": rev,
        "blob_path": str(store.blob_path(state.b3)) if state.b3 else None,
        "pinned": bool(state.b3 and f"blob:{state.b3}" in store.pins()),
        "meta": entry.meta,
    }
    if state.b3:
        with store.index.read() as txn:
            data["aliases"] = store.index.aliases_of(state.b3, txn)
    model = describe_onnx(entry) if addr.source == "onnx" else None
    if model is not None:
        data["onnx"] = model
    return data


def store_data(store: Store, max_size: int | None) -> dict[str, Any]:
    """The whole store: where it is, its blobs, partials, repos and pins."""
    usage = store.usage()
    counts = store.index.counts()
    return {
        "home": str(store.home),
        "chunk_size": store.chunk_size,
        "max_size": max_size,
        "disk_free": store.disk_free(),
        "aliases": counts["aliases"],
        "repos": len(store.repos()),
        "pins": counts["pins"],
        **usage,
    }
