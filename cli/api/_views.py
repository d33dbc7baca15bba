"""Local paths for complete files: in a live mount, in a view of the store, or in a folder.

Three ways the API hands out files that are already complete and verified in the store:

* **A mount of the same store** (:func:`mount_path`): when a ``hoard mount`` of this
  ``$HOARD_HOME`` is live in this mount namespace (:mod:`hoard.fuse.registry`), the path is
  the file's place in the mount under its pinned revision
  (``<mount>/huggingface/<org>/<repo>@<commit>/<file>``): a name that never changes, next
  to the revision's other files. A mount that does not show the name (stuck, unmounted
  meanwhile) is passed over.
* **A view** (:func:`view_dir`): ``$HOARD_HOME/views/<source>/<owner>/<repo>@<rev>/...``,
  a folder of relative symbolic links to the blobs, laid out as the repo is (the Hub cache's
  ``snapshots/`` do the same). It takes no space; a link whose blob gc removed dangles until
  the next call that needs it fetches the file again. Blobs are read-only files: a caller
  must never write through a link or a blob path.
* **A folder of the caller's** (:func:`place_files`): ``output_dir=`` of
  ``ModelManager.download_model``. Each file is a hard link to its blob when the folder is
  on the store's filesystem (no second copy; the file stays when gc later removes the blob),
  else a copy; either way it is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path

from hoard.fuse.registry import live_mounts
from hoard.store.address import Address, check_path
from hoard.store.store import Store

__all__ = ["mount_path", "view_dir", "place_files", "VIEWS"]

#: the views' folder in the store's home
VIEWS = "views"


def mount_path(store: Store, addr: Address, *, folder: bool = False) -> str | None:
    """``addr`` (revision pinned) inside a live mount of ``store``, if one shows it."""
    for rec in live_mounts(store.home):
        candidate = os.path.join(rec.mountpoint, str(addr))
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) == folder:
            return candidate
    return None


def view_dir(store: Store, repo: Address, files: Mapping[str, str]) -> Path:
    """The view of a revision (``repo`` with its revision pinned) holding ``files``
    (path → BLAKE3): links made or repaired as needed; returns the folder."""
    root = store.home / VIEWS / str(repo.with_path(""))
    for rel, b3 in sorted(files.items()):
        link = root / check_path(rel)
        target = os.path.relpath(store.blob_path(b3), link.parent)
        with contextlib.suppress(OSError):
            if os.readlink(link) == target:
                continue
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.tmp")
        os.symlink(target, tmp)
        os.replace(tmp, link)
    return root


def place_files(store: Store, files: Mapping[str, str], folder: Path) -> list[Path]:
    """Put ``files`` (path → BLAKE3) into ``folder``: hard links, or copies across
    filesystems; an existing file that already is the blob is left as it is."""
    out = []
    for rel, b3 in files.items():
        dest = Path(folder) / check_path(rel)
        blob = store.blob_path(b3)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if os.path.samefile(dest, blob):
                out.append(dest)
                continue
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            try:
                os.link(blob, tmp)
            except OSError:  # another filesystem, or links refused (protected_hardlinks)
                shutil.copyfile(blob, tmp)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        out.append(dest)
    return out
