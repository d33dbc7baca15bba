"""``hoard prefetch ADDRESS``: fetch a repo or file into the store ahead of use."""

from __future__ import annotations

import click

from hoard.store.errors import UsageError

from .common import App, common_options


@click.command("prefetch")
@click.argument("address")
@common_options("upstream", "hf_endpoint", "arweave_gateway", "github_url", "torch_url", "chunk_size")
def prefetch(app: App, address: str) -> None:
    """Fetch ADDRESS (a repo or a file) completely into the store."""
    raise UsageError("prefetch is not available in this build yet")
