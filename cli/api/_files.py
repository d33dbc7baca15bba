"""``hoard.path``, ``hoard.open`` and ``hoard.prefetch``: files by address, from Python.

* :func:`path` makes sure a file is complete and verified in the store (fetching it first),
  then returns a local path: inside a live mount of the same store when there is one
  (:func:`._views.mount_path`), else the blob itself (``$HOARD_HOME/blobs/..``: read-only,
  kept until gc removes it; callers must never write to it).
* :func:`open` returns a read-only binary file object. A complete file is its blob, opened
  and read-locked against gc (``fileno()`` and ``mmap`` work). Anything else is read lazily:
  each read asks the fetch core for the chunk it falls in (one fetch per chunk, shared with
  every other reader, :meth:`FetchCore.read_bytes`), plus a few chunks ahead while the reads
  are sequential; nothing else is fetched. Those bytes are checked per chunk as they land;
  the whole file's hash is checked when the file completes (:func:`path` hands out only
  files that passed it).
* :func:`prefetch` fills a repo, a folder, a file or an infernet-ml model id's files, like
  ``hoard prefetch``, and returns what it did.

Addresses are the CLI's: ``<source>/<owner>/<repo>[@<rev>]/<path>``, a bare Hub id
(``org/name/file``), or an infernet-ml model id (``arweave/<owner>/<repo>:file``). Errors are
hoard's (:mod:`hoard.store.errors`): ``NotFound`` (a ``FileNotFoundError``), ``AccessDenied``
(a ``PermissionError``), ``OriginUnavailable``, ``IntegrityError``, ``UsageError``...
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hoard.cli.model_ids import Target, read_target
from hoard.store.address import Address
from hoard.store.errors import EntryNotFound, UsageError
from hoard.store.records import TreeEntry

from ._runtime import CALL_TIMEOUT, Runtime, runtime
from ._views import mount_path

if TYPE_CHECKING:
    from hoard.proxy.catalog import Resolved
    from hoard.proxy.fetch import OpenFile
    from hoard.proxy.origin import Credentials

__all__ = ["path", "open", "prefetch", "PrefetchSummary", "file_address", "resolve_file", "complete_file"]

#: chunks started ahead of a sequential reader of a lazy file (the mount's default)
READAHEAD = 4


def file_address(address: str, what: str = "hoard.path()") -> Address:
    """The one file an address (or a model id naming one file) names."""
    target = read_target(address, default_source="huggingface")
    if target.is_model_id:
        if len(target.files) != 1:
            raise UsageError(f"{address}: {what} takes one file; this model id names {len(target.files)}")
        return target.addresses[0]
    if not target.addr.path:
        raise UsageError(f"{address}: names a repo; {what} takes a file (hoard.prefetch() fills a repo)")
    return target.addr


def resolve_file(rt: Runtime, addr: Address, creds: Credentials | None = None) -> tuple[Resolved, TreeEntry]:
    """The file's revision and tree entry (looked up at the origin when not cached; the
    cached answer while the origin is down, as the local user's mount does). ``creds``:
    the local user's (default), or a call's own token."""
    svc = rt.svc
    resolved = rt.run(svc.catalog.resolve(addr, creds or rt.creds, trust_offline=True), timeout=CALL_TIMEOUT)
    entry = resolved.snapshot.files.get(addr.path)
    if entry is None:
        if any(p.startswith(addr.path + "/") for p in resolved.snapshot.files):
            raise UsageError(f"{addr}: is a folder; name one of its files")
        raise EntryNotFound(f"{resolved.addr.repo_key}@{resolved.revision}: no file {addr.path!r}", resolved.revision)
    return resolved, entry


def complete_file(rt: Runtime, resolved: Resolved, rel: str, creds: Credentials | None = None) -> str:
    """The BLAKE3 of a file of ``resolved``, fetched, verified and published first if the
    store lacks it (a fill shared with any other reader of the file)."""
    from hoard.proxy.origin import name_published

    svc = rt.svc
    rf = svc.catalog.file(resolved, rel, creds or rt.creds)
    b3 = svc.store.resolve(rf.identity)
    if b3 is None:

        async def fill() -> str:
            of = await svc.core.open(rf)
            try:
                return await svc.core.fill(of)
            finally:
                await svc.core.close(of)

        b3 = rt.run(fill())
    else:
        name_published(svc.store, rf, b3)  # found under another name: give it this one too
    svc.store.touch(b3)
    return b3


def path(address: str) -> str:
    """A local path to the complete, verified file ``address`` names (see the module
    docstring). Raises hoard's errors (``NotFound``, ``AccessDenied``, ``OriginUnavailable``,
    ``IntegrityError``, ``UsageError``)."""
    rt = runtime()
    addr = file_address(address)
    resolved, _ = resolve_file(rt, addr)
    b3 = complete_file(rt, resolved, addr.path)
    return mount_path(rt.store, resolved.addr.with_path(addr.path)) or str(rt.store.blob_path(b3))


def open(address: str) -> io.BufferedReader:  # noqa: A001 - hoard.open, as io.open
    """A read-only binary file object for ``address``: the blob when complete, else a lazy
    reader that fetches only the chunks it reads (see the module docstring)."""
    rt = runtime()
    addr = file_address(address, "hoard.open()")
    resolved, entry = resolve_file(rt, addr)
    svc = rt.svc
    rf = svc.catalog.file(resolved, addr.path, rt.creds)
    b3 = svc.store.resolve(rf.identity)
    fd = svc.store.open_blob(b3) if b3 is not None else None
    if fd is not None:
        assert b3 is not None
        svc.store.touch(b3)
        raw: io.RawIOBase = io.FileIO(fd, "rb", closefd=True)
        raw.name = str(resolved.addr.with_path(addr.path))  # type: ignore[attr-defined]
        return io.BufferedReader(raw)
    of = rt.run(svc.core.open(rf), timeout=CALL_TIMEOUT)
    lazy = LazyFile(rt, of, str(resolved.addr.with_path(addr.path)), svc.store.chunk_size)
    return io.BufferedReader(lazy, buffer_size=min(svc.store.chunk_size, 1 << 20))


class LazyFile(io.RawIOBase):
    """A file of the fetch core, read a chunk at a time (short reads end at chunk edges)."""

    def __init__(self, rt: Runtime, of: OpenFile, name: str, chunk_size: int) -> None:
        super().__init__()
        self._rt = rt
        self._of: OpenFile | None = of
        self.name = name
        self.mode = "rb"
        self._size = of.size
        self._chunk = max(1, of.partial.chunk_size if of.partial is not None else chunk_size)
        self._pos = 0
        self._last_end = -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checked()
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._checked()
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence})")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        of = self._checked()
        view = memoryview(buffer).cast("B")
        start = self._pos
        if start >= self._size or not len(view):
            return 0
        end = min(self._size, start + len(view), (start // self._chunk + 1) * self._chunk)
        ahead = READAHEAD if start == self._last_end else 0
        data = self._rt.run(self._rt.svc.core.read_bytes(of, start, end, readahead=ahead), timeout=CALL_TIMEOUT)
        view[: len(data)] = data
        self._pos = self._last_end = start + len(data)
        return len(data)

    def close(self) -> None:
        of, self._of = self._of, None
        if of is not None and not self._rt.closed:
            try:
                self._rt.run(self._rt.svc.core.close(of), timeout=60)
            except Exception:  # noqa: BLE001 - closing at exit or after the core stopped
                pass
        super().close()

    def _checked(self) -> OpenFile:
        if self._of is None:
            raise ValueError("I/O operation on closed file")
        return self._of


@dataclass(frozen=True)
class PrefetchSummary:
    """What :func:`prefetch` did: the same fields as ``hoard prefetch --json``."""

    repo: str
    revision: str
    files: int
    bytes: int
    fetched: int
    fetched_bytes: int
    cached: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prefetch(
    address: str, *, include: Sequence[str] = (), exclude: Sequence[str] = (), jobs: int = 4
) -> PrefetchSummary:
    """Fetch ``address`` completely into the store: a repo, a folder, a file, or the files an
    infernet-ml model id names (then without ``include``/``exclude``). Every file is
    verified and published; an interrupted prefetch resumes where it stopped."""
    rt = runtime()
    target = read_target(address, default_source="huggingface")
    if target.is_model_id and (include or exclude):
        raise UsageError("a model id names its files: use it without include/exclude")
    return rt.run(_prefetch(rt, target, tuple(include), tuple(exclude), max(1, int(jobs))))


async def _prefetch(rt: Runtime, target: Target, include: tuple[str, ...], exclude: tuple[str, ...],
                    jobs: int) -> PrefetchSummary:  # fmt: skip
    from hoard.proxy.prefetch import plan_prefetch, run_prefetch

    svc, creds = rt.svc, rt.creds
    if target.is_model_id:  # exactly the named files: glob characters in them match themselves
        include = tuple(glob.escape(f) for f in target.files)
    plan = await plan_prefetch(svc, target.addr, creds, include, exclude)
    missing = [f for f in target.files if f not in plan.paths]
    if missing:
        raise EntryNotFound(f"{plan.repo}@{plan.revision}: no file {', '.join(map(repr, missing))}", plan.revision)
    await run_prefetch(svc, target.addr, creds, plan, jobs=jobs)
    return PrefetchSummary(plan.repo, plan.revision, len(plan.paths), plan.bytes, len(plan.todo), plan.todo_bytes,
                           len(plan.paths) - len(plan.todo))  # fmt: skip
