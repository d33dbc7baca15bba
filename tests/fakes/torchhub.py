"""Fake PyTorch sources: download.pytorch.org weights (`FakeTorchWeights`) and a torch.hub
code repository on a `FakeGitHub` (`add_hub_repo`), plus `patch_torch_hub` to aim the stock
``torch.hub`` at them.

Weights, as torchvision names and ``torch.hub.load_state_dict_from_url(check_hash=True)``
verifies them: ``GET /models/<name>-<hex>.pth`` where ``<hex>`` is the first 8 (or more)
hex digits of the body's sha256. The download origin 302s to a CDN origin (switch ``hop``)
that serves it like CloudFront in front of S3: ``Content-Length``, ``Content-Type:
application/octet-stream``, an md5 ``ETag`` (never the sha256), ``Last-Modified``, ranges and
conditionals. Unknown names answer S3's 404 ``NoSuchKey`` XML (``missing_status=403`` gives
the ``AccessDenied`` a bucket without list permission sends). `wrong_bytes` serves a body
whose sha256 does not start with the name's prefix. Bodies are bytes; `tiny_state_dict` and
`add_state_dict` (``torch.save``) import torch only when called.

torch.hub code: `add_hub_repo` makes ``<owner>/<repo>`` whose ``hubconf.py`` entrypoint builds
a tiny ``torch.nn.Linear`` (from a module in a sub-directory) and loads its weights with
``torch.hub.load_state_dict_from_url(<weights URL>, check_hash=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from .content import Content
from .github.servers import FakeServers, Route

if TYPE_CHECKING:
    from .github import FakeGitHub, GitRepo

__all__ = ["FakeTorchWeights", "add_hub_repo", "patch_torch_hub", "tiny_state_dict"]

_S3_ERROR = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{msg}</Message></Error>'
_MODIFIED = 1_650_000_000.0


@dataclass
class _Weights:
    content: Content
    md5: str
    wrong: bool = False


def tiny_state_dict(seed: int = 0) -> dict[str, Any]:
    """The state dict of ``torch.nn.Linear(3, 2)`` with deterministic values."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {"weight": torch.randn(2, 3, generator=gen), "bias": torch.randn(2, generator=gen)}


def _wrong(content: Content, prefix: str) -> Content:
    for i in range(1000):
        other = Content(f"wrong-weights-{i}-{content.sha256}", content.size)
        if not other.sha256.startswith(prefix):
            return other
    raise AssertionError("unreachable")


class FakeTorchWeights(FakeServers):
    """``with FakeTorchWeights() as w: url = w.add_weights("tiny", data)``."""

    ORIGINS = ("download", "cdn")
    THREAD_NAME = "fake-torch-weights"

    def __init__(self, *, hop: bool = True, missing_status: int = 404, **kw: Any) -> None:
        super().__init__(**kw)
        self.hop = hop
        self.missing_status = missing_status
        self._files: dict[str, _Weights] = {}

    def route(self, origin: str) -> Route:
        return self._download if origin == "download" else self._cdn

    @property
    def url(self) -> str:
        """Stands for https://download.pytorch.org."""
        return self.origin_url("download")

    def file_url(self, filename: str) -> str:
        return f"{self.url}/models/{filename}"

    def add(self, filename: str, data: bytes | Content) -> str:
        """Serve ``data`` as ``/models/<filename>`` exactly (no naming rule); returns the URL."""
        content = Content.of(data)
        md5 = hashlib.md5(content.read()).hexdigest()
        with self._lock:
            self._files[filename] = _Weights(content, md5)
        return self.file_url(filename)

    def add_weights(self, name: str, data: bytes | Content, *, prefix_len: int = 8, ext: str = "pth") -> str:
        """Serve ``data`` as ``<name>-<sha256[:prefix_len]>.<ext>`` (torchvision's naming)."""
        return self.add(f"{name}-{Content.of(data).sha256[:prefix_len]}.{ext}", data)

    def add_state_dict(self, name: str, state_dict: dict[str, Any]) -> str:
        import torch

        buf = io.BytesIO()
        torch.save(state_dict, buf)
        return self.add_weights(name, buf.getvalue())

    def wrong_bytes(self, filename: str, on: bool = True) -> None:
        """Serve bytes of the same size whose sha256 does not start with the name's prefix."""
        with self._lock:
            self._files[filename].wrong = on

    def remove(self, filename: str) -> None:
        with self._lock:
            self._files.pop(filename, None)

    async def _missing(self, request: web.Request) -> web.StreamResponse:
        if self.missing_status == 404:
            code, msg = "NoSuchKey", "The specified key does not exist."
        else:
            code, msg = "AccessDenied", "Access Denied"
        body = _S3_ERROR.format(code=code, msg=msg).encode()
        return await self.send(request, self.missing_status, {"Content-Type": "application/xml"}, body)

    def _lookup(self, request: web.Request) -> tuple[str, _Weights] | None:
        path = unquote(request.raw_path.partition("?")[0])
        if not path.startswith("/models/") or request.method not in ("GET", "HEAD"):
            return None
        name = path[len("/models/") :]
        with self._lock:
            item = self._files.get(name)
        return None if item is None else (name, item)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        found = self._lookup(request)
        if found is None:
            return await self._missing(request)
        if self.hop:
            location = f"{self.origin_url('cdn')}{request.raw_path.partition('?')[0]}"
            return await self.send(request, 302, {"Location": location, "Content-Type": "text/html"}, b"")
        return await self._serve_weights(request, *found)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        found = self._lookup(request)
        if found is None:
            return await self._missing(request)
        return await self._serve_weights(request, *found)

    async def _serve_weights(self, request: web.Request, name: str, item: _Weights) -> web.StreamResponse:
        content, md5 = item.content, item.md5
        if item.wrong:
            prefix = name.rsplit("-", 1)[-1].split(".")[0]
            content = _wrong(content, prefix)
            md5 = hashlib.md5(content.read()).hexdigest()
        headers = {
            "Content-Type": "application/octet-stream",
            "x-amz-server-side-encryption": "AES256",
            "X-Cache": "Hit from cloudfront",
            "Via": "1.1 fake.cloudfront.net (CloudFront)",
            "Age": "1",
        }
        return await self.serve(request, content, headers, etag=f'"{md5}"', last_modified=_MODIFIED)


