"""``hoard export`` / ``hoard import``: move cached revisions between stores and tools.

Export moves a whole revision; an infernet-ml model id (``arweave/<owner>/<repo>:a.onnx``)
names its repo (infernet-ml itself always downloads the whole repo).
"""

from __future__ import annotations

from pathlib import Path

import click

from hoard.store.transfer import ImportReport, export, import_path

from .common import App, common_options, emit, progress_bar
from .config import format_size
from .model_ids import read_target


@click.command("export")
@click.argument("address")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["dir", "hf-cache", "hoard"]), default="dir", show_default=True,
              help="dir: plain files; hf-cache: a Hugging Face hub cache (HF_HUB_CACHE); "
                   "hoard: a bundle for `hoard import` (a directory, or DEST.tar).")
@click.option("--link", is_flag=True, help="Hard-link the read-only blobs instead of copying (same filesystem).")
@common_options()
def export_cmd(app: App, address: str, dest: Path, fmt: str, link: bool) -> None:
    """Export a cached repo revision (ADDRESS = <source>/<owner>/<repo>[@rev], or an
    infernet-ml model id, whose repo is exported) to DEST."""
    addr = read_target(address, default_source="huggingface").addr
    with progress_bar(app, f"export {addr.repo_key}", None) as advance:
        summary = export(app.store, addr, dest, fmt, link=link, progress=advance)
    emit(app, summary, f"exported {summary['files']} file(s), {format_size(summary['bytes'])} of "
                       f"{summary['repo']}@{summary['revision'][:12]} to {dest} ({fmt})")


@click.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@common_options()
def import_cmd(app: App, source: Path) -> None:
    """Import a `hoard export --format hoard` bundle (a directory or .tar), or the blobs of a
    Hugging Face hub cache (e.g. ~/.cache/huggingface/hub), verifying every byte.

    Both are untrusted: a bundle with a bad name, a link or a device in it, or one that would
    change a revision already stored, is refused and nothing is imported; in a hub cache,
    blobs must be regular files, and a link leading out of the cache refuses the import.
    """
    with progress_bar(app, f"import {source}", None) as advance:
        report = import_path(app.store, source, progress=advance)
    emit(app, report.as_dict(), lambda: _print_report(app, report))


def _print_report(app: App, report: ImportReport) -> None:
    app.echo(f"imported {report.blobs} blob(s), {format_size(report.bytes)}"
             + (f"; revisions: {', '.join(report.revisions)}" if report.revisions else "")
             + (f"; skipped {len(report.skipped)}:" if report.skipped else ""))
    for note in report.skipped:
        app.echo(f"  {note}")
