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
from hoard.store.errors import UsageError

from .common import App, common_options, emit
from .runtime import proxy_config, setup_logging


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
@common_options("upstream", "sources", "chunk_size")
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

    def ready() -> None:
        data = {"mountpoint": mountpoint, "home": str(settings.home), "pid": os.getpid(),
                "upstream": settings.upstream}
        if app.json:
            click.echo(json.dumps(data))
        else:
            via = f"from {settings.upstream}" if settings.upstream else "fetching in process"
            click.echo(f"hoard: mounted {mountpoint} (store {settings.home}, {via}); `hoard umount {mountpoint}` to stop")
        sys.stdout.flush()

    run_mount(mountpoint, config, app.store, options, allow_other=allow_other, on_ready=ready)


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
