"""``hoard prefetch ADDRESS``: fetch a repo, a folder or a file into the store ahead of use."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from hoard.proxy.prefetch import plan_prefetch, run_prefetch
from hoard.proxy.service import open_services
from hoard.store.address import parse_address

from .common import App, common_options, emit, progress_bar
from .config import format_size
from .runtime import proxy_config


@click.command("prefetch")
@click.argument("address")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable), e.g. '*.safetensors'.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--jobs", default=4, show_default=True, help="Files fetched at once.")
@common_options("upstream", "hf_endpoint", "arweave_gateway", "github_url", "torch_url", "chunk_size")
def prefetch(app: App, address: str, include: tuple[str, ...], exclude: tuple[str, ...], jobs: int) -> None:
    """Fetch ADDRESS completely into the store: a repo (<source>/<owner>/<repo>[@rev]), a
    folder or a file of it. Every file is verified against its upstream hash and published;
    an interrupted prefetch resumes where it stopped. A bare Hugging Face repo id
    (org/name) works too.
    """
    addr = parse_address(address, default_source="huggingface")
    config = proxy_config(app.settings, local_user=True)
    store = app.store
    result = asyncio.run(_prefetch(app, config, store, addr, include, exclude, max(1, jobs)))
    emit(
        app,
        result,
        f"{result['repo']}@{result['revision'][:12]}: {result['files']} file(s), "
        f"{format_size(result['bytes'])}; fetched {result['fetched']} ({format_size(result['fetched_bytes'])}), "
        f"{result['cached']} already cached",
    )


async def _prefetch(app: App, config: Any, store: Any, addr: Any, include: tuple[str, ...],
                    exclude: tuple[str, ...], jobs: int) -> dict[str, Any]:
    svc = await open_services(config, store)
    try:
        plan = await plan_prefetch(svc, addr, config.local_creds, include, exclude)
        with progress_bar(app, f"prefetch {plan.repo}", plan.todo_bytes) as advance:
            await run_prefetch(svc, addr, config.local_creds, plan, jobs=jobs, on_file=lambda _, n: advance(n))
        return {
            "repo": plan.repo,
            "revision": plan.revision,
            "files": len(plan.paths),
            "bytes": plan.bytes,
            "fetched": len(plan.todo),
            "fetched_bytes": plan.todo_bytes,
            "cached": len(plan.paths) - len(plan.todo),
        }
    finally:
        await svc.aclose()
