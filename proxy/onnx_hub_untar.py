"""Unpacking an ONNX hub test-data tarball without letting it write anywhere else.

A tarball's bytes are verified (its sha256 is the manifest's ``model_with_data_sha``) before
it is opened, but what it holds is still untrusted: member names become file paths. So
:func:`extract_tarball` keeps folders and regular files only (links, devices and FIFOs are
skipped with a warning: nothing written can point outside the folder), holds every name to the
client-path rules (:func:`hoard.store.address.check_path`: no absolute path, ``..``, ``.`` or
empty segment, NUL, or segment over 255 bytes — one such name refuses the whole tarball with
:class:`InvalidAddress`), never overwrites a member already written, and unpacks into a
temporary sibling folder that is renamed into place only once complete, so a failure leaves
nothing behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import IO

from hoard.store.address import check_path
from hoard.store.errors import InvalidAddress, OriginError

__all__ = ["extract_tarball"]

log = logging.getLogger("hoard.onnx_hub")
_COPY_BLOCK = 1 << 20


def extract_tarball(fileobj: IO[bytes], target: Path, what: str) -> None:
    """Unpack a (possibly compressed) tarball into ``target``, replacing what is there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            for member in tar:
                _member(tar, member, tmp, what)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise OriginError(f"{what}: cannot unpack the test-data tarball: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, what: str) -> None:
    """Write one member under ``root`` (a folder or a regular file), or skip it."""
    name = member.name.removeprefix("./").rstrip("/")
    if not name:
        return
    try:
        check_path(name)
    except InvalidAddress as exc:
        raise InvalidAddress(f"{what}: the tarball holds an unsafe name {member.name[:200]!r}: {exc}") from None
    dest = root / name
    if member.isdir():
        dest.mkdir(parents=True, exist_ok=True)
    elif member.isfile():
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        if src is None:
            return
        with src, open(dest, "xb") as out:
            shutil.copyfileobj(src, out, _COPY_BLOCK)
    else:
        log.warning("%s: skipped %r from the tarball (a link or special file)", what, name[:200])
