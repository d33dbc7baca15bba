"""torch.hub's ``trusted_list``, kept by hoard: the mount's one writable file.

``torch.hub.load`` (``_check_repo_is_trusted``, torch/hub.py) reads ``<hub>/trusted_list``
before it looks for a repo's code: it ``touch``es the file when it does not exist, trusts the
``owner_repo`` lines it holds and the folders ``<hub>/`` lists, and, for any other repo the
caller trusts (``trust_repo=True``), appends ``owner_repo\\n`` to it. On a read-only file
system that append fails, so ``TORCH_HOME`` in the mount needs it accepted.

:class:`TrustedList` keeps those lines in ``$HOARD_HOME/torch/trusted_list``: every process
of one store (mounts, ``hoard serve``) sees the same list, and it survives restarts. An
append is exactly what torch writes — whole lines ``<owner>_<repo>`` of names GitHub could
have — checked whole before anything is recorded; anything else is refused and records
nothing. Lines already listed are not repeated. Each append takes an exclusive ``flock`` on
the store's lock file, writes the new list to a temporary file, fsyncs it, renames it into
place and fsyncs the folder: a crash leaves the old list or the new one, never a torn one.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from hoard.store.errors import InvalidAddress

__all__ = ["TrustedList", "TRUST_LINE"]

#: one line torch writes: ``"_".join([repo_owner, repo_name])`` for a GitHub repo
TRUST_LINE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})_[A-Za-z0-9._-]{1,100}")
#: at most this many bytes in one append (torch writes one line of < 150)
_MAX_APPEND = 4096


class TrustedList:
    """The trusted lines of one store (``home`` is ``$HOARD_HOME``)."""

    def __init__(self, home: Path) -> None:
        self.dir = Path(home) / "torch"
        self.path = self.dir / "trusted_list"
        self._lock_path = self.dir / "trusted_list.lock"

    def read(self) -> bytes:
        """The list as torch reads it (empty when nothing was trusted yet)."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    @staticmethod
    def parse(data: bytes) -> list[str]:
        """The lines of one append; InvalidAddress unless it is whole ``owner_repo`` lines."""
        if not data or len(data) > _MAX_APPEND or not data.endswith(b"\n"):
            raise InvalidAddress("trusted_list takes whole lines <owner>_<repo>, each ending in a newline")
        try:
            lines = data.decode("ascii").split("\n")[:-1]
        except UnicodeDecodeError:
            raise InvalidAddress("trusted_list takes ASCII lines <owner>_<repo>") from None
        bad = [line for line in lines if not TRUST_LINE.fullmatch(line) or line.endswith((".", ".git"))]
        if bad:
            raise InvalidAddress(f"trusted_list takes lines <owner>_<repo> of GitHub names, not {bad[0][:120]!r}")
        return lines

    def append(self, data: bytes) -> list[str]:
        """Record the lines of one append (see the module docstring); returns those new to
        the list. Nothing is written when ``data`` is refused."""
        lines = self.parse(data)
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            old = self.read()
            listed = set(old.decode("ascii", "replace").split("\n"))
            new = [line for line in dict.fromkeys(lines) if line not in listed]
            if new:
                self._replace(old + "".join(line + "\n" for line in new).encode())
            return new
        finally:
            os.close(fd)  # drops the flock

    def _replace(self, content: bytes) -> None:
        tmp = self.dir / f".trusted_list.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
