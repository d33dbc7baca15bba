"""Artifact addresses: ``<source>/<owner>/<repo>[@<revision>]/<path>`` (DESIGN.md §1).

Parsing is strict because addresses arrive from URLs, FUSE lookups and the command line:
``..`` and ``.`` segments, empty segments, NUL bytes and segments over 255 bytes are refused
(:class:`InvalidAddress` / :class:`NameTooLong`), so no address can name anything outside its
repo. A revision is URL-quoted inside the address (``refs%2Fpr%2F1``) and unquoted here; it
may hold ``/`` (``refs/pr/1``), and each of its segments passes the same checks as a path
segment, plus no control characters (git refuses them in ref names too): a revision of ``..``
would otherwise turn ``/api/models/org/m/revision/..`` into another URL at the origin.

Hugging Face datasets and spaces live under ``huggingface/datasets/<org>/<name>`` and
``huggingface/spaces/<org>/<name>``: the Hub reserves those two names, so no org can clash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from .errors import InvalidAddress, NameTooLong

__all__ = [
    "Address",
    "SOURCES",
    "HF_KINDS",
    "parse_address",
    "parse_prefix",
    "check_segment",
    "check_path",
    "check_revision",
]

SOURCES = ("huggingface", "arweave", "onnx", "torch", "url", "local")
HF_KINDS = ("datasets", "spaces")
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


def parse_address(text: str, *, default_source: str | None = None) -> Address:
    """Parse a repo or file address; at least ``source/owner/repo`` is required.

    With ``default_source``, a bare ``owner/repo[/path]`` (a Hugging Face repo id, say) is
    accepted too, when its first segment is not a source name.
    """
    parts = _split(text)
    if default_source and (not parts or parts[0] not in SOURCES):
        parts = [default_source, *parts]
    if not parts:
        raise InvalidAddress("empty address")
    source = parts[0]
    if source not in SOURCES:
        raise InvalidAddress(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    kind = ""
    rest = parts[1:]
    if source == "huggingface" and rest and rest[0] in HF_KINDS:
        kind, rest = rest[0], rest[1:]
    if len(rest) < 2:
        raise InvalidAddress(f"address {text!r} must name <source>/<owner>/<repo>")
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


def parse_prefix(text: str) -> tuple[str, ...]:
    """Parse a listing prefix (``""``, ``huggingface``, ``huggingface/org``): its segments."""
    parts = _split(text)
    if parts and parts[0] not in SOURCES:
        raise InvalidAddress(f"unknown source {parts[0]!r}; expected one of {', '.join(SOURCES)}")
    for seg in parts:
        check_segment(seg)
    return tuple(parts)
