"""``hoard rm ADDRESS``: remove a repo, a revision or a file's blob from the store.

ADDRESS may be an infernet-ml model id (``arweave/<owner>/<repo>:a.onnx,b.onnx``): each file it
names is removed as if given as ``<repo>/<file>`` (every plan is made first, so a name not in
the store removes nothing); with several, ``--json`` prints a list.
"""

from __future__ import annotations

from typing import Any

import click

from hoard.store.catalog import RemovePlan, execute_remove, plan_remove
from hoard.store.store import Store

from .common import App, common_options, emit
from .config import format_size
from .model_ids import read_target

__all__ = ["rm"]


@click.command("rm")
@click.argument("address")
@click.option("--dry-run", is_flag=True, help="Print what would be removed.")
@click.option("--force", is_flag=True, help="Also remove pinned revisions (and their pins).")
@common_options()
def rm(app: App, address: str, dry_run: bool, force: bool) -> None:
    """Remove ADDRESS from the store: a repo (every revision), repo@rev, or one file's blob
    (fetched again on next use; content of the local source is gone for good).

    Blobs still used by another revision or another file, and pinned blobs, are kept; a
    pinned revision is refused unless --force. ADDRESS may be an infernet-ml model id
    (arweave/<owner>/<repo>:file1,file2).
    """
    plans = [plan_remove(app.store, addr, force=force) for addr in read_target(address).addresses]
    done = [_carry_out(app.store, plan, dry_run) for plan in plans]
    docs = [doc for doc, _ in done]
    emit(app, docs[0] if len(docs) == 1 else docs, "\n".join(text for _, text in done))


def _carry_out(store: Store, plan: RemovePlan, dry_run: bool) -> tuple[dict[str, Any], str]:
    """Execute one plan (unless a dry run); its JSON document and its line of text."""
    doc: dict[str, Any] = {"dry_run": dry_run, **plan.as_dict()}
    kept_now: dict[str, str] = {}
    if not dry_run:
        done = execute_remove(store, plan)
        kept_now = {b3: why for b3, why in done.kept.items() if b3 not in plan.kept_pinned + plan.kept_shared}
        doc["kept_since_planning"] = kept_now
    verb = "would remove" if dry_run else "removed"
    blobs = len(plan.blobs) - len(kept_now)
    freed = plan.freed - sum(size for b3, size in plan.blobs if b3 in kept_now)
    human = (
        f"{verb} {len(plan.snapshots)} revision(s), {len(plan.refs)} ref(s), "
        f"{blobs} blob(s) ({format_size(freed)})"
        + (f"; kept {len(plan.kept_pinned)} pinned blob(s)" if plan.kept_pinned else "")
        + (f"; kept {len(plan.kept_shared)} blob(s) used elsewhere" if plan.kept_shared else "")
        + (f"; kept {len(kept_now)} blob(s) that came into use meanwhile" if kept_now else "")
    )
    return doc, human