# -- torch.hub code repository ---------------------------------------------------------

HUBCONF = '''"""hubconf of a fake torch.hub repository."""
dependencies = ["torch"]

import torch

from {package}.model import build

WEIGHTS_URL = {url!r}


def {entry}(pretrained=True, **kwargs):
    """A tiny Linear(3, 2); pretrained weights come from WEIGHTS_URL (hash-checked)."""
    model = build()
    if pretrained:
        state = torch.hub.load_state_dict_from_url(WEIGHTS_URL, check_hash=True, progress=False)
        model.load_state_dict(state)
    return model
'''

MODEL = """import torch


def build():
    return torch.nn.Linear(3, 2)
"""


def add_hub_repo(
    github: FakeGitHub,
    full_name: str,
    weights_url: str,
    *,
    entry: str = "tiny_linear",
    package: str = "tinynet",
    **kw: Any,
) -> GitRepo:
    """A torch.hub repository on ``github`` whose entrypoint ``entry`` loads ``weights_url``."""
    files = {
        "hubconf.py": HUBCONF.format(url=weights_url, entry=entry, package=package),
        f"{package}/__init__.py": "",
        f"{package}/model.py": MODEL,
        "README.md": f"# {full_name}\n",
    }
    return github.add_repo(full_name, files, **kw)


@contextlib.contextmanager
def patch_torch_hub(github: FakeGitHub, *, probe: bool = False) -> Iterator[None]:
    """Aim the stock ``torch.hub`` at ``github``: ``_git_archive_link`` (the zipball URL) and
    ``_read_url`` (only the fork check uses it, with a hard-coded https://api.github.com);
    with ``probe``, also ``urlopen`` for the ``https://github.com/{o}/{r}/tree/main/`` probe
    made when the repo string has no ref."""
    from unittest import mock

    import torch.hub as hub

    real_read_url: Callable[..., Any] = hub._read_url
    real_urlopen: Callable[..., Any] = getattr(hub, "urlopen")  # noqa: B009 (not exported by torch.hub)

    def rewrite(url: str) -> str:
        for real, fake in (("https://api.github.com", github.api_url), ("https://github.com", github.web_url)):
            if url.startswith(real):
                return fake + url[len(real) :]
        return url

    def read_url(req: Any) -> Any:
        if hasattr(req, "full_url"):
            req.full_url = rewrite(req.full_url)
            return real_read_url(req)
        return real_read_url(rewrite(req))

    def urlopen(req: Any, *a: Any, **k: Any) -> Any:
        if isinstance(req, str):
            req = rewrite(req)
        else:
            req.full_url = rewrite(req.full_url)
        return real_urlopen(req, *a, **k)

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            mock.patch.object(hub, "_git_archive_link", lambda o, r, ref: f"{github.web_url}/{o}/{r}/zipball/{ref}")
        )
        stack.enter_context(mock.patch.object(hub, "_read_url", read_url))
        if probe:
            stack.enter_context(mock.patch.object(hub, "urlopen", urlopen))
        yield
