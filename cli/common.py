"""What every command shares: options, settings, the store, output, progress, errors.

Output rules: human text on stdout by default; with ``--json`` one JSON document on stdout
and nothing else there. Progress bars go to stderr, only when stderr is a terminal and
``--json`` is off. Errors: one line ``hoard: <message>`` on stderr and the exit code from
the error table in :mod:`hoard.store.errors`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from hoard.store.errors import HoardError, codes_for
from hoard.store.store import Store

from hoard.proxy.sources import Setting

from .config import ENV, FLAGS, HELP, MULTIPLE, Settings, load_settings, settings_from_environment, source_settings

__all__ = ["App", "common_options", "option_for", "source_option", "emit", "progress_bar", "fail"]

F = TypeVar("F", bound=Callable[..., Any])

def option_for(name: str, *flags: str, metavar: str | None = None) -> Callable[[F], F]:
    """A core setting's option: its env var is resolved by click and named in the help."""
    flag = flags or (f"--{name.replace('_', '-')}",)
    if name in FLAGS:
        return click.option(*flag, name, is_flag=True, default=None, envvar=ENV.get(name),
                            show_envvar=name in ENV, help=HELP.get(name, ""))
    return click.option(
        *flag,
        name,
        envvar=ENV.get(name),
        show_envvar=name in ENV,
        default=None,
        multiple=name in MULTIPLE,
        metavar=metavar,
        help=HELP.get(name, ""),
    )


def source_option(setting: Setting) -> Callable[[F], F]:
    """A source setting's option, as its module declares it (flag, env var, type, help)."""
    default = setting.default
    shown = ", ".join(default) if isinstance(default, tuple) else default
    text = f"{setting.help} (default {shown})" if shown not in (None, False, "", ()) else setting.help
    if setting.kind is bool:
        return click.option(setting.flag, setting.name, is_flag=True, default=None, envvar=setting.envvar,
                            show_envvar=True, help=text)
    return click.option(
        setting.flag, setting.name, envvar=setting.envvar, show_envvar=True, default=None,
        multiple=setting.multiple, metavar="URL" if "url" in setting.name or "endpoint" in setting.name
        or "gateway" in setting.name else None, help=text,
    )


class App:
    """Per-invocation state: settings (lazily built), the store (lazily opened), output mode."""

    def __init__(self, flags: dict[str, Any], as_json: bool) -> None:
        self.flags = flags
        self.json = as_json
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            # every variable counts, not only those of the options this command declares
            given = {k: v for k, v in self.flags.items() if v not in (None, ())}
            self._settings = load_settings({**settings_from_environment(), **given})
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.store_config())
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def echo(self, text: str = "") -> None:
        if not self.json:
            click.echo(text)


def common_options(*settings: str) -> Callable[[F], F]:
    """Add ``--home``, ``--json`` and the named settings options; pass an :class:`App`.

    ``"sources"`` among the names adds every source setting of the registry (the endpoints
    of the Hub, the Arweave gateways, ...).
    """
    core = [name for name in settings if name != "sources"]
    per_source = list(source_settings().values()) if "sources" in settings else []

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            names = ("home", *core, *(s.name for s in per_source))
            flags = {name: kwargs.pop(name) for name in names}
            app = App(flags, kwargs.pop("as_json"))
            try:
                return fn(app, **kwargs)
            except (HoardError, OSError) as exc:
                fail(exc)
            except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except KeyboardInterrupt:
                click.echo("hoard: interrupted", err=True)
                sys.exit(130)
            except Exception as exc:  # the CLI's catch-all: one line, not a traceback
                if os.environ.get("HOARD_DEBUG"):
                    raise
                click.echo(f"hoard: internal error: {type(exc).__name__}: {exc} (HOARD_DEBUG=1 shows the traceback)", err=True)
                sys.exit(1)
            finally:
                app.close()

        wrapped: Any = wrapper
        for setting in reversed(per_source):
            wrapped = source_option(setting)(wrapped)
        for name in reversed(core):
            wrapped = option_for(name)(wrapped)
        wrapped = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(wrapped)
        wrapped = option_for("home", "--home", metavar="DIR")(wrapped)
        return wrapped  # type: ignore[no-any-return]

    return decorate


def fail(exc: BaseException) -> None:
    """Print one line for an error and exit with its code from the error table."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, HoardError) and exc.filename:
        msg = f"{exc.strerror}: {exc.filename}"
    click.echo(f"hoard: {msg}", err=True)
    sys.exit(codes_for(exc).exit_code)


def emit(app: App, data: Any, human: Callable[[], None] | str | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or the human form."""
    if app.json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif callable(human):
        human()
    elif human is not None:
        click.echo(human)


@contextmanager
def progress_bar(app: App, description: str, total: int | None, unit_bytes: bool = True) -> Iterator[Callable[[int], None]]:
    """A progress callback (advance by n) drawing a bar on a terminal, else doing nothing."""
    if app.json or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if unit_bytes:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn()]
    columns.append(TimeRemainingColumn())
    from rich.console import Console

    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Plain aligned columns (no colours: output is often piped)."""
    all_rows = [headers, *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows]
    return "\n".join(lines)
