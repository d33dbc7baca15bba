"""Which mounts serve a store: ``$HOARD_HOME/mounts/<pid>.json``, one file per live mount.

``hoard mount`` writes its record once the filesystem is live (:func:`register`) and removes
it when it exits (:func:`unregister`); a mount killed with SIGKILL leaves its file behind, so
a reader never trusts a record alone. :func:`live_mounts` keeps a record only when

* its process still runs (``kill(pid, 0)``), and
* its mount point is a hoard FUSE mount in *this* process's mount table
  (``/proc/self/mountinfo``: filesystem type ``fuse.hoard``), so a mount made in another mount
  namespace (a container) or already unmounted is never handed out.

A record whose process is gone is removed by the reader. The format is versioned JSON::

    {"version": 1, "pid": 1234, "mountpoint": "/models", "home": "/root/.cache/hoard",
     "started": 1767225600.0}

Nothing here imports FUSE bindings: ``import hoard`` (``hoard.path``) reads these records.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MountRecord", "FORMAT_VERSION", "register", "unregister", "live_mounts", "hoard_mountpoints"]

FORMAT_VERSION = 1
_DIR = "mounts"
#: the filesystem type a hoard mount shows in /proc/self/mountinfo (``subtype=hoard``)
_FSTYPE = "fuse.hoard"


@dataclass(frozen=True)
class MountRecord:
    """One mount of a store: the process serving it and where it is mounted."""

    pid: int
    mountpoint: str
    home: str
    started: float


def _record_path(home: Path, pid: int) -> Path:
    return home / _DIR / f"{pid}.json"


def register(home: Path, mountpoint: str, pid: int | None = None) -> Path:
    """Record that this process serves ``home`` at ``mountpoint`` (written whole, then
    renamed into place: a reader never sees half a record)."""
    pid = os.getpid() if pid is None else pid
    folder = home / _DIR
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"version": FORMAT_VERSION, "pid": pid, "mountpoint": os.path.abspath(mountpoint),
           "home": str(home), "started": time.time()}  # fmt: skip
    target = _record_path(home, pid)
    tmp = target.with_suffix(f".tmp{pid}")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, target)
    return target


def unregister(home: Path, pid: int | None = None) -> None:
    """Remove this process's record (nothing to do when there is none)."""
    with contextlib.suppress(FileNotFoundError):
        _record_path(home, os.getpid() if pid is None else pid).unlink()


def _unescape(field: str) -> str:
    """A mountinfo path field: space, tab, newline and backslash are octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def hoard_mountpoints(mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    """Mount points of hoard filesystems in this process's mount namespace."""
    found: set[str] = set()
    try:
        with open(mountinfo) as fh:
            for line in fh:
                fields = line.split()
                fstype = line.split(" - ", 1)[-1].split(" ", 1)[0]
                if len(fields) > 4 and fstype == _FSTYPE:
                    found.add(_unescape(fields[4]))
    except OSError:
        return set()
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _read(path: Path) -> MountRecord | None:
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != FORMAT_VERSION:
            return None
        return MountRecord(int(doc["pid"]), str(doc["mountpoint"]), str(doc["home"]), float(doc["started"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def live_mounts(home: Path) -> list[MountRecord]:
    """The mounts serving ``home`` now, newest first (see the module docstring)."""
    folder = home / _DIR
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except OSError:
        return []
    mounted = hoard_mountpoints()
    out = []
    for path in names:
        rec = _read(path)
        if rec is None:
            continue
        if not _alive(rec.pid):
            with contextlib.suppress(OSError):
                path.unlink()  # its process is gone: so is the mount it served
            continue
        if os.path.realpath(rec.mountpoint) in mounted or rec.mountpoint in mounted:
            out.append(rec)
    return sorted(out, key=lambda r: -r.started)
