"""Importing a hoard bundle (a directory, a ``.tar`` or a ``.tar.zst``): all or nothing.

A bundle is untrusted input: it may come from another machine, and ``hoard import`` writes what
it says into the index. The import runs in three steps, and the store changes only in the
last:

1. **read and verify**: the members are streamed once (bundle_io.py checks each: no link,
   device, absolute or ``..`` name). The manifest is parsed strictly (bundle_manifest.py);
   a revision the store holds with another tree refuses the bundle at once. Every blob the
   store still needs is copied into a private folder under ``$HOARD_HOME/tmp`` while its
   BLAKE3 and every upstream hash its files promise (sha256, git sha1) are computed, then
   synced. A blob must hash to the BLAKE3 it is named by, have the size the manifest gives,
   and match each expected hash; a blob the store already has is skipped unread. (A bundle
   whose blobs come before its manifest, as a foreign tar may, has all hashes computed, as
   nothing says yet which are needed.)
2. **check**: the stream must have reached its end member and ended whole after it (when the
   manifest announces one),
   every needed blob must be there and verified, and no revision may replace a stored one.
   A truncated or tampered bundle fails here or in step 1 — and the store is as it was.
3. **add**: the verified files are published into the store by hard link (no copy, no second
   hash), named by their identities and expected hashes, then each revision is recorded, only
   with all its content, checked under the shared gc lock in the transaction that records it;
   a blob gc took meanwhile is published again from the verified copy
   (:meth:`Store.put_snapshot_if_absent`). Every blob of a revision no origin can give back
   (``local``, ``no_origin``) is copied for that, even one the store had; a revision with an
   origin whose blob was in the store before and went since is recorded without it (its
   origin gives it back). ``progress`` is told the size of each blob just before it is added;
   ``reading``, the bytes read from the bundle.

The same bundle again adds nothing (every identity resolves, every revision is stored with the
same tree). A revision already stored is never replaced (the check is made again in the
transaction that would record it, so another process storing it meanwhile cannot slip in).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .blobs import publish
from .bundle_io import BUNDLE_END, BUNDLE_MANIFEST, STREAM_END, Member, bundle_members
from .bundle_manifest import BUNDLE_FORMAT, Bundle, Manifest, parse_manifest
from .errors import IntegrityError, StoreFull
from .hashing import new_blake3
from .records import TreeEntry
from .retention import LOCAL_PREFIX
from .store import Store, same_tree

__all__ = ["BUNDLE_MANIFEST", "BUNDLE_FORMAT", "ImportReport", "Bundle", "import_bundle", "read_manifest_file"]

Progress = Callable[[int], None]
_BLOB = re.compile(r"blobs/([0-9a-f]{64})")
_BLOCK = 4 << 20


@dataclass
class ImportReport:
    """What an import added: blobs, bytes, revisions; and what it left out, with why."""

    kind: str
    blobs: int = 0
    bytes: int = 0
    revisions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "blobs": self.blobs, "bytes": self.bytes,
                "revisions": self.revisions, "skipped": self.skipped}


@dataclass
class _Staged:
    """A blob copied out of the bundle: where, its size, and the hashes computed over it."""

    path: Path
    size: int
    digests: dict[str, str]


def _hashers(kinds: set[str], size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"blake3": new_blake3()}
    if "sha256" in kinds:
        out["sha256"] = hashlib.sha256()
    if "gitsha1" in kinds:
        out["gitsha1"] = hashlib.sha1(b"blob %d\0" % size)
    return out


class _Import:
    """One import's state: the manifest once read, the blobs staged, what the store lacks."""

    def __init__(self, store: Store, source: Path, stage: Path, reading: Progress | None) -> None:
        self.store, self.source, self.stage, self.reading = store, source, stage, reading
        self.manifest: Manifest | None = None
        self.staged: dict[str, _Staged] = {}
        self.ended = False  # the end member was read
        self.whole = False  # and the stream ended as it must after it
        self.wanted: dict[str, set[str]] = {}  # b3 -> hash kinds to check (once the manifest is known)
        self.fresh: set[str] = set()  # repo@rev of the revisions the store does not hold

    # -- step 1 ----------------------------------------------------------------------------------

    def read(self) -> None:
        for member in bundle_members(self.source):
            if member.name == BUNDLE_MANIFEST:
                self._manifest(member)
            elif member.name == BUNDLE_END:
                self.ended = True
            elif member.name == STREAM_END:
                self.whole = self.ended
            elif (m := _BLOB.fullmatch(member.name)) and m.group(1) not in self.staged:
                b3 = m.group(1)
                if self.manifest is None:
                    self.staged[b3] = self._copy(member, b3, {"sha256", "gitsha1"})
                elif b3 in self.wanted:
                    self.staged[b3] = self._copy(member, b3, self.wanted[b3])

    def _manifest(self, member: Member) -> None:
        if self.manifest is not None:
            raise IntegrityError(f"{self.source}: the bundle holds {BUNDLE_MANIFEST} twice")
        self.manifest = parse_manifest(member.stream.read(), f"{self.source}: {BUNDLE_MANIFEST}")
        for bundle in self.manifest.bundles:
            _check_not_replacing(self.store, bundle)
        self.wanted = self._needs()

    def _needs(self) -> dict[str, set[str]]:
        """b3 -> hash kinds, of every blob the store lacks for a revision it does not hold
        (all of an origin-less revision's: nothing else could give them back if gc took them);
        the kinds are those of every file of those revisions the blob is, all checked."""
        assert self.manifest is not None
        fresh = [b for b in self.manifest.bundles if self.store.get_snapshot(b.addr.repo_key, b.revision) is None]
        self.fresh = {b.key for b in fresh}
        needed = {b.blake3[path] for b in fresh for path, entry in b.snapshot.files.items()
                  if _origin_less(b) or self.store.resolve(entry.identity) is None}
        out: dict[str, set[str]] = {b3: set() for b3 in needed}
        for bundle in fresh:
            for path, entry in bundle.snapshot.files.items():
                b3 = bundle.blake3[path]
                if b3 in out and entry.expected is not None and entry.expected.kind != "blake3":
                    out[b3].add(entry.expected.kind)
        return out

    def _copy(self, member: Member, b3: str, kinds: set[str]) -> _Staged:
        """Copy one blob into the staging folder, hashing it on the way; synced."""
        path = self.stage / b3
        hashers = _hashers(kinds, member.size)
        size = 0
        try:
            with open(path, "xb") as out:
                while block := member.stream.read(_BLOCK):
                    for h in hashers.values():
                        h.update(block)
                    out.write(block)
                    size += len(block)
                    if self.reading:
                        self.reading(len(block))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreFull(f"no space left in {self.store.home} to import {self.source}") from exc
            raise
        return _Staged(path, size, {k: h.hexdigest() for k, h in hashers.items()})

    # -- step 2 ----------------------------------------------------------------------------------

    def check(self) -> Manifest:
        if self.manifest is None:
            raise IntegrityError(f"{self.source}: the bundle has no {BUNDLE_MANIFEST}")
        if self.manifest.end and not self.whole:
            where = "after" if self.ended else "before"
            raise IntegrityError(f"{self.source}: the bundle is truncated (its stream is cut {where} {BUNDLE_END}); "
                                 "nothing was imported")
        for bundle in self.manifest.bundles:
            _check_not_replacing(self.store, bundle)
            for path, entry in bundle.snapshot.files.items() if bundle.key in self.fresh else ():
                if bundle.blake3[path] in self.wanted:
                    self._verify(path, entry, bundle.blake3[path])
        return self.manifest

    def _verify(self, path: str, entry: TreeEntry, named: str) -> None:
        staged = self.staged.get(named)
        if staged is None:
            raise IntegrityError(f"bundle blob blobs/{named} (for {path}) is missing: the bundle is incomplete; "
                                 "nothing was imported")
        if staged.size != entry.size:
            raise IntegrityError(f"{path}: bundle blob holds {staged.size} bytes, manifest says {entry.size}")
        if staged.digests["blake3"] != named:
            raise IntegrityError(f"{path}: blake3 mismatch: bundle blob is named {named}, "
                                 f"hashes to {staged.digests['blake3']}")
        exp = entry.expected
        if exp is not None:
            got = staged.digests.get("blake3" if exp.kind == "blake3" else exp.kind)
            if got is None or not (got.startswith(exp.hex) if exp.prefix else got == exp.hex):
                raise IntegrityError(f"{path}: {exp.kind} mismatch: expected {exp.hex}, got {got}")

    # -- step 3 ----------------------------------------------------------------------------------

    def add(self, report: ImportReport, progress: Progress | None) -> None:
        assert self.manifest is not None
        order = [b.blake3[p] for b in self.manifest.bundles for p in sorted(b.blake3)]  # the files' order
        for b3 in [x for x in dict.fromkeys(order) if x in self.wanted]:
            if progress:
                progress(self.staged[b3].size)
            if self._publish(b3):
                report.blobs += 1
                report.bytes += self.staged[b3].size
        for bundle in self.manifest.bundles:
            self._record(bundle, report)

    def _aliases(self, b3: str) -> list[str]:
        assert self.manifest is not None
        names: set[str] = set()
        for bundle in self.manifest.bundles:
            for path, entry in bundle.snapshot.files.items():
                if bundle.blake3[path] == b3:
                    names.add(entry.identity)
                    if entry.expected is not None and entry.expected.alias:
                        names.add(entry.expected.alias)
        return sorted(n for n in names if n != f"b3:{b3}")

    def _publish(self, b3: str) -> bool:
        staged = self.staged[b3]
        os.chmod(staged.path, 0o444)
        return publish(self.store.layout, self.store.index, staged.path, b3, staged.size, self._aliases(b3),
                       keep_src=True)

    def _record(self, bundle: Bundle, report: ImportReport) -> None:
        key, rev = bundle.addr.repo_key, bundle.revision
        stored = self.store.get_snapshot(key, rev)
        if stored is not None:
            if not same_tree(stored, bundle.snapshot):
                raise _replacing(bundle)  # another process stored another tree meanwhile
            report.skipped.append(f"{key}@{rev} (already in the store)")
            return

        def restore(missing: list[str]) -> None:
            """Publish again, from the verified copy, what gc took before the record."""
            for path in missing:
                if bundle.blake3[path] not in self.staged:
                    raise _Unrestorable(path)
                self._publish(bundle.blake3[path])

        try:
            stored = self.store.put_snapshot_if_absent(key, rev, bundle.snapshot, bundle.refs, restore=restore)
        except _Unrestorable:
            # a blob the store had before the import, taken by gc since: its origin gives it back
            # (an origin-less revision's blobs are all staged, so it never gets here)
            stored = self.store.put_snapshot_if_absent(key, rev, bundle.snapshot, bundle.refs)
        if stored is not None:
            raise _replacing(bundle)  # another process stored another tree meanwhile
        report.revisions.append(f"{key}@{rev}")


