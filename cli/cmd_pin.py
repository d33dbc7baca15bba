"""``hoard pin ADDRESS`` / ``hoard unpin ADDRESS``: keep a repo revision or a file from gc.

ADDRESS may be an infernet-ml model id (``arweave/<owner>/<repo>:a.onnx,b.onnx``): each file it
names is pinned (unpinned) as if given as ``<repo>/<file>``; with several, ``--json`` prints a
list.
"""

from __future__ import annotations

from typing import Any

import click

from hoard.store.catalog import pin_target

from .common import App, common_options, emit
from .model_ids import read_target

__all__ = ["pin", "unpin"]


def _emit_each(app: App, docs: list[dict[str, Any]], lines: list[str]) -> None:
    emit(app, docs[0] if len(docs) == 1 else docs, "\n".join(lines))


@click.command("pin")
@click.argument("address")
@common_options()
def pin(app: App, address: str) -> None:
    """Pin a cached repo revision (all its files) or a cached file: gc never removes it.
    ADDRESS may be an infernet-ml model id (arweave/<owner>/<repo>:file1,file2)."""
    targets = [pin_target(app.store, addr) for addr in read_target(address).addresses]  # all found, or none pinned
    docs, lines = [], []
    for target in targets:
        new = app.store.pin(target, note=address)
        docs.append({"pinned": target, "new": new})
        lines.append(f"pinned {target}" if new else f"already pinned: {target}")
    _emit_each(app, docs, lines)


@click.command("unpin")
@click.argument("address")
@common_options()
def unpin(app: App, address: str) -> None:
    """Remove a pin set with `hoard pin`."""
    targets = [pin_target(app.store, addr) for addr in read_target(address).addresses]
    docs, lines = [], []
    for target in targets:
        removed = app.store.unpin(target)
        docs.append({"unpinned": target, "was_pinned": removed})
        lines.append(f"unpinned {target}" if removed else f"was not pinned: {target}")
    _emit_each(app, docs, lines)
