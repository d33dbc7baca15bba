"""Reading through ``hoard mount``: a stored file vs its blob file, a lazy 4 KiB read vs a
ranged GET, and a cold sequential read vs ``hf_hub_download``.

Origin: the test suite's fake Hub + CDN (``tests/fakes/hub.py``) in its own process (some
readers hold the GIL across page faults, so nothing that reads the mount may share a process
with the origin). Each mount is ``hoard mount`` started as a user would (its own process,
``--log-level info``), with the kernel read-ahead it raises itself (16 MiB, read back from
sysfs and reported); files are read at the commit-pinned path
``MNT/huggingface/<org>/<repo>@<commit>/<file>``, so no branch is re-resolved mid-run.

1. **stored** — the file is put in the store first (``hoard prefetch``), then read through the
   mount and straight from its blob file ``$HOME/blobs/<b3[:2]>/<b3>``, with two readers: a
   Python ``os.readv`` loop into one 4 MiB buffer and ``dd bs=4M of=/dev/null`` (its own
   timing). Each run, per reader and per target: drop the page cache, read (**cold**), read
   again (**warm**); the mount and the blob alternate first. Targets: mount / blob
   throughput >= 0.6 cold, >= 0.8 warm (median of the runs; per-run paired ratios are in the
   JSON too: the virtio disk's cold speed varies 0.6-3 GB/s run to run). Informational: the
   mount read with the blob in the page cache and the mount's own cache dropped
   (``posix_fadvise(DONTNEED)`` on the mount's file) — the FUSE + Python path without the disk.
2. **lazy** — a fresh store and ``--fill lazy``: after a ``stat`` (repo resolved, not timed),
   open + ``pread`` 4 KiB at 400 MiB (``size * 25/32`` for other sizes). Reported: time to
   first byte (open + read), bytes the origins sent (right after the read and 1 s later) vs
   the 4 KiB asked. Anchor: one ranged GET of the same 4 KiB from the fake Hub on a fresh
   connection (redirect to the CDN followed). No target. Informational: then 4 KiB at the end
   of the chunk before (hoard fetches whole chunks, 8 MiB, from their start).
3. **cold** — a fresh store, ``--fill open`` and ``--fill lazy``: the whole file read once
   (Python reader, first access included: the repo is resolved at the origin) vs
   ``hf_hub_download`` of it straight from the fake Hub (subprocess, ``HF_ENDPOINT`` = the
   fake Hub, ``HF_HUB_DISABLE_XET=1``, fresh ``HF_HOME``, timed around the call). The three
   rotate their order run by run. Ratio of throughputs (> 1: the mount is faster); no target.
4. **capped** — part 3 against a second fake origin that caps each connection at ``--cap``
   bytes/s (default 100 MB/s, as CDNs do): the mount (default ``--origin-connections 8``)
   fetches the file's chunks over parallel ranged connections, the stock client over one.
   Target: mount / ``hf_hub_download`` >= 4.

``--profile`` samples the ``hoard mount`` process with py-spy during one extra, uncounted cold
and warm read of (1) and one extra cold read of (3) with each fill mode.
``--read-sizes`` runs the same extra reads under ``strace -f -e pread64,writev`` attached to
the mount and reports the sizes and offsets of the reads the filesystem received (its
``pread64`` calls on the blob, and the sizes of its replies to the kernel on ``/dev/fuse``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hoard.store.config import DEFAULT_CHUNK_SIZE

from .clients import aio_range, hf_download
from .common import (BenchError, MiB, Report, base_parser, drop_caches, fmt_bytes, fmt_rate, fmt_secs, median,
                     run_main, workdir)
from .profiling import maybe_profile
from .servers import FakeHubProcess, HoardMount, clean_env

NAME = "mount_read"
REPO = "bench/mount"
FILE = "model.safetensors"
SEED = "bench-mount"
BS = 4 * MiB
PROBE = 4096
CHUNK = DEFAULT_CHUNK_SIZE  # the mount's chunk size (not overridden here)
COLD_TARGET = 0.6
WARM_TARGET = 0.8
CAPPED_TARGET = 4.0
READERS = ("python", "dd")

# -- readers ----------------------------------------------------------------------------------


def py_read(path: Path, expect: int | None = None, bs: int = BS) -> tuple[float, float]:
    """Read ``path`` to the end with ``os.readv`` into one buffer (the GIL is released in the
    read); returns (seconds, time to first byte), open included."""
    buf = bytearray(bs)
    view = [memoryview(buf)]
    t0 = time.perf_counter()
    first = 0.0
    n = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            k = os.readv(fd, view)
            if not k:
                break
            if not n:
                first = time.perf_counter() - t0
            n += k
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    if expect is not None and n != expect:
        raise BenchError(f"read {n} bytes from {path}, expected {expect}")
    return dt, first


_DD_SECS = re.compile(r"copied, ([0-9.]+) s")
_DD_BYTES = re.compile(r"^(\d+) bytes", re.M)


def dd_read(path: Path, expect: int | None = None) -> float:
    """``dd if=path of=/dev/null bs=4M``, timed by dd itself."""
    out = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=4M"], capture_output=True, text=True,
                         timeout=300, env=clean_env() | {"LC_ALL": "C"})
    match = _DD_SECS.search(out.stderr)
    if out.returncode != 0 or not match:
        raise BenchError(f"dd {path}: {out.stderr.strip()[-300:]}")
    nb = _DD_BYTES.search(out.stderr)
    n = int(nb.group(1)) if nb else -1
    if expect is not None and n != expect:
        raise BenchError(f"dd read {n} bytes from {path}, expected {expect}")
    return float(match.group(1))


def read_with(reader: str, path: Path, expect: int) -> float:
    return py_read(path, expect)[0] if reader == "python" else dd_read(path, expect)


@contextlib.contextmanager
def suppress_os() -> Iterator[None]:
    """Ignore an OSError, but never the watchdog's TimeoutError (a subclass of OSError)."""
    try:
        yield
    except TimeoutError:
        raise
    except OSError:
        pass


