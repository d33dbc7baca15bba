"""Index at scale: 1,000,000 aliases over 100,000 blobs; lookups, ``ls``, ``gc --dry-run``, ``info``.

The index is written straight through :class:`hoard.store.index.Index` write transactions in
batches (``putmulti``, the key layout of ``store/records.py``), which takes seconds instead of
the hours 100,000 real ingests would. Blob files are *not* created: every command measured
here works from the index alone (``gc --dry-run`` plans from index records and only scans
``tmp/`` and ``partial/``; ``ls`` and ``info`` never open a blob), so their absence changes
nothing measured. Each blob has ``aliases/blobs`` aliases (the first is the file identity a
snapshot names, ``sha256:<hex>``; the others ``gitsha1:``-style aliases); blobs are grouped
into repos of 100 files with a ``main`` ref; 1 % of the repos are pinned. Blob sizes are
log-uniform between 1 KiB and 4 GiB, last access spread over 90 days.

Measured: ``Store.resolve`` latency (p50/p99 over random hits, and misses), then ``hoard ls``,
``hoard gc --max-size <half> --dry-run`` and ``hoard info`` through the CLI (a subprocess,
warm and with the page cache dropped) and through the Python API. There is no anchor ratio;
the targets are lookups in microseconds and ``ls``/``gc --dry-run`` in seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import time
from pathlib import Path

import blake3

from .common import BenchError, Report, base_parser, drop_caches, fmt_bytes, fmt_secs, median, percentile, run_main, workdir
from .ingest import hoard_cmd
from .profiling import maybe_profile
from .servers import clean_env

NAME = "index_scale"
FILES_PER_REPO = 100
_BATCH = 100_000
_DAY = 86400
LOOKUP_TARGET_S = 100e-6  # p99 of a lookup: "microseconds"
COMMAND_TARGET_S = 10.0  # ls / gc --dry-run / info: "seconds"


def blob_b3(i: int) -> str:
    return blake3.blake3(b"bench-blob-%d" % i).hexdigest()


def alias_of(i: int, j: int) -> str:
    """Alias j of blob i: j == 0 is the identity snapshots use."""
    digest = blake3.blake3(b"bench-alias-%d-%d" % (i, j)).hexdigest()
    return f"sha256:{digest}" if j == 0 else f"gitsha1:{digest[:40]}"


def build(home: Path, nblobs: int, naliases: int, report: Report) -> dict[str, object]:
    from hoard.store.config import StoreConfig
    from hoard.store.records import BlobRecord, Snapshot, TreeEntry
    from hoard.store.store import Store

    per_blob = max(1, naliases // nblobs)
    rng = random.Random(42)
    now = int(time.time())
    sizes = [int(2 ** rng.uniform(10, 32)) for _ in range(nblobs)]
    t0 = time.perf_counter()
    with Store(StoreConfig(home)) as store:
        index = store.index
        blobs_db, aliases_db, byblob_db = index.db("blobs"), index.db("aliases"), index.db("byblob")
        for start in range(0, nblobs, _BATCH // per_blob):
            stop = min(nblobs, start + _BATCH // per_blob)
            blob_items, alias_items, rev_items = [], [], []
            for i in range(start, stop):
                key = bytes.fromhex(blob_b3(i))
                rec = BlobRecord(sizes[i], now - 120 * _DAY, now - rng.randrange(90 * _DAY))
                blob_items.append((key, rec.encode()))
                for j in range(per_blob):
                    alias = alias_of(i, j).encode()
                    alias_items.append((alias, key))
                    rev_items.append((key + alias, b""))
            with index.write() as txn:
                txn.cursor(db=blobs_db).putmulti(blob_items)
                txn.cursor(db=aliases_db).putmulti(alias_items)
                txn.cursor(db=byblob_db).putmulti(rev_items)
        repos = []
        for r in range(0, nblobs, FILES_PER_REPO):
            files = {
                f"model-{k:05d}.safetensors": TreeEntry(
                    sizes[i], alias_of(i, 0), {"oid": blob_b3(i)[:40], "lfs": {"oid": alias_of(i, 0)[7:], "size": sizes[i]}}
                )
                for k, i in enumerate(range(r, min(nblobs, r + FILES_PER_REPO)))
            }
            repo = f"huggingface/org{r // FILES_PER_REPO % 100}/model{r // FILES_PER_REPO}"
            rev = blake3.blake3(repo.encode()).hexdigest()[:40]
            store.put_snapshot(repo, rev, Snapshot(files, now - 30 * _DAY, {}), refs=["main"])
            repos.append((repo, rev))
        for repo, rev in repos[:: 100]:
            store.pin(f"snapshot:{repo}@{rev}")
        counts = index.counts()
    build_s = time.perf_counter() - t0
    mdb = home / "index" / "data.mdb"
    report.metric("build_s", build_s, f"built {counts['aliases']:,} aliases, {counts['blobs']:,} blobs, "
                  f"{counts['snapshots']:,} repos in {fmt_secs(build_s)}; index file {fmt_bytes(mdb.stat().st_size)}")
    report.metric("counts", counts)
    report.metric("index_bytes", mdb.stat().st_size)
    if counts["aliases"] != nblobs * per_blob or counts["blobs"] != nblobs:
        raise BenchError(f"index holds {counts}, expected {nblobs * per_blob} aliases / {nblobs} blobs")
    return {"total_bytes": sum(sizes), "per_blob": per_blob}


def lookups(home: Path, nblobs: int, per_blob: int, n: int, report: Report) -> None:
    from hoard.store.config import StoreConfig
    from hoard.store.store import Store

    rng = random.Random(7)
    with Store(StoreConfig(home)) as store:
        for label, make, expect_hit in (
            ("hit", lambda: alias_of(rng.randrange(nblobs), rng.randrange(per_blob)), True),
            ("miss", lambda: f"sha256:{rng.getrandbits(256):064x}", False),
        ):
            count = n if expect_hit else max(1000, n // 10)
            names = [make() for _ in range(count)]
            times = []
            for name in names:
                t0 = time.perf_counter_ns()
                got = store.resolve(name)
                times.append(time.perf_counter_ns() - t0)
                if (got is not None) != expect_hit:
                    raise BenchError(f"resolve({name}) gave {got}")
            p50, p99 = percentile(times, 50) / 1e9, percentile(times, 99) / 1e9
            report.metric(f"resolve_{label}", {"n": count, "p50_s": p50, "p99_s": p99, "mean_s": sum(times) / len(times) / 1e9},
                          f"Store.resolve ({label}, {count:,} random): p50 {fmt_secs(p50)}, p99 {fmt_secs(p99)}")
            if expect_hit:
                report.ratio("resolve p99 / 100 µs", p99 / LOOKUP_TARGET_S, 1.0, higher_is_better=False,
                             note="target: lookups in microseconds")


def cli(args: list[str], home: Path | None) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([*hoard_cmd(), *args, *(["--home", str(home)] if home else [])], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=clean_env(), timeout=600)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"hoard {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return dt


def commands(home: Path, half: int, args: argparse.Namespace, report: Report) -> None:
    from hoard.store.catalog import list_repos
    from hoard.store.config import StoreConfig
    from hoard.store.gc import plan_gc
    from hoard.store.store import Store

    def info_api(store: Store) -> object:
        return store.usage(), store.index.counts(), store.repos()

    ops = {
        "ls": (["ls"], lambda s: list_repos(s)),
        "gc_dry_run": (["gc", "--max-size", str(half), "--dry-run"], lambda s: plan_gc(s, half)),
        "info": (["info"], info_api),
    }
    start = [cli(["--help"], None) for _ in range(args.repeat)]
    report.metric("cli_startup_s", median(start), f"hoard --help (process start): {fmt_secs(median(start))}")
    with Store(StoreConfig(home)) as store:
        plan = plan_gc(store, half)
        report.metric("gc_plan", {"victims": len(plan.victims), "freed": plan.freed, "protected": plan.protected},
                      f"gc plan: {len(plan.victims):,} victims, {fmt_bytes(plan.freed)} freed, {plan.protected:,} protected")
    for name, (argv, api) in ops.items():
        warm = [cli(argv, home) for _ in range(args.repeat)]
        drop_caches()
        cold = cli(argv, home)
        api_times = []
        with Store(StoreConfig(home)) as store:
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                api(store)
                api_times.append(time.perf_counter() - t0)
        w, a = median(warm), median(api_times)
        if args.profile:  # one more API call, not counted: the profiler slows what it samples
            with Store(StoreConfig(home)) as store, maybe_profile(True, os.getpid(), f"api-{name}", report):
                api(store)
        report.metric(f"{name}", {"cli_warm_s": warm, "cli_cold_s": cold, "api_s": api_times},
                      f"hoard {' '.join(argv)}: CLI {fmt_secs(w)} warm, {fmt_secs(cold)} cold; API {fmt_secs(a)}")
        if name != "info":
            report.ratio(f"hoard {name} CLI warm / {COMMAND_TARGET_S:g} s", w / COMMAND_TARGET_S, 1.0,
                         higher_is_better=False, note="target: seconds")


def body(args: argparse.Namespace, report: Report) -> None:
    nblobs = args.blobs or (10_000 if args.quick else 100_000)
    naliases = args.aliases or (100_000 if args.quick else 1_000_000)
    nlookups = args.lookups or (10_000 if args.quick else 100_000)
    report.params.update(blobs=nblobs, aliases=naliases, lookups=nlookups)
    with workdir(args, NAME) as wd:
        home = wd / "home"
        built = build(home, nblobs, naliases, report)
        lookups(home, nblobs, int(built["per_blob"]), nlookups, report)  # type: ignore[call-overload]
        half = int(built["total_bytes"]) // 2  # type: ignore[call-overload]
        commands(home, half, args, report)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__ or "", size=None, quick_size=None, timeout=600)
    p.add_argument("--blobs", type=int, default=None, help="blobs (default 100,000; 10,000 with --quick)")
    p.add_argument("--aliases", type=int, default=None, help="aliases (default 1,000,000; 100,000 with --quick)")
    p.add_argument("--lookups", type=int, default=None, help="random lookups timed (default 100,000)")
    return run_main(NAME, p.parse_args(argv), body)


if __name__ == "__main__":
    raise SystemExit(main())
