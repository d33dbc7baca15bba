"""Run every benchmark in sequence (each in its own process) and print a summary table.

    python -m bench.run [--quick] [--only ingest,proxy_hit] [--skip olah_compare] [--profile]

Each benchmark writes ``bench/results/<name>.json``; this reads them back for the table and
writes ``bench/results/summary.json``. Exit status: 0 when every benchmark ran (a missed
target is a result, not a failure), 1 when one could not run or crashed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from .common import RESULTS, ROOT

BENCHMARKS = ("ingest", "index_scale", "proxy_hit", "proxy_cold", "olah_compare", "mount_read", "fleet", "soak")


def _verdict(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "-"}[met]


def _key_numbers(doc: dict) -> str:  # type: ignore[type-arg]
    m = doc.get("metrics", {})
    name = doc["name"]
    try:
        if name == "ingest":
            return (f"warm {m['warm.hoard_MiBps']:,.0f} vs {m['warm.anchor_MiBps']:,.0f} MiB/s; "
                    f"cold {m['cold.hoard_MiBps']:,.0f} vs {m['cold.anchor_MiBps']:,.0f} MiB/s")
        if name == "index_scale":
            return (f"resolve p50 {m['resolve_hit']['p50_s'] * 1e6:.1f} µs p99 {m['resolve_hit']['p99_s'] * 1e6:.1f} µs; "
                    f"ls {min(m['ls']['cli_warm_s']):.2f} s, gc -n {min(m['gc_dry_run']['cli_warm_s']):.2f} s")
        if name == "proxy_hit":
            return ", ".join(f"{k.split('.', 1)[1]} {v['MiBps']:,.0f}" for k, v in m.items()
                             if k.startswith("aiohttp.")) + " MiB/s (aiohttp)"
        if name == "proxy_cold":
            out = [f"{tag} hoard {m[tag + '.hoard']['wall_s']:.2f} s vs direct {m[tag + '.direct']['wall_s']:.2f} s, "
                   f"TTFB {m[tag + '.hoard']['ttfb_s'] * 1e3:.0f} ms" for tag in ("one", "four") if tag + ".hoard" in m]
            if "capped" in m:
                out.append(f"capped hf_hub_download {m['capped']['hoard_s']:.2f} vs {m['capped']['direct_s']:.2f} s")
            return "; ".join(out)
        if name == "olah_compare":
            return (f"GET cold {m['hoard']['get_cold_s']:.2f}/{m['olah']['get_cold_s']:.2f} s, "
                    f"hot {m['hoard']['get_hot_s']:.2f}/{m['olah']['get_hot_s']:.2f} s (hoard/olah)")
        if name == "mount_read":
            c, w, lz = m.get("stored.python.cold"), m.get("stored.python.warm"), m.get("lazy")
            if "stored.python.cold" not in m and "capped.open" in m:
                return (f"capped cold read open/lazy/hf {m['capped.open']['seconds']:.2f}/{m['capped.lazy']['seconds']:.2f}/"
                        f"{m['capped.hf']['seconds']:.2f} s")
            return (f"stored cold {c['mount_MiBps']:,.0f}/{c['blob_MiBps']:,.0f}, warm {w['mount_MiBps']:,.0f}/"
                    f"{w['blob_MiBps']:,.0f} MiB/s (mount/blob); lazy TTFB {lz['mount']['ttfb_s'] * 1e3:.1f}/"
                    f"{lz['direct']['ttfb_s'] * 1e3:.1f} ms; cold open/lazy/hf {m['cold.open']['seconds']:.2f}/"
                    f"{m['cold.lazy']['seconds']:.2f}/{m['cold.hf']['seconds']:.2f} s")
        if name == "fleet":
            return (f"cold fleet origin x{m['cold']['origin_x']:.3f}; warm {m['warm']['per_node_MiBps']:,.0f} MiB/s a node "
                    f"vs plain GET {m['plain_get']['n_aggregate_MiBps'] / doc['params']['nodes']:,.0f}, TTFB {m['warm']['ttfb_s'] * 1e3:.0f} ms")
    except (KeyError, TypeError, ValueError):
        pass
    return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (each benchmark in seconds)")
    p.add_argument("--only", default="", help="comma-separated benchmarks to run")
    p.add_argument("--skip", default="", help="comma-separated benchmarks to skip")
    p.add_argument("--profile", action="store_true", help="pass --profile to each benchmark")
    p.add_argument("--workdir", default=None, help="scratch directory for every benchmark")
    args = p.parse_args(argv)
    only = [n for n in args.only.split(",") if n]
    skip = {n for n in args.skip.split(",") if n}
    unknown = (set(only) | skip) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(BENCHMARKS)}")
    names = [n for n in (only or BENCHMARKS) if n not in skip]
    extra = (["--quick"] if args.quick else []) + (["--profile"] if args.profile else []) \
        + (["--workdir", args.workdir] if args.workdir else [])
    status: dict[str, str] = {}
    started = time.time()
    for name in names:
        out = RESULTS / f"{name}.json"
        out.unlink(missing_ok=True)
        t0 = time.time()
        rc = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], cwd=ROOT).returncode
        status[name] = "ok" if rc == 0 else f"exit {rc}"
        print(f"-- {name}: {status[name]} in {time.time() - t0:.0f}s\n", flush=True)
    rows = []
    docs = {}
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            rows.append([name, "(no result)", "", "", status[name], ""])
            continue
        doc = json.loads(path.read_text())
        docs[name] = doc
        if doc.get("error"):
            rows.append([name, f"ERROR: {doc['error'][:70]}", "", "", "", ""])
        for i, r in enumerate(doc.get("ratios", [])):
            target = "" if r["target"] is None else (">= " if r["higher_is_better"] else "<= ") + f"{r['target']:g}"
            rows.append([name if i == 0 else "", r["name"], f"{r['value']:.3f}", target, _verdict(r["met"]),
                         _key_numbers(doc) if i == 0 else ""])
    headers = ["BENCH", "RATIO", "VALUE", "TARGET", "", "KEY NUMBERS"]
    widths = [max(len(str(x[i])) for x in [headers, *rows]) for i in range(len(headers))]
    print(f"== summary ({time.time() - started:.0f}s{', quick' if args.quick else ''})")
    for row in [headers, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps({"status": status, "results": docs}, indent=2) + "\n")
    return 0 if all(s == "ok" for s in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
