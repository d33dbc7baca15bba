"""Whole revisions as local folders: fetch a repo (or some of its files), then hand out a
folder that holds them (a live mount's, or a view of the store: :mod:`._views`)."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hoard.store.address import Address, parse_address
from hoard.store.errors import EntryNotFound, NotFound

from ._runtime import Runtime
from ._views import mount_path, view_dir

if TYPE_CHECKING:
    from hoard.proxy.origin import Credentials

__all__ = ["FetchedTree", "fetch_tree", "tree_folder"]


@dataclass(frozen=True)
class FetchedTree:
    """A revision (its address, revision pinned), the files fetched of it (path → BLAKE3)
    and their sizes."""

    repo: Address
    files: dict[str, str]
    sizes: dict[str, int]

    @property
    def size(self) -> int:
        return sum(self.sizes.values())


async def _fetch(rt: Runtime, addr: Address, creds: Credentials, include: tuple[str, ...], exclude: tuple[str, ...],
                 jobs: int) -> tuple[str, str, list[str]]:  # fmt: skip
    from hoard.proxy.prefetch import plan_prefetch, run_prefetch

    plan = await plan_prefetch(rt.svc, addr, creds, include, exclude)
    await run_prefetch(rt.svc, addr, creds, plan, jobs=jobs)
    return plan.repo, plan.revision, plan.paths


def fetch_tree(
    rt: Runtime,
    addr: Address,
    *,
    files: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    jobs: int = 4,
    creds: Credentials | None = None,
) -> FetchedTree:
    """Fetch, verify and publish ``addr`` (a repo or a folder of it): every file, the ones
    matching ``include`` and not ``exclude``, or exactly ``files`` (each must exist).
    ``creds``: the local user's (default), or a call's own token."""
    wanted = tuple(glob.escape(f) for f in files) if files else tuple(include)
    repo_key, revision, paths = rt.run(_fetch(rt, addr, creds or rt.creds, wanted, tuple(exclude), max(1, jobs)))
    missing = [f for f in files if f not in paths]
    if missing:
        raise EntryNotFound(f"{repo_key}@{revision}: no file {', '.join(map(repr, missing))}", revision)
    snap = rt.store.get_snapshot(repo_key, revision)
    if snap is None:
        raise NotFound(f"{repo_key}@{revision} left the store while it was fetched; try again")
    out, sizes = {}, {}
    for p in paths:
        b3 = rt.store.resolve(snap.files[p].identity)
        if b3 is None:
            raise NotFound(f"{repo_key}@{revision}/{p} left the store while it was fetched; try again")
        rt.store.touch(b3)
        out[p], sizes[p] = b3, snap.files[p].size
    return FetchedTree(parse_address(repo_key).with_revision(revision), out, sizes)


def tree_folder(rt: Runtime, tree: FetchedTree) -> Path:
    """A folder holding the revision's files: the live mount's, else a view."""
    mounted = mount_path(rt.store, tree.repo, folder=True)
    return Path(mounted) if mounted else view_dir(rt.store, tree.repo, tree.files)
