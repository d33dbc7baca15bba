"""``onnx.hub`` without onnx.hub: the ONNX Model Hub client onnx removed in 1.21, over hoard.

The same functions, arguments and results as onnx 1.20.1's ``onnx.hub``: :func:`list_models`,
:func:`get_model_info`, :func:`load`, :func:`download_model_with_test_data` (and
:func:`get_dir`/:func:`set_dir`), :class:`ModelInfo` with the same attributes, names matched
exactly but case-insensitively, tags any-of, the highest opset by default and
``AssertionError`` for a manifest that cannot be found, a model name that is not in it or an
opset it does not have. What differs is where the bytes come from:

* every file is read through hoard's store, in process: the ``onnx`` source
  (:mod:`hoard.proxy.sources.onnx`) resolves ``owner/name:ref`` to its
  ``ONNX_HUB_MANIFEST.json`` revision, and the fetch core fills, verifies (sha256 from the
  manifest) and publishes each file once. A second call reads the store: no download, and it
  works offline (the last known manifest is used while GitHub cannot be reached). No mount
  is needed; a mount of the same store sees the same files;
* the configuration is the CLI's (``HOARD_HOME``, ``HOARD_GITHUB_URL``,
  ``HOARD_GITHUB_MEDIA_URL``, ``HOARD_UPSTREAM``, ``config.toml``...), read by
  :mod:`hoard.cli` exactly as ``hoard prefetch`` reads it;
* the manifest is asked again after the refs TTL rather than on every call;
  ``force_reload=True`` asks it at once. A model file is never downloaded twice: the store
  is content-addressed and verified, so there is no stale copy to reload;
* a file whose bytes do not match the manifest raises hoard's ``IntegrityError`` and is never
  kept; a model the manifest names but the media host does not have raises ``NotFound``;
* ``download_model_with_test_data`` extracts the verified tarball under :func:`get_dir`
  (default ``$HOARD_HOME/onnx_hub``) in onnx.hub's layout, refusing any member name that
  would land outside its folder and skipping links and special files.

Each call runs hoard's services on an event loop of its own, in a thread, so it works from
synchronous code and from inside a running loop (a notebook) alike.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, TypeVar, cast
from urllib.parse import quote

from hoard.store.address import Address, check_path, parse_address
from hoard.store.errors import InvalidAddress, NotFound, RepoNotFound, RevisionNotFound
from hoard.store.store import Store

from .catalog import Resolved
from .onnx_hub_untar import extract_tarball
from .service import ProxyConfig, Services, open_services
from .sources.onnx import MANIFEST

__all__ = ["ModelInfo", "list_models", "get_model_info", "load", "download_model_with_test_data",
           "get_dir", "set_dir", "DEFAULT_REPO"]  # fmt: skip

log = logging.getLogger("hoard.onnx_hub")
T = TypeVar("T")
DEFAULT_REPO = "onnx/models:main"
_dir: str | None = None


class ModelInfo:
    """A model of the hub's manifest (the attributes of ``onnx.hub.ModelInfo``)."""

    def __init__(self, raw_model_info: dict[str, Any]) -> None:
        self.model = cast(str, raw_model_info["model"])
        self.model_path = cast(str, raw_model_info["model_path"])
        self.metadata: dict[str, Any] = cast(dict, raw_model_info["metadata"])
        self.model_sha: str | None = self.metadata.get("model_sha")
        self.tags: set[str] = set(self.metadata.get("tags") or ())
        self.opset = cast(int, raw_model_info["opset_version"])
        self.raw_model_info = raw_model_info

    def __str__(self) -> str:
        return f"ModelInfo(model={self.model}, opset={self.opset}, path={self.model_path}, metadata={self.metadata})"

    __repr__ = __str__


def set_dir(new_dir: str) -> None:
    """Where :func:`download_model_with_test_data` extracts tarballs."""
    global _dir
    _dir = new_dir


def get_dir() -> str:
    """The extraction folder: what :func:`set_dir` set, else ``$HOARD_HOME/onnx_hub``."""
    return _dir if _dir is not None else str(_settings().home / "onnx_hub")


# -- the public functions (onnx.hub's) ---------------------------------------------------------


