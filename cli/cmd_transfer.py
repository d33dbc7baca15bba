"""``hoard export`` / ``hoard import``: move cached revisions between stores and tools.

Export moves whole revisions; an infernet-ml model id (``arweave/<owner>/<repo>:a.onnx``)
names its repo (infernet-ml itself always downloads the whole repo). Several addresses go into
one hf-cache folder or one bundle. A ``--format hoard`` bundle is one file: compressed with
zstd as it is written when DEST ends in ``.zst`` (``fleet.tar.zst``), a plain tar for any other
name; it is a directory of files (the layout older hoards wrote) only when DEST is an existing
directory or ends with ``/`` — which click's path type would strip, so DEST is taken as text.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from hoard.store.bundle_io import is_zstd
from hoard.store.errors import UsageError
from hoard.store.transfer import ImportReport, export, import_path

from .common import App, common_options, emit, progress_bar
from .config import format_size
from .model_ids import read_target

__all__ = ["export_cmd", "import_cmd"]


@click.command("export")
@click.argument("addresses", nargs=-1, metavar="ADDRESS...")
@click.argument("dest", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["dir", "hf-cache", "hoard"]), default="dir", show_default=True,
              help="dir: plain files (one revision); hf-cache: a Hugging Face hub cache (HF_HUB_CACHE); "
                   "hoard: one bundle file for `hoard import`, zstd-compressed when DEST ends in .zst, else a "
                   "plain tar (an existing file is replaced once the new one is complete); when DEST is an "
                   "existing directory or ends with '/', the bundle is written as a directory of files instead "
                   "(the layout older hoards wrote; `hoard import` reads it too).")
@click.option("--link", is_flag=True, help="Hard-link the read-only blobs instead of copying (same filesystem).")
@common_options()
def export_cmd(app: App, addresses: tuple[str, ...], dest: str, fmt: str, link: bool) -> None:
    """Export cached repo revisions (ADDRESS = <source>/<owner>/<repo>[@rev], or an
    infernet-ml model id, whose repo is exported) to DEST. Every file of each must be cached
    (`hoard prefetch` first)."""
    if not addresses:
        raise UsageError("give at least one ADDRESS before DEST")
    addrs = [read_target(a, default_source="huggingface").addr for a in addresses]
    folder = _names_a_directory(dest)
    path = Path(dest)
    with progress_bar(app, f"export to {path.name}", None) as advance:
        summary = export(app.store, addrs if len(addrs) > 1 else addrs[0], path, fmt, link=link, progress=advance,
                         as_directory=folder)
    what = (f"{summary['repo']}@{summary['revision'][:12]}" if "repo" in summary
            else f"{len(summary['revisions'])} revisions")
    emit(app, summary, f"exported {summary['files']} file(s), {format_size(summary['bytes'])} of {what} "
                       f"to {dest} ({fmt}{', ' + summary['written'] if fmt == 'hoard' else ''})")


def _names_a_directory(dest: str) -> bool:
    """True for a DEST written with a trailing separator (``out/``): a directory is meant."""
    return dest.endswith(os.sep) or bool(os.altsep and dest.endswith(os.altsep))


@click.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@common_options()
def import_cmd(app: App, source: Path) -> None:
    """Import a `hoard export --format hoard` bundle (a tar or tar.zst file, whatever its
    name, or a directory), or
    the blobs of a Hugging Face hub cache (e.g. ~/.cache/huggingface/hub), verifying every byte.

    Both are untrusted. A bundle is verified completely (every blob's BLAKE3 and upstream
    hash, and that it is whole) before anything is added: a truncated or tampered bundle, a
    bad name, a link or a device in it, or one that would change a revision already stored,
    is refused and the store left as it was; importing it again adds nothing. In a hub cache,
    blobs must be regular files, and a link leading out of the cache refuses the import.
    """
    size = source.stat().st_size if source.is_file() and not is_zstd(source) else None  # bytes read: the tar's
    with progress_bar(app, f"import {source.name}", size) as advance:
        report = import_path(app.store, source, reading=advance)
    emit(app, report.as_dict(), lambda: _print_report(app, report))


def _print_report(app: App, report: ImportReport) -> None:
    app.echo(f"imported {report.blobs} blob(s), {format_size(report.bytes)}"
             + (f"; revisions: {', '.join(report.revisions)}" if report.revisions else "")
             + (f"; skipped {len(report.skipped)}:" if report.skipped else ""))
    for note in report.skipped:
        app.echo(f"  {note}")
