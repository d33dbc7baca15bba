"""``hoard push DIR huggingface/<org>/<repo>``: one commit to a Hub repo, recorded in the store.

The upload is huggingface_hub's own (``HfApi(endpoint=--hf-endpoint, token=HF_TOKEN)``):
``create_repo(exist_ok=True)`` (``--private`` applies to a repo it creates), ``create_branch``
for a ``--revision`` that is not ``main`` (from ``main``'s head), then **one**
``create_commit`` of every file of DIR (plus ``ritual_manifest.json`` with ``--ritual``).
``create_commit`` asks ``/preupload`` which files are LFS, sends those through the LFS batch
endpoint (a PUT to the URL it returns, then its verify call) and commits with one NDJSON
``/commit`` request.

Xet is turned off for the upload. With ``hf_xet`` installed, huggingface_hub 2.4 sends LFS
content only through Xet (``_commit_api._upload_files``) and ``upload_folder`` becomes a
pipeline that may split a folder into several commits. Both consult
``utils._runtime.is_xet_available()``, which reads ``constants.HF_HUB_DISABLE_XET`` — the
value of ``HF_HUB_DISABLE_XET`` taken when ``huggingface_hub.constants`` was imported, but
read again at *every* call. So no subprocess is needed: :func:`plain_http_uploads` sets that
constant for the duration of the upload (and puts it back), which only ever moves
huggingface_hub from Xet to its plain-HTTP path; another thread of the same process
downloading meanwhile does so over HTTP, which every Hub serves. ``create_commit`` (rather
than ``upload_folder``) makes the one-commit promise explicit whatever the Xet setting.

After the commit the revision enters the store with no download: its tree comes from the Hub
(the Hugging Face source builds it, through the catalog, exactly as a read would), the
branch's ref points at the new commit, and each pushed file's blob is copied from DIR,
verified against the hash the Hub reports (LFS sha256 or git blob sha1).

Errors of huggingface_hub and of its HTTP stack are translated here: refused credentials
→ :class:`AccessDenied` (exit 4), unreachable or 5xx → :class:`OriginUnavailable`, other
answers → :class:`OriginError` (exit 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoard.store.address import Address
from hoard.store.errors import AccessDenied, HoardError, OriginError, OriginUnavailable, RepoNotFound, UsageError
from hoard.store.records import Snapshot
from hoard.store.store import Store

from .httpbase import TRANSIENT_STATUSES
from .origin import Credentials
from .publish import LocalFile, ProgressFactory, PushResult, no_progress, ritual_manifest, scan_dir, with_manifest

__all__ = ["HfJob", "push_hf", "plain_http_uploads"]

log = logging.getLogger("hoard.publish")
_KIND_TYPE = {"": "model", "datasets": "dataset", "spaces": "space"}
_XET_LOCK = threading.Lock()
_xet_users = 0
_xet_saved: bool | None = None


@dataclass(frozen=True)
class HfJob:
    """One push to the Hub."""

    directory: Path
    owner: str
    repo: str
    endpoint: str
    token: str | None
    revision: str | None = None
    private: bool = False
    ritual: bool = False
    kind: str = ""  # "", "datasets" or "spaces"
    per_file: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    common: Mapping[str, Any] = field(default_factory=dict)

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def address(self) -> Address:
        return Address("huggingface", self.owner, self.repo, kind=self.kind)


@contextlib.contextmanager
def plain_http_uploads() -> Iterator[None]:
    """huggingface_hub without Xet while the block runs (see the module docstring)."""
    global _xet_users, _xet_saved
    from huggingface_hub import constants

    with _XET_LOCK:
        if _xet_users == 0:
            _xet_saved = constants.HF_HUB_DISABLE_XET
            constants.HF_HUB_DISABLE_XET = True
        _xet_users += 1
    try:
        yield
    finally:
        with _XET_LOCK:
            _xet_users -= 1
            if _xet_users == 0 and _xet_saved is not None:
                constants.HF_HUB_DISABLE_XET = _xet_saved


def _translate(exc: BaseException, what: str) -> HoardError:
    """huggingface_hub's and httpx's errors as hoard's (the one boundary for them)."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if getattr(exc, "response", None) is not None else None
        message = str(exc).split("\n", 1)[0]
        if status in (401, 403):
            return AccessDenied(f"{what}: the Hub refused this token ({message})", status)
        if isinstance(exc, RepositoryNotFoundError):
            return RepoNotFound(f"{what}: {message}")
        if status in TRANSIENT_STATUSES:
            return OriginUnavailable(f"{what}: {message}", status)
        return OriginError(f"{what}: {message}", status)
    return OriginUnavailable(f"{what}: the Hub cannot be reached ({type(exc).__name__}: {str(exc)[:200]})")