def list_models(repo: str = DEFAULT_REPO, model: str | None = None, tags: list[str] | None = None) -> list[ModelInfo]:
    """The manifest's models with that name (case-insensitive) and any of those tags."""
    return _run(lambda hub: hub.models(repo, model, tags))


def get_model_info(model: str, repo: str = DEFAULT_REPO, opset: int | None = None) -> ModelInfo:
    """The model of that name with that opset (default: the highest)."""
    return _run(lambda hub: hub.model_info(model, repo, opset))


def load(model: str, repo: str = DEFAULT_REPO, opset: int | None = None, force_reload: bool = False,
         silent: bool = False) -> Any:
    """The model as an ``onnx.ModelProto`` (None if an untrusted repo was declined)."""

    async def work(hub: _Hub) -> bytes | None:
        info = await hub.model_info(model, repo, opset)
        b3 = await hub.fetch(repo, info.model_path, silent)
        return None if b3 is None else await asyncio.get_running_loop().run_in_executor(None, hub.bytes, b3)

    data = _run(work, fresh=force_reload)
    if data is None:
        return None
    import onnx

    return onnx.load(io.BytesIO(data))


def download_model_with_test_data(model: str, repo: str = DEFAULT_REPO, opset: int | None = None,
                                  force_reload: bool = False, silent: bool = False) -> str | None:
    """Extract the model's test-data tarball; returns the folder inside it, as onnx.hub did
    (``<dir>/<path folders>/<sha>_<name>/<top folder>``). None if the repo was declined."""
    root = get_dir()

    async def work(hub: _Hub) -> str | None:
        info = await hub.model_info(model, repo, opset)
        path = info.metadata["model_with_data_path"]
        b3 = await hub.fetch(repo, path, silent)
        if b3 is None:
            return None
        sha = await hub.sha256(repo, path)  # the manifest's model_with_data_sha, as verified
        folders, name = os.path.split(check_path(path))
        target = Path(root, folders, f"{sha}_{name.removesuffix('.tar.gz')}")
        if force_reload or not target.is_dir():
            await asyncio.get_running_loop().run_in_executor(None, hub.extract, b3, target, path)
        tops = sorted(os.listdir(target))
        if not tops:
            raise NotFound(f"{path}: the tarball holds nothing")
        return f"{target}/{tops[0]}"

    return _run(work, fresh=force_reload)


# -- one call: hoard's services on a private loop ----------------------------------------------


def _settings() -> Any:
    """The CLI's settings, resolved from the environment and config.toml exactly as
    ``hoard prefetch`` resolves them (:func:`hoard.cli.config.settings_from_environment`
    reads each variable as click would; :func:`~hoard.cli.config.load_settings` applies the
    rest)."""
    from hoard.cli.config import load_settings, settings_from_environment

    return load_settings(settings_from_environment())


def _run(work: Callable[[_Hub], Awaitable[T]], *, fresh: bool = False) -> T:
    """Run ``work`` with hoard's services (a store, the catalog, the fetch core) on a loop of
    its own in a thread; ``fresh`` re-reads refs at once (a refs TTL of 0)."""
    from hoard.cli.runtime import proxy_config

    settings = _settings()
    config = proxy_config(settings, local_user=True)
    if fresh:
        config = replace(config, refs_ttl=0.0)

    def main() -> T:
        store = Store(settings.store_config())
        try:
            return asyncio.run(_with_services(config, store, work))
        finally:
            store.close()

    with ThreadPoolExecutor(1, thread_name_prefix="hoard-onnx-hub") as pool:
        return pool.submit(main).result()


async def _with_services(config: ProxyConfig, store: Store, work: Callable[[_Hub], Awaitable[T]]) -> T:
    svc = await open_services(config, store)
    try:
        return await work(_Hub(svc, config))
    finally:
        await svc.aclose()


def _parse_repo_info(repo: str) -> tuple[str, str, str]:
    """``owner/name[:ref]`` as onnx.hub splits it (the ref defaults to ``main``)."""
    head, _, ref = repo.partition(":")
    owner, _, name = head.partition("/")
    return owner, name.split("/")[0], ref.split(":")[0] if ref else "main"


def _trusted(repo: str) -> bool:
    return _parse_repo_info(repo) == ("onnx", "models", "main")


