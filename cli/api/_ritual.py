"""``hoard.ModelManager``: infernet-ml's ``ModelManager``, over hoard's store and sources.

Code written for infernet-ml ports by changing its import
(``from infernet_ml.utils.model_manager import ModelManager`` → ``from hoard import
ModelManager``). Both ways infernet-ml is called work:

* **The documented call** (infernet-ml's "Model Upload & Download" page), on the class or an
  instance: ``ModelManager.download_model(repo_id="arweave/<owner>/<repo>",
  file_name="model.onnx", output_dir="path/to/output", hf_token=None)``. Only the named
  file(s) (``file_name`` may list several, comma-separated) are fetched. With
  ``output_dir`` they are placed there (hard links to the verified blobs, or copies on
  another filesystem); without, they stay where hoard keeps them.
* **infernet-ml 2.0.0's call**: ``ModelManager(cache_dir=None).download_model(model,
  ml_type=None, **kwargs)`` with a model id ``<storage>/<owner>/<repo>[/<version>][:f1,f2]``
  (or an object with ``unique_id``, an ``MlModelId``). As infernet-ml does, the whole repo
  is fetched, the version only names the local folder, and the result is a
  :class:`ModelArtifact`: ``files`` (every file ``ritual_manifest.json`` lists, as paths),
  ``metadata`` (each file's ``MlModelInfo``, attribute access: ``.cpu_cores``, ``.id``...)
  and ``get_file(model_id)``. A repo without the manifest is accepted (infernet-ml refuses
  it): then ``files`` is every file of the repo and ``metadata`` is empty. Files are placed
  in ``directory=`` when given, else in ``cache_dir/<storage>/<owner>/<repo>/<version or
  default>`` when the manager was given a ``cache_dir``, else they are the repo's files in a
  live mount of the store or in a view of it (``$HOARD_HOME/views``: no copy at all).
  ``repomanager_kwargs`` (gateways of ritual-arweave) are accepted and unused: hoard
  reads through its own configured gateways.

:meth:`ModelManager.upload_model` publishes a folder to Arweave (``wallet_path``, default
``$ARWEAVE_WALLET_FILE_PATH``) or to the Hub (``hf_token``, default ``$HF_TOKEN``) with
``ritual_manifest.json``, as infernet-ml does (:func:`hoard.proxy.publish.upload_model`),
and the files enter the store at once.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hoard.store.address import Address, parse_address
from hoard.store.errors import UsageError

from ._runtime import Runtime, runtime
from ._trees import FetchedTree, fetch_tree, tree_folder
from ._views import place_files

if TYPE_CHECKING:
    from hoard.proxy.origin import Credentials
    from hoard.proxy.publish import PushResult

__all__ = ["ModelManager", "ModelArtifact", "ModelMetadata", "MANIFEST", "WALLET_ENV"]

#: infernet-ml's manifest of a model repo
MANIFEST = "ritual_manifest.json"
#: where infernet-ml (ritual-arweave) finds the wallet when no ``wallet_path`` is given
WALLET_ENV = "ARWEAVE_WALLET_FILE_PATH"
_STORAGES = ("arweave", "huggingface")
#: infernet-ml's local folder name for an unversioned repo
_UNVERSIONED = "default"
_ACCEPTED = frozenset({"repomanager_kwargs", "repo_manager_kwargs"})


class ModelMetadata(Mapping[str, Any]):
    """One file's ``MlModelInfo`` from the manifest: attributes (``.cpu_cores``) and keys."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = dict(fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Any:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict (pydantic's name for it)."""
        return dict(self._fields)

    def __repr__(self) -> str:
        return f"ModelMetadata({self._fields!r})"


@dataclass
class ModelArtifact:
    """infernet-ml's ``ModelArtifact``: the model's files and each file's metadata."""

    files: list[Path]
    metadata: dict[str, ModelMetadata] = field(default_factory=dict)

    def get_file(self, model_id: Any) -> Path:
        """The first file the model id names (infernet-ml's rule: by file name)."""
        names = _model_files(model_id)
        for path in self.files:
            if path.name in names:
                return path
        raise ValueError(f"Model {model_id} not found in artifact")


