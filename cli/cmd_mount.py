"""``hoard mount MOUNTPOINT`` and ``hoard umount MOUNTPOINT``."""

from __future__ import annotations

import click

from hoard.store.errors import UsageError

from .common import App, common_options


@click.command("mount")
@click.argument("mountpoint")
@common_options("upstream", "hf_endpoint", "arweave_gateway", "github_url", "torch_url", "chunk_size")
def mount(app: App, mountpoint: str) -> None:
    """Mount the read-only model tree at MOUNTPOINT."""
    raise UsageError("mount is not available in this build yet")


@click.command("umount")
@click.argument("mountpoint")
def umount(mountpoint: str) -> None:
    """Unmount a hoard mount."""
    raise SystemExit("hoard: umount is not available in this build yet")
