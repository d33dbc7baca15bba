"""``hoard export`` / ``hoard import``: move cached repos between stores."""

from __future__ import annotations

import click

from hoard.store.errors import UsageError

from .common import App, common_options


@click.command("export")
@click.argument("address")
@click.argument("dest")
@common_options()
def export_cmd(app: App, address: str, dest: str) -> None:
    """Export a cached repo revision to DEST."""
    raise UsageError("export is not available in this build yet")


@click.command("import")
@click.argument("source")
@common_options()
def import_cmd(app: App, source: str) -> None:
    """Import an export made by `hoard export`."""
    raise UsageError("import is not available in this build yet")
