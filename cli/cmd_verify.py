"""``hoard verify``: re-hash blobs (all, a sample or a subset) and check the index."""

from __future__ import annotations

import sys

import click

from hoard.store.verify import select_blobs, verify

from .common import App, common_options, emit, progress_bar
from .config import format_size


@click.command("verify")
@click.option("--sample", metavar="N|P%", help="Check a random sample: N blobs or P percent.")
@click.option("--subset", metavar="I/K", help="Check the I-th of K disjoint subsets (covers the store in K runs).")
@click.option("--deep", is_flag=True, help="Also re-check upstream hashes (sha256, git sha1) of each blob.")
@click.option("--dry-run", is_flag=True, help="Report only; leave damaged blobs in place.")
@common_options()
def verify_cmd(app: App, sample: str | None, subset: str | None, deep: bool, dry_run: bool) -> None:
    """Re-hash blobs and check the index against the files.

    A damaged blob (its bytes no longer hash to its name) is named, removed from the index
    and deleted, so it is fetched again rather than served. Content no origin can give back
    (the local source, pushed repos) is moved to $HOARD_HOME/quarantine/<b3> instead: out of
    the index, never served, but not lost. Exit status 5 when anything was found.
    """
    store = app.store
    try:
        blobs = select_blobs(store, sample, subset)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    total = sum(size for _, size in blobs)
    with progress_bar(app, "verifying", total) as advance:
        report = verify(store, blobs, deep=deep, dry_run=dry_run, progress=advance)

    def human() -> None:
        click.echo(f"checked {report.checked} blobs ({format_size(report.bytes)})")
        for f in report.findings:
            click.echo(f"{f.kind}: {f.name}: {f.detail}")
        for q in report.quarantined:
            done = "quarantined" if report.repaired else "would quarantine"
            click.echo(f"{done}: {q.b3}: {q.path} (no origin can give it back: {q.used_by} uses it; "
                       "kept aside, out of the index, never served)")
        if report.findings:
            click.echo("repaired: removed from the index" if report.repaired else "not repaired (--dry-run)")
        else:
            click.echo("no problems found")

    emit(app, report.as_dict(), human)
    if not report.ok:
        damaged = [f.name for f in report.findings if f.kind in ("damaged", "size", "missing")]
        if damaged:
            click.echo(f"hoard: damaged blob(s): {', '.join(damaged)}", err=True)
        sys.exit(5)
