"""The progress of an Arweave push, kept so that an interrupted push resumes.

Arweave ids cannot be recomputed (a transaction's id is the hash of a salted RSA-PSS signature
over a fresh anchor), so a push records every transaction it signs *before* sending it:
``$HOARD_HOME/pushes/<key>.json`` holds, per unit of the push (``file:<path>``,
``section:<path>:<n>``, ``sections:<path>``, ``repo``), the signed header (no data), whether
the gateway took it, and how many of its chunks the gateway acknowledged. The key is a hash
of the push's inputs — wallet address, repo name, gateway, every file's path, size and
sha256, the metadata — so a changed file or flag starts a new push and a rerun of the same
push finds its record. The record also keeps the push's ``Unix-Time``: every transaction of
one upload carries the same one.

A rerun asks the gateway about each recorded transaction (``GET /tx/{id}/status``) and sends
only what it does not hold; the record is removed once the push is complete. Writes are
atomic (a temporary file renamed over the record) and at most every :data:`SAVE_INTERVAL`
seconds during chunk uploads, always when a transaction is signed, taken or finished and
when the push stops: a push killed outright loses at most a few chunk acknowledgements,
which the rerun sends again (chunks are idempotent).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from hoard.store.errors import StoreFormatError

__all__ = ["PushRecord", "record_key", "SAVE_INTERVAL"]

_VERSION = 1
#: seconds between record writes while chunks are acknowledged
SAVE_INTERVAL = 1.0


def record_key(inputs: Any) -> str:
    """A name for the push of these inputs (any JSON-able value)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class PushRecord:
    """One push's record (see the module docstring). Not shared between processes: two
    pushes of the same inputs at once would each sign their own transactions."""

    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        self._saved = 0.0

    @classmethod
    def open(cls, home: Path, key: str) -> PushRecord:
        """The record of push ``key`` under ``home`` (a new, empty one if there is none)."""
        path = home / "pushes" / f"{key}.json"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            doc = {"version": _VERSION, "unix_time": None, "units": {}}
        except ValueError:
            raise StoreFormatError(f"{path}: not a push record; delete it to start the push afresh") from None
        if doc.get("version") != _VERSION:
            raise StoreFormatError(f"{path}: push record version {doc.get('version')!r}, this hoard reads {_VERSION}")
        return cls(path, doc)

    @property
    def unix_time(self) -> str | None:
        return self.doc.get("unix_time")

    def begin(self, unix_time: str) -> None:
        if self.doc.get("unix_time") is None:
            self.doc["unix_time"] = unix_time
            self.save(force=True)

    def unit(self, key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.doc["units"].get(key)
        return found

    def units(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc["units"])

    def signed(self, key: str, header: dict[str, Any], chunks: int) -> None:
        """A transaction was signed for ``key`` (nothing sent yet)."""
        self.doc["units"][key] = {"header": header, "chunks": chunks, "acked": 0, "taken": False}
        self.save(force=True)

    def taken(self, key: str, taken: bool = True) -> None:
        """The gateway holds (or, with False, no longer holds) ``key``'s transaction header."""
        unit = self.doc["units"][key]
        unit["taken"] = taken
        if not taken:
            unit["acked"] = 0
        self.save(force=True)

    def acked(self, key: str, count: int) -> None:
        """The gateway acknowledged ``count`` chunks of ``key`` (in order)."""
        self.doc["units"][key]["acked"] = count
        self.save(force=count >= self.doc["units"][key]["chunks"])

    def forget(self, key: str) -> None:
        """``key``'s transaction is lost (dropped by the network): sign it afresh."""
        self.doc["units"].pop(key, None)
        self.save(force=True)

    def complete(self, key: str) -> bool:
        unit = self.unit(key)
        return bool(unit and unit["taken"] and unit["acked"] >= unit["chunks"])

    def save(self, force: bool = False) -> None:
        """Write the record (atomically), at most every SAVE_INTERVAL seconds unless forced."""
        now = time.monotonic()
        if not force and now - self._saved < SAVE_INTERVAL:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.doc, separators=(",", ":")))
        os.replace(tmp, self.path)
        self._saved = now

    def remove(self) -> None:
        """The push is complete: its record goes."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
