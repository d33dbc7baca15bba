"""Where things live under ``$HOARD_HOME`` (DESIGN.md §2)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import blake3

__all__ = ["Layout", "fsync_dir"]

_SAFE_ALIAS = re.compile(r"[a-z0-9]+:[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def index(self) -> Path:
        return self.home / "index"

    @property
    def blobs(self) -> Path:
        return self.home / "blobs"

    @property
    def partial(self) -> Path:
        return self.home / "partial"

    @property
    def tmp(self) -> Path:
        return self.home / "tmp"

    @property
    def quarantine(self) -> Path:
        """Damaged blobs ``hoard verify`` set aside instead of deleting, because no origin can
        give their content back. Out of the index (never served); gc never looks here."""
        return self.home / "quarantine"

    @property
    def gc_lock(self) -> Path:
        return self.home / "index" / "gc.lock"

    @property
    def reserve(self) -> Path:
        """Space held back so that removals can commit on a full filesystem (reserve.py)."""
        return self.home / "index" / "reserve"

    def create(self) -> None:
        for d in (self.home, self.index, self.blobs, self.partial, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def blob_path(self, b3: str) -> Path:
        return self.blobs / b3[:2] / b3

    def quarantine_path(self, b3: str) -> Path:
        return self.quarantine / b3

    def partial_path(self, alias: str, tag: str) -> Path:
        """``partial/<alias>.<tag>``: the tag makes every incarnation of a partial a new file."""
        if _SAFE_ALIAS.fullmatch(alias):
            name = alias.replace(":", "-")
        else:
            name = "h-" + blake3.blake3(alias.encode()).hexdigest()[:40]
        return self.partial / f"{name}.{tag}"

    def tmp_file(self, prefix: str) -> Path:
        return self.tmp / f"{prefix}.{os.getpid()}.{os.urandom(6).hex()}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
