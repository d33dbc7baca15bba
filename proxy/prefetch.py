"""Filling repos, folders and files completely: ``hoard prefetch`` and ``POST /v1/prefetch``.

A prefetch takes several targets (an address, optional include/exclude globs, and the
credentials to use for it) and runs in two steps:

1. **plan**: each target is resolved at its origin and its files listed (one target after the
   other: resolving is cheap, and the refs cache makes a repo named twice cost one lookup). A
   file whose content is already a blob is *present* (and gets this file's other names); the
   rest is to fetch. A target that cannot be resolved is recorded as failed, with its reason,
   and the others go on.
2. **fill**: the files to fetch are filled ``jobs`` at a time through the fetch core, which
   fetches the chunks of each file in parallel, verifies the whole file and publishes it. A
   file that fails is recorded with its reason; the others go on.

The same file named by two targets is one entry, fetched once (and the fetch core shares one
fill between two files of the same content). The state, :class:`PrefetchRun`, is live: while a
file fills, :meth:`PrefetchRun.refresh` reads how many of its bytes are present from its
partial (an O(1) count of recorded chunks), so a progress display, or ``GET
/v1/prefetch/<id>``, sees chunks land. Nothing here is kept across processes: a prefetch
interrupted at any point resumes from the store's chunk records when it is run again.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hoard.store.address import Address
from hoard.store.errors import EntryNotFound, HoardError, NotFound, codes_for

from .origin import ANONYMOUS, Credentials, name_published
from .service import Services

__all__ = [
    "PrefetchPlan",
    "plan_prefetch",
    "run_prefetch",
    "PrefetchTarget",
    "FileProgress",
    "TargetState",
    "PrefetchRun",
    "prefetch_all",
    "exit_code",
]

#: states of a file: waiting its turn, filling, fetched by this run, found present, failed
PENDING, RUNNING, FETCHED, PRESENT, FAILED = "pending", "running", "fetched", "present", "failed"


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


def _wanted(path: str, under: str, include: Sequence[str], exclude: Sequence[str], exact: bool = False) -> bool:
    in_scope = path == under if exact else (not under or path == under or path.startswith(under + "/"))
    return (
        in_scope
        and (not include or any(fnmatch.fnmatch(path, g) for g in include))
        and not any(fnmatch.fnmatch(path, g) for g in exclude)
    )


async def plan_prefetch(
    svc: Services,
    addr: Address,
    creds: Credentials,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    *,
    exact: bool = False,
) -> PrefetchPlan:
    """Resolve ``addr`` and list its files, and which of them the store still lacks.

    ``exact``: ``addr.path`` names one file (an infernet-ml model id), not a folder too.
    A file of a source that cannot list its repos (``url``) is looked up at its origin first:
    until then its repo's tree does not know it."""
    if addr.path and not svc.catalog.source(addr).listable:
        await svc.catalog.resolve(addr, creds)
    resolved = await svc.catalog.resolve(addr.with_path(""), creds)
    files = resolved.snapshot.files
    paths = sorted(p for p in files if _wanted(p, addr.path, include, exclude, exact))
    where = f"{resolved.addr.repo_key}@{resolved.revision}"
    if exact and not paths:
        raise EntryNotFound(f"{where}: no file {addr.path!r}", resolved.revision)
    if addr.path and not paths:
        raise NotFound(f"{addr}: no such file or folder in {where}")
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
    """Fill, verify and publish every file the plan still lacks, ``jobs`` at a time (the
    first failure is raised; see :func:`prefetch_all` to go on past failures)."""
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


# -- several targets, going on past failures ---------------------------------------------------


@dataclass(frozen=True)
class PrefetchTarget:
    """One thing to prefetch: an address (repo, folder or file), how the user wrote it, the
    credentials for its origin, and globs choosing files (``exact``: the path is one file)."""

    addr: Address
    text: str
    creds: Credentials = ANONYMOUS
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exact: bool = False


@dataclass
class FileProgress:
    """One file of a prefetch: its size, bytes present, and state (see the constants)."""

    repo: str
    revision: str
    path: str
    size: int
    state: str = PENDING
    done: int = 0
    error: str | None = None
    kind: str | None = None
    _open: Any = field(default=None, repr=False, compare=False)

    def refresh(self) -> None:
        """Read the bytes present from the partial being filled (chunks recorded so far)."""
        present = getattr(getattr(self._open, "partial", None), "present_bytes", None)
        if self.state == RUNNING and isinstance(present, int):
            self.done = min(self.size, present)

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "revision": self.revision, "path": self.path, "size": self.size,
                "state": self.state, "done": self.done, "error": self.error, "kind": self.kind}


@dataclass
class TargetState:
    """What one target resolved to (its repo revision and files), or why it failed."""

    text: str
    repo: str | None = None
    revision: str | None = None
    paths: list[str] = field(default_factory=list)
    error: str | None = None
    kind: str | None = None
    code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.text, "repo": self.repo, "revision": self.revision, "files": len(self.paths),
                "error": self.error, "kind": self.kind}


