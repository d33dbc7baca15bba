"""``hoard mount MOUNTPOINT`` and ``hoard umount MOUNTPOINT``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import click

from hoard.fuse.fs import MountOptions
from hoard.fuse.mount import is_mounted, run_mount, unmount
from hoard.proxy.sources import Setting, load_all
from hoard.store.errors import UsageError

from .common import App, common_options, emit
from .config import Settings
from .runtime import proxy_config, setup_logging

__all__ = ["mount", "umount", "mount_origins", "describe_origins"]


@click.command("mount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--fill", type=click.Choice(["open", "lazy"]), default="open", show_default=True,
              help="open: opening a file fills it completely in the background; lazy: fetch only what is read.")
@click.option("--readahead", type=int, default=4, show_default=True, metavar="CHUNKS",
              help="Chunks fetched ahead of a sequential reader.")
@click.option("--daemon", is_flag=True, help="Detach; return once the mount is live.")
@click.option("--allow-other", is_flag=True, help="Let other users read the mount (needs user_allow_other).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@common_options("upstream", "blob_store", "s3_endpoint", "blob_store_private", "sources", "chunk_size", "max_size", "origin_connections")
def mount(app: App, mountpoint: str, fill: str, readahead: int, daemon: bool, allow_other: bool, log_level: str) -> None:
    """Mount the read-only model tree at MOUNTPOINT and serve it until SIGINT/SIGTERM or
    `hoard umount`.

    \b
    MOUNTPOINT/huggingface/<org>/<repo>/<file>          default branch
    MOUNTPOINT/huggingface/<org>/<repo>@<rev>/<file>    a branch, tag or commit
    MOUNTPOINT/local/<owner>/<repo>/<file>              imported with `hoard add`
    Bytes are fetched lazily (in process, or from a parent `hoard serve` with --upstream)
    and kept in the store; a file read once is never fetched again.
    """
    settings = app.settings
    mountpoint = os.path.abspath(mountpoint)
    os.makedirs(mountpoint, exist_ok=True)
    if daemon:
        _daemonize(app, mountpoint)
        return
    setup_logging(log_level)
    config = proxy_config(settings, local_user=True)
    options = MountOptions(fill=fill, readahead=readahead)
    origins = mount_origins(settings)

    def ready() -> None:
        data = {"mountpoint": mountpoint, "home": str(settings.home), "pid": os.getpid(),
                "upstream": list(settings.upstream), "blob_store": settings.blob_store, "origins": origins}
        if app.json:
            click.echo(json.dumps(data))
        else:
            via = f"from {', '.join(settings.upstream)}" if settings.upstream else "fetching in process"
            if settings.blob_store:
                via += f", fleet bucket {settings.blob_store}"
            click.echo(f"hoard: mounted {mountpoint} (store {settings.home}, {via}); `hoard umount {mountpoint}` to stop")
            click.echo(f"hoard: origins: {describe_origins(origins)}")
        sys.stdout.flush()

    run_mount(mountpoint, config, app.store, options, allow_other=allow_other, on_ready=ready)


def mount_origins(settings: Settings) -> dict[str, list[str]]:
    """What each source fetches from, as this mount is configured: every source's endpoint
    and gateway settings (the registry's), or the parent hoards for all of them with
    ``--upstream``; the fleet bucket is checked first with ``--blob-store``. Sources with no
    origin (``local``) are left out; a source with no host setting (``url``: the host is part
    of each address) says so."""
    out: dict[str, list[str]] = {}
    if settings.blob_store:
        out["blob_store"] = [settings.blob_store]
    if settings.upstream:
        out["upstream"] = list(settings.upstream)
        return out
    specs = load_all()
    for name, spec in specs.items():
        if not spec.info.has_origin:
            continue
        declared = tuple(d for other in _BORROWS.get(name, (name,)) for d in specs[other].settings)
        out[name] = list(dict.fromkeys(_urls(settings, declared))) or ["the host each address names"]
    return out


#: sources whose files come from other sources' hosts too (the ONNX hub reads GitHub's;
#: torch hub repos are GitHub repos, its weights come from its own host)
_BORROWS = {"onnx": ("github",), "torch": ("torch", "github")}


def _urls(settings: Settings, declared: tuple[Setting, ...]) -> list[str]:
    """The URL values of these settings, as configured."""
    urls: list[str] = []
    for setting in declared:
        value = settings.sources.get(setting.name, setting.default)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, str) and item.startswith(("http://", "https://")):
                urls.append(item)
    return urls


def describe_origins(origins: dict[str, list[str]]) -> str:
    """One line: ``huggingface https://huggingface.co; arweave https://arweave.net, ...``."""
    labels = {"upstream": "every source through the parent hoard(s)", "blob_store": "fleet bucket first"}
    return "; ".join(f"{labels.get(name, name)} {', '.join(urls)}" for name, urls in origins.items())


def _daemonize(app: App, mountpoint: str) -> None:
    """Start this command again without --daemon, detached, and wait for the mount."""
    args = [a for a in sys.argv[1:] if a != "--daemon"]
    log_path = app.settings.home / "mount.log"
    app.settings.home.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hoard.cli.main", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if is_mounted(mountpoint):
            emit(app, {"mountpoint": mountpoint, "pid": proc.pid, "log": str(log_path)},
                 f"hoard: mounted {mountpoint} (pid {proc.pid}, log {log_path})")
            return
        if proc.poll() is not None:
            raise UsageError(f"mount failed (exit {proc.returncode}); see {log_path}")
        time.sleep(0.1)
    proc.terminate()
    raise UsageError(f"mount did not come up within 60 s; see {log_path}")


@click.command("umount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--lazy", is_flag=True, help="Detach now even if files are open (umount -l).")
def umount(mountpoint: str, lazy: bool) -> None:
    """Unmount a hoard mount (its `hoard mount` process then exits)."""
    mountpoint = os.path.abspath(mountpoint)
    try:
        if not is_mounted(mountpoint):
            raise UsageError(f"{mountpoint} is not mounted")
        unmount(mountpoint, lazy=lazy)
    except UsageError as exc:
        click.echo(f"hoard: {exc}", err=True)
        sys.exit(2)
    click.echo(f"hoard: unmounted {mountpoint}")