def _foreign() -> tuple[type[BaseException], ...]:
    """What huggingface_hub lets through: its HTTP errors, and its HTTP stack's transport
    errors (``httpx2`` in 2.4, ``httpx`` before)."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError

    found: list[type[BaseException]] = [HfHubHTTPError, ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _operations(files: list[LocalFile]) -> list[Any]:
    from huggingface_hub import CommitOperationAdd

    return [
        CommitOperationAdd(path_in_repo=f.rel, path_or_fileobj=f.data if f.data is not None else str(f.path))
        for f in files
    ]


def _commit(job: HfJob, files: list[LocalFile]) -> str:
    """Create the repo (and branch) if missing and commit ``files`` once; the commit id."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=job.endpoint, token=job.token)
    repo_type = _KIND_TYPE[job.kind]
    what = f"huggingface/{job.repo_id}"
    try:
        api.create_repo(job.repo_id, repo_type=repo_type, private=True if job.private else None, exist_ok=True)
        if job.revision not in (None, "main"):
            api.create_branch(job.repo_id, branch=job.revision, repo_type=repo_type, exist_ok=True)
        with plain_http_uploads():
            info = api.create_commit(
                job.repo_id,
                _operations(files),
                commit_message=f"Upload {len(files)} files with hoard",
                repo_type=repo_type,
                revision=job.revision,
            )
    except _foreign() as exc:
        raise _translate(exc, what) from None
    return str(info.oid)


async def _record(store: Store, job: HfJob, commit: str, files: list[LocalFile]) -> Snapshot:
    """The new revision's tree from the Hub (via the catalog, as a read builds it), the
    branch's ref moved to it, and the pushed files' blobs from the local bytes."""
    from .service import ProxyConfig, open_services

    creds = Credentials.for_source("huggingface", job.token)
    config = ProxyConfig(source_settings={"hf_endpoint": job.endpoint}, local_creds=creds)
    svc = await open_services(config, store)
    try:
        resolved = await svc.catalog.resolve(job.address.with_revision(commit), creds, access="none")
    finally:
        await svc.aclose()
    snap = resolved.snapshot
    await asyncio.to_thread(_add_blobs, store, job.address.repo_key, job.revision or "main", commit, snap, files)
    return snap


def _add_blobs(store: Store, repo_key: str, branch: str, commit: str, snap: Snapshot, files: list[LocalFile]) -> None:
    for f in files:
        entry = snap.files.get(f.rel)
        if entry is None:  # not in the tree (a name the Hub ignored): nothing to name
            log.warning("hoard: %s is not in %s@%s after the push", f.rel, repo_key, commit)
            continue
        aliases = [a for a in entry.meta.get("aliases") or () if isinstance(a, str)]
        if f.data is not None:
            store.add_bytes(f.data, expected=entry.expected, aliases=aliases)
        else:
            assert f.path is not None
            store.add_file(f.path, expected=entry.expected, aliases=aliases)
    store.set_ref(repo_key, branch, commit)


def push_hf(store: Store, job: HfJob, *, progress: ProgressFactory = no_progress) -> PushResult:
    """Publish ``job.directory`` to the Hub in one commit (see the module docstring)."""
    if not job.token:
        raise UsageError("pushing to the Hub needs a token with write access: set HF_TOKEN")
    if job.kind not in _KIND_TYPE:
        raise UsageError(f"unknown Hub repo kind {job.kind!r}")
    files = scan_dir(job.directory)
    if job.ritual:
        files = with_manifest(files, _manifest(job, files, progress))
    commit = _commit(job, files)
    snap = asyncio.run(_record(store, job, commit, files))
    notes = []
    if job.private and not snap.info.get("private"):
        notes.append(f"{job.repo_id} already existed and is public: --private applies only to a repo it creates")
    details = {
        "owner": job.owner,
        "branch": job.revision or "main",
        "commit": commit,
        "endpoint": job.endpoint,
        "private": bool(snap.info.get("private")),
    }
    pushed = [f for f in files if f.rel in snap.files]
    kind = f"{job.kind}/" if job.kind else ""
    return PushResult(
        "huggingface",
        kind + job.owner,
        job.repo,
        commit,
        len(pushed),
        sum(f.size for f in pushed),
        details,
        tuple(notes),
    )


def _manifest(job: HfJob, files: list[LocalFile], progress: ProgressFactory) -> LocalFile:
    """``ritual_manifest.json`` for the Hub repo (``huggingface/<org>/<repo>``)."""
    import hashlib

    hashes: dict[str, str] = {}
    with progress("hashing", sum(f.size for f in files)) as advance:
        for f in files:
            h = hashlib.sha256()
            if f.data is not None:
                h.update(f.data)
            else:
                assert f.path is not None
                with open(f.path, "rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
                        advance(len(block))
            hashes[f.rel] = h.hexdigest()
    return ritual_manifest(f"huggingface/{job.repo_id}", files, hashes, job.per_file, job.common)
