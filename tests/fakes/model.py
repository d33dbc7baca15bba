"""The fake Hub's repository model: files, immutable commits and mutable repositories.

A `FileEntry` is one file at one commit with every identity the Hub reports for it (git
blob id, LFS pointer, sha256, a Xet-like hash); a `Commit` is an immutable snapshot of
paths to entries; a `Repo` holds refs (branches, tags, ``refs/pr/N``, ``refs/convert/X``)
and access rules, and resolves revisions to commit shas. Nothing here locks: `FakeHub`
guards all repository state with its one lock (see `repos.Repositories`).
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from .content import Content

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "DEFAULT_LFS_THRESHOLD",
    "PLURAL",
    "SINGULAR",
    "URL_PREFIX",
    "Commit",
    "FileEntry",
    "FileSpec",
    "Gated",
    "Repo",
    "RepoType",
]

RepoType = Literal["model", "dataset", "space"]
Gated = Literal[False, "auto", "manual"]
FileSpec = bytes | str | Content

MiB = 1 << 20
#: The Hub refuses plain-git files above 10 MB; anything this big goes to LFS.
DEFAULT_LFS_THRESHOLD = 10 * MiB
#: The patterns of the `.gitattributes` the Hub writes into every new repository (+ gguf).
# fmt: off
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle",
    "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite",
    "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)
# fmt: on
#: Repo type <-> the plural used in API paths; the URL prefix of its pages and files.
PLURAL: dict[str, str] = {"model": "models", "dataset": "datasets", "space": "spaces"}
SINGULAR = {v: k for k, v in PLURAL.items()}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass(frozen=True, eq=False)
class FileEntry:
    """One file at one commit. ``oid`` is the git blob id (of the pointer, for LFS)."""

    path: str
    content: Content
    lfs: bool

    @property
    def size(self) -> int:
        return self.content.size

    @property
    def sha256(self) -> str:
        return self.content.sha256

    @cached_property
    def pointer(self) -> bytes:
        """The git-lfs pointer file git stores instead of the bytes."""
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n").encode()

    @cached_property
    def oid(self) -> str:
        if not self.lfs:
            return self.content.git_sha1
        return hashlib.sha1(b"blob %d\0" % len(self.pointer) + self.pointer).hexdigest()

    @cached_property
    def xet_hash(self) -> str:
        """64 hex like a real Xet merkle hash, and (like it) different from sha256/blake3."""
        return hashlib.blake2b(b"xet-merkle\0" + bytes.fromhex(self.sha256), digest_size=32).hexdigest()

    @property
    def etag(self) -> str:
        """What the Hub reports as the file's identity: sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.oid


@dataclass(frozen=True, eq=False)
class Commit:
    """An immutable snapshot: ``files`` maps repo path to `FileEntry`."""

    sha: str
    parent: str | None
    title: str
    date: str
    files: Mapping[str, FileEntry]

    @cached_property
    def dir_oids(self) -> dict[str, str]:
        """Pseudo git tree ids for every directory (deterministic from the files below)."""
        hashers: dict[str, Any] = {}
        for path in sorted(self.files):
            parts = path.split("/")
            for i in range(1, len(parts)):
                hashers.setdefault("/".join(parts[:i]), hashlib.sha1(b"tree\0")).update(
                    f"{path}\0{self.files[path].oid}\n".encode()
                )
        return {d: h.hexdigest() for d, h in hashers.items()}


@dataclass(eq=False)
class Repo:
    """Mutable repository state (refs, access rules); guarded by the hub's lock."""

    repo_type: RepoType
    repo_id: str
    private: bool
    gated: Gated
    allowed_tokens: set[str]
    lfs_threshold: int
    lfs_patterns: tuple[str, ...]
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    converts: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)

    @property
    def object_id(self) -> str:
        return hashlib.sha1(f"{self.repo_type}/{self.repo_id}".encode()).hexdigest()[:24]

    def is_lfs(self, path: str, size: int) -> bool:
        name = path.rsplit("/", 1)[-1]
        return size >= self.lfs_threshold or any(
            fnmatch.fnmatchcase(path if "/" in pat else name, pat) for pat in self.lfs_patterns
        )

    def resolve(self, rev: str) -> str | None:
        """Commit sha for a branch, tag, ``refs/pr/N``, ``refs/convert/X`` or full sha."""
        if rev in self.commits:
            return rev
        if rev.startswith("refs/pr/") and rev[8:].isdigit():
            return self.prs.get(int(rev[8:]))
        if rev.startswith("refs/convert/"):
            return self.converts.get(rev[13:])
        return self.branches.get(rev) or self.tags.get(rev)

    def set_ref(self, ref: str, sha: str) -> None:
        if ref.startswith("refs/pr/"):
            self.prs[int(ref[8:])] = sha
        elif ref.startswith("refs/convert/"):
            self.converts[ref[13:]] = sha
        else:
            self.branches[ref] = sha