def _model_files(model_id: Any) -> tuple[str, ...]:
    text = str(getattr(model_id, "unique_id", model_id))
    _, _, files = text.partition(":")
    return tuple(f for f in files.split(",") if f)


class _ClassOrInstance:
    """A method callable on the class (the documented ``ModelManager.download_model(...)``)
    or on an instance (infernet-ml 2.0.0's): on the class it runs on a default manager."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Any, owner: type) -> Callable[..., Any]:
        return functools.partial(self.fn, obj if obj is not None else owner())


@dataclass(frozen=True)
class _RepoId:
    """infernet-ml's ``RitualRepoId``: ``<storage>/<owner>/<name>[/<version>]``."""

    storage: str
    owner: str
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> _RepoId:
        parts = str(text).strip().split("/")
        if len(parts) not in (3, 4) or parts[0] not in _STORAGES or not all(parts):
            raise UsageError(f"repo id {text!r}: expected <arweave|huggingface>/<owner>/<name>[/<version>]")
        return cls(*parts)

    @property
    def address(self) -> Address:
        return parse_address(f"{self.storage}/{self.owner}/{self.name}")

    def local_dir(self, cache: Path) -> Path:
        return cache / self.storage / self.owner / self.name / (self.version or _UNVERSIONED)


class ModelManager:
    """infernet-ml's ``ModelManager`` over hoard (see the module docstring)."""

    def __init__(self, cache_dir: str | Path | None = None, default_ml_type: Any = None) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.default_ml_type = default_ml_type

    @_ClassOrInstance
    def download_model(self, model: Any = None, ml_type: Any = None, *, repo_id: str | None = None,
                       file_name: str | None = None, output_dir: str | Path | None = None,
                       hf_token: str | None = None, directory: str | Path | None = None,
                       **kwargs: Any) -> ModelArtifact:  # fmt: skip
        """Fetch a model: ``(model)`` as infernet-ml 2.0.0, or ``(repo_id=, file_name=,
        output_dir=)`` as its documentation shows. Returns a :class:`ModelArtifact`."""
        unknown = sorted(set(kwargs) - _ACCEPTED)
        if unknown:
            raise UsageError(f"ModelManager.download_model: unsupported argument(s) {', '.join(unknown)}")
        rt = runtime()
        creds = _with_hub_token(rt, hf_token)
        if repo_id is not None or file_name is not None:
            if model is not None or repo_id is None or not file_name:
                raise UsageError("ModelManager.download_model takes a model id, or repo_id= and file_name=")
            files = tuple(f.strip() for f in file_name.split(",") if f.strip())
            return self._named(rt, _RepoId.parse(repo_id), files, output_dir or directory, creds)
        if model is None:
            raise UsageError("ModelManager.download_model needs a model id (<storage>/<owner>/<repo>:<files>)")
        text = str(getattr(model, "unique_id", model))
        head, _, _ = text.partition(":")
        return self._whole(rt, _RepoId.parse(head), directory or output_dir, creds)

    def _named(self, rt: Runtime, repo: _RepoId, files: tuple[str, ...], folder: str | Path | None,
               creds: Credentials | None) -> ModelArtifact:  # fmt: skip
        """The documented call: only the named files (and the manifest's metadata, if any)."""
        tree = fetch_tree(rt, repo.address, files=files, creds=creds)
        paths = self._placed(rt, tree, files, Path(folder) if folder else None)
        return ModelArtifact(paths, _metadata(rt, repo, creds))

    def _whole(self, rt: Runtime, repo: _RepoId, folder: str | Path | None, creds: Credentials | None) -> ModelArtifact:
        """infernet-ml 2.0.0's call: the whole repo; files as its manifest lists them."""
        tree = fetch_tree(rt, repo.address, creds=creds)
        manifest = _read_manifest(rt, tree)
        listed = [f for f in (manifest or {}).get("files", []) if isinstance(f, str) and f in tree.files]
        names = tuple(listed) if manifest is not None else tuple(sorted(p for p in tree.files if p != MANIFEST))
        target = Path(folder) if folder else (repo.local_dir(self.cache_dir) if self.cache_dir else None)
        paths = self._placed(rt, tree, names, target)
        return ModelArtifact(paths, _metadata_of(manifest))

    @staticmethod
    def _placed(rt: Runtime, tree: FetchedTree, names: tuple[str, ...], folder: Path | None) -> list[Path]:
        if folder is not None:
            return place_files(rt.store, {n: tree.files[n] for n in names}, folder)
        root = tree_folder(rt, tree)
        return [root / n for n in names]

    def has_model(self, model_id: Any) -> bool:
        """Whether every file the model id's repo holds (at its cached revision) is complete
        in the store. Asks no origin."""
        from hoard.store.catalog import resolve_cached
        from hoard.store.errors import NotFound

        text = str(getattr(model_id, "unique_id", model_id))
        repo = _RepoId.parse(text.partition(":")[0])
        store = runtime().store
        try:
            _, snap = resolve_cached(store, repo.address)
        except NotFound:
            return False
        wanted = _model_files(model_id) or tuple(snap.files)
        return all(p in snap.files and store.resolve(snap.files[p].identity) is not None for p in wanted)

    @classmethod
    def upload_model(cls, directory: Path | str, repo_id: Any, metadata: Mapping[str, Any] | None = None,
                     hf_token: str | None = None, wallet_path: str | None = None, repo_manager_kwargs: Any = None,
                     upload_kwargs: Any = None) -> PushResult:  # fmt: skip
        """Publish ``directory`` as ``repo_id`` (infernet-ml's call); returns what was pushed."""
        from hoard.proxy.publish import PushSettings, upload_model

        rt = runtime()
        text = repo_id.to_unique_id() if hasattr(repo_id, "to_unique_id") else str(repo_id)
        gateways = rt.settings.sources.get("arweave_gateway") or ("https://arweave.net",)
        gateway = _gateway_of(repo_manager_kwargs) or gateways[0]
        settings = PushSettings(arweave_gateway=gateway, hf_endpoint=str(rt.settings.sources["hf_endpoint"]))
        wallet = wallet_path or os.environ.get(WALLET_ENV) or None
        token = hf_token or rt.settings.tokens.get("huggingface")

        def push() -> PushResult:
            return upload_model(directory, text, metadata, hf_token=token, wallet_path=wallet, store=rt.store,
                                settings=settings)  # fmt: skip

        with ThreadPoolExecutor(1, thread_name_prefix="hoard-upload") as pool:  # its own loop, even in a notebook
            return pool.submit(push).result()


