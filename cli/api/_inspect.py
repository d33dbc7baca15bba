"""``hoard.ls`` and ``hoard.info``: what ``hoard ls --json`` and ``hoard info --json`` print.

Both answer from the store (:mod:`hoard.cli.listing`, the functions behind the commands);
``ls`` of a repo the store has never seen asks its origin through the fetch core, as the
command does. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hoard.cli.listing import info_data, ls_data
from hoard.store.address import Address
from hoard.store.records import Snapshot

from ._runtime import CALL_TIMEOUT, Runtime, runtime

__all__ = ["ls", "info"]


def ls(prefix: str = "", *, pinned: bool = False, tags: Sequence[str] = (), model: str | None = None,
       opset: int | None = None) -> list[dict[str, Any]] | dict[str, Any]:  # fmt: skip
    """Cached repos under ``prefix`` (``""``, ``"huggingface"``, ``"huggingface/org"``): a list
    of ``{"repo", "refs", "revisions", "files", "size", "cached_bytes", "pinned"}``; or, for a
    repo (``<source>/<owner>/<repo>[@rev]``, a folder of it, or a model id), ``{"repo",
    "revision", "files": [{"path", "size", "identity", "blake3", "present"}]}``; for an ONNX
    hub repo, its manifest's models (filtered by ``model``, ``tags``, ``opset`` like
    ``onnx.hub.list_models``)."""
    rt = runtime()
    return ls_data(rt.store, prefix, online=lambda addr: _online(rt, addr), pinned=pinned, tags=tags, model=model,
                   opset=opset)  # fmt: skip


def info(address: str | None = None) -> Any:
    """A repo's refs, revisions and cached bytes; a file's hashes, presence, blob path and
    how it is verified (a list for a model id naming several files); with no address, the
    store's summary. Only what the store holds: ``NotFound`` for a repo never cached."""
    rt = runtime()
    return info_data(rt.store, address, max_size=rt.settings.max_size)


def _online(rt: Runtime, addr: Address) -> tuple[str, Snapshot]:
    """A repo's revision and tree, asked at its origin (a listing: private repos need the
    local user's credentials)."""
    resolved = rt.run(rt.svc.catalog.resolve(addr, rt.creds, access="metadata", trust_offline=True),
                      timeout=CALL_TIMEOUT)  # fmt: skip
    return resolved.revision, resolved.snapshot
