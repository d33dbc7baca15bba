"""``hoard rm ADDRESS``: remove a repo, a revision or a file's blob from the store."""

from __future__ import annotations

import click

from hoard.store.address import parse_address
from hoard.store.catalog import execute_remove, plan_remove

from .common import App, common_options, emit
from .config import format_size


@click.command("rm")
@click.argument("address")
@click.option("--dry-run", is_flag=True, help="Print what would be removed.")
@click.option("--force", is_flag=True, help="Also remove pinned revisions (and their pins).")
@common_options()
def rm(app: App, address: str, dry_run: bool, force: bool) -> None:
    """Remove ADDRESS from the store: a repo (every revision), repo@rev, or one file's blob
    (fetched again on next use).

    Blobs still used by another revision, and pinned blobs, are kept; a pinned revision is
    refused unless --force.
    """
    plan = plan_remove(app.store, parse_address(address), force=force)
    if not dry_run:
        execute_remove(app.store, plan)
    verb = "would remove" if dry_run else "removed"
    human = (
        f"{verb} {len(plan.snapshots)} revision(s), {len(plan.refs)} ref(s), "
        f"{len(plan.blobs)} blob(s) ({format_size(plan.freed)})"
        + (f"; kept {len(plan.kept_pinned)} pinned blob(s)" if plan.kept_pinned else "")
    )
    emit(app, {"dry_run": dry_run, **plan.as_dict()}, human)
