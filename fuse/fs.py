"""The filesystem, as plain Python: paths in, attributes, names and bytes out.

Tree (DESIGN.md §1, §5)::

    /                                   the sources served
    /<source>/                          owners of cached repos
    /huggingface/{datasets,spaces}/     likewise, for those repo kinds
    /<source>/<owner>/                  cached repos; any other name is looked up at the origin
    /<source>/<owner>/<repo>/...        the tree at the default revision (re-resolved after a TTL)
    /<source>/<owner>/<repo>@<rev>/...  the tree at <rev> (a commit-pinned one never changes)
    /torch/hub/trusted_list             torch.hub's trust file: the mount's one writable file

Sources that cannot list their repos (a URL, torch weights) have every name looked up at the
origin, and a name the origin does not know is a folder on the way to one — unless the
revision says otherwise in its info: ``complete`` (the tree is the whole listing: a torch hub
repo, whose files come from GitHub's tree; names not in it do not exist and are never asked
for) or ``folders: False`` (torch's checkpoints: a name the origin does not know is no folder).

``/torch/hub/trusted_list`` always exists and takes one kind of write, the append torch.hub
makes for a repo it is told to trust (:mod:`hoard.fuse.trustfile`). Every other write is EROFS.

Sizes are known before any byte is fetched (they come from the tree). Reads of complete blobs
and of chunks already present go straight to the store's files with ``pread``; only missing
ranges go through the fetch core. Nothing here knows FUSE: :mod:`hoard.fuse.adapter` forwards
kernel calls to this class, and tests drive it directly.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from hoard.proxy.catalog import Resolved
from hoard.proxy.fetch import OpenFile
from hoard.proxy.origin import RemoteFile, name_published
from hoard.proxy.sources._torch_names import CHECKPOINTS, HUB, SOURCE as TORCH, TRUSTED_LIST
from hoard.store.address import Address, check_segment, parse_address
from hoard.store.records import TreeEntry
from hoard.store.sources import source_info
from hoard.store.errors import HoardError, InvalidAddress, codes_for

from .bridge import CoreBridge
from .trustfile import TrustFile

__all__ = ["HoardFS", "Attr", "FsError", "MountOptions"]

log = logging.getLogger("hoard.fuse")

XATTRS = ("user.hoard.address", "user.hoard.revision", "user.hoard.identity", "user.hoard.sha256",
          "user.hoard.verified_by", "user.hoard.blake3", "user.hoard.present")


def _kinds(source: str) -> tuple[str, ...]:
    """Repo kinds a source writes before the owner (``huggingface/datasets/...``)."""
    info = source_info(source)
    return info.kinds if info is not None else ()


class FsError(OSError):
    """An errno for the kernel."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(code, message or os.strerror(code))


@dataclass(frozen=True)
class MountOptions:
    #: "open": opening a file starts filling it completely; "lazy": fetch only what is read
    fill: str = "open"
    #: chunks fetched ahead of a sequential reader
    readahead: int = 4
    #: how long a resolved branch is trusted before asking the catalog again
    ref_cache_seconds: float = 2.0


@dataclass(frozen=True)
class Attr:
    mode: int
    size: int
    mtime: float
    nlink: int = 1

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def as_dict(self, uid: int, gid: int) -> dict[str, Any]:
        blocks = (self.size + 511) // 512
        return {
            "st_mode": self.mode, "st_nlink": self.nlink, "st_size": self.size, "st_uid": uid, "st_gid": gid,
            "st_mtime": self.mtime, "st_ctime": self.mtime, "st_atime": self.mtime, "st_blocks": blocks,
        }


_DIR = stat.S_IFDIR | 0o555
_FILE = stat.S_IFREG | 0o444
_APPENDABLE = stat.S_IFREG | 0o644


@dataclass(frozen=True)
class _Where:
    """A parsed mount path."""

    source: str = ""
    kind: str = ""
    owner: str = ""
    repo: str = ""  # the repo segment as written, "name" or "name@rev"
    path: str = ""
    kind_dir: bool = False  # /huggingface/datasets itself

    @property
    def depth(self) -> str:
        if not self.source:
            return "root"
        if self.kind_dir:
            return "kind"
        if not self.owner:
            return "source"
        if not self.repo:
            return "owner"
        return "repo"