def _failure(exc: BaseException) -> tuple[str, str, int]:
    """(message, kind, exit code) of an error, from the one error table."""
    kind = exc.kind if isinstance(exc, HoardError) else "internal"
    return str(exc) or type(exc).__name__, kind, codes_for(exc).exit_code


def exit_code(codes: Sequence[int]) -> int:
    """The exit code of a run with these failures: 0 without any, the error table's code when
    they all share it, else 1."""
    distinct = {c for c in codes if c}
    return 0 if not distinct else distinct.pop() if len(distinct) == 1 else 1


class PrefetchRun:
    """The live state of a prefetch: each target, each file (once, whatever named it), totals."""

    def __init__(self) -> None:
        self.targets: list[TargetState] = []
        self.files: dict[tuple[str, str, str], FileProgress] = {}
        self.codes: list[int] = []

    def refresh(self) -> None:
        for f in self.files.values():
            f.refresh()

    def totals(self) -> dict[str, Any]:
        files = list(self.files.values())
        fetched = [f for f in files if f.state == FETCHED]
        present = [f for f in files if f.state == PRESENT]
        return {
            "files": len(files),
            "bytes": sum(f.size for f in files),
            "done_bytes": sum(f.done for f in files),
            "fetched": len(fetched),
            "fetched_bytes": sum(f.size for f in fetched),
            "cached": len(present),
            "cached_bytes": sum(f.size for f in present),
            "failed": sum(1 for f in files if f.state == FAILED) + sum(1 for t in self.targets if t.error),
            "running": sum(1 for f in files if f.state == RUNNING),
        }

    @property
    def exit_code(self) -> int:
        return exit_code(self.codes)

    def as_dict(self) -> dict[str, Any]:
        """One document: totals; ``repo``/``revision`` when every target resolved to the same
        one; each target; each file (``files_detail``)."""
        revisions = {(t.repo, t.revision) for t in self.targets if t.repo}
        repo, rev = revisions.pop() if len(revisions) == 1 else (None, None)
        return {**self.totals(), "repo": repo, "revision": rev, "ok": not self.codes,
                "targets": [t.as_dict() for t in self.targets],
                "files_detail": [f.as_dict() for f in self.files.values()]}

    def fail_target(self, state: TargetState, exc: BaseException) -> None:
        state.error, state.kind, state.code = _failure(exc)
        self.codes.append(state.code)

    def fail_file(self, fp: FileProgress, exc: BaseException) -> None:
        fp.state = FAILED
        fp.error, fp.kind, code = _failure(exc)
        self.codes.append(code)


async def _plan_target(svc: Services, run: PrefetchRun, target: PrefetchTarget) -> list[tuple[FileProgress, Any]]:
    """Plan one target into ``run``; returns the files it still needs, with their RemoteFile."""
    state = TargetState(target.text)
    run.targets.append(state)
    try:
        plan = await plan_prefetch(svc, target.addr, target.creds, target.include, target.exclude, exact=target.exact)
        resolved = await svc.catalog.resolve(target.addr.with_path("").with_revision(plan.revision), target.creds)
    except Exception as exc:  # noqa: BLE001 - recorded for this target; the others go on
        run.fail_target(state, exc)
        return []
    state.repo, state.revision, state.paths = plan.repo, plan.revision, plan.paths
    todo = set(plan.todo)
    out = []
    for path in plan.paths:
        key = (plan.repo, plan.revision, path)
        if key in run.files:
            continue  # named by an earlier target too
        size = plan.sizes[path]
        fp = FileProgress(plan.repo, plan.revision, path, size)
        if path in todo:
            out.append((fp, svc.catalog.file(resolved, path, target.creds)))
        else:
            fp.state, fp.done = PRESENT, size
        run.files[key] = fp
    return out


async def _fill(svc: Services, run: PrefetchRun, fp: FileProgress, rf: Any) -> None:
    fp.state = RUNNING
    try:
        of = await svc.core.open(rf)
        fp._open = of
        try:
            await svc.core.fill(of)
        finally:
            fp._open = None
            await svc.core.close(of)
    except asyncio.CancelledError:
        fp.state = PENDING
        raise
    except Exception as exc:  # noqa: BLE001 - recorded for this file; the others go on
        run.fail_file(fp, exc)
        return
    fp.state, fp.done = FETCHED, fp.size


async def prefetch_all(
    svc: Services, targets: Sequence[PrefetchTarget], *, jobs: int = 4, run: PrefetchRun | None = None
) -> PrefetchRun:
    """Plan every target, then fill what is missing, ``jobs`` files at a time; failures are
    recorded in the returned run (``run.exit_code``), never raised. Pass ``run`` to watch it."""
    run = PrefetchRun() if run is None else run
    todo: list[tuple[FileProgress, Any]] = []
    for target in targets:
        todo += await _plan_target(svc, run, target)
    sem = asyncio.Semaphore(max(1, jobs))

    async def one(fp: FileProgress, rf: Any) -> None:
        async with sem:
            await _fill(svc, run, fp, rf)

    await asyncio.gather(*(one(fp, rf) for fp, rf in todo))
    return run
