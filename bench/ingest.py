"""Ingest: ``Store.add_file`` (and ``hoard add``) of one large file vs BLAKE3 of the same file.

Anchor: hashing the file alone with the hasher hoard uses (``blake3(max_threads=AUTO)``, 16 MiB
reads into one reused buffer). hoard does that same read + hash and also writes the copy
(O_DIRECT) and fsyncs it, on a second thread; the target is that this costs at most 20 %:
throughput ratio hoard/anchor >= 0.8, warm (file in the page cache) and cold (page cache
dropped before every run). Each run is preceded by ``sync``; anchor and hoard alternate; the
median of ``--repeat`` runs is reported. The CLI (``hoard add DIR local/bench/x``) is timed
once, warm, to show its overhead over the API (process start, directory walk, snapshot).
A second, informational anchor is a plain copy of the same file with ``dd bs=16M
oflag=direct conv=fsync`` (read + write + fsync, no hash): the floor set by the disk's writes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import blake3

from .common import BenchError, MiB, Report, base_parser, drop_caches, fmt_bytes, fmt_rate, fmt_secs, median, run_main, sync, workdir, write_content
from .profiling import maybe_profile
from .servers import clean_env

NAME = "ingest"
TARGET = 0.8
_BLOCK = 16 * MiB  # hoard's ingest block (store/blobs.py _BLOCK)


def hash_file(path: Path) -> str:
    """The anchor: BLAKE3 of a file as hoard computes it, and nothing else."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := os.readv(fd, [view]):
            h.update(view[:n])
    finally:
        os.close(fd)
    return h.hexdigest()


def add_via_api(path: Path, home: Path) -> tuple[float, str]:
    """Seconds of ``Store.add_file`` into a fresh store (opening the store not counted)."""
    from hoard.store.config import StoreConfig
    from hoard.store.store import Store

    shutil.rmtree(home, ignore_errors=True)
    with Store(StoreConfig(home)) as store:
        t0 = time.perf_counter()
        b3, _ = store.add_file(path)
        dt = time.perf_counter() - t0
    return dt, b3


def copy_file(src: Path, dst: Path) -> float:
    """The second anchor: read + O_DIRECT write + fsync of the same bytes, no hashing (dd)."""
    t0 = time.perf_counter()
    out = subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=16M", "oflag=direct", "conv=fsync", "status=none"],
                         capture_output=True, text=True, timeout=600)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"dd failed: {out.stderr.strip()}")
    dst.unlink()
    return dt


def hoard_cmd() -> list[str]:
    script = Path(sys.executable).with_name("hoard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hoard.cli.main"]


def add_via_cli(directory: Path, home: Path) -> float:
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.perf_counter()
    out = subprocess.run([*hoard_cmd(), "add", str(directory), "local/bench/x", "--home", str(home), "--json"],
                         capture_output=True, text=True, env=clean_env(), timeout=600)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"hoard add failed ({out.returncode}): {out.stderr.strip()}")
    return dt


def cli_startup() -> float:
    t0 = time.perf_counter()
    subprocess.run([*hoard_cmd(), "--help"], capture_output=True, env=clean_env(), timeout=60, check=True)
    return time.perf_counter() - t0


def measure(mode: str, src: Path, homes: Path, args: argparse.Namespace, report: Report) -> None:
    cold = mode == "cold"
    anchor: list[float] = []
    copy: list[float] = []
    hoard: list[float] = []
    digests: set[str] = set()
    if not cold:
        hash_file(src)  # bring it into the page cache
    for i in range(args.repeat):
        order = ("anchor", "copy", "hoard") if i % 2 == 0 else ("hoard", "copy", "anchor")
        for which in order:
            sync()  # writeback of the previous run must not overlap this one
            if cold:
                drop_caches()
            if which == "anchor":
                t0 = time.perf_counter()
                digests.add(hash_file(src))
                anchor.append(time.perf_counter() - t0)
            elif which == "copy":
                homes.mkdir(parents=True, exist_ok=True)
                copy.append(copy_file(src, homes / "copy"))
            else:
                dt, b3 = add_via_api(src, homes / f"{mode}-{i}")
                digests.add(b3)
                hoard.append(dt)
        shutil.rmtree(homes / f"{mode}-{i}", ignore_errors=True)
    if args.profile:  # one more run, not counted: the profiler slows what it samples
        sync()
        if cold:
            drop_caches()
        with maybe_profile(True, os.getpid(), f"add_file-{mode}", report):
            add_via_api(src, homes / f"{mode}-profiled")
        shutil.rmtree(homes / f"{mode}-profiled", ignore_errors=True)
    if len(digests) != 1:
        raise BenchError(f"hoard and the anchor disagree on the BLAKE3: {digests}")
    a, c, h = median(anchor), median(copy), median(hoard)
    size = args.size
    report.metric(f"{mode}.anchor_s", anchor, f"{mode:4}  blake3 alone (anchor)       {fmt_secs(a)} ({fmt_rate(size, a)}), runs {[round(x, 3) for x in anchor]}")
    report.metric(f"{mode}.hoard_s", hoard, f"{mode:4}  Store.add_file              {fmt_secs(h)} ({fmt_rate(size, h)}), runs {[round(x, 3) for x in hoard]}")
    report.metric(f"{mode}.copy_s", copy, f"{mode:4}  dd copy (O_DIRECT+fsync)    {fmt_secs(c)} ({fmt_rate(size, c)}), runs {[round(x, 3) for x in copy]}")
    report.metric(f"{mode}.anchor_MiBps", size / a / MiB)
    report.metric(f"{mode}.copy_MiBps", size / c / MiB)
    report.metric(f"{mode}.hoard_MiBps", size / h / MiB)
    report.ratio(f"{mode} add_file/blake3 throughput", a / h, TARGET)
    report.ratio(f"{mode} add_file/dd-copy throughput", c / h, None, note="informational: the write-bound floor")


def body(args: argparse.Namespace, report: Report) -> None:
    with workdir(args, NAME) as wd:
        src_dir = wd / "src"
        src_dir.mkdir()
        src = src_dir / "model.safetensors"
        print(f"  writing a {fmt_bytes(args.size)} file ...", flush=True)
        write_content(src, "bench-ingest", args.size)
        if not drop_caches():
            report.note("page cache could not be dropped: the 'cold' numbers are warm")
        homes = wd / "homes"
        for mode in ("warm", "cold"):
            measure(mode, src, homes, args, report)
        hash_file(src)
        sync()
        cli = add_via_cli(src_dir, homes / "cli")
        sync()
        start = cli_startup()
        api = median(report.metrics["warm.hoard_s"])
        report.metric("cli.add_s", cli, f"hoard add (CLI, warm, incl. process start) {fmt_secs(cli)} ({fmt_rate(args.size, cli)})")
        report.metric("cli.startup_s", start, f"hoard --help {fmt_secs(start)}")
        report.metric("cli.overhead_s", cli - api, f"CLI over API {fmt_secs(cli - api)}")


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__ or "", size="2GiB", quick_size="256MiB", timeout=600)
    return run_main(NAME, p.parse_args(argv), body)


if __name__ == "__main__":
    raise SystemExit(main())
