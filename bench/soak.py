"""Soak: 64 concurrent clients against one ``hoard serve`` for 5 minutes.

The clients (:mod:`bench.soak_load`) mix whole-file hits by branch and by BLAKE3, Range
requests, HEADs and cold misses (files of repos nobody asked for yet, so the proxy goes to the
origin for their tree and bytes), and a few slow readers (a few KiB/s, with a 4 KiB receive
buffer: the proxy really waits on them). Every answer is checked (status, length, bytes).
The origin is the test suite's fake Hub + CDN in its own process (:mod:`bench.soak_origin`).

Phases: an anchor run of the same mix straight against the origin (``--anchor-duration``),
then ``hoard serve`` on an empty store: each file fetched once; a priming of its bounded
caches (``PRIME_REPOS`` cold repos, ``PRIME_FILES`` files each: more than the store's LRU of
256 trees and the 1,024 signed CDN locations it remembers), so that RSS growth measured
afterwards is not those caches filling up but a leak; ``--warmup`` seconds of the mix (not
counted); then ``--duration`` seconds measured, while the proxy's RSS (total and anonymous:
the rest is mostly the index's memory map, which grows with the index) and open descriptors
are sampled from ``/proc`` every ``--sample-every`` seconds.

Reported: errors (target 0: any failed or wrong answer, and errors in hoard's log), p50/p99
latency and time to first byte (overall and per operation; slow reads apart), throughput
(requests/s and MiB/s), the proxy's RSS at the start (after warm-up) and the end (growth
target < 10 %, without the index's memory map: those are page-cache pages of
``index/data.mdb`` that grow with the index, about 1 MiB per 1,000 new files, and are
reported apart) and its descriptors and CPU; ratios against the origin-direct anchor.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

from .clients import aio_fetch, aio_fetch_many
from .common import MiB, Report, base_parser, fmt_secs, median, parse_size, percentile, run_main, workdir
from .servers import FakeHubProcess, HoardServe, summarize_errors
from .soak_load import SLOW_PACE, ColdSupply, HitFile, Mix, Sample, Target, run_load

NAME = "soak"
REPO = "bench/soak"
KiB = 1 << 10
#: the cached files: a config, a tokenizer, a small and a larger LFS weight file (ranges come
#: from it), and the file slow readers read
FILES = {
    "config.json": (1234, "soak-config"),
    "tokenizer.json": (400 * KiB + 7, "soak-tokenizer"),
    "slow.json": (160 * KiB + 3, "soak-slow"),
    "small.safetensors": (4 * MiB + 5, "soak-small"),
    "model.safetensors": (32 * MiB + 11, "soak-model"),
}
BIG, SLOW = "model.safetensors", "slow.json"
RSS_GROWTH_TARGET = 0.10
#: cold misses come in new repos of COLD_FILES files, COLD_REPOS repos per request to the origin
COLD_REPOS, COLD_FILES = 10, 10
PRIME_REPOS, PRIME_FILES = 300, 4


class SoakOrigin(FakeHubProcess):
    """The fake Hub + CDN of :mod:`bench.soak_origin`: the hit repo, and cold repos on demand."""

    def __init__(self, log: Path) -> None:
        super().__init__(REPO, FILES, log=log)
        spec = [f"{path}:{size}:{seed}" for path, (size, seed) in FILES.items()]
        self.args = [sys.executable, "-m", "bench.soak_origin", "--repo", REPO, *spec]
        self._lock = threading.Lock()

    def ask(self, command: str) -> Any:
        """One command, one JSON answer (thread-safe: cold batches are made from threads)."""
        with self._lock:
            return self._ask(command)


def proc_stats(pid: int) -> dict[str, float]:
    """Of a process, from /proc: RSS, anonymous RSS and the RSS of the index's memory map
    (bytes), open descriptors, CPU seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    out: dict[str, float] = {"rss": 0, "anon": 0, "index_map": _index_map_rss(pid),
                             "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out["rss" if key == "VmRSS" else "anon"] = int(value.split()[0]) * 1024
    out["own"] = out["rss"] - out["index_map"]
    return out


def _index_map_rss(pid: int) -> int:
    """Resident bytes of the LMDB index file's mappings (``index/data.mdb``): page cache
    shared with every process using the store, growing with the index, reclaimable."""
    total, in_index = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping's header line
            in_index = len(head) == 6 and head[5].endswith("/index/data.mdb")
        elif in_index and head and head[0] == "Rss:":
            total += int(head[1]) * 1024
    return total


class Sampler:
    """Samples :func:`proc_stats` of a process every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append({"t": round(time.monotonic() - self._t0, 1)} | proc_stats(self.pid))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def summarize(samples: list[Sample], seconds: float) -> dict[str, Any]:
    """Counts, errors, throughput and latency percentiles (fast requests; slow reads apart)."""
    fast = [s for s in samples if s.op != "slow"]
    slow = [s for s in samples if s.op == "slow"]
    lat = [s.latency for s in fast] or [0.0]
    ttfb = [s.ttfb for s in fast] or [0.0]
    out: dict[str, Any] = {
        "requests": len(fast), "errors": sum(1 for s in samples if s.error), "seconds": seconds,
        "req_per_s": len(fast) / seconds, "MiBps": sum(s.nbytes for s in fast) / seconds / MiB,
        "p50_s": percentile(lat, 50), "p99_s": percentile(lat, 99),
        "ttfb_p50_s": percentile(ttfb, 50), "ttfb_p99_s": percentile(ttfb, 99),
        "slow_reads": len(slow), "slow_median_s": median([s.latency for s in slow]) if slow else None,
        "first_errors": [s.error for s in samples if s.error][:10],
        "ops": {},
    }
    for op in sorted({s.op for s in fast}):
        ls = [s.latency for s in fast if s.op == op]
        out["ops"][op] = {"n": len(ls), "p50_s": percentile(ls, 50), "p99_s": percentile(ls, 99),
                          "errors": sum(1 for s in fast if s.op == op and s.error)}
    return out


def _print_summary(which: str, summ: dict[str, Any], report: Report) -> None:
    ops = ", ".join(f"{op} {v['n']} (p50 {fmt_secs(v['p50_s'])}, p99 {fmt_secs(v['p99_s'])})"
                    for op, v in summ["ops"].items())
    slow = (f"; {summ['slow_reads']} slow reads (median {fmt_secs(summ['slow_median_s'])})"
            if summ["slow_reads"] else "")
    report.metric(which, summ, f"{which:6}: {summ['requests']} requests in {summ['seconds']:.0f} s: "
                  f"{summ['req_per_s']:,.0f} req/s, {summ['MiBps']:,.0f} MiB/s; latency p50 "
                  f"{fmt_secs(summ['p50_s'])}, p99 {fmt_secs(summ['p99_s'])} (first byte p50 "
                  f"{fmt_secs(summ['ttfb_p50_s'])}, p99 {fmt_secs(summ['ttfb_p99_s'])}); errors {summ['errors']}{slow}\n"
                  f"    per operation: {ops}")
    for err in summ["first_errors"]:
        print(f"    error: {err}")


def _target(base: str, hoard: bool, origin: SoakOrigin) -> Target:
    files = {p: HitFile(p, size, origin.file(p)["blake3"], seed) for p, (size, seed) in FILES.items()}
    return Target(base, hoard, REPO, origin.commit, files, BIG, SLOW)


def _warm(serve: HoardServe, target: Target) -> None:
    """Every file fetched once through the proxy, and its blob published."""
    for f in target.files.values():
        aio_fetch(f"{serve.url}/{REPO}/resolve/{target.commit}/{f.path}", f.size)
        deadline = time.monotonic() + 60
        while aio_fetch_status(f"{serve.url}/v1/blobs/{f.blake3}") != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{f.path} was not published within 60 s")
            time.sleep(0.1)


def aio_fetch_status(url: str) -> int:
    try:
        return aio_fetch(url).status
    except Exception:  # noqa: BLE001 - not there yet
        return 0


def _prime(serve: HoardServe, origin: SoakOrigin, size: int) -> int:
    """Cold misses of PRIME_REPOS new repos, PRIME_FILES files each, as fast as they go."""
    paths = ColdSupply(origin.ask, repos=PRIME_REPOS, files=PRIME_FILES, size=size).batch()
    aio_fetch_many([serve.url + path for path, _ in paths], size)
    return len(paths)


def body(args: argparse.Namespace, report: Report) -> None:
    mix, cold_size = Mix(), parse_size(args.cold_size)
    report.params.update(mix=vars(mix), files={p: s for p, (s, _) in FILES.items()}, slow_pace=SLOW_PACE)
    with workdir(args, NAME) as wd, SoakOrigin(log=wd / "origin.log") as origin:
        load = {"clients": args.clients - args.slow, "slow": args.slow, "mix": mix}
        direct = _target(origin.url, False, origin)
        print(f"  anchor: the same mix straight from the origin for {args.anchor_duration:.0f} s", flush=True)
        supply = {"repos": COLD_REPOS, "files": COLD_FILES, "size": cold_size}
        run_load(direct, seconds=args.anchor_duration, cold=ColdSupply(origin.ask, **supply), **load)
        _print_summary("direct", summarize(direct.samples, args.anchor_duration), report)
        with HoardServe(wd / "home", origin.url, log=wd / "serve.log") as serve:
            target = _target(serve.url, True, origin)
            _warm(serve, target)
            primed = _prime(serve, origin, cold_size)
            print(f"  hoard: caches primed with {primed} cold misses ({PRIME_REPOS} repos); RSS "
                  f"{proc_stats(serve.pid)['rss'] / MiB:,.1f} MiB", flush=True)
            cold = ColdSupply(origin.ask, **supply)
            run_load(target, seconds=args.warmup, cold=cold, seed=2, **load)
            target.samples.clear()
            start = proc_stats(serve.pid)
            print(f"  hoard: {args.duration:.0f} s measured, after {args.warmup:.0f} s of warm-up; RSS at start "
                  f"{start['rss'] / MiB:,.1f} MiB, {start['fds']:.0f} fds", flush=True)
            origin.ask("stats")
            t = os.times()
            _OWN_CPU[:] = [t.user + t.system, time.monotonic()]
            with Sampler(serve.pid, args.sample_every) as sampler:
                run_load(target, seconds=args.duration, cold=cold, seed=3, **load)
            end = proc_stats(serve.pid)
            origin_stats = origin.ask("stats")
            errors = serve.log_errors()
        summ = summarize(target.samples, args.duration)  # fast clients stop sending at the end
        summ["errors"] += len(errors)
        _print_summary("hoard", summ, report)
        _resources(report, start, end, sampler.samples, cold, origin_stats, errors)
        anchor = report.metrics["direct"]
        report.ratio("errors / requests (hoard)", summ["errors"] / max(1, summ["requests"]), 0.0,
                     higher_is_better=False)
        report.ratio("RSS growth over the run, the index's memory map aside (end / start - 1)",
                     end["own"] / start["own"] - 1, RSS_GROWTH_TARGET, higher_is_better=False)
        report.ratio("RSS growth over the run, all of it", end["rss"] / start["rss"] - 1, None, higher_is_better=False,
                     note=f"the index map grew {(end['index_map'] - start['index_map']) / MiB:.1f} MiB "
                          "with the index: page cache of index/data.mdb")
        report.ratio("anonymous RSS growth over the run", end["anon"] / start["anon"] - 1, None,
                     higher_is_better=False)
        report.ratio("throughput hoard / origin direct (requests/s)", summ["req_per_s"] / anchor["req_per_s"], None)
        report.ratio("throughput hoard / origin direct (MiB/s)", summ["MiBps"] / anchor["MiBps"], None)
        report.ratio("p99 latency origin direct / hoard", anchor["p99_s"] / summ["p99_s"], None,
                     note="> 1: hoard answers faster")


def _resources(report: Report, start: dict[str, float], end: dict[str, float], series: list[dict[str, float]],
               cold: ColdSupply, origin_stats: dict[str, int], errors: list[str]) -> None:
    peak_rss = max([s["rss"] for s in series] + [end["rss"]])
    peak_fds = max([s["fds"] for s in series] + [end["fds"]])
    report.metric("resources", {"start": start, "end": end, "peak_rss": peak_rss, "peak_fds": peak_fds,
                                "series": series},
                  f"hoard serve: RSS {start['rss'] / MiB:,.1f} -> {end['rss'] / MiB:,.1f} MiB (peak "
                  f"{peak_rss / MiB:,.1f}; anonymous {start['anon'] / MiB:,.1f} -> {end['anon'] / MiB:,.1f}; "
                  f"the index's map {start['index_map'] / MiB:,.1f} -> {end['index_map'] / MiB:,.1f}); "
                  f"fds {start['fds']:.0f} -> {end['fds']:.0f} (peak {peak_fds:.0f}); CPU "
                  f"{(end['cpu_s'] - start['cpu_s']) / max(1e-9, series[-1]['t'] if series else 1):.0%} of a core "
                  f"(the load generator: {_own_cpu():.0%})")
    report.metric("cold", {"files_made": cold.made, "supply_ran_out": cold.ran_out, "origin": origin_stats},
                  f"cold misses: {cold.made} new files made at the origin ({cold.ran_out} turned into hits while "
                  f"a batch was made); origin sent {(origin_stats['hub'] + origin_stats['cdn']) / MiB:,.1f} MiB "
                  f"in {origin_stats['requests']} requests during the measured run")
    if errors:
        report.metric("serve_errors", errors)
        report.note(f"hoard serve logged {len(errors)} error(s): {summarize_errors(errors)}")


_OWN_CPU: list[float] = []


def _own_cpu() -> float:
    """This process's CPU share since the measured run started (see body)."""
    t = os.times()
    return (t.user + t.system - _OWN_CPU[0]) / (time.monotonic() - _OWN_CPU[1]) if _OWN_CPU else 0.0


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__ or "", size=None, quick_size=None, timeout=1800)
    p.add_argument("--duration", type=float, default=None, help="measured seconds (default 300; 20 with --quick)")
    p.add_argument("--anchor-duration", type=float, default=None,
                   help="seconds of the origin-direct anchor (default 60; 5 with --quick)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of unmeasured load first (default 15; 3 with --quick)")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients, slow readers included (default 64)")
    p.add_argument("--slow", type=int, default=4, help="of which slow readers (default 4)")
    p.add_argument("--cold-size", default="128KiB", help="size of each cold-miss file (default 128KiB)")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS/fd samples (default 5)")
    args = p.parse_args(argv)
    for name, full, quick in (("duration", 300.0, 20.0), ("anchor_duration", 60.0, 5.0), ("warmup", 15.0, 3.0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return run_main(NAME, args, body)


if __name__ == "__main__":
    raise SystemExit(main())
