"""``hoard serve``: the pull-through proxy."""

from __future__ import annotations

import click

from hoard.store.errors import UsageError

from .common import App, common_options


@click.command("serve")
@common_options("listen", "upstream", "hf_endpoint", "arweave_gateway", "github_url", "torch_url", "chunk_size")
def serve(app: App) -> None:
    """Run the pull-through proxy (Hugging Face Hub API, hoard API /v1, /metrics)."""
    raise UsageError("serve is not available in this build yet")
