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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoard.proxy.sources import Setting, all_settings, load_all
from hoard.store.config import DEFAULT_CHUNK_SIZE, StoreConfig
from hoard.store.errors import UsageError
from hoard.store.units import format_size, parse_size

__all__ = [
    "Settings",
    "DEFAULTS",
    "ENV",
    "HELP",
    "default_home",
    "load_settings",
    "source_settings",
    "parse_size",
    "format_size",
]

#: environment variable of each core setting (source settings declare their own)
ENV = {
    "home": "HOARD_HOME",
    "upstream": "HOARD_UPSTREAM",
    "listen": "HOARD_LISTEN",
    "public_url": "HOARD_PUBLIC_URL",
    "chunk_size": "HOARD_CHUNK_SIZE",
    "max_size": "HOARD_MAX_SIZE",
    "send_timeout": "HOARD_SEND_TIMEOUT",
    "max_connections": "HOARD_MAX_CONNECTIONS",
}

#: the core settings and their defaults (config.toml keys; source settings add theirs)
DEFAULTS: dict[str, Any] = {
    "upstream": None,
    "listen": "127.0.0.1:8090",
    "chunk_size": DEFAULT_CHUNK_SIZE,
    "max_size": None,
    "refs_ttl": 60.0,
    "public_url": None,
    "gc_grace": 600.0,
    "send_timeout": 60.0,
    "max_connections": None,
}

#: help of each core setting (flags, the README table)
HELP = {
    "home": "Store directory (default ~/.cache/hoard).",
    "upstream": "Parent hoard proxy to fill from, e.g. http://cache:8090.",
    "listen": "Address to listen on (default 127.0.0.1:8090).",
    "public_url": "URL clients reach this proxy at, for links it sends (default http://<listen>).",
    "chunk_size": "Chunk size of lazy fetches (default 8MiB).",
    "max_size": "Size gc trims the store to, e.g. 200GiB.",
    "refs_ttl": "Seconds a resolved branch or tag is trusted before asking the origin again.",
    "gc_grace": "Seconds a blob used (opened, served, fetched) is safe from gc.",
    "send_timeout": "Seconds a connection may make no progress (idle, or a client taking no bytes) before it is closed.",
    "max_connections": "Open client connections at most (default: from the file descriptor limit).",
}


def source_settings() -> dict[str, Setting]:
    """Every source's settings by name (the registry's, loaded on first use)."""
    return {setting.name: setting for _, setting in all_settings()}


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
    listen: str
    refs_ttl: float
    #: every source setting by name (``hf_endpoint``, ``arweave_gateway``, ...), parsed
    sources: Mapping[str, Any] = field(default_factory=dict)
    #: the local user's credentials per source, from each source's token variable (HF_TOKEN...)
    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
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
    unknown = set(data) - set(DEFAULTS) - set(source_settings())
    if unknown:
        known = ", ".join(sorted(set(DEFAULTS) | set(source_settings())))
        raise UsageError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))} (known: {known})")
    return data


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Apply precedence. ``flags`` holds values given as flags or env vars (None: unset)."""
    env = os.environ if environ is None else environ
    specs = load_all()
    home_flag = flags.get("home")
    home = Path(home_flag).expanduser() if home_flag else default_home(env)
    file_values = _read_config_file(home)

    def given(name: str) -> Any:
        value = flags.get(name)
        if value in (None, ()):
            value = file_values.get(name)
        return value

    def pick(name: str) -> Any:
        value = given(name)
        return DEFAULTS[name] if value is None else value

    chunk_size = parse_size(pick("chunk_size"))
    max_size = pick("max_size")
    try:
        StoreConfig(home=home, chunk_size=chunk_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sources: dict[str, Any] = {}
    for name, setting in source_settings().items():
        try:
            sources[name] = setting.parse(given(name))
        except (TypeError, ValueError):
            raise UsageError(f"{name}: {given(name)!r} is not a valid {setting.kind.__name__}") from None
    tokens = {spec.name: env[spec.token_env] for spec in specs.values() if spec.token_env and env.get(spec.token_env)}
    return Settings(
        home=home,
        chunk_size=chunk_size,
        max_size=None if max_size in (None, "", 0) else parse_size(max_size),
        upstream=pick("upstream") or None,
        listen=str(pick("listen")),
        refs_ttl=_number(pick("refs_ttl"), "refs_ttl"),
        sources=sources,
        tokens=tokens,
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


#: core settings in the configuration table, with their flags (None: config.toml only)
_CORE_ROWS = (
    ("home", "--home"), ("listen", "--listen"), ("public_url", "--public-url"), ("upstream", "--upstream"),
    ("chunk_size", "--chunk-size"), ("max_size", "--max-size"), ("refs_ttl", None), ("gc_grace", None),
    ("send_timeout", "--send-timeout"), ("max_connections", "--max-connections"),
)


def config_table() -> str:
    """The README's configuration table, made from the core settings and the registry."""
    rows = ["| setting | flag | environment | config.toml | default |", "| --- | --- | --- | --- | --- |"]
    for name, flag in _CORE_ROWS:
        default = "`~/.cache/hoard`" if name == "home" else _shown(DEFAULTS.get(name))
        what = HELP[name].split(" (default")[0].rstrip(".")
        env = f"`{ENV[name]}`" if name in ENV else ""
        key = "" if name == "home" else f"`{name}`"
        rows.append(f"| {what} | {f'`{flag}`' if flag else ''} | {env} | {key} | {default} |")
    for spec, setting in all_settings():
        what = f"{spec.name}: {setting.help.rstrip('.')}"
        rows.append(f"| {what} | `{setting.flag}` | `{setting.envvar}` | `{setting.name}` | {_shown(setting.default)} |")
    for spec in load_all().values():
        if spec.token_env:
            rows.append(f"| {spec.name}: the local user's token (mount, prefetch) | | `{spec.token_env}` | | none |")
    return "\n".join(rows)


def _shown(value: Any) -> str:
    if value in (None, (), ""):
        return "none"
    if isinstance(value, tuple):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, bool):
        return "off" if not value else "on"
    if isinstance(value, int) and value >= 1 << 20 and value % (1 << 20) == 0:
        return f"`{value >> 20}MiB`"
    return f"`{value}`"
