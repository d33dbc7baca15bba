"""What a Ritual-compatible Arweave upload consists of: its transactions, their tags and data,
and the tree the Arweave source will read back (reference sources.md §1.4, ritual-arweave
0.2.0's ``RepoManager.upload_repo`` / ``FileManager.upload``).

* One data transaction per file, tagged, in this order: ``Content-Type``
  (``mimetypes.guess_type``, else ``application/octet-stream``), ``File-Version`` (``0.0.0``),
  ``File-Name`` (the path in the repo), ``File-SHA256`` (hex), ``App-Name=Ritual``,
  ``App-Version=0.2.0``, ``Unix-Time`` (``str(time.time())``, one value for the whole
  upload), ``Repo-Name``, ``File-Size`` (this transaction's data size).
* A file of :data:`MAX_UPLOAD` (5,120,000) bytes or more goes up as ``N.section``
  transactions of at most that size, each with the *whole file's* tags and its own
  ``File-Size``, then a sectioned manifest (an ``arweave/paths`` manifest of the sections)
  tagged ``Content-Type`` (the manifest type), ``Type=manifest``, ``App-Name``,
  ``App-Version``, ``File-Type=Sectioned``, ``File-Size`` (the whole size), its own later
  ``Unix-Time`` and ``File-Name`` (the base name) — no ``Repo-Name``.
* Last, the repo manifest ``{"manifest":"arweave/paths","version":"0.1.0","paths":{...}}``
  (``json.dumps`` with its default separators, as ``ar.Manifest.tobytes``), tagged
  ``Content-Type``, ``Type=manifest``, ``App-Name``, ``App-Version``, ``Unix-Time``,
  ``Repo-Name``; it points at the sectioned manifest of a sectioned file.

Every transaction's data is therefore at most 5,120,000 bytes and is read into memory whole.
A manifest's size is known before any id is: ids are 43 base64url characters, which JSON
never escapes. Each read of a file is checked against the hashes taken at the start (the
whole file, or its section), so a file changed during the push stops it before a wrong
``File-SHA256`` could be sent.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from hoard.store.errors import IntegrityError, UsageError
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry

from .publish import LocalFile

__all__ = [
    "MAX_UPLOAD",
    "APP_VERSION",
    "MANIFEST_TYPE",
    "Hashed",
    "Unit",
    "check_repo_name",
    "hash_files",
    "plan_units",
    "unit_tags",
    "unit_data",
    "build_snapshot",
]

#: ritual-arweave 0.2.0 ``MAXIMUM_UPLOAD_SIZE``: files this big or bigger are sectioned
MAX_UPLOAD = 1000 * 1024 * 5
APP_VERSION = "0.2.0"
MANIFEST_TYPE = "application/x.arweave-manifest+json"
_ID_PLACEHOLDER = "x" * 43
_BLOCK = MAX_UPLOAD // 5  # 1,024,000: divides a section
# ritual-arweave interpolates the name into GraphQL text: keep to characters it cannot break
_REPO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_repo_name(name: str) -> str:
    if not _REPO_NAME.fullmatch(name):
        raise UsageError(f"Arweave repo name {name!r}: use letters, digits, '.', '_' and '-' (128 at most)")
    return name


@dataclass(frozen=True)
class Hashed:
    """A file with its sha256, and the sha256 of each section when it is sectioned."""

    file: LocalFile
    sha256: str
    sections: tuple[str, ...] = ()

    @property
    def rel(self) -> str:
        return self.file.rel

    @property
    def sectioned(self) -> bool:
        return self.file.size >= MAX_UPLOAD

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.rel)[0] or "application/octet-stream"


def _blocks(f: LocalFile) -> Iterator[bytes]:
    if f.data is not None:
        yield f.data
        return
    assert f.path is not None
    with open(f.path, "rb") as fh:
        while block := fh.read(_BLOCK):
            yield block


def hash_files(files: Sequence[LocalFile], advance: Callable[[int], None]) -> list[Hashed]:
    """Hash every file in one read: its sha256 and, when it is sectioned, each section's (a
    block never straddles a section: ``_BLOCK`` divides ``MAX_UPLOAD``)."""
    out = []
    for f in files:
        whole, part, sections, in_part, total = hashlib.sha256(), hashlib.sha256(), [], 0, 0
        big = f.size >= MAX_UPLOAD
        for block in _blocks(f):
            whole.update(block)
            total += len(block)
            advance(len(block))
            if big:
                part.update(block)
                in_part += len(block)
                if in_part == MAX_UPLOAD:
                    sections.append(part.hexdigest())
                    part, in_part = hashlib.sha256(), 0
        if big and in_part:
            sections.append(part.hexdigest())
        if total != f.size:
            raise IntegrityError(f"{f.rel} changed while it was being read ({total} bytes, not {f.size})")
        out.append(Hashed(f, whole.hexdigest(), tuple(sections)))
    return out


@dataclass(frozen=True)
class Unit:
    """One transaction of the upload. ``key`` names it in the push record."""

    key: str
    kind: str  # "file", "section", "sections" (a sectioned file's manifest) or "repo"
    size: int
    file: Hashed | None = None
    index: int = 0

    @property
    def what(self) -> str:
        if self.file is None:
            return "the repo manifest"
        if self.kind == "section":
            return f"{self.file.rel} (section {self.index})"
        return self.file.rel + (" (its sectioned manifest)" if self.kind == "sections" else "")


def _manifest(paths: Mapping[str, str]) -> bytes:
    """``ar.Manifest(paths).tobytes()``: an ``arweave/paths`` manifest, version 0.1.0."""
    doc = {"manifest": "arweave/paths", "version": "0.1.0", "paths": {p: {"id": i} for p, i in paths.items()}}
    return json.dumps(doc).encode()


def _section_names(h: Hashed) -> list[str]:
    return [f"{i}.section" for i in range(len(h.sections))]


def _pointer(h: Hashed) -> str:
    """The unit the repo manifest points at for this file."""
    return f"sections:{h.rel}" if h.sectioned else f"file:{h.rel}"


def plan_units(files: Sequence[Hashed]) -> list[Unit]:
    """The transactions of an upload, in the order they are sent."""
    units = []
    for h in files:
        if not h.sectioned:
            units.append(Unit(f"file:{h.rel}", "file", h.file.size, h))
            continue
        for i in range(len(h.sections)):
            size = min(MAX_UPLOAD, h.file.size - i * MAX_UPLOAD)
            units.append(Unit(f"section:{h.rel}:{i}", "section", size, h, i))
        body = _manifest({name: _ID_PLACEHOLDER for name in _section_names(h)})
        units.append(Unit(f"sections:{h.rel}", "sections", len(body), h))
    repo = _manifest({h.rel: _ID_PLACEHOLDER for h in files})
    units.append(Unit("repo", "repo", len(repo)))
    return units


def _file_tags(h: Hashed, repo: str, unix_time: str) -> dict[str, str]:
    return {
        "Content-Type": h.content_type,
        "File-Version": "0.0.0",
        "File-Name": h.rel,
        "File-SHA256": h.sha256,
        "App-Name": "Ritual",
        "App-Version": APP_VERSION,
        "Unix-Time": unix_time,
        "Repo-Name": repo,
    }


def unit_tags(unit: Unit, repo: str, unix_time: str) -> list[tuple[str, str]]:
    """A unit's tags; a sectioned manifest takes the time it is signed, as ritual-arweave."""
    h = unit.file
    if unit.kind in ("file", "section"):
        assert h is not None
        tags = {**_file_tags(h, repo, unix_time), "File-Size": str(unit.size)}
    elif unit.kind == "sections":
        assert h is not None
        tags = {
            "Content-Type": MANIFEST_TYPE, "Type": "manifest", "App-Name": "Ritual", "App-Version": APP_VERSION,
            "File-Type": "Sectioned", "File-Size": str(h.file.size), "Unix-Time": str(time.time()),
            "File-Name": h.rel.rsplit("/", 1)[-1],
        }  # fmt: skip
    else:
        tags = {
            "Content-Type": MANIFEST_TYPE,
            "Type": "manifest",
            "App-Name": "Ritual",
            "App-Version": APP_VERSION,
            "Unix-Time": unix_time,
            "Repo-Name": repo,
        }
    return list(tags.items())


