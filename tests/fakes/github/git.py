"""Git objects as GitHub stores them: blobs, trees and commits with git's own object ids.

Every id is computed the way git computes it, so a test (or hoard) can check them:

* a blob id is ``sha1(b"blob <size>\\0" + data)`` of what git stores — the file itself, or,
  for a Git LFS tracked file, its pointer text
  ``version https://git-lfs.github.com/spec/v1\\noid sha256:<hex>\\nsize <n>\\n``;
* a tree is git's binary tree object (``<mode> <name>\\0<20-byte id>`` entries sorted the way
  git sorts them: a sub-tree compares as if its name ended in ``/``), hashed as ``tree``;
* a commit is the text object ``tree/parent/author/committer/message`` hashed as ``commit``,
  with deterministic dates, so the same history always gives the same shas.

`GitRepo` holds refs (branches, tags), the commits, every tree by id, and the LFS store (the
objects GitHub's LFS server holds, by sha256 oid). Nothing here locks; `FakeGitHub` does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from ..content import Content

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "Blob",
    "Commit",
    "GitRepo",
    "Tree",
    "TreeEntry",
    "build_trees",
    "lfs_pointer",
    "object_sha",
    "parse_pointer",
    "walk",
]

LFS_SPEC = "https://git-lfs.github.com/spec/v1"
#: What ``git lfs track`` lines model repositories typically carry.
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.onnx", "*.pth", "*.pt", "*.bin", "*.ckpt", "*.safetensors", "*.h5", "*.pb", "*.npz", "*.tar.gz", "*.zip",
)  # fmt: skip


def object_sha(kind: str, body: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(body)) + body).hexdigest()


def lfs_pointer(content: Content) -> bytes:
    return f"version {LFS_SPEC}\noid sha256:{content.sha256}\nsize {content.size}\n".encode()


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """``(oid, size)`` of a Git LFS pointer, or None if ``data`` is not one."""
    if len(data) > 1024 or not data.startswith(b"version https://git-lfs"):
        return None
    fields = dict(line.split(" ", 1) for line in data.decode(errors="replace").splitlines() if " " in line)
    oid, size = fields.get("oid", ""), fields.get("size", "")
    if not oid.startswith("sha256:") or not size.isdigit():
        return None
    return oid[7:], int(size)


@dataclass(frozen=True, eq=False)
class Blob:
    """A file: ``content`` is its real bytes (the LFS object when ``lfs``)."""

    content: Content
    lfs: bool = False
    executable: bool = False

    @cached_property
    def stored(self) -> Content:
        """What git stores: the pointer for an LFS file, else the bytes."""
        return Content.from_bytes(lfs_pointer(self.content)) if self.lfs else self.content

    @property
    def sha(self) -> str:
        return self.stored.git_sha1

    @property
    def mode(self) -> str:
        return "100755" if self.executable else "100644"


@dataclass(frozen=True)
class TreeEntry:
    name: str
    mode: str  # as the API reports it: "100644", "100755", "040000"
    kind: str  # "blob" | "tree"
    sha: str
    blob: Blob | None = None


@dataclass(frozen=True)
class Tree:
    sha: str
    entries: tuple[TreeEntry, ...]


def _git_order(entry: TreeEntry) -> bytes:
    return entry.name.encode() + (b"/" if entry.kind == "tree" else b"")


def build_trees(files: Mapping[str, Blob]) -> tuple[str, dict[str, Tree]]:
    """Root tree id and every tree object (by id) for ``files`` (path -> blob)."""
    nested: dict[str, object] = {}
    for path, blob in files.items():
        *dirs, name = path.split("/")
        node = nested
        for d in dirs:
            node = node.setdefault(d, {})  # type: ignore[assignment]
        node[name] = blob
    trees: dict[str, Tree] = {}

    def make(node: dict[str, object]) -> str:
        entries = []
        for name, item in node.items():
            if isinstance(item, Blob):
                entries.append(TreeEntry(name, item.mode, "blob", item.sha, item))
            else:
                entries.append(TreeEntry(name, "040000", "tree", make(item)))  # type: ignore[arg-type]
        entries.sort(key=_git_order)
        body = b"".join(f"{e.mode.lstrip('0')} {e.name}\0".encode() + bytes.fromhex(e.sha) for e in entries)
        sha = object_sha("tree", body)
        trees[sha] = Tree(sha, tuple(entries))
        return sha

    return make(nested), trees


def walk(trees: Mapping[str, Tree], sha: str, recursive: bool, prefix: str = "") -> list[tuple[str, TreeEntry]]:
    """``(path, entry)`` in git's order, sub-trees listed before their contents
    (``git ls-tree -r -t``), as GitHub's tree API lists them."""
    out: list[tuple[str, TreeEntry]] = []
    for entry in trees[sha].entries:
        path = prefix + entry.name
        out.append((path, entry))
        if recursive and entry.kind == "tree":
            out.extend(walk(trees, entry.sha, True, path + "/"))
    return out


@dataclass(frozen=True, eq=False)
class Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author: tuple[str, str]  # name, email
    timestamp: int
    files: Mapping[str, Blob]

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.timestamp))

    @staticmethod
    def make(
        files: Mapping[str, Blob], parents: tuple[str, ...], message: str, timestamp: int, author: tuple[str, str]
    ) -> tuple[Commit, dict[str, Tree]]:
        tree, trees = build_trees(files)
        who = f"{author[0]} <{author[1]}> {timestamp} +0000"
        text = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents)
        text += f"author {who}\ncommitter {who}\n\n{message}\n"
        sha = object_sha("commit", text.encode())
        return Commit(sha, tree, parents, message, author, timestamp, dict(files)), trees


@dataclass(eq=False)
class GitRepo:
    owner: str
    name: str
    id: int
    default_branch: str = "main"
    lfs_patterns: tuple[str, ...] = DEFAULT_LFS_PATTERNS
    commits: dict[str, Commit] = field(default_factory=dict)
    trees: dict[str, Tree] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, Content] = field(default_factory=dict)  # oid -> bytes (the LFS store)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def is_lfs(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in self.lfs_patterns)

    def resolve(self, ref: str) -> Commit | None:
        """A branch (preferred when a name is both), a tag, ``refs/heads/X``, ``refs/tags/X``,
        a full commit sha or a unique hex prefix of at least 4 digits."""
        if ref.startswith("refs/heads/"):
            sha = self.branches.get(ref[11:])
        elif ref.startswith("refs/tags/"):
            sha = self.tags.get(ref[10:])
        else:
            sha = self.branches.get(ref) or self.tags.get(ref)
            if sha is None and 4 <= len(ref) <= 40 and all(c in "0123456789abcdef" for c in ref):
                hits = [s for s in self.commits if s.startswith(ref)]
                sha = hits[0] if len(hits) == 1 else None
        return None if sha is None else self.commits[sha]

    def ambiguous(self, ref: str) -> bool:
        """A name that is both a branch and a tag (github.com's archive answers 300)."""
        return ref in self.branches and ref in self.tags

    def split_ref(self, parts: list[str]) -> tuple[str, Commit, list[str]] | None:
        """Split ``[ref..., path...]`` (a ref may hold slashes): the shortest prefix that
        names a commit wins. Returns ``(ref, commit, path parts)``."""
        for k in range(1, len(parts)):
            ref = "/".join(parts[:k])
            commit = self.resolve(ref)
            if commit is not None:
                return ref, commit, parts[k:]
        return None
