"""``hoard add DIR ADDRESS``: import a directory as ``local/<owner>/<repo>[@version]``."""

from __future__ import annotations

from pathlib import Path

import click

from hoard.store.address import parse_address
from hoard.store.catalog import add_directory
from hoard.store.safefs import scan_tree

from .common import App, common_options, emit, progress_bar
from .config import format_size


@click.command("add")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("address")
@common_options()
def add(app: App, directory: Path, address: str) -> None:
    """Import every file under DIRECTORY into the store as ADDRESS (local/<owner>/<repo>[@version]).

    Identical files are stored once. The local source works offline: the files then
    show under the mount and the proxy like any other repo. Links are followed only to files
    inside DIRECTORY: a link leading out of it refuses the whole import (nothing is added);
    FIFOs, sockets and devices are skipped with a warning.
    """
    addr = parse_address(address)
    # sizes for the progress bar, read without following any link out of the folder
    total = sum(path.stat().st_size for _, path in scan_tree(directory).files)
    with progress_bar(app, f"adding {addr.repo_key}", total) as advance:
        rev, snap = add_directory(app.store, directory, addr, progress=advance)
    data = {
        "address": str(addr.with_revision(addr.revision)),
        "repo": addr.repo_key,
        "revision": rev,
        "files": len(snap.files),
        "size": snap.size,
        "refs": sorted({"main", addr.revision} - {None}),  # type: ignore[arg-type]
    }
    emit(app, data, f"added {len(snap.files)} files ({format_size(snap.size)}) as {addr.repo_key}@{rev}")
