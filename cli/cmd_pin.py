"""``hoard pin ADDRESS`` / ``hoard unpin ADDRESS``: keep a repo revision or a file from gc."""

from __future__ import annotations

import click

from hoard.store.address import parse_address
from hoard.store.catalog import pin_target

from .common import App, common_options, emit


@click.command("pin")
@click.argument("address")
@common_options()
def pin(app: App, address: str) -> None:
    """Pin a cached repo revision (all its files) or a cached file: gc never removes it."""
    target = pin_target(app.store, parse_address(address))
    new = app.store.pin(target, note=address)
    emit(app, {"pinned": target, "new": new}, f"pinned {target}" if new else f"already pinned: {target}")


@click.command("unpin")
@click.argument("address")
@common_options()
def unpin(app: App, address: str) -> None:
    """Remove a pin set with `hoard pin`."""
    target = pin_target(app.store, parse_address(address))
    removed = app.store.unpin(target)
    emit(app, {"unpinned": target, "was_pinned": removed}, f"unpinned {target}" if removed else f"was not pinned: {target}")
