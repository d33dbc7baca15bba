"""The source registry: every origin adapter is one module here that declares itself.

A source module defines ``SPEC``, a :class:`SourceSpec`:

* ``info`` — the address-level facts the store needs (:class:`hoard.store.sources.SourceInfo`:
  name, default ref, whether refs move, repo kinds, whether the content has an origin);
* ``settings`` — its typed settings (:class:`Setting`: config key, flag, environment variable,
  default, help), from which the CLI builds its options, ``hoard --help`` its text and the
  README its configuration table;
* ``token_env`` — the environment variable holding the local user's credential for this
  origin, if any (a credential only ever reaches the origin it belongs to);
* ``build`` — a factory that makes the adapter from a :class:`BuildContext`.

:func:`load_all` imports every module of this package that defines ``SPEC`` (modules are light:
no aiohttp at import) and registers each source's facts with the store. Adding a source is
adding its module, its fake origin and its tests; nothing else lists sources.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hoard.store.sources import SourceInfo, register_source

if TYPE_CHECKING:
    from hoard.store.store import Store

    from ..http import HttpClient
    from ..origin import Source
    from ..reader import RangeReader

__all__ = ["Setting", "SourceSpec", "BuildContext", "load_all", "specs", "spec", "all_settings"]


@dataclass(frozen=True)
class Setting:
    """One setting of a source: ``hf_endpoint`` is ``--hf-endpoint``, ``HOARD_HF_ENDPOINT``
    and ``hf_endpoint = ...`` in config.toml."""

    name: str
    default: Any
    help: str
    env: str | None = None
    #: str, bool, float or int; a bool setting is a flag
    kind: type = str
    #: several values (repeat the flag, or separate them with commas)
    multiple: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envvar(self) -> str:
        return self.env or "HOARD_" + self.name.upper()

    def parse(self, value: Any) -> Any:
        """A value from a flag, the environment or config.toml, as this setting's type."""
        if value is None:
            return self.default
        if self.multiple:  # repeated flags, a list in config.toml, or comma-separated text
            items = value if isinstance(value, (list, tuple)) else [value]
            parts = [p for item in items for p in str(item).split(",")]
            out = tuple(p.strip().rstrip("/") for p in parts if p.strip())
            return out or self.default
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in ("1", "true", "yes", "on")
        if self.kind in (int, float):
            return self.kind(value)
        text = str(value).strip()
        return text.rstrip("/") if text.startswith(("http://", "https://")) else text


@dataclass(frozen=True)
class BuildContext:
    """What a source needs to build its adapter."""

    http: HttpClient
    reader: RangeReader
    store: Store
    #: every source setting (name -> parsed value): its own, and others' it builds on
    settings: Mapping[str, Any]
    refs_ttl: float = 60.0


@dataclass(frozen=True)
class SourceSpec:
    info: SourceInfo
    build: Callable[[BuildContext], Source]
    settings: tuple[Setting, ...] = ()
    #: environment variable of the local user's credential for this origin (HF_TOKEN, ...)
    token_env: str | None = None
    #: the registry order: lower first (``hoard --help``, the README table)
    order: int = 50
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name


_SPECS: dict[str, SourceSpec] = {}
_LOADED = False
_LOCK = threading.Lock()
_NOT_SOURCES = {"upstream"}


def load_all() -> dict[str, SourceSpec]:
    """Import every source module once; returns name -> spec in registry order."""
    global _LOADED
    with _LOCK:
        if not _LOADED:
            for mod in pkgutil.iter_modules(__path__):
                if mod.name.startswith("_") or mod.name in _NOT_SOURCES:
                    continue
                module = importlib.import_module(f"{__name__}.{mod.name}")
                found = getattr(module, "SPEC", None)
                if isinstance(found, SourceSpec):
                    _SPECS[found.name] = found
                    register_source(found.info)
            _LOADED = True
    return specs()


def specs() -> dict[str, SourceSpec]:
    return dict(sorted(_SPECS.items(), key=lambda kv: (kv[1].order, kv[0])))


def spec(name: str) -> SourceSpec | None:
    load_all()
    return _SPECS.get(name)


def all_settings() -> list[tuple[SourceSpec, Setting]]:
    """Every source setting, in registry order."""
    return [(s, setting) for s in load_all().values() for setting in s.settings]