class _Unrestorable(Exception):
    """A file whose blob gc took during the import and the bundle's copy was not kept."""


def _origin_less(bundle: Bundle) -> bool:
    return bundle.addr.repo_key.startswith(LOCAL_PREFIX) or bool(bundle.snapshot.info.get("no_origin"))


def _check_not_replacing(store: Store, bundle: Bundle) -> None:
    stored = store.get_snapshot(bundle.addr.repo_key, bundle.revision)
    if stored is not None and not same_tree(stored, bundle.snapshot):
        raise _replacing(bundle)


def _replacing(bundle: Bundle) -> IntegrityError:
    return IntegrityError(
        f"{bundle.key} is already stored with different files; "
        "a revision never changes, so the bundle is refused and the store left as it was"
    )


@contextmanager
def _staging(store: Store) -> Iterator[Path]:
    """A private folder under the store's tmp (same filesystem: blobs are linked from it)."""
    path = store.layout.tmp_file("import")
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def import_bundle(store: Store, source: Path, progress: Progress | None = None,
                  reading: Progress | None = None) -> ImportReport:
    """Import a bundle (directory, tar or tar.zst): verify everything, then add it."""
    report = ImportReport("hoard")
    with _staging(store) as stage:
        job = _Import(store, source, stage, reading)
        job.read()
        job.check()
        job.add(report, progress)
    return report


def read_manifest_file(path: Path) -> Manifest:
    """The manifest of a directory bundle (for tools that inspect one)."""
    return parse_manifest(path.read_bytes(), str(path))