def _gateway_of(kwargs: Any) -> str | None:
    """ritual-arweave's ``gateways=[...]`` (0.2.0) or ``api_url=`` (0.1.x), if given."""
    if not isinstance(kwargs, Mapping):
        return None
    gateways = kwargs.get("gateways")
    if isinstance(gateways, (list, tuple)) and gateways:
        return str(gateways[0]).rstrip("/")
    api_url = kwargs.get("api_url")
    return str(api_url).rstrip("/") if api_url else None


def _with_hub_token(rt: Runtime, hf_token: str | None) -> Credentials | None:
    """The local user's credentials with this call's Hub token (None: the user's own)."""
    if not hf_token:
        return None
    from hoard.proxy.origin import Credentials

    return Credentials.of({**rt.settings.tokens, "huggingface": hf_token})


def _read_manifest(rt: Runtime, tree: FetchedTree) -> dict[str, Any] | None:
    """The repo's ``ritual_manifest.json``, parsed (None when it has none)."""
    b3 = tree.files.get(MANIFEST)
    if b3 is None:
        return None
    try:
        doc = json.loads(rt.store.blob_path(b3).read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{tree.repo}: {MANIFEST} cannot be read: {exc}") from None
    return doc if isinstance(doc, dict) else None


def _metadata(rt: Runtime, repo: _RepoId, creds: Credentials | None) -> dict[str, ModelMetadata]:
    """The manifest's per-file metadata (fetching the manifest alone), or {} without one."""
    from hoard.store.errors import EntryNotFound

    try:
        tree = fetch_tree(rt, repo.address, files=(MANIFEST,), creds=creds)
    except EntryNotFound:
        return {}
    return _metadata_of(_read_manifest(rt, tree))


def _metadata_of(manifest: Mapping[str, Any] | None) -> dict[str, ModelMetadata]:
    meta = (manifest or {}).get("metadata") or {}
    return {str(k): ModelMetadata(v) for k, v in meta.items() if isinstance(v, Mapping)}
