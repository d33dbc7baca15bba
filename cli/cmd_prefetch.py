"""``hoard prefetch ADDRESS``: fetch a repo, a folder or a file into the store ahead of use.

ADDRESS may be an infernet-ml model id, ``arweave/<owner>/<repo>:a.onnx,b.onnx``: then only
the files it names are fetched (each must exist in the repo), matched by name exactly —
no glob characters are interpreted in them.
"""

from __future__ import annotations

import asyncio
import glob
from typing import Any

import click

from hoard.proxy.prefetch import PrefetchPlan, plan_prefetch, run_prefetch
from hoard.proxy.service import open_services
from hoard.store.errors import EntryNotFound, UsageError

from .common import App, common_options, emit, progress_bar
from .config import format_size
from .model_ids import Target, read_target
from .runtime import proxy_config


@click.command("prefetch")
@click.argument("address")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable), e.g. '*.safetensors'.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--jobs", default=4, show_default=True, help="Files fetched at once.")
@common_options("upstream", "sources", "chunk_size")
def prefetch(app: App, address: str, include: tuple[str, ...], exclude: tuple[str, ...], jobs: int) -> None:
    """Fetch ADDRESS completely into the store: a repo (<source>/<owner>/<repo>[@rev]), a
    folder or a file of it. Every file is verified against its upstream hash and published;
    an interrupted prefetch resumes where it stopped. A bare Hugging Face repo id
    (org/name) works too, and so does an infernet-ml model id
    (arweave/<owner>/<repo>:file1,file2), which fetches only the files it names.
    """
    target = read_target(address, default_source="huggingface")
    if target.is_model_id and (include or exclude):
        raise UsageError("a model id names its files: use it without --include/--exclude")
    config = proxy_config(app.settings, local_user=True)
    store = app.store
    result = asyncio.run(_prefetch(app, config, store, target, include, exclude, max(1, jobs)))
    emit(
        app,
        result,
        f"{result['repo']}@{result['revision'][:12]}: {result['files']} file(s), "
        f"{format_size(result['bytes'])}; fetched {result['fetched']} ({format_size(result['fetched_bytes'])}), "
        f"{result['cached']} already cached",
    )


def _named_files(target: Target, plan: PrefetchPlan) -> None:
    """Refuse a model id naming a file its repo does not have (nothing is fetched then)."""
    missing = [f for f in target.files if f not in plan.paths]
    if missing:
        raise EntryNotFound(f"{plan.repo}@{plan.revision}: no file {', '.join(map(repr, missing))}", plan.revision)


async def _prefetch(app: App, config: Any, store: Any, target: Target, include: tuple[str, ...],
                    exclude: tuple[str, ...], jobs: int) -> dict[str, Any]:
    addr = target.addr
    if target.is_model_id:  # exactly the named files: glob characters in them match themselves
        include = tuple(glob.escape(f) for f in target.files)
    svc = await open_services(config, store)
    try:
        plan = await plan_prefetch(svc, addr, config.local_creds, include, exclude)
        _named_files(target, plan)
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
