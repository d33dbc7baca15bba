"""``POST /v1/prefetch`` and ``GET /v1/prefetch/<id>``: background fills of a running proxy.

``POST /v1/prefetch`` ``{"address": ..., "include": [globs], "exclude": [globs], "jobs": 4}``
(an address, or an infernet-ml model id ``repo:file1,file2``) answers 202 with the job and
``Location: /v1/prefetch/<id>``; the job then runs :func:`~.prefetch.prefetch_all` with the
caller's token for that address's source. ``GET /v1/prefetch/<id>`` answers the job's state
(``running``, ``done``, ``failed`` with ``error`` and ``kind``), its counts (``files``,
``done``: files complete, ``fetched``, ``cached``, ``failed``), its bytes (``total_bytes``,
``bytes``: of the files complete, ``done_bytes``: present so far, partial chunks included)
and ``progress``, each file it fetches with its own bytes present — what ``hoard prefetch
--upstream URL`` follows and draws. Files of repos the caller may not see are counted, never
named. Jobs live in memory; the 1000 newest are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import web

from hoard.store.address import parse_target
from hoard.store.errors import HoardError, NotFound, UsageError
from hoard.store.pins import advance_follows

from .prefetch import FETCHED, PRESENT, PrefetchRun, PrefetchTarget, prefetch_all
from .request import credentials_for
from .service import Services
from .v1_access import Viewer, viewer
from .v1_common import admin_only, read_body, v1_errors

__all__ = ["PrefetchJob", "PrefetchJobs", "PREFETCH", "post_prefetch", "get_prefetch"]

log = logging.getLogger("hoard.v1")
_MAX_JOBS = 1000
_MAX_WIDTH = 32  # files one job fills at once, at most


class PrefetchJob:
    """One ``POST /v1/prefetch``: its targets and the live :class:`PrefetchRun`."""

    def __init__(self, address: str, targets: list[PrefetchTarget]) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.address = address
        self.targets = targets
        self.run = PrefetchRun()
        self.state = "running"
        self.error: str | None = None
        self.kind: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        self.width = 4  # files filled at once

    def finish(self) -> None:
        """Done, or failed with the first failure's reason (an error of its own, else a
        target's or a file's)."""
        failures = [t for t in self.run.targets if t.error] + [f for f in self.run.files.values() if f.error]
        if self.error is None and failures:
            self.error, self.kind = failures[0].error, failures[0].kind
        self.state = "failed" if self.error else "done"
        self.finished = time.time()

    async def as_dict(self, who: Viewer | None = None) -> dict[str, Any]:
        """The job's state; files of repos ``who`` may not see are counted, never named."""
        self.run.refresh()
        totals = self.run.totals()
        files = list(self.run.files.values())
        complete = [f for f in files if f.state in (FETCHED, PRESENT)]
        doc = {"id": self.id, "address": self.address, "state": self.state, "error": self.error, "kind": self.kind,
               "started": self.started, "finished": self.finished, **self.run.as_dict(),
               "files": len(files), "done": len(complete), "bytes": sum(f.size for f in complete),
               "total_bytes": totals["bytes"]}
        del doc["files_detail"]
        shown = [f for f in files if f.state != PRESENT and (who is None or await who.sees_repo(f.repo))]
        doc["progress"] = [f.as_dict() for f in shown]
        for item in [doc, *doc["targets"]]:
            if who is not None and item["repo"] and not await who.sees_repo(item["repo"]):
                item["repo"] = item["revision"] = None
        return doc


class PrefetchJobs:
    """Background fills started by ``POST /v1/prefetch``; state kept in memory."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.jobs: dict[str, PrefetchJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, address: str, creds: Any, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
              jobs: int = 4) -> PrefetchJob:
        """Start a job for ``address`` (an address, or a model id ``repo:file1,file2``)."""
        addr, files = parse_target(address)
        if files:
            targets = [PrefetchTarget(addr.with_path(f), address, creds, exact=True) for f in dict.fromkeys(files)]
        else:
            targets = [PrefetchTarget(addr, address, creds, include, exclude)]
        job = PrefetchJob(address, targets)
        job.width = jobs
        self.jobs[job.id] = job
        if len(self.jobs) > _MAX_JOBS:  # forget the oldest finished jobs
            finished = [k for k, j in self.jobs.items() if j.state != "running"]
            for k in finished[: len(self.jobs) - _MAX_JOBS]:
                del self.jobs[k]
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: PrefetchJob) -> None:
        try:
            await prefetch_all(self.svc, job.targets, jobs=job.width, run=job.run)
        except Exception as exc:  # noqa: BLE001 - reported through the job
            job.run.codes.append(1)
            job.error, job.kind = str(exc), getattr(exc, "kind", "internal")
        job.finish()
        if job.error:
            log.warning("prefetch %s failed: %s", job.address, job.error)
        try:
            await asyncio.get_running_loop().run_in_executor(None, advance_follows, self.svc.store)
        except HoardError as exc:
            log.warning("moving followed pins after a prefetch: %s", exc)

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


PREFETCH = web.AppKey("prefetch", PrefetchJobs)


@admin_only
@v1_errors
async def post_prefetch(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    address = body.get("address") or body.get("repo") or request.query.get("address")
    if not isinstance(address, str):
        raise UsageError('body must be {"address": "<source>/<owner>/<repo>[@rev][/<path>]"}')
    addr, _ = parse_target(address)
    include, exclude = _globs(body, "include"), _globs(body, "exclude")
    jobs = body.get("jobs", 4)
    if type(jobs) is not int or not 1 <= jobs <= _MAX_WIDTH:
        raise UsageError(f"'jobs' must be a whole number from 1 to {_MAX_WIDTH}")
    job = request.app[PREFETCH].start(address, credentials_for(request, addr.source), include, exclude, jobs)
    return web.json_response(await job.as_dict(), status=202, headers={"Location": f"/v1/prefetch/{job.id}"})


def _globs(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise UsageError(f"{key!r} must be a list of glob patterns")
    return tuple(value)


@v1_errors
async def get_prefetch(request: web.Request) -> web.StreamResponse:
    job = request.app[PREFETCH].jobs.get(request.match_info["id"])
    if job is None:
        raise NotFound("no such prefetch job")
    return web.json_response(await job.as_dict(viewer(request)))