def wait_published(path: Path, timeout: float) -> str | None:
    """The file's ``user.hoard.blake3`` once the mount has verified and published it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.getxattr(path, "user.hoard.blake3").decode()
        except TimeoutError:
            raise
        except OSError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def fadvise_dontneed(path: Path) -> None:
    """Drop one file's clean page-cache pages (here: the mount's, leaving the blob's)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def blake3_of(path: Path) -> str:
    import blake3

    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(BS):
            h.update(block)
    return h.hexdigest()


# -- which reads the filesystem receives (strace) ---------------------------------------------

_CALL = re.compile(r"^(\d+)\s+(.*)$")
_PREAD = re.compile(r"pread64\((\d+)<([^>]*)>, .*?, (\d+), (\d+)\)\s+=\s+(-?\d+)")
_WRITEV = re.compile(r"writev\((\d+)<(/dev/fuse)>, .*\)\s+=\s+(-?\d+)")


@contextlib.contextmanager
def strace_reads(pid: int, out: Path) -> Iterator[None]:
    """strace every thread of ``pid`` for pread64/writev while the block runs."""
    if shutil.which("strace") is None:
        raise BenchError("--read-sizes needs strace (apt-get install -y strace)")
    cmd = ["strace", "-f", "-qq", "-y", "-s", "0", "-e", "trace=pread64,writev", "-e", "signal=none",
           "-o", str(out), "-p", str(pid)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached to every thread
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _joined_calls(text: str, inflight: list[int] | None = None) -> Iterator[str]:
    """strace -f lines with ``<unfinished ...>`` / ``<... resumed>`` halves joined; the most
    pread64 calls in progress at once goes to ``inflight[0]``."""
    pending: dict[str, str] = {}
    busy = top = 0
    for line in text.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        tid, rest = m.groups()
        if rest.endswith("<unfinished ...>"):
            pending[tid] = rest[: -len("<unfinished ...>")].rstrip()
            if rest.startswith("pread64("):
                busy += 1
                top = max(top, busy)
            continue
        if rest.startswith("<... "):
            head = pending.pop(tid, "")
            if head.startswith("pread64("):
                busy -= 1
            rest = head + " " + rest.split("resumed>", 1)[-1].lstrip()
        elif rest.startswith("pread64("):
            top = max(top, busy + 1)
        yield rest
    if inflight is not None:
        inflight[:] = [top]


def _hist(sizes: list[int]) -> list[tuple[str, int]]:
    return [(fmt_bytes(s), n) for s, n in sorted(Counter(sizes).items(), key=lambda x: -x[1])[:8]]


def summarize_trace(raw: Path, blob_part: str = "/blobs/") -> dict[str, Any]:
    """Sizes/offsets of the filesystem's pread64 on blob/partial files and its data replies."""
    preads: list[tuple[int, int]] = []  # (offset, bytes returned)
    replies: list[int] = []
    inflight = [0]
    for call in _joined_calls(raw.read_text(errors="replace"), inflight):
        if call.startswith("pread64("):
            m = _PREAD.search(call)
            if m and (blob_part in m.group(2) or "/partial/" in m.group(2)) and int(m.group(5)) > 0:
                preads.append((int(m.group(4)), int(m.group(5))))
        elif call.startswith("writev("):
            m = _WRITEV.search(call)
            if m and int(m.group(3)) - 16 >= 4096:  # 16-byte fuse_out_header + data; small replies are metadata
                replies.append(int(m.group(3)) - 16)
    sizes = [s for _, s in preads]
    seq = sum(1 for (o1, s1), (o2, _) in zip(preads, preads[1:]) if o2 == o1 + s1)
    out: dict[str, Any] = {
        "pread_count": len(preads), "pread_bytes": sum(sizes),
        "pread_sizes": _hist(sizes), "pread_mean": (sum(sizes) / len(sizes)) if sizes else 0,
        "pread_max": max(sizes, default=0),
        "pread_sequential_share": (seq / (len(preads) - 1)) if len(preads) > 1 else None,
        "pread_first": [(fmt_bytes(o), fmt_bytes(s)) for o, s in preads[:6]],
        "pread_max_in_flight": inflight[0],
        "reply_count": len(replies), "reply_bytes": sum(replies), "reply_sizes": _hist(replies),
        "reply_mean": (sum(replies) / len(replies)) if replies else 0, "reply_max": max(replies, default=0),
    }
    return out


def print_trace(label: str, t: dict[str, Any]) -> None:
    def hist(rows: list[tuple[str, int]]) -> str:
        return ", ".join(f"{n} x {s}" for s, n in rows)

    print(f"  read sizes {label}: data replies to the kernel {t['reply_count']} "
          f"({fmt_bytes(t['reply_bytes'])}, mean {fmt_bytes(t['reply_mean'])}, max {fmt_bytes(t['reply_max'])}): "
          f"{hist(t['reply_sizes'])}")
    if t["pread_count"]:
        share = t["pread_sequential_share"]
        print(f"    pread64 on the blob/partial {t['pread_count']} ({fmt_bytes(t['pread_bytes'])}, "
              f"mean {fmt_bytes(t['pread_mean'])}): {hist(t['pread_sizes'])}; "
              f"sequential in trace order {share if share is None else f'{share:.0%}'}; up to {t['pread_max_in_flight']} "
              f"in flight; first (offset, size) {t['pread_first']}",
              flush=True)


@contextlib.contextmanager
def maybe_trace(enabled: bool, pid: int, label: str, report: Report, wd: Path) -> Iterator[None]:
    if not enabled:
        yield
        return
    raw = wd / f"strace-{label}.txt"
    with strace_reads(pid, raw):
        yield
    t = summarize_trace(raw)
    report.metric(f"read_sizes.{label}", t)
    print_trace(label, t)
    if report.params.get("keep"):
        print(f"    raw trace: {raw}")


# -- the three measurements -------------------------------------------------------------------


def fuse_conn_settings(m: HoardMount) -> dict[str, Any]:
    """The mount's bdi read-ahead and its FUSE connection limits (fusectl, when mounted)."""
    out: dict[str, Any] = {"read_ahead_kb": m.read_ahead_kb, "device": m.device}
    if m.device:
        conn = Path("/sys/fs/fuse/connections") / str(os.makedev(*map(int, m.device.split(":"))))
        for name in ("max_background", "congestion_threshold"):
            with suppress_os():
                out[name] = int((conn / name).read_text())
        ratio = m.bdi("max_ratio")
        if ratio is not None:
            with suppress_os():
                out["bdi_max_ratio"] = int(ratio.read_text())
    return out


def stored(args: argparse.Namespace, report: Report, hub: FakeHubProcess, wd: Path) -> None:
    size = args.size
    b3 = hub.file(FILE)["blake3"]
    home = wd / "home-stored"
    print("  [1] stored file: hoard prefetch ...", flush=True)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "hoard.cli.main", "prefetch", f"huggingface/{REPO}@{hub.commit}",
                          "--home", str(home), "--hf-endpoint", hub.url], capture_output=True, text=True,
                         env=clean_env(), timeout=300)
    if out.returncode != 0:
        raise BenchError(f"hoard prefetch failed: {out.stderr.strip()[-500:]}")
    report.metric("stored.prefetch_s", time.perf_counter() - t0)
    blob = home / "blobs" / b3[:2] / b3
    if not blob.exists() or blob.stat().st_size != size:
        raise BenchError(f"blob {blob} missing or of the wrong size after prefetch")
    with HoardMount(home, wd / "mnt-stored", hub.url, log=wd / "mount-stored.log") as m:
        report.metric("fuse", fuse_conn_settings(m), f"mount: {fuse_conn_settings(m)}")
        path = m.path(f"huggingface/{REPO}@{hub.commit}/{FILE}")
        if blake3_of(path) != b3:
            raise BenchError("bytes read through the mount do not hash to the file's BLAKE3")
        runs: dict[str, dict[str, dict[str, list[float]]]] = {
            r: {w: {"cold": [], "warm": []} for w in ("blob", "mount")} for r in READERS}
        hot_backing: dict[str, list[float]] = {r: [] for r in READERS}
        for i in range(args.repeat):
            for reader in READERS:
                line = []
                for which in (("blob", "mount") if i % 2 == 0 else ("mount", "blob")):
                    p = blob if which == "blob" else path
                    drop_caches()
                    cold = read_with(reader, p, size)
                    warm = read_with(reader, p, size)
                    runs[reader][which]["cold"].append(cold)
                    runs[reader][which]["warm"].append(warm)
                    line.append(f"{which} cold {fmt_rate(size, cold)} warm {fmt_rate(size, warm)}")
                # the FUSE path alone: blob in the page cache, the mount's own cache dropped
                read_with(reader, blob, size)
                fadvise_dontneed(path)
                hot = read_with(reader, path, size)
                hot_backing[reader].append(hot)
                line.append(f"mount, blob cached {fmt_rate(size, hot)}")
                print(f"  run {i + 1} {reader:6}: " + "; ".join(line), flush=True)
        summary: dict[str, Any] = {}
        for reader in READERS:
            for state in ("cold", "warm"):
                b = median(runs[reader]["blob"][state])
                mt = median(runs[reader]["mount"][state])
                paired = [bb / mm for bb, mm in zip(runs[reader]["blob"][state], runs[reader]["mount"][state])]
                summary[f"{reader}.{state}"] = {"blob_s": b, "mount_s": mt, "blob_MiBps": size / b / MiB,
                                                "mount_MiBps": size / mt / MiB, "paired_ratios": paired, "runs": {
                                                    w: runs[reader][w][state] for w in ("blob", "mount")}}
                report.metric(f"stored.{reader}.{state}", summary[f"{reader}.{state}"],
                              f"{reader:6} {state}: mount {fmt_secs(mt)} ({fmt_rate(size, mt)}), "
                              f"blob file {fmt_secs(b)} ({fmt_rate(size, b)}); per-run ratios "
                              + ", ".join(f"{r:.2f}" for r in paired))
            hb = median(hot_backing[reader])
            report.metric(f"stored.{reader}.blob_cached", {"mount_s": hb, "mount_MiBps": size / hb / MiB,
                                                            "runs": hot_backing[reader]},
                          f"{reader:6} mount with the blob cached, mount cache dropped (the FUSE path alone): "
                          f"{fmt_secs(hb)} ({fmt_rate(size, hb)})")
        for state, target, tag in (("cold", COLD_TARGET, "1a"), ("warm", WARM_TARGET, "1b")):
            for reader in READERS:
                s = summary[f"{reader}.{state}"]
                report.ratio(f"{tag} stored {state}, {reader}: mount / blob file", s["blob_s"] / s["mount_s"], target)
        pid = m.pid
        if args.profile:  # uncounted: the profiler slows what it samples
            drop_caches()
            with maybe_profile(True, pid, "stored-cold", report):
                py_read(path, size)
            with maybe_profile(True, pid, "stored-warm", report):
                for _ in range(3):
                    py_read(path, size)
        if args.read_sizes:
            drop_caches()
            with maybe_trace(True, pid, "stored-cold", report, wd):
                py_read(path, size)
            with maybe_trace(True, pid, "stored-warm", report, wd):
                py_read(path, size)
            if args.read_sizes_dd:
                drop_caches()
                with maybe_trace(True, pid, "stored-cold-dd", report, wd):
                    dd_read(path, size)


