"""``hoard info [ADDRESS]``: what the store holds for a repo or a file (or the whole store).

A file's information says how its bytes are checked (``verified_by``): against a whole-file
hash (``sha256``, ``gitsha1``, ``blake3``, with ``expected`` naming it), or by their length
only, with the reason its source gave (``unverified``: an Arweave file without a
``File-SHA256`` tag, say). An infernet-ml model id (``arweave/<owner>/<repo>:a,b``) shows each
file it names; with several, ``--json`` prints a list.
"""

from __future__ import annotations

from typing import Any

import click

from hoard.store.address import Address
from hoard.store.catalog import file_state, resolve_cached
from hoard.store.errors import NotFound
from hoard.store.records import Snapshot, TreeEntry
from hoard.store.store import Store

from hoard.proxy.sources.onnx import describe as describe_onnx

from .common import App, common_options, emit
from .config import format_size
from .model_ids import read_target

__all__ = ["info", "verification"]

#: keys of a file's information not printed as "key value" lines
_NOT_LINES = ("meta", "expected", "unverified", "verified_by")


@click.command("info")
@click.argument("address", required=False)
@common_options()
def info(app: App, address: str | None) -> None:
    """Show a repo's refs, revisions and cached bytes, a file's hashes, presence and how it
    is verified, or (with no ADDRESS) a summary of the store. ADDRESS may be an infernet-ml
    model id (arweave/<owner>/<repo>:file1,file2)."""
    if not address:
        _store_info(app)
        return
    target = read_target(address)
    store = app.store
    rev, snap = resolve_cached(store, target.addr)
    if target.is_model_id or target.addr.path:
        docs = [_file_info(store, addr, rev, snap) for addr in target.addresses]
        text = "\n\n".join(_file_lines(d) for d in docs)
        emit(app, docs[0] if len(docs) == 1 else docs, text)
        return
    addr = target.addr
    pins = store.pins()
    cached = sum(e.size for e in snap.files.values() if store.resolve(e.identity))
    data = {
        "repo": addr.repo_key,
        "revision": rev,
        "refs": {k: v.revision for k, v in store.refs(addr.repo_key).items()},
        "revisions": store.revisions(addr.repo_key),
        "files": len(snap.files),
        "size": snap.size,
        "cached_bytes": cached,
        "pinned": f"snapshot:{addr.repo_key}@{rev}" in pins,
        "info": snap.info,
    }
    human = "\n".join(
        [
            f"repo       {data['repo']}",
            f"revision   {rev}",
            "refs       " + ", ".join(f"{k} -> {v[:12]}" for k, v in data["refs"].items()),  # type: ignore[union-attr]
            f"files      {len(snap.files)}",
            f"size       {format_size(snap.size)} ({format_size(cached)} cached)",
            f"pinned     {'yes' if data['pinned'] else 'no'}",
        ]
    )
    emit(app, data, human)


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


def _file_lines(data: dict[str, Any]) -> str:
    lines = [f"{k:<10} {v}" for k, v in data.items() if k not in _NOT_LINES and k != "onnx"]
    how = f"{data['verified_by']} ({data['expected']})" if data["expected"] else f"{data['verified_by']}: {data['unverified']}"
    lines.insert(2, f"{'verified':<10} {how}")
    model = data.get("onnx")
    if model:
        lines.append(f"{'model':<10} {model['model']} (opset {model['opset']}, onnx {model['onnx_version']})")
        lines.append(f"{'tags':<10} {', '.join(model['tags']) or '-'}")
        ports = model.get("io_ports") or {}
        for kind in ("inputs", "outputs"):
            for port in ports.get(kind) or []:
                lines.append(f"{kind[:-1]:<10} {port.get('name')}: {port.get('elem_type')} {port.get('shape')}")
        if model.get("model_with_data_path"):
            lines.append(f"{'test data':<10} {model['model_with_data_path']} ({model.get('model_with_data_bytes')} bytes)")
    return "\n".join(lines)


def _store_info(app: App) -> None:
    store = app.store
    usage = store.usage()
    counts = store.index.counts()
    data = {
        "home": str(store.home),
        "chunk_size": store.chunk_size,
        "max_size": app.settings.max_size,
        "disk_free": store.disk_free(),
        "aliases": counts["aliases"],
        "repos": len(store.repos()),
        "pins": counts["pins"],
        **usage,
    }
    human = "\n".join(
        [
            f"home       {store.home}",
            f"blobs      {usage['blobs']} ({format_size(usage['blob_bytes'])})",
            f"partials   {usage['partials']} ({format_size(usage['partial_bytes'])} present)",
            f"repos      {data['repos']}",
            f"pins       {counts['pins']}",
            f"disk free  {format_size(data['disk_free'])}",
        ]
    )
    emit(app, data, human)
