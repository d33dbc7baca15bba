"""Reading and writing hoard bundles as streams: a ``.tar`` or ``.tar.zst`` file, or a directory.

A bundle written by this module is one self-describing file: a tar whose members are, in
this order,

1. ``hoard-export.json`` — the manifest: every revision, its tree, and ``blobs``, the size of
   every blob that follows (so a reader knows everything before the first blob byte);
2. ``blobs/<b3>`` — each blob once, sorted, read-only, mtime 0 (the same store gives the same
   bytes);
3. ``hoard-end.json`` — ``{"blobs": n, "bytes": total}``: proof that the tar was read to its
   end. A bundle cut short anywhere before it is missing it (or a member's bytes).

Past the tar's own end, the stream must be whole too: a ``.tar`` ends with tar's end-of-archive
zero blocks (its size a multiple of 512), and a ``.tar.zst`` with a second, tiny zstd frame
holding :data:`ZSTD_TRAILER` — zstd's decoder cannot tell a cut stream from a finished one, and
a cut anywhere, even in the last frame's checksum, loses that trailer. The reader reports a
whole stream as a last pseudo-member, :data:`STREAM_END`; the importer refuses a bundle whose
manifest announces an end member and whose stream did not end so.

Which form :func:`write_bundle` writes depends on DEST:

* an existing directory (or a link to one), or a DEST given with a trailing path separator
  (``directory=True``): a directory of the same members, the layout older hoards wrote for
  any DEST without a ``.tar``/``.zst`` suffix (still read, still written on request);
* else a name ending in ``.zst`` (``fleet.tar.zst``): the tar compressed as it is written, by
  zstd's own threads (``threads=-1``: one per core), never held whole in memory or on disk;
* else (``fleet.tar``, ``fleet``, any other name): the tar, plain, in one file.

A file is written under a temporary name next to DEST (created exclusively: never through a
link already there) and renamed onto DEST only when complete, so a failed export never leaves
something that looks like a bundle; an existing file, or a link, at DEST is replaced by the
rename, never written through.

Reading (:func:`bundle_members`) streams the members of any of the three forms, whatever
wrote them, checking each before its bytes are used: a plain file or folder with a relative
name inside the bundle; an absolute name, ``..``, a link, a device or a FIFO refuses the
whole bundle (:class:`IntegrityError`). A ``.tar.zst`` is recognised by its magic number,
not its name. Decompression output is bounded per read, so a hostile bundle cannot make a
read take unbounded memory.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import IntegrityError

__all__ = ["BUNDLE_MANIFEST", "BUNDLE_END", "STREAM_END", "Member", "is_zstd", "is_bundle_file", "bundle_members",
           "bundle_form", "write_bundle"]

BUNDLE_MANIFEST = "hoard-export.json"
BUNDLE_END = "hoard-end.json"
#: the pseudo-member reported after the last one when the stream ended whole
STREAM_END = "\0end"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_TRAILER = b"\nhoard bundle: end of stream\n"
_READ = 1 << 20


@dataclass
class Member:
    """One member of a bundle: its name, size, and a reader of its bytes (valid until the
    next member is asked for)."""

    name: str
    size: int
    stream: IO[bytes]


def is_zstd(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == ZSTD_MAGIC


def is_bundle_file(path: Path) -> bool:
    """A regular file holding a tar or a zstd stream (of a tar)."""
    return path.is_file() and (is_zstd(path) or tarfile.is_tarfile(path))


def _check_member(member: tarfile.TarInfo) -> None:
    """A bundle member must be a plain file or folder with a relative name inside the bundle."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise IntegrityError(f"bundle member {member.name!r} points outside the bundle; refused")
    if not (member.isreg() or member.isdir()):
        kind = ("symbolic link" if member.issym() else "hard link" if member.islnk()
                else "FIFO" if member.isfifo() else "device" if member.isdev() else "special file")
        raise IntegrityError(f"bundle member {member.name!r} is a {kind}; a bundle holds only files")


class _Tail:
    """A reader passing bytes through, keeping count and the last few (to check how the
    stream ends once the tar inside it is read)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.count = 0
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        self.tail = (self.tail + data[-64:])[-64:]
        return data  # type: ignore[no-any-return]

    def drain(self) -> None:
        while self.read(_READ):
            pass


class _Guarded(io.RawIOBase):
    """A member's bytes; a cut or damaged archive found while reading them is an
    :class:`IntegrityError` (the one place such errors are translated)."""

    def __init__(self, stream: IO[bytes], where: str) -> None:
        super().__init__()
        self.stream, self.where = stream, where

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except Exception as exc:
            if isinstance(exc, tarfile.TarError) or type(exc).__name__ == "ZstdError":
                raise IntegrityError(f"{self.where}: not a usable bundle (truncated or damaged: {exc}); "
                                     "nothing was imported") from None
            raise


def _tar_members(fileobj: _Tail, where: str, whole: Callable[[_Tail], bool]) -> Iterator[Member]:
    """The tar's members; then, if the stream ends as ``whole`` says it must, STREAM_END."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:  # type: ignore[call-overload]
            for info in tar:
                _check_member(info)
                if info.isreg():
                    stream = tar.extractfile(info)
                    assert stream is not None
                    yield Member(PurePosixPath(info.name).as_posix(), info.size, _Guarded(stream, where))  # type: ignore[arg-type]
    except tarfile.TarError as exc:  # a truncated or malformed archive
        raise IntegrityError(f"{where}: not a usable bundle (truncated or damaged: {exc}); nothing was imported") from None
    fileobj.drain()
    if whole(fileobj):
        yield Member(STREAM_END, 0, io.BytesIO())


def _tar_ends(t: _Tail) -> bool:
    """A plain tar ends with its end-of-archive zero blocks, in whole 512-byte blocks."""
    return t.count % 512 == 0 and t.tail == bytes(len(t.tail)) and t.count >= 1024


