"""Progress of a prefetch on a terminal: a bar per file being fetched, and a total.

:class:`PrefetchDisplay` draws from snapshots of a prefetch (the document
:meth:`hoard.proxy.prefetch.PrefetchRun.as_dict` makes, or the merged remote jobs of
:class:`hoard.proxy.prefetch_remote.RemotePrefetch`): whoever runs the prefetch calls
:meth:`update` a few times a second and the display follows. The total counts only what this
run fetches (files already present are not "progress"), with its rate and time remaining
(rich's estimates over the recent updates); a file's bar appears while it is being fetched
and goes when it is done. Nothing is drawn unless stderr is a terminal and ``--json`` is off,
so scripts and logs see only the summary (:func:`hoard.cli.common.progress_bar` is the
one-bar version other commands use).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

__all__ = ["PrefetchDisplay"]


class PrefetchDisplay:
    """Bars for one prefetch; a no-op when not on a terminal or with ``--json``."""

    def __init__(self, title: str, *, enabled: bool) -> None:
        self.title = title
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._total: Any = None
        self._bars: dict[tuple[str, str, str], Any] = {}

    def __enter__(self) -> PrefetchDisplay:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}", table_column=None), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._total = self._progress.add_task(self.title, total=None)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def update(self, doc: dict[str, Any]) -> None:
        """Show this snapshot: the total, and a bar per file being fetched."""
        if self._progress is None:
            return
        todo = max(0, doc["bytes"] - doc["cached_bytes"])
        done = max(0, doc["done_bytes"] - doc["cached_bytes"])
        finished = doc["fetched"] + doc["cached"] + doc["failed"]
        self._progress.update(self._total, total=todo or None, completed=done,
                              description=f"{self.title}: {finished}/{doc['files']} file(s)")
        running = {(f["repo"], f["revision"], f["path"]): f for f in doc["files_detail"] if f["state"] == "running"}
        for key in [k for k in self._bars if k not in running]:
            self._progress.remove_task(self._bars.pop(key))
        for key, f in running.items():
            if key not in self._bars:
                self._bars[key] = self._progress.add_task(f"  {_short(f['repo'])}/{f['path']}", total=f["size"])
            self._progress.update(self._bars[key], completed=f["done"])


def _short(repo: str) -> str:
    """A repo key without its source, to keep bars narrow (``org/model``)."""
    return repo.split("/", 1)[1] if "/" in repo else repo
