"""The mfusepy adapter: each kernel call forwarded to :class:`HoardFS` in a few lines.

All errno decisions live in one place: :func:`_errno_of` maps :class:`FsError`, the hoard
error table and anything unexpected (EIO, logged) to the errno returned to the kernel.
Every write-type call answers EROFS, but one: appends to ``/torch/hub/trusted_list``
(torch.hub's trust file), which :meth:`HoardFS.write` accepts or refuses itself.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import mfusepy

from hoard.store.errors import HoardError, codes_for

from .fs import FsError, HoardFS

__all__ = ["HoardOperations"]

log = logging.getLogger("hoard.fuse")
F = TypeVar("F", bound=Callable[..., Any])

# how long the kernel may trust what we said: names and attributes of immutable trees change
# only when a branch moves (seconds to re-resolve); a missing name may appear after a push
ENTRY_TIMEOUT = 10.0
ATTR_TIMEOUT = 10.0
NEGATIVE_TIMEOUT = 2.0


def _errno_of(exc: BaseException) -> int:
    if isinstance(exc, FsError) and exc.errno:
        return exc.errno
    if isinstance(exc, HoardError):
        return codes_for(exc).errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    log.exception("unexpected error in a FUSE operation", exc_info=exc)
    return errno.EIO


def _op(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except mfusepy.FuseOSError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every error becomes an errno here
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            code = _errno_of(exc)
            if code not in (errno.ENOENT, errno.ENODATA):
                log.info("%s%s: %s", fn.__name__, args[1:2], exc)
            raise mfusepy.FuseOSError(code) from None

    return wrapper  # type: ignore[return-value]


def _readonly(*_: Any, **__: Any) -> int:
    raise mfusepy.FuseOSError(errno.EROFS)


# struct fuse_buf / fuse_bufvec of libfuse 3 (fuse_common.h), with the buffer array inline
class _Buf(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


class _BufVec(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t), ("buf", _Buf * 1)]


_FUSE_BUF_IS_FD = 1 << 1
_FUSE_BUF_FD_SEEK = 1 << 2
_FUSE_BUF_FD_RETRY = 1 << 3
_libc = ctypes.CDLL(None, use_errno=True)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]


def _bufvec(*, fd: int = -1, pos: int = 0, size: int = 0, data: bytes | None = None) -> ctypes.c_void_p:
    """A malloc'ed fuse_bufvec libfuse frees after replying (fuse_free_buf): fd-backed, or
    owning a malloc'ed copy of ``data``."""
    vec = _libc.malloc(ctypes.sizeof(_BufVec))
    if not vec:
        raise MemoryError("malloc failed")
    v = _BufVec.from_address(vec)
    v.count, v.idx, v.off = 1, 0, 0
    b = v.buf[0]
    if data is None:
        b.size, b.flags, b.mem, b.fd, b.pos = size, _FUSE_BUF_IS_FD | _FUSE_BUF_FD_SEEK | _FUSE_BUF_FD_RETRY, None, fd, pos
    else:
        mem = _libc.malloc(max(1, len(data)))
        if not mem:
            _libc.free(ctypes.c_void_p(vec))
            raise MemoryError("malloc failed")
        ctypes.memmove(mem, data, len(data))
        b.size, b.flags, b.mem, b.fd, b.pos = len(data), 0, mem, -1, 0
    return ctypes.c_void_p(vec)


class HoardOperations(mfusepy.Operations):
    use_ns = True

    def __init__(self, fs: HoardFS, on_ready: Callable[[], None] | None = None) -> None:
        self.fs = fs
        self.on_ready = on_ready
        self.uid, self.gid = os.getuid(), os.getgid()

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            config.entry_timeout = ENTRY_TIMEOUT
            config.attr_timeout = ATTR_TIMEOUT
            config.negative_timeout = NEGATIVE_TIMEOUT
        if conn is not None and hasattr(conn, "max_readahead"):
            conn.max_readahead = max(conn.max_readahead, 8 << 20)
            # more requests in flight before the kernel throttles read-ahead (defaults 12/9):
            # +45% on cold sequential reads of stored files
            conn.max_background = max(conn.max_background, 64)
            conn.congestion_threshold = max(conn.congestion_threshold, 48)
        if self.on_ready is not None:
            self.on_ready()

    @_op
    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        attr = self.fs.getattr(path)
        out = attr.as_dict(self.uid, self.gid)
        for key in ("st_mtime", "st_ctime", "st_atime"):
            out[key] = int(out[key] * 1_000_000_000)
        return out

    @_op
    def readdir(self, path: str, fh: Any) -> list[str]:
        return self.fs.readdir(path)

    @_op
    def open(self, path: str, fi: Any) -> int:
        fi.fh = self.fs.open(path, fi.flags)
        fi.keep_cache = 1 if self.fs.keep_cache(fi.fh) else 0
        fi.direct_io = 1 if self.fs.direct_io(fi.fh) else 0
        return 0

    @_op
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        """Only trusted_list is ever open for writing (HoardFS.open refuses every other)."""
        return self.fs.write(fi.fh, data, offset)

    @_op
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        return self.fs.read(fi.fh, size, offset)

    @_op
    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        """Reads of bytes already in the store are answered with the store file's descriptor:
        libfuse reads them itself and no byte passes through Python."""
        plan = self.fs.read_plan(fi.fh, size, offset)
        if isinstance(plan, bytes):
            vec = _bufvec(data=plan)
        else:
            fd, pos, n = plan
            vec = _bufvec(fd=fd, pos=pos, size=n)
        bufpp[0] = ctypes.cast(vec, type(bufpp[0]))
        return 0

    @_op
    def release(self, path: str, fi: Any) -> int:
        self.fs.release(fi.fh)
        return 0

    @_op
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return self.fs.getxattr(path, name)

    @_op
    def listxattr(self, path: str) -> list[str]:
        return self.fs.listxattr(path)

    @_op
    def statfs(self, path: str) -> dict[str, int]:
        return self.fs.statfs()

    @_op
    def access(self, path: str, amode: int) -> int:
        if amode & 2:  # W_OK
            raise mfusepy.FuseOSError(errno.EROFS)
        self.fs.getattr(path)
        return 0

    def destroy(self, path: str) -> None:
        self.fs.close()

    # every write-type call: read-only filesystem
    create = mkdir = unlink = rmdir = rename = symlink = link = _readonly
    chmod = chown = truncate = utimens = mknod = setxattr = removexattr = _readonly