def _confirm(repo: str) -> bool:
    """onnx.hub's question before downloading from a repo other than onnx/models:main."""
    print(f"The model repo specification {repo} is not trusted and may contain security vulnerabilities. "
          "Only continue if you trust this repo.", file=sys.stderr)  # fmt: skip
    print("Continue?[y/n]")
    return input().lower() == "y"


class _Hub:
    """The hub's reads within one call."""

    def __init__(self, svc: Services, config: ProxyConfig) -> None:
        self.svc = svc
        self.creds = config.local_creds
        self.raw = str(config.source_settings.get("github_url", "")).rstrip("/")
        self._resolved: dict[str, Resolved] = {}

    def address(self, repo: str) -> Address:
        owner, name, ref = _parse_repo_info(repo)
        return parse_address(f"onnx/{owner}/{name}@{quote(ref, safe='')}")

    async def resolved(self, repo: str) -> Resolved:
        """The repo's current manifest revision; AssertionError, as onnx.hub, if it has none."""
        if repo not in self._resolved:
            owner, name, ref = _parse_repo_info(repo)
            try:
                self._resolved[repo] = await self.svc.catalog.resolve(self.address(repo), self.creds)
            except (RepoNotFound, RevisionNotFound, InvalidAddress) as exc:
                url = f"{self.raw}/{owner}/{name}/{ref}/{MANIFEST}"
                raise AssertionError(f"Could not find manifest at {url}") from exc
        return self._resolved[repo]

    async def fetch(self, repo: str, path: str, silent: bool = True) -> str | None:
        """The BLAKE3 of a file of the repo's revision, fetched and verified into the store if
        it is not there yet (None when the user declines an untrusted repo first)."""
        resolved = await self.resolved(repo)
        rf = self.svc.catalog.file(resolved, path, self.creds)
        b3 = self.svc.store.resolve(rf.identity)
        if b3 is not None:
            return b3
        if not silent and not _trusted(repo):
            if not await asyncio.get_running_loop().run_in_executor(None, _confirm, repo):
                return None
        of = await self.svc.core.open(rf)
        try:
            return await self.svc.core.fill(of)
        finally:
            await self.svc.core.close(of)

    async def sha256(self, repo: str, path: str) -> str:
        """The hash a file of the repo's revision was verified against (its tree entry's)."""
        expected = (await self.resolved(repo)).entry(path).expected
        if expected is None:
            raise NotFound(f"{path}: no hash is known for it")
        return expected.hex

    def _open(self, b3: str) -> IO[bytes]:
        """(In a thread.) A blob's file, read-locked against gc while open."""
        fd = self.svc.store.open_blob(b3)
        if fd is None:
            raise NotFound(f"blob {b3} left the store while being read; try again")
        return os.fdopen(fd, "rb")

    def bytes(self, b3: str) -> bytes:
        """(In a thread.) A blob's bytes."""
        with self._open(b3) as fh:
            return fh.read()

    def extract(self, b3: str, target: Path, what: str) -> None:
        """(In a thread.) Unpack a tarball blob into ``target`` (:mod:`.onnx_hub_untar`)."""
        with self._open(b3) as fh:
            extract_tarball(fh, target, what)

    async def models(self, repo: str, model: str | None, tags: list[str] | None) -> list[ModelInfo]:
        """onnx.hub's ``list_models``, on the manifest this revision holds."""
        b3 = await self.fetch(repo, MANIFEST)
        raw = await asyncio.get_running_loop().run_in_executor(None, self.bytes, cast(str, b3))
        manifest = [ModelInfo(info) for info in json.loads(raw)]
        found = manifest if model is None else [m for m in manifest if m.model.lower() == model.lower()]
        if tags is None:
            return found
        wanted = {t.lower() for t in tags}
        return [m for m in found if wanted & {t.lower() for t in m.tags}]

    async def model_info(self, model: str, repo: str, opset: int | None) -> ModelInfo:
        """onnx.hub's ``get_model_info``: the highest opset, or exactly ``opset``."""
        found = await self.models(repo, model, None)
        if not found:
            raise AssertionError(f"No models found with name {model}")
        if opset is None:
            return sorted(found, key=lambda m: -m.opset)[0]
        chosen = [m for m in found if m.opset == opset]
        if not chosen:
            raise AssertionError(f"{model} has no version with opset {opset}. Valid opsets: {[m.opset for m in found]}")
        return chosen[0]
