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
    "FLAGS",
    "MULTIPLE",
    "HELP",
    "default_home",
    "load_settings",
    "settings_from_environment",
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
    "origin_connections": "HOARD_ORIGIN_CONNECTIONS",
    "blob_store": "HOARD_BLOB_STORE",
    "s3_endpoint": "AWS_ENDPOINT_URL",
    "blob_store_private": "HOARD_BLOB_STORE_PRIVATE",
}

#: core settings that are on/off flags, and those that may be given several times
FLAGS = frozenset({"blob_store_private"})
MULTIPLE = frozenset({"upstream"})

#: the core settings and their defaults (config.toml keys; source settings add theirs)
DEFAULTS: dict[str, Any] = {
    "upstream": None,
    "listen": "127.0.0.1:8090",
    "chunk_size": DEFAULT_CHUNK_SIZE,
    "max_size": None,
    "refs_ttl": 60.0,
    "public_url": None,
    "gc_grace": 600.0,
    "gc_high_water": 0.95,
    "gc_low_water": 0.80,
    "send_timeout": 60.0,
    "max_connections": None,
    "origin_connections": 8,
    "blob_store": None,
    "s3_endpoint": None,
    "blob_store_private": False,
}

#: help of each core setting (flags, the README table)
HELP = {
    "home": "Store directory (default ~/.cache/hoard).",
    "upstream": "Parent hoard proxies to fill from, in order of preference (repeat the flag or separate with commas), e.g. http://cache:8090.",
    "listen": "Address to listen on (default 127.0.0.1:8090).",
    "public_url": "URL clients reach this proxy at, for links it sends (default http://<listen>).",
    "chunk_size": "Chunk size of lazy fetches (default 8MiB).",
    "max_size": "Size gc trims the store to, e.g. 200GiB.",
    "refs_ttl": "Seconds a resolved branch or tag is trusted before asking the origin again.",
    "gc_grace": "Seconds a blob used (opened, served, fetched) is safe from gc.",
    "gc_high_water": "With max_size: the fraction of it past which a running proxy or mount starts gc in the background.",
    "gc_low_water": "With max_size: the fraction of it that background gc trims the store down to.",
    "send_timeout": "Seconds a connection may make no progress (idle, or a client taking no bytes) before it is closed.",
    "max_connections": "Open client connections at most (default: from the file descriptor limit).",
    "origin_connections": "Ranged connections per origin host: chunks of one file are fetched this many at a time (default 8).",
    "blob_store": "Shared blob tier of a fleet: an S3-compatible bucket, s3://BUCKET[/PREFIX] (credentials and region the standard AWS way).",
    "s3_endpoint": "URL of the S3-compatible store (MinIO, Ceph RGW, SeaweedFS...; default: AWS, or ~/.aws/config).",
    "blob_store_private": "Trust the bucket with private and gated content too (their blobs, trees and aliases).",
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
    upstream: tuple[str, ...]
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
    #: with max_size: background gc starts past this fraction of it, and trims to the low one
    gc_high_water: float = 0.95
    gc_low_water: float = 0.80
    #: seconds a response may make no progress towards a client before it is cut
    send_timeout: float = 60.0
    #: open client connections at most (None: derived from the file descriptor limit)
    max_connections: int | None = None
    #: ranged connections per origin host (chunks of one file fetched at once)
    origin_connections: int = 8
    #: the fleet's bucket, ``s3://BUCKET[/PREFIX]`` (None: no shared blob tier)
    blob_store: str | None = None
    #: the S3-compatible store's URL (None: botocore's default, AWS or ~/.aws/config)
    s3_endpoint: str | None = None
    #: ``AWS_REGION`` (botocore itself reads only ``AWS_DEFAULT_REGION`` and the profile)
    s3_region: str | None = None
    #: the bucket may hold private and gated content
    blob_store_private: bool = False

    def store_config(self) -> StoreConfig:
        return StoreConfig(home=self.home, chunk_size=self.chunk_size, max_size=self.max_size, gc_grace=self.gc_grace,
                           gc_high_water=self.gc_high_water, gc_low_water=self.gc_low_water)


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


#: what click's BoolParamType reads as on and off (flags given by environment variables)
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def settings_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``flags`` of :func:`load_settings` as the environment alone gives them.

    Click resolves each option's environment variable before a command runs; code that has
    no command line (``import hoard``, :mod:`hoard.proxy.onnx_hub`) gets the same values
    here: every core setting's variable (:data:`ENV`) and every source setting's
    (``Setting.envvar``), read the way click reads them. An empty variable is unset; a
    repeatable setting is split on whitespace (click's ``split_envvar_value``; the settings
    split commas themselves); an on/off flag takes click's boolean words. Unset settings
    are None, so config.toml and the defaults apply, exactly as for a command."""
    env = os.environ if environ is None else environ
    flags: dict[str, Any] = {}
    for name, var in ENV.items():
        flags[name] = _from_env(env.get(var), var, flag=name in FLAGS, multiple=name in MULTIPLE)
    for name, setting in source_settings().items():
        flags[name] = _from_env(env.get(setting.envvar), setting.envvar, flag=setting.kind is bool,
                                multiple=setting.multiple)
    return flags


def _from_env(raw: str | None, var: str, *, flag: bool, multiple: bool) -> Any:
    """One variable's value as click would pass it to the command (None: unset)."""
    if not raw:
        return None
    if flag:
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise UsageError(f"{var}={raw!r} is not a valid boolean (use 1/0, true/false, yes/no, on/off)")
    if multiple:
        return tuple(raw.split()) or None
    return raw


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
    high, low = _number(pick("gc_high_water"), "gc_high_water"), _number(pick("gc_low_water"), "gc_low_water")
    try:
        StoreConfig(home=home, chunk_size=chunk_size, gc_high_water=high, gc_low_water=low)
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
        upstream=_upstreams(given("upstream")),
        listen=str(pick("listen")),
        refs_ttl=_number(pick("refs_ttl"), "refs_ttl"),
        sources=sources,
        tokens=tokens,
        public_url=(str(pick("public_url")).rstrip("/") or None) if pick("public_url") else None,
        gc_grace=_number(pick("gc_grace"), "gc_grace"),
        gc_high_water=high,
        gc_low_water=low,
        send_timeout=_number(pick("send_timeout"), "send_timeout"),
        max_connections=None if pick("max_connections") in (None, 0, "") else int(_number(pick("max_connections"), "max_connections")),
        origin_connections=_count(pick("origin_connections"), "origin_connections"),
        blob_store=_blob_store(given("blob_store")),
        s3_endpoint=_url(given("s3_endpoint"), "s3_endpoint"),
        s3_region=env.get("AWS_REGION") or None,
        blob_store_private=_flag(given("blob_store_private")),
    )


