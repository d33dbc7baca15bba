"""Publishing a model directory (``hoard push``): what the Arweave and Hub targets share.

* :func:`scan_dir` reads DIR the way ``hoard add`` does (:func:`hoard.store.safefs.scan_tree`):
  regular files and in-tree links only, a link leading out of DIR refuses the whole push,
  every name held to the client-path rules (a name hoard could not read back is never sent);
* :func:`parse_metadata` turns ``--metadata K=V`` into typed values (``cpu_cores=4`` is the
  int 4, ``quantization_type=int8`` the string ``"int8"``: JSON when the value parses as JSON);
* :func:`ritual_manifest` writes ``ritual_manifest.json`` as infernet-ml 2.0.0's
  ``RitualArtifactManager.to_dir`` does for a ``ModelArtifact`` (``files``, per-file
  ``metadata`` of ``MlModelInfo``, ``repo_id``, ``artifact_type``, ``file_hashes``; indent 4),
  so ``ModelManager.download_model`` accepts the repo (it refuses a repo without one, and a
  null ``cpu_cores``);
* :func:`upload_model` is infernet-ml's ``ModelManager.upload_model(directory, repo_id,
  metadata, hf_token | wallet_path)`` over hoard's publishers (:mod:`.publish_arweave`,
  :mod:`.publish_hf`): what the lead exposes as ``hoard.ModelManager().upload_model``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoard.store.address import check_path, check_segment
from hoard.store.errors import InvalidAddress, UsageError
from hoard.store.safefs import scan_tree
from hoard.store.store import Store

from .httpbase import HttpConfig

__all__ = [
    "MANIFEST_NAME",
    "LocalFile",
    "PushSettings",
    "PushResult",
    "ProgressFactory",
    "no_progress",
    "scan_dir",
    "parse_metadata",
    "ritual_manifest",
    "upload_model",
]

log = logging.getLogger("hoard.publish")

#: infernet-ml's MANIFEST_FILENAME
MANIFEST_NAME = "ritual_manifest.json"
_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__"}
#: infernet-ml 2.0.0 ``MlModelInfo`` fields in declaration order, with hoard's defaults:
#: ``cpu_cores`` must not be null for ``download_model``; ``memory_requirements`` (bytes,
#: required) defaults to the file's size
_MODEL_INFO = (
    ("cpu_cores", 1),
    ("memory_requirements", None),
    ("max_position_embeddings", None),
    ("quantization_type", None),
    ("inference_engine", None),
    ("inference_engine_hash", None),
    ("cuda_capability", None),
    ("cuda_version", None),
)
_INT_FIELDS = ("cpu_cores", "memory_requirements")

#: ``progress(description, total)`` gives a context whose value advances the bar by n
ProgressFactory = Callable[[str, "int | None"], AbstractContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def no_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress factory that draws nothing."""
    yield lambda n: None


@dataclass(frozen=True)
class LocalFile:
    """One file to publish: a file of DIR, or generated content (``data``)."""

    rel: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) (the whole file by default)."""
        stop = self.size if end is None else end
        if self.data is not None:
            return self.data[start:stop]
        assert self.path is not None
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return fh.read(stop - start)


@dataclass(frozen=True)
class PushSettings:
    """Where pushes go (the CLI builds it from the settings; no layer reads the environment)."""

    arweave_gateway: str = "https://arweave.net"
    hf_endpoint: str = "https://huggingface.co"
    http: HttpConfig = field(default_factory=HttpConfig)


@dataclass(frozen=True)
class PushResult:
    """What a push published, and where it is in the store."""

    source: str
    owner: str
    repo: str
    revision: str
    files: int
    size: int
    details: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def repo_key(self) -> str:
        return f"{self.source}/{self.owner}/{self.repo}"

    @property
    def address(self) -> str:
        return f"{self.repo_key}@{self.revision}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "repo": self.repo_key,
            "revision": self.revision,
            "files": self.files,
            "size": self.size,
            **self.details,
            "notes": list(self.notes),
        }


def scan_dir(directory: Path) -> list[LocalFile]:
    """The files of ``directory``, sorted by relative path (see the module docstring)."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    scan = scan_tree(directory, skip_dirs=_SKIP_DIRS)
    if scan.escaping:
        raise UsageError(scan.escaping_message(directory) + "; nothing was pushed")
    for note in scan.skipped:
        log.warning("hoard: skipped %s: not a regular file", note)
    out = []
    for rel, path in scan.files:
        try:
            check_path(rel)
        except InvalidAddress as exc:
            raise UsageError(f"{directory}: {rel!r} cannot be published: {exc}") from None
        out.append(LocalFile(rel, path.stat().st_size, path))
    if not out:
        raise UsageError(f"{directory} holds no files")
    return out


