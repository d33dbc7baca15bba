"""``/torch/hub/trusted_list`` in the mount: torch.hub's trust file, the mount's one writable file.

``torch.hub.load`` needs ``<hub>/trusted_list`` to exist (it creates it otherwise) and, for a
repo it is told to trust that the list does not name, appends ``owner_repo\\n`` to it
(torch/hub.py ``_check_repo_is_trusted``). With ``TORCH_HOME`` in the mount both would fail
on a read-only file system, so :class:`HoardFS <hoard.fuse.fs.HoardFS>` answers that one path
from here:

* it always exists, and reads as the lines recorded so far (the store's
  :class:`~hoard.proxy.sources._torch_trust.TrustedList`, shared by every process of the
  store and kept across restarts);
* it opens for reading, or for appending only: ``O_APPEND`` with ``O_WRONLY`` or ``O_RDWR``,
  never ``O_TRUNC`` (``O_CREAT`` is harmless: the file exists). Any other write open is EROFS;
* a write through an appending handle must be whole ``owner_repo`` lines; it is recorded
  durably before the call returns, wherever the kernel thinks the end of the file is (an
  append goes to the end). Anything else is EINVAL and records nothing;
* its handles read past the kernel's page cache (``direct_io``): the list may grow under a
  size the kernel cached.

Errors are ``OSError`` with an errno, which the adapter passes to the kernel as they are.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

from hoard.proxy.sources._torch_trust import TrustedList
from hoard.store.errors import InvalidAddress

__all__ = ["TrustFile"]

log = logging.getLogger("hoard.fuse")

#: never on this file: a truncation (it would drop what was trusted), an exclusive create
_NEVER = os.O_TRUNC | os.O_EXCL


class TrustFile:
    """The open handles of trusted_list (handle numbers come from the filesystem)."""

    def __init__(self, home: Path) -> None:
        self.list = TrustedList(home)
        self._lock = threading.Lock()
        self._open: dict[int, bool] = {}  # handle -> opened for appending

    def stat(self) -> tuple[int, float | None]:
        """Its size and modification time (None before anything was trusted)."""
        return len(self.list.read()), self.list.mtime()

    def open(self, fh: int, flags: int) -> None:
        """Register handle ``fh``: for reading, or for appending (EROFS for any other write)."""
        writing = flags & os.O_ACCMODE != os.O_RDONLY
        if flags & _NEVER or (writing and not flags & os.O_APPEND):
            raise OSError(errno.EROFS, "torch/hub/trusted_list takes appends only")
        with self._lock:
            self._open[fh] = writing

    def owns(self, fh: int) -> bool:
        return fh in self._open

    def read(self, size: int, offset: int) -> bytes:
        return self.list.read()[offset : offset + size]

    def write(self, fh: int, data: bytes) -> int:
        """Record one append (whole ``owner_repo`` lines); EBADF on a reading handle."""
        with self._lock:
            appending = self._open.get(fh)
        if not appending:
            raise OSError(errno.EBADF, "torch/hub/trusted_list is not open for appending")
        try:
            new = self.list.append(bytes(data))
        except InvalidAddress as exc:
            log.warning("refused a write to torch/hub/trusted_list: %s", exc)
            raise OSError(errno.EINVAL, str(exc)) from None
        if new:
            log.info("torch.hub trusts %s (recorded in %s)", ", ".join(new), self.list.path)
        return len(data)

    def release(self, fh: int) -> None:
        with self._lock:
            self._open.pop(fh, None)
