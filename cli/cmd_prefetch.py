"""``hoard prefetch ADDRESS``: fetch a repo, a folder or a file into the store ahead of use."""

from __future__ import annotations

import asyncio
import fnmatch
from typing import Any

import click

from hoard.proxy.service import open_services
from hoard.store.address import parse_address
from hoard.store.errors import NotFound

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
        resolved = await svc.catalog.resolve(addr.with_path(""), config.local_creds)
        files = resolved.snapshot.files
        paths = sorted(
            p for p in files
            if (not addr.path or p == addr.path or p.startswith(addr.path + "/"))
            and (not include or any(fnmatch.fnmatch(p, g) for g in include))
            and not any(fnmatch.fnmatch(p, g) for g in exclude)
        )
        if addr.path and not paths:
            raise NotFound(f"{addr}: no such file or folder in {resolved.addr.repo_key}@{resolved.revision}")
        todo = [p for p in paths if store.resolve(files[p].identity) is None]
        total = sum(files[p].size for p in todo)
        src = svc.catalog.source(addr)
        fetched_bytes = 0
        with progress_bar(app, f"prefetch {resolved.addr.repo_key}", total) as advance:
            sem = asyncio.Semaphore(jobs)

            async def one(path: str) -> None:
                nonlocal fetched_bytes
                async with sem:
                    rf = src.remote_file(resolved.addr.with_path(path), files[path], config.local_creds)
                    of = await svc.core.open(rf)
                    try:
                        await svc.core.fill(of)
                    finally:
                        await svc.core.close(of)
                    fetched_bytes += rf.size
                    advance(rf.size)

            await asyncio.gather(*(one(p) for p in todo))
        return {
            "repo": resolved.addr.repo_key,
            "revision": resolved.revision,
            "files": len(paths),
            "bytes": sum(files[p].size for p in paths),
            "fetched": len(todo),
            "fetched_bytes": fetched_bytes,
            "cached": len(paths) - len(todo),
        }
    finally:
        await svc.aclose()