def parse_metadata(pairs: Sequence[str]) -> dict[str, Any]:
    """``["cpu_cores=4", "quantization_type=int8"]`` → ``{"cpu_cores": 4, ...}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--metadata wants KEY=VALUE, got {pair!r}")
        if key == "id":
            raise UsageError("--metadata id=...: the id is the file's model id, set by hoard")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return check_metadata(out, "--metadata")


def check_metadata(meta: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Refuse values infernet-ml would refuse when it downloads (its pydantic model)."""
    for name in _INT_FIELDS:
        value = meta.get(name)
        if name in meta and (value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise UsageError(f"{what}: {name} must be a whole number (infernet-ml refuses {value!r})")
    return dict(meta)


def _file_metadata(unique: str, f: LocalFile, layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One file's ``MlModelInfo``: the id, infernet-ml's fields (hoard's defaults), then each
    layer over it (an existing manifest's entry, per-file metadata, ``--metadata``)."""
    meta: dict[str, Any] = {"id": f"{unique}:{f.rel}"}
    meta.update((k, f.size if k == "memory_requirements" else v) for k, v in _MODEL_INFO)
    for layer in layers:
        meta.update({k: v for k, v in layer.items() if k != "id"})
    return check_metadata(meta, f"metadata of {f.rel}")


def _existing(files: Sequence[LocalFile]) -> dict[str, Any]:
    """The per-file metadata of a ``ritual_manifest.json`` already in DIR (re-publishing a
    downloaded Ritual repo keeps it), or nothing when there is none or it is not one."""
    found = next((f for f in files if f.rel == MANIFEST_NAME), None)
    if found is None:
        return {}
    try:
        doc = json.loads(found.read())
    except ValueError:
        return {}
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return {k: v for k, v in meta.items() if isinstance(v, dict)} if isinstance(meta, dict) else {}


def ritual_manifest(
    unique: str,
    files: Sequence[LocalFile],
    hashes: Mapping[str, str],
    per_file: Mapping[str, Mapping[str, Any]] | None = None,
    common: Mapping[str, Any] | None = None,
) -> LocalFile:
    """``ritual_manifest.json`` for the model files of ``files`` (every file but an existing
    manifest), with ``unique`` the repo id (``arweave/<owner>/<repo>``)."""
    models = [f for f in files if f.rel != MANIFEST_NAME]
    existing = _existing(files)
    doc = {
        "files": [f.rel for f in models],
        "metadata": {
            f.rel: _file_metadata(unique, f, [existing.get(f.rel, {}), (per_file or {}).get(f.rel, {}), common or {}])
            for f in models
        },
        "repo_id": unique,
        "artifact_type": "ModelArtifact",
        "file_hashes": {f.rel: hashes[f.rel] for f in models},
    }
    data = json.dumps(doc, indent=4).encode()
    return LocalFile(MANIFEST_NAME, len(data), data=data)


def with_manifest(files: Sequence[LocalFile], manifest: LocalFile) -> list[LocalFile]:
    """``files`` with ``manifest`` in place of any ``ritual_manifest.json`` of DIR."""
    return sorted([f for f in files if f.rel != manifest.rel] + [manifest], key=lambda f: f.rel)


def _model_info(value: Any) -> dict[str, Any]:
    """An ``MlModelInfo`` (pydantic), or a mapping, as a plain dict."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump()
    if not isinstance(value, Mapping):
        raise UsageError(f"metadata values are MlModelInfo or dicts, not {type(value).__name__}")
    return dict(value)


def _split_repo_id(repo_id: str) -> tuple[str, str, str]:
    """infernet-ml's ``{storage}/{owner}/{name}[/{version}]`` (the version only names a local
    directory in infernet-ml: it is ignored here as there)."""
    parts = str(repo_id).strip("/").split("/")
    if len(parts) not in (3, 4) or parts[0] not in ("arweave", "huggingface"):
        raise UsageError(f"repo id {repo_id!r}: expected arweave/<owner>/<name> or huggingface/<org>/<name>")
    for seg in parts[1:3]:
        check_segment(seg, "repo id")
    return parts[0], parts[1], parts[2]


def upload_model(
    directory: Path | str,
    repo_id: str,
    metadata: Mapping[str, Any] | None = None,
    hf_token: str | None = None,
    wallet_path: Path | str | None = None,
    *,
    store: Store,
    settings: PushSettings | None = None,
    progress: ProgressFactory = no_progress,
) -> PushResult:
    """Publish ``directory`` as ``repo_id`` like infernet-ml's ``ModelManager.upload_model``:
    to Arweave with ``wallet_path`` (the owner in ``repo_id`` is ignored: the wallet's address
    owns the upload), or to the Hub with ``hf_token``; ``metadata`` maps file names to their
    ``MlModelInfo`` (objects or dicts). ``ritual_manifest.json`` is always written, as
    infernet-ml does. The files enter ``store`` at once."""
    storage, owner, name = _split_repo_id(repo_id)
    settings = settings or PushSettings()
    per_file = {str(k): check_metadata(_model_info(v), f"metadata of {k}") for k, v in (metadata or {}).items()}
    folder = Path(directory)
    if storage == "arweave":
        from .publish_arweave import ArweaveJob, push_arweave

        if wallet_path is None:
            raise UsageError("uploading to Arweave needs wallet_path (an Arweave JWK wallet file)")
        job = ArweaveJob(
            folder, name, Path(wallet_path), settings.arweave_gateway, per_file=per_file, owner_given=owner
        )
        return asyncio.run(push_arweave(store, job, http=settings.http, progress=progress))
    from .publish_hf import HfJob, push_hf

    hf_job = HfJob(folder, owner, name, settings.hf_endpoint, hf_token, ritual=True, per_file=per_file)
    return push_hf(store, hf_job, progress=progress)
