"""What the store knows about each source: the address-level facts, in one registry.

A source (``huggingface``, ``arweave``, ``local``, ...) is declared once, in its module under
:mod:`hoard.proxy.sources`, which registers a :class:`SourceInfo` here when it is imported
(:func:`hoard.proxy.sources.load_all` imports them all). The store needs only these facts —
a name is valid, which ref an address without ``@revision`` means, whether refs move at the
origin, whether content can be fetched again — and never imports an adapter. The ``local``
source belongs to the store itself and is registered below.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

__all__ = ["SourceInfo", "register_source", "source_info", "source_names", "is_known_source"]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class SourceInfo:
    """Address-level facts about one source."""

    name: str
    #: the ref an address without ``@revision`` means ("main", "latest", ...)
    default_ref: str = "main"
    #: False when refs only change locally (never re-resolved at an origin)
    refs_move: bool = True
    #: repo kinds written between source and owner (Hugging Face ``datasets``/``spaces``)
    kinds: tuple[str, ...] = ()
    #: False when the store holds the only copy (gc never collects it; only ``rm`` does)
    has_origin: bool = True
    #: False when a repo's files cannot be listed, only looked up one name at a time
    listable: bool = True
    #: a regular expression matching immutable revision ids (commits, manifest tx ids)
    revision_id: str = r"[0-9a-f]{40}"
    #: one line for ``hoard --help`` and the README
    summary: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"bad source name {self.name!r}")

    def is_revision_id(self, revision: str) -> bool:
        return re.fullmatch(self.revision_id, revision) is not None


_REGISTRY: dict[str, SourceInfo] = {}
_LOCK = threading.Lock()


def register_source(info: SourceInfo) -> None:
    """Declare a source (idempotent for the same facts; a conflicting redeclaration fails)."""
    with _LOCK:
        old = _REGISTRY.get(info.name)
        if old is not None and old != info:
            raise ValueError(f"source {info.name!r} is declared twice, differently")
        _REGISTRY[info.name] = info


def source_info(name: str) -> SourceInfo | None:
    return _REGISTRY.get(name)


def is_known_source(name: str) -> bool:
    return name in _REGISTRY


def source_names() -> tuple[str, ...]:
    """Registered sources in a stable order: the order they were declared."""
    return tuple(_REGISTRY)


register_source(
    SourceInfo(
        "local",
        default_ref="main",
        refs_move=False,
        has_origin=False,
        summary="content added with `hoard add` or `hoard import`; the store is its only copy",
    )
)
