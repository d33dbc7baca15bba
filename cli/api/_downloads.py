"""``hoard.download_model``: the PyTorch framework downloader's call, over hoard's sources.

The call and the ids are those of the model downloader of the "PyTorch inference framework"
(``framework.core.model_downloader.download_model(source, model_id, model_name=None,
**kwargs) -> (path, ModelInfo)``): sources ``pytorch_hub``, ``torchvision``, ``huggingface``
and ``url``. That downloader builds each model and ``torch.save``\\s it; hoard fetches the
*files* a model is made of — verified, once, shared with the mount and the proxy — and
returns where they are, with a :class:`ModelInfo` of the same fields (plus hoard's address,
revision and file list). What ``path`` is, per source:

======================  ==========================================  ===========================
source, id              hoard address                               ``path``
======================  ==========================================  ===========================
``torchvision``         ``torch/hub/checkpoints/<file>``: the        the weights file
``resnet18``            default weights' file from torchvision's     (``torch.load`` it, or
(or ``resnet18-         registry (torchvision must be installed to   ``model.load_state_dict``)
f37072fd.pth``, or a    map a model name; a weights file name or URL
weights URL)            works without it)
``pytorch_hub``         ``torch/hub/<owner>_<repo>_<ref>``: the hub  the repo's folder:
``pytorch/vision:       repo's code at that ref (``main``, else      ``torch.hub.load(path,
v0.10.0/resnet50``      ``master``, when none is given)              "resnet50", source="local")``
``huggingface``         ``huggingface/<org>/<name>``; a legacy       the repo's folder
``bert-base-uncased``   single-segment id is looked up at the Hub    (``from_pretrained(path)``)
                        (``google-bert/bert-base-uncased``)
``url``                 ``url/<host>/<path>``                        the file
``https://h/m.pt``
======================  ==========================================  ===========================

Files are complete and verified before the call returns; a folder is the revision's folder
in a live mount of the store, else a view (``$HOARD_HOME/views/...``, links to the blobs). A
hub repo's entrypoint may download weights when it runs: with ``TORCH_HOME=<mount>/torch``
torch finds those in the mount too. Options of the framework that build models
(``pretrained``, ``task``, torch.hub's ``force_reload``, ``trust_repo``...) are accepted;
``pretrained=False`` with ``torchvision`` is refused (nothing to download), and any other
keyword is a ``UsageError``: hoard builds no model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from hoard.store.address import Address, parse_address
from hoard.store.errors import RepoNotFound, RevisionNotFound, UsageError

from ._files import complete_file, file_address, resolve_file
from ._runtime import CALL_TIMEOUT, Runtime, runtime
from ._trees import FetchedTree, fetch_tree, tree_folder
from ._views import mount_path

__all__ = ["ModelInfo", "download_model", "SOURCES"]

SOURCES = ("pytorch_hub", "torchvision", "huggingface", "url")
#: keywords of the framework's call that only shape how it builds a model: accepted, unused
_IGNORED = frozenset({"force_reload", "verbose", "skip_validation", "trust_repo", "progress", "check_hash"})
#: file names taken for weights files as they are (no torchvision registry needed)
_WEIGHTS_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
_MiB = 1 << 20


@dataclass
class ModelInfo:
    """The framework's ``ModelInfo`` fields, then hoard's: where the files are in hoard."""

    name: str
    source: str
    model_id: str
    task: str
    description: str = ""
    size_mb: float | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    #: hoard's address of the model's file or repo, its revision pinned
    address: str = ""
    revision: str = ""
    #: the files fetched (paths in the repo)
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Fetched:
    path: Path
    address: Address
    files: dict[str, int]  # path in the repo -> size


def download_model(source: str, model_id: str, model_name: str | None = None, *, task: str | None = None,
                   pretrained: bool = True, revision: str | None = None, include: Sequence[str] = (),
                   exclude: Sequence[str] = (), **kwargs: Any) -> tuple[Path, ModelInfo]:  # fmt: skip
    """Fetch a model's files through hoard and return ``(path, info)``; see the module
    docstring for what ``path`` is per source. ``revision`` pins a Hub revision;
    ``include``/``exclude`` (globs) choose the files of a Hub repo (default: all)."""
    unknown = sorted(set(kwargs) - _IGNORED)
    if unknown:
        raise UsageError(f"hoard.download_model fetches files and builds no model: unsupported argument(s) "
                         f"{', '.join(unknown)}")  # fmt: skip
    rt = runtime()
    if source == "torchvision":
        if not pretrained:
            raise UsageError(f"torchvision {model_id} with pretrained=False downloads nothing")
        got = _single(rt, _torchvision_address(rt, model_id))
        name, default_task = f"torchvision_{model_id}", "image-classification"
        tags = ["torchvision", "pretrained", "vision"]
        description = f"Torchvision model: {model_id}"
    elif source == "pytorch_hub":
        repo, entry = _hub_id(model_id)
        got = _hub_repo(rt, repo)
        name, default_task = f"{repo.replace('/', '_').replace(':', '_')}_{entry}", "classification"
        tags, description = ["pytorch_hub", "pretrained" if pretrained else "random"], f"PyTorch Hub model: {model_id}"
    elif source == "huggingface":
        got = _hub_model(rt, model_id, revision, include, exclude)
        name, default_task = model_id.replace("/", "_"), task or "feature-extraction"
        tags, description = ["huggingface", "transformers", default_task], f"Hugging Face model: {model_id}"
    elif source == "url":
        got = _single(rt, url_address(model_id, insecure=bool(rt.settings.sources.get("insecure_http"))))
        name = os.path.basename(urlsplit(model_id).path).split(".")[0]
        default_task = "custom"
        tags, description = ["url", task or default_task], f"Model downloaded from {model_id}"
    else:
        raise UsageError(f"Unsupported source: {source} (hoard.download_model takes {', '.join(SOURCES)})")
    info = ModelInfo(
        name=model_name or name, source=source, model_id=model_id, task=task or default_task,
        description=description, size_mb=sum(got.files.values()) / _MiB, tags=tags,
        address=str(got.address), revision=got.address.revision or "", files=sorted(got.files),
    )  # fmt: skip
    return got.path, info


def _single(rt: Runtime, addr: Address) -> _Fetched:
    """One file, complete and verified: its path (mount, else blob) and address."""
    resolved, entry = resolve_file(rt, addr)
    b3 = complete_file(rt, resolved, addr.path)
    pinned = resolved.addr.with_path(addr.path)
    where = mount_path(rt.store, pinned) or str(rt.store.blob_path(b3))
    return _Fetched(Path(where), pinned, {addr.path: entry.size})


def _tree(rt: Runtime, tree: FetchedTree) -> _Fetched:
    return _Fetched(tree_folder(rt, tree), tree.repo, tree.sizes)


# -- torchvision and torch.hub -----------------------------------------------------------------


def _torchvision_address(rt: Runtime, model_id: str) -> Address:
    """A model name (torchvision's registry), a weights file name, or a weights URL."""
    from hoard.proxy.sources._torch_names import CHECKPOINTS, HUB, SOURCE, checkpoint_of_url, torchvision_checkpoint

    base = str(rt.settings.sources.get("torch_url") or "https://download.pytorch.org")
    if model_id.startswith(("http://", "https://")):
        return parse_address(checkpoint_of_url(model_id, base))
    if model_id.endswith(_WEIGHTS_SUFFIXES) and "/" not in model_id:
        return parse_address(f"{SOURCE}/{HUB}/{CHECKPOINTS}/{model_id}")
    return parse_address(torchvision_checkpoint(model_id, base))


def _hub_id(model_id: str) -> tuple[str, str]:
    """``owner/repo[:ref]/entrypoint`` → (``owner/repo[:ref]``, entrypoint)."""
    repo, _, entry = model_id.rpartition("/")
    if "/" not in repo or not entry:
        raise UsageError(f"pytorch_hub {model_id!r}: expected <owner>/<repo>[:<ref>]/<entrypoint>, "
                         "e.g. pytorch/vision:v0.10.0/resnet50")  # fmt: skip
    return repo, entry


def _hub_repo(rt: Runtime, repo: str) -> _Fetched:
    """A torch.hub repo's code (``owner/repo[:ref]``), as torch.hub extracts it; without a
    ref, ``main`` and then ``master`` (torch.hub's own order)."""
    from hoard.proxy.sources._torch_names import HUB, SOURCE, normalized_ref

    head, _, ref = repo.partition(":")
    owner, _, name = head.partition("/")
    last: Exception | None = None
    for candidate in [ref] if ref else ["main", "master"]:
        addr = parse_address(f"{SOURCE}/{HUB}/{quote(owner, safe='')}_{name}_{normalized_ref(candidate)}")
        try:
            return _tree(rt, fetch_tree(rt, addr))
        except (RepoNotFound, RevisionNotFound) as exc:
            last = exc
    raise RepoNotFound(f"pytorch_hub {repo}: no branch main or master ({last})")


# -- the Hub and URLs ---------------------------------------------------------------------------


def _hub_model(rt: Runtime, model_id: str, revision: str | None, include: Sequence[str],
               exclude: Sequence[str]) -> _Fetched:  # fmt: skip
    repo_id = model_id if "/" in model_id else _canonical_hub_id(rt, model_id)
    addr = parse_address(repo_id, default_source="huggingface").with_revision(revision)
    if addr.source != "huggingface":
        raise UsageError(f"huggingface {model_id!r}: expected <org>/<name> (or a legacy id such as bert-base-uncased)")
    return _tree(rt, fetch_tree(rt, addr, include=include, exclude=exclude))


def _canonical_hub_id(rt: Runtime, name: str) -> str:
    """A legacy single-segment Hub id (``bert-base-uncased``) → ``<org>/<name>``, as the Hub
    says (``GET /api/models/<name>``), like the Hub face's legacy route."""
    from hoard.proxy.sources.huggingface import HuggingFace, hf_error
    from hoard.store.address import check_segment

    check_segment(name, "repo")
    svc = rt.svc
    src = svc.sources.get("huggingface")
    hub = src.adapter if src is not None else None  # under any wrapping layer (a bucket tier)
    if not isinstance(hub, HuggingFace):
        raise UsageError(f"{name}: a legacy Hub id; through a parent hoard give the full <org>/<name> id")
    url = f"{hub.endpoint}/api/models/{quote(name, safe='')}"

    async def ask() -> Any:
        return await svc.catalog.origin_call("huggingface", lambda: svc.http.follow(
            "GET", url, headers=rt.creds.bearer("huggingface"), auth_origin=hub.endpoint))  # fmt: skip

    reply = rt.run(ask(), timeout=CALL_TIMEOUT)
    if reply.status != 200:
        raise hf_error(reply, name)
    try:
        canonical = str(reply.json().get("id", ""))
        parse_address(f"huggingface/{canonical}")
    except (ValueError, AttributeError) as exc:
        raise RepoNotFound(f"{name}: the Hub gave no canonical id ({exc})") from None
    if "/" not in canonical:
        raise RepoNotFound(f"{name}: the Hub gave no canonical <org>/<name> id")
    return canonical


def url_address(url: str, *, insecure: bool = False) -> Address:
    """``https://host[:port]/a/b/file`` → ``url/host[:port]/a/b/file`` (a file at the root:
    ``url/host/-/file``), as the url source names it. Queries cannot be named."""
    parts = urlsplit(url)
    scheme = "http" if insecure else "https"
    if parts.scheme != scheme:
        hint = "set HOARD_INSECURE_HTTP=1 for http:// origins" if parts.scheme == "http" else (
            "https:// URLs are fetched as http:// while HOARD_INSECURE_HTTP is set")  # fmt: skip
        raise UsageError(f"{url}: the url source fetches {scheme}:// URLs ({hint})")
    if parts.query or parts.fragment:
        raise UsageError(f"{url}: a URL with a query or fragment cannot be named as a hoard address")
    segments = parts.path.lstrip("/").split("/")
    if not parts.netloc or not segments or not segments[-1]:
        raise UsageError(f"{url}: names no file")
    if len(segments) == 1:
        segments = ["-", *segments]
    return file_address(f"url/{parts.netloc}/{'/'.join(segments)}", "hoard.download_model(source='url')")