class _Handle:
    """An open file: our own descriptor on its bytes, and its fill state while partial."""

    def __init__(self, rf: RemoteFile, fd: int, of: OpenFile | None) -> None:
        self.rf = rf
        self.fd = fd
        self.of = of
        self.next_offset = -1
        self.served = 0  # bytes handed out through this handle (to spot a whole-file read)
        self.blob_checked = of is None  # opened on the blob itself
        self.keep_cache = False
        self.lock = threading.Lock()


class HoardFS:
    def __init__(self, bridge: CoreBridge, options: MountOptions | None = None) -> None:
        self.bridge = bridge
        self.store = bridge.store
        self.options = options or MountOptions()
        self.started = time.time()
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, str], tuple[Resolved, float]] = {}
        self._children: OrderedDict[tuple[str, str], dict[str, dict[str, bool]]] = OrderedDict()
        self._handles: dict[int, _Handle] = {}
        self._next_fh = 1
        self._unverified_pages: set[str] = set()
        self.trust = TrustFile(self.store.home)

    # -- paths ------------------------------------------------------------------------------

    def _parse(self, path: str) -> _Where:
        parts = [p for p in path.split("/") if p]
        if "\0" in path:
            raise FsError(errno.EINVAL)
        if not parts:
            return _Where()
        try:
            for seg in parts:
                check_segment(seg)
        except InvalidAddress as exc:
            raise FsError(errno.ENAMETOOLONG if "longer" in str(exc) else errno.EINVAL) from None
        source = parts[0]
        if source not in self.bridge.svc.sources:
            raise FsError(errno.ENOENT)
        rest = parts[1:]
        kind = ""
        if rest and rest[0] in _kinds(source):
            kind, rest = rest[0], rest[1:]
            if not rest:
                return _Where(source, kind, kind_dir=True)
        return _Where(source, kind, *(rest[:2] + [""] * (2 - len(rest[:2]))), "/".join(rest[2:]))

    def _address(self, w: _Where) -> Address:
        prefix = f"{w.source}/{w.kind + '/' if w.kind else ''}{w.owner}/{w.repo}"
        try:
            return parse_address(prefix)
        except InvalidAddress:
            raise FsError(errno.EINVAL) from None

    def _resolve(self, w: _Where) -> Resolved:
        addr = self._address(w)
        key = (addr.repo_key, addr.revision or "")
        now = time.monotonic()
        with self._lock:
            hit = self._resolved.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        resolved = self._call(self.bridge.resolve, addr)
        src = self.bridge.svc.catalog.source(addr)
        pinned = addr.revision is not None and src.is_revision_id(addr.revision)
        expiry = float("inf") if pinned else now + self.options.ref_cache_seconds
        with self._lock:
            self._resolved[key] = (resolved, expiry)
            if len(self._resolved) > 4096:  # forget expired answers, then the oldest
                live = {k: v for k, v in self._resolved.items() if v[1] > now}
                self._resolved = dict(list(live.items())[-2048:])
        return resolved

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except FsError:
            raise
        except HoardError as exc:
            raise FsError(codes_for(exc).errno, str(exc)) from None

    def _tree(self, resolved: Resolved) -> dict[str, dict[str, bool]]:
        """dir path -> {child name: is_dir}, built once per revision."""
        key = (resolved.addr.repo_key, resolved.revision)
        with self._lock:
            tree = self._children.get(key)
            if tree is not None:
                self._children.move_to_end(key)
                return tree
        tree = {"": {}}
        for path in resolved.snapshot.files:
            parts = path.split("/")
            for i in range(len(parts)):
                parent = "/".join(parts[:i])
                tree.setdefault(parent, {})[parts[i]] = i < len(parts) - 1
        with self._lock:
            self._children[key] = tree
            while len(self._children) > 64:
                self._children.popitem(last=False)
        return tree

    def _cached_repos(self, source: str, kind: str, owner: str | None) -> list[str]:
        prefix = f"{source}/{kind + '/' if kind else ''}"
        names: set[str] = set()
        for key in self.store.repos(prefix):
            rest = key[len(prefix) :].split("/")
            if not kind and rest[0] in _kinds(source):
                continue
            if len(rest) != 2:
                continue
            if owner is None:
                names.add(rest[0])
            elif rest[0] == owner:
                names.add(rest[1])
        return sorted(names)

    # -- operations -------------------------------------------------------------------------

    def getattr(self, path: str) -> Attr:
        w = self._parse(path)
        if w.depth in ("root", "source", "kind", "owner"):
            if w.depth == "owner" and not w.owner:
                raise FsError(errno.ENOENT)
            return Attr(_DIR, 0, self.started, 2)
        if self._is_trust(w):
            size, mtime = self.trust.stat()
            return Attr(_APPENDABLE, size, mtime or self.started)
        resolved = self._resolve(w)
        mtime = float(resolved.snapshot.created)
        if not w.path:
            return Attr(_DIR, 0, mtime, 2)
        entry = resolved.snapshot.files.get(w.path)
        if entry is None and w.path not in self._tree(resolved) and not self._listable(w, resolved):
            resolved, entry = self._look_up(w)
            if entry is None:  # no file there at the origin: a folder on the way to one
                if resolved.snapshot.info.get("folders") is False:
                    raise FsError(errno.ENOENT)
                return Attr(_DIR, 0, mtime, 2)
        if entry is not None:
            return Attr(_FILE, entry.size, mtime)
        if w.path in self._tree(resolved):
            return Attr(_DIR, 0, mtime, 2)
        raise FsError(errno.ENOENT)

    def _listable(self, w: _Where, resolved: Resolved) -> bool:
        """Whether the tree is the whole listing: a listable source's, or a revision that says
        it is ``complete`` (then names not in it are never asked for at the origin)."""
        return self.bridge.svc.catalog.source(self._address(w)).listable or bool(resolved.snapshot.info.get("complete"))

    def _is_trust(self, w: _Where) -> bool:
        """``/torch/hub/trusted_list`` (ENOTDIR for a name under it)."""
        if w.source != TORCH or w.kind or w.owner != HUB or w.repo != TRUSTED_LIST:
            return False
        if w.path:
            raise FsError(errno.ENOTDIR)
        return True

    def _look_up(self, w: _Where) -> tuple[Resolved, TreeEntry | None]:
        """A name of a source that cannot list its repos (a URL, torch weights), asked at its
        origin; (revision, None) when the origin has no file there. Every folder of such a
        repo exists (a URL's path can hold anything), and lists the names looked up so far."""
        addr = self._address(w)
        try:
            resolved = self._call(self.bridge.resolve, addr.with_path(w.path))
        except FsError as exc:
            if exc.errno != errno.ENOENT:
                raise
            return self._resolve(w), None
        key = (addr.repo_key, addr.revision or "")
        with self._lock:
            old = self._resolved.get(key)
            self._resolved[key] = (resolved, old[1] if old is not None else time.monotonic())
            self._children.pop((resolved.addr.repo_key, resolved.revision), None)  # it grew
        return resolved, resolved.snapshot.files.get(w.path)

    def readdir(self, path: str) -> list[str]:
        w = self._parse(path)
        depth = w.depth
        if depth == "root":
            names = sorted(self.bridge.svc.sources)
        elif depth == "source":
            always = {HUB} if w.source == TORCH else set()
            names = sorted(set(self._cached_repos(w.source, "", None)) | set(_kinds(w.source)) | always)
        elif depth == "kind":
            names = self._cached_repos(w.source, w.kind, None)
        elif depth == "owner":
            always = {CHECKPOINTS, TRUSTED_LIST} if (w.source, w.owner) == (TORCH, HUB) else set()
            names = sorted(set(self._cached_repos(w.source, w.kind, w.owner)) | always)
        elif self._is_trust(w):
            raise FsError(errno.ENOTDIR)
        else:
            resolved = self._resolve(w)
            tree = self._tree(resolved)
            if w.path in resolved.snapshot.files:
                raise FsError(errno.ENOTDIR)
            if w.path not in tree:
                raise FsError(errno.ENOENT)
            names = sorted(tree[w.path])
        return [".", "..", *names]

    def open(self, path: str, flags: int) -> int:
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT))
        w = self._parse(path)
        if w.depth == "repo" and self._is_trust(w):
            fh = self._new_fh()
            self.trust.open(fh, flags)
            return fh
        if writing:
            raise FsError(errno.EROFS)
        if w.depth != "repo" or not w.path:
            raise FsError(errno.EISDIR)
        resolved = self._resolve(w)
        known = w.path in resolved.snapshot.files or w.path in self._tree(resolved)
        if not known and not self._listable(w, resolved):
            resolved, entry = self._look_up(w)
            if entry is None:
                raise FsError(errno.ENOENT if resolved.snapshot.info.get("folders") is False else errno.EISDIR)
        if w.path not in resolved.snapshot.files:
            raise FsError(errno.EISDIR if w.path in self._tree(resolved) else errno.ENOENT)
        rf = self.bridge.remote_file(resolved, w.path)
        handle = self._open_handle(rf)
        fh = self._new_fh()
        with self._lock:
            self._handles[fh] = handle
            # The kernel may keep a file's cached pages across opens only while they are
            # certainly right: the file was complete when opened, and no open since this mount
            # started saw it incomplete (those pages could predate a failed verification).
            if handle.of is not None:
                self._unverified_pages.add(rf.identity)
            elif rf.identity in self._unverified_pages:
                self._unverified_pages.discard(rf.identity)  # this open drops them
            else:
                handle.keep_cache = True
        return fh

    def _new_fh(self) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
        return fh

    def write(self, fh: int, data: bytes, offset: int) -> int:
        """An append to trusted_list, the only file ever open for writing (``offset`` is
        ignored: an append goes to the end); EBADF for any other handle."""
        if not self.trust.owns(fh):
            raise FsError(errno.EBADF)
        return self.trust.write(fh, data)

    def direct_io(self, fh: int) -> bool:
        """trusted_list may grow under the size the kernel cached: read it past the cache."""
        return self.trust.owns(fh)

    def keep_cache(self, fh: int) -> bool:
        return False if self.trust.owns(fh) else self._handle(fh).keep_cache

    def _open_handle(self, rf: RemoteFile) -> _Handle:
        b3 = self.store.resolve(rf.identity)
        if b3 is not None:
            name_published(self.store, rf, b3)
            fd = self.store.open_blob(b3)
            if fd is not None:
                self.store.touch(b3)
                return _Handle(rf, fd, None)
            # removed by gc meanwhile: fetch it again
        of = self._call(self.bridge.open, rf)
        try:
            if of.b3 is not None:
                fd = self.store.open_blob(of.b3)
                if fd is None:
                    raise FsError(errno.EAGAIN, "the file was removed from the store while opening it; retry")
            else:
                assert of.partial is not None
                fd = os.dup(of.partial.fd)  # our own descriptor: survives publish (same inode)
                if self.options.fill == "open":
                    self._call(self.bridge.start_fill, of)
        except BaseException:
            self._call(self.bridge.close, of)
            raise
        return _Handle(rf, fd, of)

    def _handle(self, fh: int) -> _Handle:
        handle = self._handles.get(fh)
        if handle is None:
            raise FsError(errno.EBADF)
        return handle

    def read(self, fh: int, size: int, offset: int) -> bytes:
        plan = self.read_plan(fh, size, offset)
        if isinstance(plan, bytes):
            return plan
        fd, start, n = plan
        return os.pread(fd, n, start)

    def read_plan(self, fh: int, size: int, offset: int) -> bytes | tuple[int, int, int]:
        """How to answer a read: ``(fd, offset, length)`` when the bytes are in the store
        (whoever reads them needs no help from Python), else the bytes, fetched."""
        if self.trust.owns(fh):
            return self.trust.read(size, offset)
        h = self._handle(fh)
        end = min(offset + size, h.rf.size)
        if offset >= end:
            return b""
        sequential = offset == h.next_offset
        h.next_offset = end
        h.served += end - offset
        of = h.of
        if of is not None and end == h.rf.size and of.b3 is None and h.served * 2 >= h.rf.size:
            # the read that completes a whole-file read: no reader gets all of a file before
            # it is verified (EIO if it does not match its upstream hash)
            self._call(self.bridge.fill, of)
        if of is not None and of.b3 is not None and not h.blob_checked:
            self._settle_blob(h, of.b3)
        if of is None or of.b3 is not None or self._present(of, offset, end):
            return h.fd, offset, end - offset
        readahead = self.options.readahead if sequential or offset == 0 else 0
        data: bytes = self._call(self.bridge.read, of, offset, end, readahead)
        return data

    def _settle_blob(self, h: _Handle, b3: str) -> None:
        """Once published, make sure the handle's descriptor is on the blob: if this partial
        was discarded and the content published from another one, switch files."""
        with h.lock:
            if h.blob_checked:
                return
            blob = self.store.open_blob(b3)
            if blob is None:
                return  # removed again meanwhile: keep what we have, look again next read
            try:
                a, b = os.fstat(h.fd), os.fstat(blob)
                if (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev):
                    os.dup2(blob, h.fd)  # atomic: concurrent reads never see a closed number
            finally:
                os.close(blob)
            h.blob_checked = True

    @staticmethod
    def _present(of: OpenFile, start: int, end: int) -> bool:
        p = of.partial
        return p is not None and all(p.present(i) for i in p.chunks_for(start, end))

    def release(self, fh: int) -> None:
        self.trust.release(fh)
        with self._lock:
            h = self._handles.pop(fh, None)
        if h is None:
            return
        os.close(h.fd)
        if h.of is not None:
            try:
                self.bridge.close(h.of)
            except HoardError as exc:
                log.warning("closing %s: %s", h.rf.address, exc)

    # -- extended attributes ----------------------------------------------------------------

    def listxattr(self, path: str) -> list[str]:
        w = self._parse(path)
        if w.depth != "repo" or self._is_trust(w):
            return []
        resolved = self._resolve(w)
        if w.path not in resolved.snapshot.files:
            return ["user.hoard.address", "user.hoard.revision"]
        return [name for name in XATTRS if self._xattr(resolved, w.path, name) is not None]

    def getxattr(self, path: str, name: str) -> bytes:
        w = self._parse(path)
        if w.depth != "repo" or not name.startswith("user.hoard.") or self._is_trust(w):
            raise FsError(errno.ENODATA)
        resolved = self._resolve(w)
        value = self._xattr(resolved, w.path, name)
        if value is None:
            raise FsError(errno.ENODATA)
        return value.encode()

    def _xattr(self, resolved: Resolved, path: str, name: str) -> str | None:
        if name == "user.hoard.address":
            return str(resolved.addr.with_path(path))
        if name == "user.hoard.revision":
            return resolved.revision
        entry = resolved.snapshot.files.get(path)
        if entry is None:
            return None
        if name == "user.hoard.identity":
            return entry.identity
        if name == "user.hoard.verified_by":  # "sha256", "gitsha1", "length only", ...
            return entry.verified_by
        if name == "user.hoard.sha256":
            if entry.identity.startswith("sha256:"):
                return entry.identity[7:]
            lfs = entry.meta.get("lfs")
            return lfs["oid"] if lfs else None
        b3 = self.store.resolve(entry.identity)
        if name == "user.hoard.blake3":
            return b3
        if name == "user.hoard.present":
            if b3 is not None or entry.size == 0:
                return "1"
            status = self.store.partial_status(entry.identity)
            present = status[0] if status else 0
            return f"{present / entry.size:.6f}".rstrip("0").rstrip(".") or "0"
        return None

    # -- the rest ---------------------------------------------------------------------------

    def statfs(self) -> dict[str, int]:
        st = os.statvfs(self.store.home)
        return {
            "f_bsize": st.f_bsize, "f_frsize": st.f_frsize, "f_blocks": st.f_blocks, "f_bfree": st.f_bfree,
            "f_bavail": st.f_bavail, "f_files": st.f_files, "f_ffree": st.f_ffree, "f_namemax": 255,
        }

    def close(self) -> None:
        for fh in list(self._handles):
            self.release(fh)

