"""Filling a repo, a folder or a file completely: ``hoard prefetch`` and ``POST /v1/prefetch``."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hoard.store.address import Address
from hoard.store.errors import NotFound

from .origin import Credentials, name_published
from .service import Services

__all__ = ["PrefetchPlan", "plan_prefetch", "run_prefetch"]


@dataclass
class PrefetchPlan:
    repo: str
    revision: str
    paths: list[str]
    todo: list[str]
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.sizes[p] for p in self.paths)

    @property
    def todo_bytes(self) -> int:
        return sum(self.sizes[p] for p in self.todo)


def _wanted(path: str, under: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    return (
        (not under or path == under or path.startswith(under + "/"))
        and (not include or any(fnmatch.fnmatch(path, g) for g in include))
        and not any(fnmatch.fnmatch(path, g) for g in exclude)
    )


async def plan_prefetch(
    svc: Services, addr: Address, creds: Credentials, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> PrefetchPlan:
    """Resolve ``addr`` and list its files, and which of them the store still lacks.

    A file of a source that cannot list its repos (``url``) is looked up at its origin first:
    until then its repo's tree does not know it."""
    if addr.path and not svc.catalog.source(addr).listable:
        await svc.catalog.resolve(addr, creds)
    resolved = await svc.catalog.resolve(addr.with_path(""), creds)
    files = resolved.snapshot.files
    paths = sorted(p for p in files if _wanted(p, addr.path, include, exclude))
    if addr.path and not paths:
        raise NotFound(f"{addr}: no such file or folder in {resolved.addr.repo_key}@{resolved.revision}")
    todo = []
    for p in paths:
        b3 = svc.store.resolve(files[p].identity)
        if b3 is None:
            todo.append(p)
        else:  # already a blob (from another source, say): give it this file's names too
            name_published(svc.store, svc.catalog.file(resolved, p, creds), b3)
    return PrefetchPlan(resolved.addr.repo_key, resolved.revision, paths, todo, {p: files[p].size for p in paths})


async def run_prefetch(
    svc: Services,
    addr: Address,
    creds: Credentials,
    plan: PrefetchPlan,
    *,
    jobs: int = 4,
    on_file: Callable[[str, int], None] | None = None,
) -> None:
    """Fill, verify and publish every file the plan still lacks, ``jobs`` at a time."""
    resolved = await svc.catalog.resolve(addr.with_path("").with_revision(plan.revision), creds)
    sem = asyncio.Semaphore(max(1, jobs))

    async def one(path: str) -> None:
        async with sem:
            of = await svc.core.open(svc.catalog.file(resolved, path, creds))
            try:
                await svc.core.fill(of)
            finally:
                await svc.core.close(of)
            if on_file is not None:
                on_file(path, plan.sizes[path])

    await asyncio.gather(*(one(p) for p in plan.todo))