def unit_data(unit: Unit, ids: Mapping[str, str], files: Sequence[Hashed]) -> bytes:
    """A unit's data: the file or section (checked against its hash), or a manifest of the
    ids already sent."""
    h = unit.file
    if unit.kind == "repo":
        data = _manifest({f.rel: ids[_pointer(f)] for f in files})
    elif unit.kind == "sections":
        assert h is not None
        data = _manifest({name: ids[f"section:{h.rel}:{i}"] for i, name in enumerate(_section_names(h))})
    else:
        assert h is not None
        start = unit.index * MAX_UPLOAD
        data = h.file.read(start, start + unit.size)
        want = h.sections[unit.index] if unit.kind == "section" else h.sha256
        if hashlib.sha256(data).hexdigest() != want:
            raise IntegrityError(f"{unit.what} changed while it was being pushed; nothing more was sent")
    if len(data) != unit.size:
        raise IntegrityError(f"{unit.what}: {len(data)} bytes where {unit.size} were planned")
    return data


def build_snapshot(files: Sequence[Hashed], units: Sequence[Unit], ids: Mapping[str, str], unix_time: str) -> Snapshot:
    """The revision as the Arweave source builds it from the gateway (sources/arweave.py
    ``_entry``): identity ``sha256:<File-SHA256>``, meta ``tx``, ``content_type``,
    ``file_version``, ``sections`` ([id, size] in order) and, for a file in one transaction,
    the alias ``ar:<tx>``."""
    sizes = {u.key: u.size for u in units}
    entries: dict[str, TreeEntry] = {}
    for h in files:
        txid = ids[_pointer(h)]
        meta: dict[str, object] = {"tx": txid, "content_type": h.content_type, "file_version": "0.0.0"}
        if h.sectioned:  # its tx holds the manifest of its sections, not its bytes: no ar: name
            keys = [f"section:{h.rel}:{i}" for i in range(len(h.sections))]
            meta["sections"] = [[ids[k], sizes[k]] for k in keys]
        else:
            meta["aliases"] = [f"ar:{txid}"]
        entries[h.rel] = TreeEntry.of_hash(h.file.size, ExpectedHash("sha256", h.sha256), meta)
    created = int(float(unix_time))
    info = {"manifest": ids["repo"], "unix_time": unix_time, "app_version": APP_VERSION}
    return Snapshot(entries, created if created > 0 else 0, info)