def lazy(args: argparse.Namespace, report: Report, hub: FakeHubProcess, wd: Path) -> None:
    size = args.size
    offset = (size * 25 // 32) // PROBE * PROBE  # 400 MiB of 512 MiB
    from tests.fakes.content import Content

    want = Content(SEED, size).read(offset, offset + PROBE)
    url = f"{hub.url}/{REPO}/resolve/{hub.commit}/{FILE}"
    rows: dict[str, list[dict[str, float]]] = {"mount": [], "direct": []}
    print(f"  [2] lazy: {PROBE} bytes at {fmt_bytes(offset)} of a cold {fmt_bytes(size)} file", flush=True)
    for i in range(args.repeat):
        for which in (("direct", "mount") if i % 2 == 0 else ("mount", "direct")):
            if which == "direct":
                hub.clear()
                got, data = aio_range(url, offset, PROBE)
                sent = sum(hub.bytes_sent().values())
                if data != want:
                    raise BenchError("the ranged GET returned the wrong bytes")
                rows["direct"].append({"ttfb_s": got.ttfb, "total_s": got.seconds, "origin_bytes": sent})
                print(f"  run {i + 1} direct: TTFB {fmt_secs(got.ttfb)}, origin sent {sent} bytes", flush=True)
                continue
            row = _lazy_probe(hub, wd, f"lazy-{i}", offset, want)
            rows["mount"].append(row)
            print(f"  run {i + 1} mount : TTFB {fmt_secs(row['ttfb_s'])} (open {fmt_secs(row['open_s'])}, "
                  f"pread {fmt_secs(row['read_s'])}); origin sent {fmt_bytes(row['origin_bytes'])} "
                  f"({fmt_bytes(row['origin_bytes_1s'])} 1 s later); last 4 KiB of the chunk before: "
                  f"{fmt_secs(row['chunk_tail_read_s'])}, {fmt_bytes(row['chunk_tail_origin_bytes'])} more", flush=True)
    if args.profile:
        _lazy_probe(hub, wd, "lazy-profiled", offset, want, lambda pid: maybe_profile(True, pid, "lazy", report))
    if args.read_sizes:
        _lazy_probe(hub, wd, "lazy-traced", offset, want, lambda pid: maybe_trace(True, pid, "lazy", report, wd))
    summ = {w: {k: median([r[k] for r in rs]) for k in rs[0]} for w, rs in rows.items()}
    mo, di = summ["mount"], summ["direct"]
    report.metric("lazy", summ | {"offset": offset, "asked": PROBE, "runs": rows},
                  f"lazy 4 KiB at {fmt_bytes(offset)}: mount TTFB {fmt_secs(mo['ttfb_s'])} (open "
                  f"{fmt_secs(mo['open_s'])}, pread {fmt_secs(mo['read_s'])}), origin sent {fmt_bytes(mo['origin_bytes'])}"
                  f" ({fmt_bytes(mo['origin_bytes_1s'])} after 1 s); direct ranged GET TTFB {fmt_secs(di['ttfb_s'])}, "
                  f"origin sent {fmt_bytes(di['origin_bytes'])}; mount, last 4 KiB of a chunk: "
                  f"{fmt_secs(mo['chunk_tail_read_s'])}")
    report.ratio("2 lazy TTFB: mount / direct ranged GET", mo["ttfb_s"] / di["ttfb_s"], None, higher_is_better=False,
                 note="open + pread vs GET with redirect, fresh connection")
    report.ratio("2 lazy origin bytes / bytes asked", mo["origin_bytes_1s"] / PROBE, None, higher_is_better=False,
                 note=f"{fmt_bytes(mo['origin_bytes_1s'])} for {PROBE} bytes; direct GET: {di['origin_bytes'] / PROBE:.2f}")


def _lazy_probe(hub: FakeHubProcess, wd: Path, tag: str, offset: int, want: bytes,
                around: Callable[[int], contextlib.AbstractContextManager[None]] | None = None) -> dict[str, float]:
    """A fresh store, ``--fill lazy``: stat (not timed), then open + pread 4 KiB at ``offset``."""
    from tests.fakes.content import Content

    home = wd / f"home-{tag}"
    try:
        with HoardMount(home, wd / "mnt-lazy", hub.url, "--fill", "lazy", log=wd / f"mount-{tag}.log") as m:
            path = m.path(f"huggingface/{REPO}@{hub.commit}/{FILE}")
            if os.stat(path).st_size != hub.file(FILE)["size"]:  # resolves the repo: not timed
                raise BenchError("wrong size through the mount")
            time.sleep(0.2)
            hub.clear()
            with (around(m.pid) if around else contextlib.nullcontext()):
                t0 = time.perf_counter()
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    t1 = time.perf_counter()
                    data = os.pread(fd, PROBE, offset)
                    t2 = time.perf_counter()
                    sent = sum(hub.bytes_sent().values())
                    time.sleep(1.0)
                    settled = sum(hub.bytes_sent().values())
                    # informational: the last 4 KiB of the chunk before (hoard fetches whole chunks
                    # from their start, so this waits for the chunk's first bytes to stream past)
                    tail_at = offset // CHUNK * CHUNK - PROBE
                    t3 = time.perf_counter()
                    tail = os.pread(fd, PROBE, tail_at)
                    t4 = time.perf_counter()
                    tail_sent = sum(hub.bytes_sent().values()) - settled
                finally:
                    os.close(fd)
            if data != want or tail != Content(SEED, hub.file(FILE)["size"]).read(tail_at, tail_at + PROBE):
                raise BenchError("the mount returned the wrong bytes for a 4 KiB probe")
        return {"ttfb_s": t2 - t0, "open_s": t1 - t0, "read_s": t2 - t1, "origin_bytes": sent, "origin_bytes_1s": settled,
                "chunk_tail_read_s": t4 - t3, "chunk_tail_origin_bytes": tail_sent}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _mount_cold_read(hub: FakeHubProcess, wd: Path, tag: str, fill: str, size: int,
                     around: Callable[[int], contextlib.AbstractContextManager[None]] | None = None) -> dict[str, Any]:
    home = wd / f"home-{tag}"
    try:
        with HoardMount(home, wd / "mnt-cold", hub.url, "--fill", fill, log=wd / f"mount-{tag}.log") as m:
            path = m.path(f"huggingface/{REPO}@{hub.commit}/{FILE}")
            hub.clear()
            with (around(m.pid) if around else contextlib.nullcontext()):
                seconds, ttfb = py_read(path, size)
            sent = sum(hub.bytes_sent().values())
            b3 = wait_published(path, 30)
            present = "?"
            with suppress_os():
                present = os.getxattr(path, "user.hoard.present").decode()
        return {"seconds": seconds, "ttfb_s": ttfb, "origin_bytes": sent, "published": b3 == hub.file(FILE)["blake3"],
                "present": present if b3 is None else "1"}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def cold(args: argparse.Namespace, report: Report, hub: FakeHubProcess, wd: Path) -> None:
    size = args.size
    variants = ("open", "lazy", "hf")
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    print(f"  [3] cold sequential read of {fmt_bytes(size)}: mount --fill open / lazy vs hf_hub_download", flush=True)
    for i in range(args.repeat):
        order = variants[i % 3:] + variants[: i % 3]
        for v in order:
            if v == "hf":
                hub.clear()
                seconds = hf_download(hub.url, REPO, FILE, hub.commit, wd / f"hf-home-{i}", size, disable_xet=True)
                row: dict[str, Any] = {"seconds": seconds, "origin_bytes": sum(hub.bytes_sent().values())}
            else:
                row = _mount_cold_read(hub, wd, f"cold-{v}-{i}", v, size)
            rows[v].append(row)
            extra = f", TTFB {fmt_secs(row['ttfb_s'])}, published {row['published']}" if v != "hf" else ""
            print(f"  run {i + 1} {v:4}: {fmt_secs(row['seconds'])} ({fmt_rate(size, row['seconds'])}), "
                  f"origin {row['origin_bytes'] / size:.3f} x file{extra}", flush=True)
    summ: dict[str, dict[str, Any]] = {}
    for v, rs in rows.items():
        s = median([r["seconds"] for r in rs])
        summ[v] = {"seconds": s, "MiBps": size / s / MiB, "origin_bytes": median([r["origin_bytes"] for r in rs]),
                   "runs_s": [r["seconds"] for r in rs]}
        if v != "hf":
            summ[v] |= {"ttfb_s": median([r["ttfb_s"] for r in rs]), "published": [r["published"] for r in rs]}
        report.metric(f"cold.{v}", summ[v], f"cold {v:4}: {fmt_secs(s)} ({fmt_rate(size, s)}), origin "
                      f"{summ[v]['origin_bytes'] / size:.3f} x file" + (
                          f", TTFB {fmt_secs(summ[v]['ttfb_s'])}" if v != "hf" else ""))
    for v in ("open", "lazy"):
        report.ratio(f"3 cold read --fill {v}: mount / hf_hub_download (throughput)",
                     summ["hf"]["seconds"] / summ[v]["seconds"], None)
    if args.profile:
        for v in ("open", "lazy"):
            _mount_cold_read(hub, wd, f"cold-{v}-profiled", v, size,
                             lambda pid, v=v: maybe_profile(True, pid, f"cold-{v}", report))
    if args.read_sizes:
        for v in ("open", "lazy"):
            _mount_cold_read(hub, wd, f"cold-{v}-traced", v, size,
                             lambda pid, v=v: maybe_trace(True, pid, f"cold-{v}", report, wd))


def capped(args: argparse.Namespace, report: Report, hub: FakeHubProcess, wd: Path) -> None:
    """(4) part 3 against an origin that caps each connection (``--cap``): the mount fetches
    a file's chunks over parallel ranged connections, ``hf_hub_download`` uses one."""
    size = args.size
    variants = ("open", "lazy", "hf")
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    print(f"  [4] capped origin ({args.cap / 1e6:.0f} MB/s per connection): cold sequential read of "
          f"{fmt_bytes(size)}: mount --fill open / lazy vs hf_hub_download", flush=True)
    with FakeHubProcess(REPO, {FILE: (size, SEED)}, per_connection_rate=args.cap, log=wd / "hub-capped.log") as capped_hub:
        for i in range(args.repeat):
            order = variants[i % 3:] + variants[: i % 3]
            for v in order:
                if v == "hf":
                    capped_hub.clear()
                    seconds = hf_download(capped_hub.url, REPO, FILE, capped_hub.commit, wd / f"hf-capped-{i}", size,
                                          disable_xet=True)
                    row: dict[str, Any] = {"seconds": seconds, "origin_bytes": sum(capped_hub.bytes_sent().values())}
                else:
                    row = _mount_cold_read(capped_hub, wd, f"capped-{v}-{i}", v, size)
                rows[v].append(row)
                extra = f", TTFB {fmt_secs(row['ttfb_s'])}, published {row['published']}" if v != "hf" else ""
                print(f"  run {i + 1} {v:4}: {fmt_secs(row['seconds'])} ({fmt_rate(size, row['seconds'])}), "
                      f"origin {row['origin_bytes'] / size:.3f} x file{extra}", flush=True)
        if args.profile:
            for v in ("open", "lazy"):
                _mount_cold_read(capped_hub, wd, f"capped-{v}-profiled", v, size,
                                 lambda pid, v=v: maybe_profile(True, pid, f"capped-{v}", report))
    summ: dict[str, dict[str, Any]] = {}
    for v, rs in rows.items():
        s = median([r["seconds"] for r in rs])
        summ[v] = {"seconds": s, "MiBps": size / s / MiB, "origin_bytes": median([r["origin_bytes"] for r in rs]),
                   "runs_s": [r["seconds"] for r in rs]}
        if v != "hf":
            summ[v] |= {"ttfb_s": median([r["ttfb_s"] for r in rs]), "published": [r["published"] for r in rs]}
        runs = ", ".join(f"{x:.2f}" for x in summ[v]["runs_s"])
        report.metric(f"capped.{v}", summ[v], f"capped {v:4}: {fmt_secs(s)} ({fmt_rate(size, s)}; runs {runs} s), "
                      f"origin {summ[v]['origin_bytes'] / size:.3f} x file"
                      + (f", TTFB {fmt_secs(summ[v]['ttfb_s'])}" if v != "hf" else ""))
    for v in ("open", "lazy"):
        report.ratio(f"4 capped origin, cold read --fill {v}: mount / hf_hub_download (throughput)",
                     summ["hf"]["seconds"] / summ[v]["seconds"], CAPPED_TARGET)


PARTS = {"stored": stored, "lazy": lazy, "cold": cold, "capped": capped}


def body(args: argparse.Namespace, report: Report) -> None:
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise BenchError(f"unknown part(s) {sorted(unknown)}; known: {', '.join(PARTS)}")
    if os.geteuid() != 0:
        report.note("not root: page caches cannot be dropped ('cold' stored reads are warm) and the mount "
                    "cannot raise its read-ahead")
    # backstop: a read stuck on a hung mount never returns to the watchdog; killing the
    # mount processes aborts their FUSE connections so the read fails and cleanup runs
    backstop = threading.Timer(args.timeout + 20, HoardMount.kill_all)
    backstop.daemon = True
    backstop.start()
    try:
        with workdir(args, NAME) as wd, FakeHubProcess(REPO, {FILE: (args.size, SEED)}, log=wd / "hub.log") as hub:
            for part in parts:
                PARTS[part](args, report, hub, wd)
    finally:
        backstop.cancel()


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__ or "", size="512MiB", quick_size="64MiB", timeout=1200)
    p.add_argument("--parts", default="stored,lazy,cold,capped",
                   help="which measurements (default stored,lazy,cold,capped)")
    p.add_argument("--cap", type=float, default=100e6,
                   help="bytes per second the capped origin of part 4 allows each connection (default 100e6)")
    p.add_argument("--read-sizes", action="store_true",
                   help="extra uncounted reads under strace: the read sizes/offsets the filesystem receives")
    p.add_argument("--read-sizes-dd", action="store_true", help="with --read-sizes: also trace a cold dd read")
    return run_main(NAME, p.parse_args(argv), body)


if __name__ == "__main__":
    raise SystemExit(main())
