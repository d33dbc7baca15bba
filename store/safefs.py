"""Reading a directory tree without leaving it, and writing under a directory without leaving it.

Reading (``hoard add``, ``hoard import`` of a Hugging Face cache): entries are examined with
``lstat``, never followed blindly. A regular file is read; a symbolic link is followed only when
its fully resolved target stays inside the tree (and then only to a regular file); a link
whose target leaves the tree is *escaping* — the callers refuse the whole operation and name
every such link, so nothing of a half-trusted tree is imported. FIFOs, sockets and devices are
skipped (reading a FIFO would block; a device is no artifact), with a note.

Writing (``hoard export``): :class:`Destination` builds every path under the export directory
from validated names and resolves its parent (following whatever links already exist there)
just before each write; a path that would land outside raises :class:`IntegrityError`.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .address import check_path
from .errors import IntegrityError, InvalidAddress

__all__ = ["Kind", "classify", "TreeScan", "scan_tree", "Destination"]


class Kind:
    """What :func:`classify` found at a path."""

    FILE = "file"  # a regular file (not a link)
    DIR = "dir"  # a directory (not a link)
    LINKED_FILE = "linked file"  # a link resolving to a regular file inside the tree
    LINK = "link"  # a link staying inside the tree, to a folder, nothing, or a loop
    ESCAPING = "escaping link"  # a link resolving outside the tree
    FIFO = "fifo"
    SOCKET = "socket"
    DEVICE = "device"
    OTHER = "special file"


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return Kind.FIFO
    if stat.S_ISSOCK(mode):
        return Kind.SOCKET
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return Kind.DEVICE
    return Kind.OTHER


def _inside(path: str, root_real: str) -> bool:
    return path == root_real or path.startswith(root_real.rstrip(os.sep) + os.sep)


def classify(path: Path, root_real: str) -> tuple[str, Path]:
    """(kind, path to read) of ``path`` inside the tree whose resolved root is ``root_real``.

    For a link inside the tree the path to read is its resolved target; else ``path`` itself.
    """
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return Kind.FILE, path
    if stat.S_ISDIR(st.st_mode):
        return Kind.DIR, path
    if not stat.S_ISLNK(st.st_mode):
        return _special(st.st_mode), path
    target = os.path.realpath(path)
    if not _inside(target, root_real):
        return Kind.ESCAPING, path
    try:
        mode = os.stat(target).st_mode
    except OSError:  # dangling, a loop, unreadable
        return Kind.LINK, path
    return (Kind.LINKED_FILE if stat.S_ISREG(mode) else Kind.LINK), Path(target)


@dataclass
class TreeScan:
    """The files of a tree (relative posix path, path to read), and what was left out."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    escaping: list[str] = field(default_factory=list)  # links leaving the tree (relative paths)
    skipped: list[str] = field(default_factory=list)  # "<rel> (<kind>)" notes

    def escaping_message(self, root: Path, limit: int = 10) -> str:
        shown = ", ".join(self.escaping[:limit]) + (" …" if len(self.escaping) > limit else "")
        return f"{root}: {len(self.escaping)} link(s) lead out of the folder and are refused: {shown}"


def scan_tree(root: Path, skip_dirs: Iterable[str] = ()) -> TreeScan:
    """Every regular file under ``root`` (and in-tree links to one), sorted by relative path;
    entries named in ``skip_dirs`` are left out unexamined."""
    skip = set(skip_dirs)
    root_real = os.path.realpath(root)
    scan = TreeScan()
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it)
        subdirs = []
        for name in names:
            if name in skip:
                continue  # .git and the like: not looked at, whatever they are
            rel = prefix + name
            kind, readable = classify(Path(folder) / name, root_real)
            if kind == Kind.DIR:
                subdirs.append((Path(folder) / name, rel + "/"))
            elif kind in (Kind.FILE, Kind.LINKED_FILE):
                scan.files.append((rel, readable))
            elif kind == Kind.ESCAPING:
                scan.escaping.append(rel)
            else:
                scan.skipped.append(f"{rel} ({kind})")
        pending.extend(reversed(subdirs))
    scan.files.sort()
    return scan


class Destination:
    """Paths under an export directory; none of them may resolve outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = os.path.realpath(root)

    def path(self, *parts: str) -> Path:
        """``root/part/...``, each part a safe relative path; IntegrityError if it would leave
        the directory (a bad name, or a link already there pointing elsewhere)."""
        for part in parts:
            try:
                check_path(part)
            except InvalidAddress as exc:
                raise IntegrityError(f"refusing to write {part!r} under {self.root}: {exc}") from None
        target = self.root.joinpath(*parts)
        if not _inside(os.path.join(os.path.realpath(target.parent), target.name), self.real):
            raise IntegrityError(f"refusing to write {target}: it resolves outside {self.root}")
        return target

    def mkdir(self, *parts: str) -> Path:
        """The folder ``root/parts`` (and its parents), created if missing."""
        self.path(*parts)
        folder = self.root.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        return self.path(*parts)

    def _fresh(self, parts: tuple[str, ...]) -> Path:
        """``root/parts`` ready to be written: its folders exist (checked again once they do,
        so links among them are resolved) and nothing is there (never write through a link)."""
        dst = self.path(*parts)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst = self.path(*parts)
        if os.path.lexists(dst):
            dst.unlink()
        return dst

    def place(self, src: Path, parts: tuple[str, ...], link: bool = False) -> Path:
        """Copy (or hard-link) ``src`` to ``root/parts``, replacing whatever is there."""
        dst = self._fresh(parts)
        if link:
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass  # another filesystem: copy
        shutil.copyfile(src, dst)
        return dst

    def symlink(self, parts: tuple[str, ...], target: Path) -> Path:
        """A relative link at ``root/parts`` to ``target`` (itself a path under root)."""
        dst = self._fresh(parts)
        dst.symlink_to(os.path.relpath(target, dst.parent))
        return dst

    def write_text(self, parts: tuple[str, ...], text: str) -> Path:
        """A small file at ``root/parts`` (a ref, a manifest), replacing whatever is there."""
        dst = self._fresh(parts)
        dst.write_text(text)
        return dst
