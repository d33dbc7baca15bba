"""``hoard prefetch --upstream URL``: warm a running ``hoard serve`` instead of the local store.

Each target becomes one job, ``POST /v1/prefetch`` (``{"address", "include", "exclude", "jobs"}``),
sent with the admin token (``X-Hoard-Admin-Token``) when one is given and, as
``Authorization: Bearer``, the token of the target's own source (the user's, or a Clarifai
``hf_token`` for that repo alone): the server forwards it to that origin only, never keeps
it. Then every job is followed with ``GET /v1/prefetch/<id>`` until none is running; each
poll is merged into one document shaped like :meth:`PrefetchRun.as_dict`, so the CLI shows
and summarises a remote prefetch exactly like a local one. With several upstreams, a job goes
to the first that answers.

Failures come back as ``kind`` strings (the error tree's); :func:`error_of` turns one back
into its class, so the exit code is the error table's, as for a local run. Network errors are
translated here, at the one place this module meets aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from hoard.store.errors import HoardError, OriginUnavailable, codes_for

from .prefetch import PrefetchTarget, exit_code

__all__ = ["RemotePrefetch", "error_of"]

_SUMS = ("files", "bytes", "done_bytes", "fetched", "fetched_bytes", "cached", "cached_bytes", "failed", "running")


def _kinds(cls: type[HoardError] = HoardError) -> dict[str, type[HoardError]]:
    out = {cls.kind: cls}
    for sub in cls.__subclasses__():
        out = _kinds(sub) | out
    return out


def error_of(kind: str | None, message: str) -> HoardError:
    """An error of the class whose ``kind`` this is (HoardError when unknown)."""
    cls = _kinds().get(kind or "", HoardError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


def _job_address(target: PrefetchTarget) -> str:
    """What to ask for: an exact file as a model id (``repo:file``) when its name allows."""
    addr = target.addr
    if target.exact and addr.path and "/" not in addr.path:
        return f"{addr.with_path('')}:{addr.path}"
    return str(addr)


class RemotePrefetch:
    """One remote prefetch of several targets through the first of ``upstreams`` that answers."""

    def __init__(self, upstreams: Sequence[str], admin_token: str | None = None, poll: float = 0.25,
                 jobs: int = 4) -> None:
        self.upstreams = list(upstreams)
        self.width = jobs
        self.admin_token = admin_token
        self.poll = poll
        self.jobs: list[dict[str, Any]] = []  # the last answer of each job (or a failed start)
        self._where: list[str | None] = []

    async def _call(self, session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
                    body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body); OriginUnavailable when the server cannot be reached or answers
        something that is not JSON."""
        try:
            async with session.request(method, url, json=body, headers=headers) as resp:
                text = await resp.text()
                doc = json.loads(text) if text else {}
                return resp.status, doc if isinstance(doc, dict) else {}
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise OriginUnavailable(f"{url}: {type(exc).__name__}: {exc}".rstrip(": ")) from None

    def _headers(self, target: PrefetchTarget) -> dict[str, str]:
        headers = dict(target.creds.bearer(target.addr.source))
        if self.admin_token:
            headers["X-Hoard-Admin-Token"] = self.admin_token
        return headers

    async def _start(self, session: aiohttp.ClientSession, target: PrefetchTarget) -> None:
        body = {"address": _job_address(target), "include": list(target.include), "exclude": list(target.exclude),
                "jobs": self.width}
        failed: dict[str, Any] = {}
        for base in self.upstreams:
            try:
                status, doc = await self._call(session, "POST", f"{base}/v1/prefetch", self._headers(target), body)
            except OriginUnavailable as exc:
                failed = {"error": str(exc), "kind": exc.kind}
                continue
            if status == 202 and "id" in doc:
                self.jobs.append(doc)
                self._where.append(base)
                return
            failed = {"error": f"{base}: {doc.get('error') or f'HTTP {status}'}", "kind": doc.get("kind", "internal")}
            break
        self.jobs.append({"address": target.text, "state": "failed", **failed})
        self._where.append(None)

    async def _follow(self, session: aiohttp.ClientSession, targets: Sequence[PrefetchTarget], i: int) -> None:
        base = self._where[i]
        if base is None or self.jobs[i].get("state") != "running":
            return
        status, doc = await self._call(session, "GET", f"{base}/v1/prefetch/{self.jobs[i]['id']}", self._headers(targets[i]))
        if status != 200:
            doc = {**self.jobs[i], "state": "failed", "error": f"{base}: the job is gone ({doc.get('error', status)})",
                   "kind": doc.get("kind", "internal")}
        self.jobs[i] = doc

    async def run(self, targets: Sequence[PrefetchTarget],
                  on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Start a job per target, follow them all; returns the merged document."""
        timeout = aiohttp.ClientTimeout(total=60, connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for target in targets:
                await self._start(session, target)
            while True:
                await asyncio.gather(*(self._follow(session, targets, i) for i in range(len(targets))))
                doc = self.document()
                if on_update is not None:
                    on_update(doc)
                if not any(j.get("state") == "running" for j in self.jobs):
                    return doc
                await asyncio.sleep(self.poll)

    def document(self) -> dict[str, Any]:
        """The jobs merged: summed totals, every target, every file each job fetches."""
        # a job's "bytes" counts its complete files (the API's older meaning); "total_bytes" all
        doc: dict[str, Any] = {k: sum(int(j.get("total_bytes" if k == "bytes" else k) or 0) for j in self.jobs)
                               for k in _SUMS}
        targets, files, codes = [], [], []
        for job in self.jobs:
            targets += job.get("targets") or [{"address": job.get("address"), "error": job.get("error"),
                                               "kind": job.get("kind"), "repo": None, "revision": None, "files": 0}]
            files += job.get("progress") or []
        for failure in [t for t in targets if t.get("error")] + [f for f in files if f.get("error")]:
            codes.append(codes_for(error_of(failure.get("kind"), str(failure.get("error")))).exit_code)
        for job in self.jobs:
            if job.get("state") == "failed" and not job.get("targets"):
                doc["failed"] += 1
        revisions = {(t.get("repo"), t.get("revision")) for t in targets if t.get("repo")}
        repo, rev = revisions.pop() if len(revisions) == 1 else (None, None)
        return {**doc, "repo": repo, "revision": rev, "ok": not codes, "exit_code": exit_code(codes),
                "targets": targets, "files_detail": files, "upstream": list(dict.fromkeys(w for w in self._where if w))}
