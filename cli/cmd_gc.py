"""``hoard gc [--max-size SIZE] [--dry-run]``: trim the store, least recently used first."""

from __future__ import annotations

import click

from hoard.store.gc import GcPlan, execute_gc, plan_gc

from .common import App, common_options, emit, progress_bar, table
from .config import format_size


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Print the plan (what goes, what stays and why); delete nothing.")
@common_options("max_size")
def gc(app: App, dry_run: bool) -> None:
    """Delete least recently used blobs until the store fits --max-size, and leftovers of
    crashed processes. Never deletes pinned blobs, blobs of pinned snapshots, content no
    origin can give back (the local source: only `hoard rm` removes it), blobs used within
    gc_grace seconds (config.toml, default 600) or open in any process, or partials being
    filled."""
    max_size = app.settings.max_size
    plan = plan_gc(app.store, max_size)
    if dry_run:
        emit(app, {"dry_run": True, **plan.as_dict()}, lambda: _show_plan(plan))
        return
    with progress_bar(app, "gc", len(plan.victims), unit_bytes=False) as advance:
        result = execute_gc(app.store, plan, progress=advance)
    emit(
        app,
        {"dry_run": False, **plan.as_dict(), "result": result.as_dict()},
        f"removed {result.removed} item(s), freed {format_size(result.freed)}"
        + (f"; skipped {result.skipped} in use or changed since planning" if result.skipped else ""),
    )


def _show_plan(plan: GcPlan) -> None:
    limit = format_size(plan.max_size) if plan.max_size is not None else "no limit"
    click.echo(
        f"store {format_size(plan.total_before)}, limit {limit}: would remove "
        f"{len(plan.victims)} item(s), {format_size(plan.freed)}"
    )
    if plan.victims:
        rows = [[v.kind, v.name, format_size(v.size)] for v in plan.victims]
        click.echo(table(rows, ["KIND", "NAME", "SIZE"]))
    if plan.kept:
        click.echo(f"would keep {len(plan.kept)} item(s) the limit asks for:")
        rows = [[k.kind, k.name, format_size(k.size), k.reason] for k in plan.kept]
        click.echo(table(rows, ["KIND", "NAME", "SIZE", "KEPT BECAUSE"]))
