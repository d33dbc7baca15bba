"""A fake parent hoard (the cluster tier's upstream) that sends whatever tree a test gives it.

A real parent only ever sends trees its own checks let through, so tests of how a node treats
a *hostile or broken* parent need this one: `FakeParent` answers ``GET /v1/trees/<address>``
with ``tree`` (a dict shaped like the real answer: ``revision``, ``files`` of ``path``,
``size``, ``identity``, ``blake3``, ``meta``; ``info``), ``GET /v1/files/<repo>@<rev>/<path>``
with ``files[path]`` (Range honoured), and 404 for the rest. Every request's raw path is
logged in ``paths``. It runs a real aiohttp server on 127.0.0.1, port 0, in its own thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import unquote

from aiohttp import web

__all__ = ["FakeParent"]


class FakeParent:
    """``with FakeParent(tree, files) as parent:`` — ``parent.url``, ``parent.paths``."""

    def __init__(self, tree: dict[str, Any], files: dict[str, bytes]) -> None:
        self.tree = tree
        self.files = files
        self.paths: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-parent", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path.partition("?")[0]
        self.paths.append(raw)
        if raw.startswith("/v1/trees/"):
            return web.json_response(self.tree)
        if raw.startswith("/v1/files/"):
            path = unquote(raw[len("/v1/files/"):]).split("/", 3)[-1]  # <source>/<owner>/<repo>@<rev>/<path>
            data = self.files.get(path)
            if data is not None:
                return self._ranged(request, data)
        return web.json_response({"kind": "not_found", "error": f"fake parent: no {raw}"}, status=404)

    @staticmethod
    def _ranged(request: web.Request, data: bytes) -> web.Response:
        spec = request.headers.get("Range", "")
        if not spec.startswith("bytes="):
            return web.Response(body=data)
        first, _, last = spec[6:].partition("-")
        start, end = int(first), min(int(last) + 1 if last else len(data), len(data))
        return web.Response(status=206, body=data[start:end],
                            headers={"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def __enter__(self) -> FakeParent:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
