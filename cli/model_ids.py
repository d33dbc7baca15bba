"""What the commands accept as an address: an address, or an infernet-ml model id.

``arweave/<owner>/<repo>:model.onnx,config.json`` (and ``huggingface/<org>/<name>:file``) is
infernet-ml's ``MlModelId``: a repo and some of its files. Commands that act on files (info,
ls, pin, unpin, rm, prefetch) act on the files it names, as if each were given as
``<repo>/<file>``; commands that act on a revision (export) take its repo. The parsing is the
store's (:func:`hoard.store.address.parse_target`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hoard.store.address import Address, parse_target

__all__ = ["Target", "read_target"]


@dataclass(frozen=True)
class Target:
    """An address (``files`` empty) or a model id: the repo address and the files it names."""

    addr: Address
    files: tuple[str, ...] = ()

    @property
    def is_model_id(self) -> bool:
        return bool(self.files)

    @property
    def addresses(self) -> list[Address]:
        """The file addresses a model id names, or the address itself."""
        if not self.files:
            return [self.addr]
        return [self.addr.with_path(f) for f in dict.fromkeys(self.files)]


def read_target(text: str, *, default_source: str | None = None) -> Target:
    """Parse a command's ADDRESS argument (InvalidAddress if it is neither form)."""
    addr, files = parse_target(text, default_source=default_source)
    return Target(addr, files)
