"""Typed configuration of the store layer, built by the CLI (never from the environment here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["StoreConfig", "DEFAULT_CHUNK_SIZE"]

#: 8 MiB: the chunk of CVMFS's average and Mountpoint's parts; a cold 4 KiB read fetches at
#: most this much, and a 50 GB file has ~6,000 chunks, so per-chunk records stay cheap.
DEFAULT_CHUNK_SIZE = 8 << 20


@dataclass(frozen=True)
class StoreConfig:
    """Where the store lives and how it fills blobs."""

    home: Path
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: the size ``gc`` trims the store to when no ``--max-size`` is given (None: no limit)
    max_size: int | None = None
    #: seconds between flushes of last-access times to the index
    access_flush_interval: float = 30.0
    #: gc never removes a blob opened or served within this many seconds (config ``gc_grace``)
    gc_grace: float = 600.0
    #: with ``max_size``, a running proxy or mount starts gc in the background once the store
    #: passes this fraction of it (config ``gc_high_water``) ...
    gc_high_water: float = 0.95
    #: ... and trims it down to this fraction (config ``gc_low_water``)
    gc_low_water: float = 0.80

    def __post_init__(self) -> None:
        if self.chunk_size < 4096 or self.chunk_size & (self.chunk_size - 1):
            raise ValueError(f"chunk size must be a power of two >= 4096, got {self.chunk_size}")
        if not 0 < self.gc_low_water < self.gc_high_water <= 1:
            raise ValueError(
                f"watermarks must satisfy 0 < gc_low_water < gc_high_water <= 1, "
                f"got gc_low_water={self.gc_low_water}, gc_high_water={self.gc_high_water}"
            )