def _upstreams(value: Any) -> tuple[str, ...]:
    """Parent URLs from repeated flags, a comma-separated value or a config.toml list."""
    if value in (None, "", ()):
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                out.append(_url(part, "upstream"))
    return tuple(dict.fromkeys(u for u in out if u))


def _url(value: Any, name: str) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip().rstrip("/")
    if not text.startswith(("http://", "https://")) or text in ("http:/", "https:/"):
        raise UsageError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return text


def _blob_store(value: Any) -> str | None:
    if value in (None, ""):
        return None
    from hoard.proxy.bucket import parse_blob_store

    try:
        return parse_blob_store(str(value)).url
    except ValueError as exc:
        raise UsageError(f"blob_store: {exc}") from None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _count(value: Any, name: str) -> int:
    """A whole number of at least 1 (flags, environment and config.toml give text or ints)."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a whole number, got {value!r}") from None
    if number < 1:
        raise UsageError(f"{name} must be at least 1, got {value!r}")
    return number


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
    ("gc_high_water", None), ("gc_low_water", None),
    ("send_timeout", "--send-timeout"), ("max_connections", "--max-connections"),
    ("origin_connections", "--origin-connections"),
    ("blob_store", "--blob-store"), ("s3_endpoint", "--s3-endpoint"), ("blob_store_private", "--blob-store-private"),
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
