"""Configuration assembly: flags > environment > ``$HOARD_HOME/config.toml`` > defaults.

This is the only module that looks at the environment and the config file; every layer
below receives typed, frozen config objects. Click resolves "flag or environment variable"
for each option (``envvar=``, shown in ``--help``); what is still unset is taken from the
config file, then from the embedded defaults below.

``config.toml`` keys are the option names with underscores, e.g.::

    chunk_size = "8MiB"
    max_size = "200GiB"
    listen = "127.0.0.1:8090"
    hf_endpoint = "https://huggingface.co"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoard.store.config import DEFAULT_CHUNK_SIZE, StoreConfig
from hoard.store.errors import UsageError
from hoard.store.units import format_size, parse_size

__all__ = ["Settings", "DEFAULTS", "ENV", "default_home", "load_settings", "parse_size", "format_size"]

#: environment variable of each setting (also named in every flag's help)
ENV = {
    "home": "HOARD_HOME",
    "upstream": "HOARD_UPSTREAM",
    "hf_endpoint": "HOARD_HF_ENDPOINT",
    "arweave_gateway": "HOARD_ARWEAVE_GATEWAY",
    "github_url": "HOARD_GITHUB_URL",
    "torch_url": "HOARD_TORCH_URL",
    "listen": "HOARD_LISTEN",
    "public_url": "HOARD_PUBLIC_URL",
    "chunk_size": "HOARD_CHUNK_SIZE",
    "max_size": "HOARD_MAX_SIZE",
}

DEFAULTS: dict[str, Any] = {
    "upstream": None,
    "hf_endpoint": "https://huggingface.co",
    "arweave_gateway": "https://arweave.net",
    "github_url": "https://raw.githubusercontent.com",
    "torch_url": "https://download.pytorch.org",
    "listen": "127.0.0.1:8090",
    "chunk_size": DEFAULT_CHUNK_SIZE,
    "max_size": None,
    "refs_ttl": 60.0,
    "public_url": None,
    "gc_grace": 600.0,
    "send_timeout": 60.0,
    "max_connections": None,
}

def default_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", "~")).expanduser() / ".cache"
    return base / "hoard"


@dataclass(frozen=True)
class Settings:
    """Every setting after precedence is applied. Build layer configs from it."""

    home: Path
    chunk_size: int
    max_size: int | None
    upstream: str | None
    hf_endpoint: str
    arweave_gateway: str
    github_url: str
    torch_url: str
    listen: str
    refs_ttl: float
    hf_token: str | None
    #: the URL clients reach this proxy at (links it builds); None: its listen address
    public_url: str | None = None
    #: seconds a blob opened or served recently is safe from gc
    gc_grace: float = 600.0
    #: seconds a response may make no progress towards a client before it is cut
    send_timeout: float = 60.0
    #: open client connections at most (None: derived from the file descriptor limit)
    max_connections: int | None = None

    def store_config(self) -> StoreConfig:
        return StoreConfig(home=self.home, chunk_size=self.chunk_size, max_size=self.max_size, gc_grace=self.gc_grace)


def _read_config_file(home: Path) -> dict[str, Any]:
    path = home / "config.toml"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: {exc}") from None
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Apply precedence. ``flags`` holds values given as flags or env vars (None: unset)."""
    env = os.environ if environ is None else environ
    home_flag = flags.get("home")
    home = Path(home_flag).expanduser() if home_flag else default_home(env)
    file_values = _read_config_file(home)

    def pick(name: str) -> Any:
        value = flags.get(name)
        if value is None:
            value = file_values.get(name)
        if value is None:
            value = DEFAULTS[name]
        return value

    chunk_size = parse_size(pick("chunk_size"))
    max_size = pick("max_size")
    try:
        StoreConfig(home=home, chunk_size=chunk_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Settings(
        home=home,
        chunk_size=chunk_size,
        max_size=None if max_size in (None, "", 0) else parse_size(max_size),
        upstream=pick("upstream") or None,
        hf_endpoint=str(pick("hf_endpoint")).rstrip("/"),
        arweave_gateway=str(pick("arweave_gateway")).rstrip("/"),
        github_url=str(pick("github_url")).rstrip("/"),
        torch_url=str(pick("torch_url")).rstrip("/"),
        listen=str(pick("listen")),
        refs_ttl=float(pick("refs_ttl")),
        hf_token=env.get("HF_TOKEN") or None,
        public_url=(str(pick("public_url")).rstrip("/") or None) if pick("public_url") else None,
        gc_grace=_number(pick("gc_grace"), "gc_grace"),
        send_timeout=_number(pick("send_timeout"), "send_timeout"),
        max_connections=None if pick("max_connections") in (None, 0, "") else int(_number(pick("max_connections"), "max_connections")),
    )


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if number < 0:
        raise UsageError(f"{name} must not be negative, got {value!r}")
    return number
