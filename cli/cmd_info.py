"""``hoard info [ADDRESS]``: what the store holds for a repo or a file (or the whole store)."""

from __future__ import annotations

import click

from hoard.store.address import parse_address
from hoard.store.catalog import file_state, resolve_cached
from hoard.store.errors import NotFound

from .common import App, common_options, emit
from .config import format_size


@click.command("info")
@click.argument("address", required=False)
@common_options()
def info(app: App, address: str | None) -> None:
    """Show a repo's refs, revisions and cached bytes, a file's hashes and presence, or
    (with no ADDRESS) a summary of the store."""
    if not address:
        _store_info(app)
        return
    addr = parse_address(address)
    store = app.store
    rev, snap = resolve_cached(store, addr)
    pins = store.pins()
    if addr.path:
        entry = snap.files.get(addr.path)
        if entry is None:
            raise NotFound(f"{addr.path} is not a file of {addr.repo_key}@{rev}")
        state = file_state(store, addr.path, entry)
        data = state.as_dict() | {
            "address": str(addr.with_revision(rev)),
            "revision": rev,
            "blob_path": str(store.blob_path(state.b3)) if state.b3 else None,
            "pinned": bool(state.b3 and f"blob:{state.b3}" in pins),
            "meta": entry.meta,
        }
        if state.b3:
            with store.index.read() as txn:
                data["aliases"] = store.index.aliases_of(state.b3, txn)
        lines = [f"{k:<10} {v}" for k, v in data.items() if k not in ("meta",)]
        emit(app, data, "\n".join(lines))
        return
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
