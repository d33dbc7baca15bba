"""``hoard pin ADDRESS`` / ``hoard unpin ADDRESS``: keep a file, a revision or a repo from gc.

* a file (``<repo>[@rev]/<path>``): its blob;
* a revision (``<repo>@<rev>``): every file of it;
* a repo (``<repo>``, no ``@``): the revision its default branch names now, *followed*: when
  the branch moves and the new revision is complete, the new one is pinned and the old one
  unpinned (store/pins.py). A running ``hoard serve`` or ``hoard mount`` fetches a followed
  repo's new revision itself; ``hoard pin`` and ``hoard prefetch`` move the pins too.

ADDRESS may be an infernet-ml model id (``arweave/<owner>/<repo>:a.onnx,b.onnx``): each file it
names is pinned (unpinned) as if given as ``<repo>/<file>``; with several, ``--json`` prints a
list.
"""

from __future__ import annotations

from typing import Any

import click

from hoard.store.pins import advance_follows, pin_address, unpin_address

from .common import App, common_options, emit
from .model_ids import read_target

__all__ = ["pin", "unpin"]


def _emit_each(app: App, docs: list[dict[str, Any]], lines: list[str]) -> None:
    emit(app, docs[0] if len(docs) == 1 else docs, "\n".join(lines))


@click.command("pin")
@click.argument("address")
@common_options()
def pin(app: App, address: str) -> None:
    """Pin a cached file, repo revision (<repo>@<rev>) or repo: gc never removes it. A repo
    without @ pins its current revision and follows its branch: the old revision is unpinned
    once the new one is complete. ADDRESS may be an infernet-ml model id
    (arweave/<owner>/<repo>:file1,file2)."""
    addresses = read_target(address).addresses
    results = [pin_address(app.store, addr, address) for addr in addresses]
    advance_follows(app.store)
    docs, lines = [], []
    for result in results:
        docs.append(result.as_dict())
        follows = f" (follows {result.follows})" if result.follows else ""
        lines.append(f"pinned {result.pinned}{follows}" if result.new else f"already pinned: {result.pinned}{follows}")
    _emit_each(app, docs, lines)


@click.command("unpin")
@click.argument("address")
@common_options()
def unpin(app: App, address: str) -> None:
    """Remove a pin set with `hoard pin` (for a repo: the branch it follows and its pins)."""
    docs, lines = [], []
    for addr in read_target(address).addresses:
        done = unpin_address(app.store, addr)
        removed = [t for t, was in done if was]
        target = removed[0] if removed else done[0][0]
        docs.append({"unpinned": target, "was_pinned": bool(removed), "removed": removed})
        lines.append(f"unpinned {', '.join(removed)}" if removed else f"was not pinned: {target}")
    _emit_each(app, docs, lines)
