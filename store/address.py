"""Artifact addresses: ``<source>/<owner>/<repo>[@<revision>]/<path>`` (DESIGN.md §1).

Parsing is strict because addresses arrive from URLs, FUSE lookups and the command line:
``..`` and ``.`` segments, empty segments, NUL bytes and segments over 255 bytes are refused
(:class:`InvalidAddress` / :class:`NameTooLong`), so no address can name anything outside its
repo. A revision is URL-quoted inside the address (``refs%2Fpr%2F1``) and unquoted here; it
may hold ``/`` (``refs/pr/1``), and each of its segments passes the same checks as a path
segment, plus no control characters (git refuses them in ref names too): a revision of ``..``
would otherwise turn ``/api/models/org/m/revision/..`` into another URL at the origin.

Which sources exist, and which repo kinds a source writes before the owner (Hugging Face
datasets and spaces live under ``huggingface/datasets/<org>/<name>``: the Hub reserves those two
names, so no org can clash), comes from the source registry (:mod:`hoard.store.sources`).

Also accepted where a command takes an address: infernet-ml's model ids,
``arweave/<owner>/<repo>:file1,file2`` — the repo and only the named files
(:func:`parse_target`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from .errors import InvalidAddress, NameTooLong
from .sources import source_info, source_names

__all__ = [
    "Address",
    "parse_address",
    "parse_target",
    "parse_prefix",
    "check_segment",
    "check_path",
    "check_revision",
]

_MAX_SEGMENT = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_segment(seg: str, what: str = "name") -> str:
    """Validate one path segment; returns it unchanged."""
    if seg == "":
        raise InvalidAddress(f"empty {what} segment")
    if seg in (".", ".."):
        raise InvalidAddress(f"{what} segment {seg!r} is not allowed")
    if "\0" in seg:
        raise InvalidAddress(f"NUL byte in {what}")
    if "/" in seg:
        raise InvalidAddress(f"'/' in {what} segment {seg!r}")
    if len(seg.encode("utf-8", "surrogateescape")) > _MAX_SEGMENT:
        raise NameTooLong(f"{what} segment longer than {_MAX_SEGMENT} bytes")
    return seg


def check_path(path: str) -> str:
    """Validate a file path inside a repo (``a/b/c.bin``); returns it normalised."""
    if path.startswith("/") or path.endswith("/"):
        raise InvalidAddress(f"path {path!r} must be relative and name a file")
    for seg in path.split("/"):
        check_segment(seg, "path")
    return path


def check_revision(revision: str) -> str:
    """Validate a revision (branch, tag, commit, ``refs/pr/N``); returns it unchanged.

    Each ``/``-separated segment must pass :func:`check_segment` (so no ``.``, ``..`` or
    empty segment), and no control character may appear anywhere.
    """
    if revision == "":
        raise InvalidAddress("empty revision")
    if _CONTROL.search(revision):
        raise InvalidAddress(f"control character in revision {revision!r}")
    for seg in revision.split("/"):
        check_segment(seg, "revision")
    return revision


@dataclass(frozen=True)
class Address:
    """A parsed address. ``path`` is "" for a repo; ``revision`` None for the default."""

    source: str
    owner: str
    repo: str
    revision: str | None = None
    path: str = ""
    kind: str = ""  # Hugging Face repo kind: "" (model), "datasets" or "spaces"

    @property
    def repo_key(self) -> str:
        """The key of the repo in the index: ``source/[kind/]owner/repo``."""
        kind = f"{self.kind}/" if self.kind else ""
        return f"{self.source}/{kind}{self.owner}/{self.repo}"

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.repo}"

    def with_revision(self, revision: str | None) -> Address:
        return replace(self, revision=revision)

    def with_path(self, path: str) -> Address:
        return replace(self, path=path)

    def __str__(self) -> str:
        out = self.repo_key
        if self.revision is not None:
            out += "@" + quote(self.revision, safe="")
        if self.path:
            out += "/" + self.path
        return out


def _split(text: str) -> list[str]:
    if "\0" in text:
        raise InvalidAddress("NUL byte in address")
    text = text.strip()
    while text.startswith("/"):
        text = text[1:]
    if text.endswith("/"):
        text = text[:-1]
    return text.split("/") if text else []


def _known(source: str) -> None:
    if source_info(source) is None:
        raise InvalidAddress(f"unknown source {source!r}; expected one of {', '.join(source_names())}")


def parse_address(text: str, *, default_source: str | None = None) -> Address:
    """Parse a repo or file address; at least ``source/owner/repo`` is required.

    With ``default_source``, a bare ``owner/repo[/path]`` (a Hugging Face repo id, say) is
    accepted too, when its first segment is not a source name.
    """
    parts = _split(text)
    if default_source and (not parts or source_info(parts[0]) is None):
        parts = [default_source, *parts]
    if not parts:
        raise InvalidAddress("empty address")
    source = parts[0]
    _known(source)
    kind = ""
    rest = parts[1:]
    kinds = source_info(source).kinds  # type: ignore[union-attr]
    if rest and rest[0] in kinds:
        kind, rest = rest[0], rest[1:]
    if len(rest) < 2:
        raise InvalidAddress(f"address {text[:200]!r} must name <source>/<owner>/<repo>")
    owner = check_segment(rest[0], "owner")
    repo_seg = rest[1]
    revision = None
    if "@" in repo_seg:
        repo_seg, _, rev = repo_seg.partition("@")
        revision = unquote(rev)
        if not revision:
            raise InvalidAddress("empty revision after '@'")
        check_revision(revision)
    repo = check_segment(repo_seg, "repo")
    path = "/".join(rest[2:])
    if path:
        check_path(path)
    return Address(source, owner, repo, revision, path, kind)


def parse_target(text: str, *, default_source: str | None = None) -> tuple[Address, tuple[str, ...]]:
    """An address, or an infernet-ml model id ``<source>/<owner>/<repo>:file1,file2``.

    Returns the address and the files a model id names (empty for a plain address). The
    model-id form applies only when the text names a repo and nothing after it (infernet-ml
    splits its ids on the first ``:``).
    """
    head, colon, files = text.partition(":")
    if colon and "/" not in files and not text.startswith(("http://", "https://")):
        try:
            addr = parse_address(head, default_source=default_source)
        except InvalidAddress:
            addr = None
        if addr is not None and not addr.path:
            names = tuple(f.strip() for f in files.split(",") if f.strip())
            if not names:
                raise InvalidAddress(f"model id {text[:200]!r} names no file after ':'")
            return addr, tuple(check_path(n) for n in names)
    return parse_address(text, default_source=default_source), ()


def parse_prefix(text: str) -> tuple[str, ...]:
    """Parse a listing prefix (``""``, ``huggingface``, ``huggingface/org``): its segments."""
    parts = _split(text)
    if parts:
        _known(parts[0])
    for seg in parts:
        check_segment(seg)
    return tuple(parts)