def _zstd_ends(t: _Tail) -> bool:
    return t.tail.endswith(ZSTD_TRAILER)


def _dir_members(root: Path) -> Iterator[Member]:
    """The manifest first, then the files under ``blobs/``, then the end marker; only regular
    files (a link in the bundle is refused, never followed)."""
    names = [BUNDLE_MANIFEST]
    blobs = root / "blobs"
    if blobs.is_dir() and not blobs.is_symlink():
        names += [f"blobs/{e.name}" for e in sorted(os.scandir(blobs), key=lambda e: e.name)]
    names.append(BUNDLE_END)
    for name in names:  # (a directory has no stream to cut: it ends whole)
        path = root / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            kind = "symbolic link" if stat.S_ISLNK(mode) else "special file"
            raise IntegrityError(f"bundle member {name!r} is a {kind}; a bundle holds only files")
        with open(path, "rb") as fh:
            yield Member(name, os.fstat(fh.fileno()).st_size, fh)
    yield Member(STREAM_END, 0, io.BytesIO())


def bundle_members(source: Path) -> Iterator[Member]:
    """Every member of a bundle (directory, tar or tar.zst), in stored order, each checked."""
    if source.is_dir():
        yield from _dir_members(source)
        return
    with open(source, "rb") as raw:
        if raw.read(4) == ZSTD_MAGIC:
            raw.seek(0)
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=_READ, read_across_frames=True)
            try:
                yield from _tar_members(_Tail(reader), str(source), _zstd_ends)
            except zstandard.ZstdError as exc:  # damaged compressed data
                raise IntegrityError(f"{source}: not a usable bundle (damaged zstd data: {exc}); nothing was imported") from None
        else:
            raw.seek(0)
            yield from _tar_members(_Tail(raw), str(source), _tar_ends)


# -- writing ------------------------------------------------------------------------------------


@contextmanager
def _atomic(dest: Path) -> Iterator[IO[bytes]]:
    """A file written under a temporary name next to ``dest``, synced and renamed onto it
    only when the block ends without an error (removed otherwise)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    if os.path.lexists(tmp):
        tmp.unlink()  # left by a killed export of the same pid (or planted): never written through
    try:
        with open(tmp, "xb") as fh:  # exclusive: a link that appeared meanwhile is refused
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _add(tar: tarfile.TarFile, name: str, size: int, fileobj: IO[bytes], mode: int = 0o444) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    tar.addfile(info, fileobj)


def _write_tar(out: IO[bytes], manifest: bytes, blobs: list[tuple[str, int]], open_blob: Callable[[str], IO[bytes]],
               progress: Callable[[int], None] | None) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, BUNDLE_MANIFEST, len(manifest), io.BytesIO(manifest), 0o644)
        for b3, size in blobs:
            with open_blob(b3) as fh:
                _add(tar, f"blobs/{b3}", size, fh)
            if progress:
                progress(size)
        end = json.dumps({"blobs": len(blobs), "bytes": sum(s for _, s in blobs)}).encode()
        _add(tar, BUNDLE_END, len(end), io.BytesIO(end), 0o644)


def bundle_form(dest: Path, directory: bool = False) -> str:
    """The form a bundle written to ``dest`` takes: ``"dir"`` when ``directory`` is asked for
    (a DEST given with a trailing separator) or ``dest`` is an existing directory, else
    ``"tar.zst"`` for a name ending in ``.zst``, else ``"tar"``."""
    if directory or dest.is_dir():
        return "dir"
    return "tar.zst" if dest.name.endswith(".zst") else "tar"


def write_bundle(dest: Path, manifest: dict[str, Any], blobs: list[tuple[str, int]],
                 open_blob: Callable[[str], IO[bytes]], progress: Callable[[int], None] | None = None,
                 *, directory: bool = False) -> str:
    """Write a bundle of ``manifest`` and ``blobs`` ((b3, size), read with ``open_blob``) to
    ``dest`` in the form :func:`bundle_form` names (see the module docstring); returns it."""
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    form = bundle_form(dest, directory)
    if form == "dir":
        _write_dir(dest, raw, blobs, open_blob, progress)
    elif form == "tar.zst":
        import zstandard

        with _atomic(dest) as fh:
            compressor = zstandard.ZstdCompressor(level=3, threads=-1, write_checksum=True)
            with compressor.stream_writer(fh, closefd=False) as zfh:
                _write_tar(zfh, raw, blobs, open_blob, progress)  # type: ignore[arg-type]
            fh.write(zstandard.ZstdCompressor(write_checksum=False).compress(ZSTD_TRAILER))
    else:
        with _atomic(dest) as fh:
            _write_tar(fh, raw, blobs, open_blob, progress)
    return form


def _write_dir(dest: Path, manifest: bytes, blobs: list[tuple[str, int]], open_blob: Callable[[str], IO[bytes]],
               progress: Callable[[int], None] | None) -> None:
    """The same members as files under ``dest`` (through :class:`~.safefs.Destination`, which
    never writes through a link leading out of it)."""
    from .safefs import Destination

    out = Destination(dest)
    for b3, size in blobs:
        with open_blob(b3) as src:
            out.mkdir("blobs")
            target = out.path("blobs", b3)
            if os.path.lexists(target):
                target.unlink()
            with open(target, "xb") as dst:  # exclusive: never through a link that appeared
                while chunk := src.read(_READ):
                    dst.write(chunk)
        if progress:
            progress(size)
    out.write_text((BUNDLE_MANIFEST,), manifest.decode())
    end = json.dumps({"blobs": len(blobs), "bytes": sum(s for _, s in blobs)})
    out.write_text((BUNDLE_END,), end)
