"""Running a mount: the core in a thread, libfuse in the foreground, a clean unmount.

``hoard mount`` stays in the foreground until SIGINT/SIGTERM (libfuse's own handlers end the
session) or ``hoard umount``; either way the filesystem is unmounted before it exits. With
``--daemon`` the CLI starts this same command detached and returns once the mount is live.

After the mount is up, its kernel read-ahead is raised (the per-mount bdi setting): FUSE
mounts start at 128 KiB, and fewer, bigger requests are what makes a Python filesystem fast
(shared/reference/fuse_perf.md).

Once live, the mount records itself in ``$HOARD_HOME/mounts/<pid>.json`` (:mod:`.registry`) so
that ``hoard.path()`` in other processes can hand out paths inside it; the record goes when the
mount ends.

libfuse's worker threads: mfusepy starts the session with ``fuse_main_real``, whose command
line parser sets ``max_idle_threads`` to ``UINT_MAX`` ("never reap idle workers", the 3.12
default) and which libfuse 3.12-3.14.0 then rejects with a spurious "Ignoring invalid max
threads value 4294967295 > max (100000)" on every mount (fixed upstream in 3.14.1, libfuse
issue #1003). Passing both ``max_threads`` and ``max_idle_threads`` explicitly, and equal,
keeps libfuse's behaviour (at most :data:`FUSE_THREADS` workers, none reaped) and is accepted
silently by every libfuse 3 (later ones warn when the two disagree).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mfusepy

from hoard.proxy.service import ProxyConfig
from hoard.store.errors import UsageError
from hoard.store.store import Store

from .adapter import HoardOperations
from .bridge import CoreBridge
from .fs import HoardFS, MountOptions
from .registry import register, unregister

__all__ = ["run_mount", "unmount", "is_mounted", "mount_device", "READ_AHEAD_KB", "FUSE_THREADS", "fuse_options"]

log = logging.getLogger("hoard.fuse")

READ_AHEAD_KB = 16 * 1024
#: libfuse's worker threads (its own default for max_threads, now said explicitly)
FUSE_THREADS = 10


def mount_device(mountpoint: str) -> str | None:
    """major:minor of the FUSE filesystem mounted at ``mountpoint`` (from /proc/self/mountinfo)."""
    target = os.path.realpath(mountpoint)
    dev = None
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                fstype = line.split(" - ", 1)[-1].split(" ", 1)[0]
                if len(fields) > 4 and fields[4] == target and fstype.startswith("fuse"):
                    dev = fields[2]  # the last one wins: mounts stack
    except OSError:
        return None
    return dev


def _raise_readahead(mountpoint: str) -> None:
    for _ in range(50):
        dev = mount_device(mountpoint)
        if dev:
            try:
                Path(f"/sys/class/bdi/{dev}/read_ahead_kb").write_text(str(READ_AHEAD_KB))
                log.info("read-ahead of %s raised to %d KiB", mountpoint, READ_AHEAD_KB)
            except OSError as exc:  # not root, or no sysfs: keep the default
                log.info("could not raise read-ahead of %s: %s", mountpoint, exc)
            return
        time.sleep(0.1)


def _tune_malloc() -> None:
    """libfuse mallocs a buffer of up to 1 MiB per read request; above glibc's default mmap
    threshold each one is a fresh mmap (page faults) and munmap. Raising the thresholds
    keeps them on the heap (cold reads of stored files +80% with read_buf)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 8 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def is_mounted(mountpoint: str) -> bool:
    return mount_device(mountpoint) is not None


def run_mount(
    mountpoint: str,
    config: ProxyConfig,
    store: Store,
    options: MountOptions,
    *,
    allow_other: bool = False,
    debug: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Mount and serve until unmounted; returns after a clean unmount."""
    if not os.path.isdir(mountpoint):
        raise UsageError(f"mount point {mountpoint} is not a directory")
    if is_mounted(mountpoint):
        raise UsageError(f"{mountpoint} is already a mount point (hoard umount {mountpoint})")
    if not os.path.exists("/dev/fuse"):
        raise UsageError("/dev/fuse is missing: this machine (or container) cannot mount FUSE filesystems")
    _tune_malloc()
    bridge = CoreBridge(config, store)
    fs = HoardFS(bridge, options)

    def ready() -> None:
        threading.Thread(target=_raise_readahead, args=(mountpoint,), daemon=True).start()
        try:
            register(store.home, mountpoint)
        except OSError as exc:  # a read-only home: hoard.path() then reads the store directly
            log.info("could not record the mount in %s: %s", store.home, exc)
        if on_ready is not None:
            on_ready()

    ops = HoardOperations(fs, on_ready=ready)
    home = store.home
    try:
        mfusepy.FUSE(ops, mountpoint, raw_fi=True, **fuse_options(allow_other=allow_other, debug=debug))
    except RuntimeError as exc:
        raise UsageError(f"mounting {mountpoint} failed ({exc}); is fuse3 installed (fusermount3)?") from None
    finally:
        unregister(home)
        fs.close()
        bridge.close_all()


def fuse_options(*, allow_other: bool = False, debug: bool = False) -> dict[str, object]:
    """The keyword options mfusepy turns into libfuse's command line (``-f``, ``-o ...``)."""
    # not "ro": the kernel would refuse torch.hub's append to torch/hub/trusted_list, the one
    # write the filesystem accepts; every other write is answered EROFS by the adapter
    kwargs: dict[str, object] = {"fsname": "hoard", "subtype": "hoard", "foreground": True}
    if getattr(mfusepy, "fuse_version_major", 3) == 3:
        # explicit and equal: no "Ignoring invalid max threads value" (see the module docstring)
        kwargs["max_threads"] = FUSE_THREADS
        kwargs["max_idle_threads"] = FUSE_THREADS
    if allow_other:
        kwargs["allow_other"] = True
    if debug:
        kwargs["debug"] = True
    return kwargs


def unmount(mountpoint: str, lazy: bool = False) -> None:
    """Unmount with fusermount3 (or fusermount, or umount as a last resort)."""
    for tool, args in (("fusermount3", ["-u"]), ("fusermount", ["-u"]), ("umount", [])):
        path = shutil.which(tool)
        if path is None:
            continue
        cmd = [path, *args, *(["-z"] if lazy else []), mountpoint]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return
        raise UsageError(f"{tool} failed: {proc.stderr.strip() or proc.returncode}")
    raise UsageError("no fusermount3/fusermount/umount found")
