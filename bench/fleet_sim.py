"""Extrapolate a fleet pulling one model: origin, parent and bucket bytes, and time, for N nodes
under the three deployments of docs/SCALING.md, from measured figures.

    python -m bench.fleet_sim [--model 16GiB] [--nodes 1,10,100,1000] [--from bench/results/fleet.json]

A deliberately small model (a back-of-envelope, not a network simulator): every link is a
bandwidth, every tier is fed once per model by the tier above it (the figures measured here:
one fetch per file per tier, origin bytes 1.00x), and a tier serves its children at its own
egress bandwidth, shared evenly. Time is the slowest stage of the pipeline, because a tier
streams to its children while it fills (hoard's fetch core, the bucket's shared fill):

* ``one-proxy``  N nodes -> one ``hoard serve`` -> origin;
* ``nginx-tier`` N nodes -> K nginx caches (``--caches``) -> one ``hoard serve`` -> origin;
* ``bucket``     N nodes -> one bucket (``--bucket-servers`` gateways of the measured speed):
  one leader pulls from the origin, the others follow it through the bucket;
* ``bucket+regional`` N nodes -> R regional ``hoard serve --blob-store`` (``--regions``)
  -> one bucket: the bucket serves R proxies, each proxy N/R nodes.

Defaults are this VM's measured figures (bench/README.md, bench/results/fleet.json when
present): a parent's egress ~2,000 MiB/s (proxy_hit), a node's ingest ~400 MiB/s
(proxy_cold, fleet warm), the origin at ``--origin-MiBps`` (default 100 MiB/s, a typical
Hub download), the bucket at the measured plain-GET aggregate per gateway.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from .common import RESULTS, parse_size

__all__ = ["Figures", "Estimate", "simulate", "main"]


@dataclass(frozen=True)
class Figures:
    origin: float = 100.0  # MiB/s the origin gives one client
    node: float = 400.0  # MiB/s one node can take in (verify + write)
    parent: float = 2000.0  # MiB/s one hoard serve sends out
    cache: float = 2500.0  # MiB/s one nginx cache sends out
    gateway: float = 450.0  # MiB/s one bucket gateway sends out (all clients together)


@dataclass(frozen=True)
class Estimate:
    topology: str
    nodes: int
    origin_bytes: float
    parent_bytes: float
    bucket_bytes: float
    seconds: float


def simulate(model: int, n: int, f: Figures, *, caches: int = 10, gateways: int = 4, regions: int = 20) -> list[Estimate]:
    """The three deployments for ``n`` nodes pulling a ``model``-byte model cold."""
    mib = model / (1 << 20)
    out = [Estimate("one-proxy", n, model, n * model, 0.0,
                    max(mib / f.origin, mib / f.node, n * mib / f.parent))]
    k = max(1, min(caches, n))
    out.append(Estimate("nginx-tier", n, model, k * model, 0.0,
                        max(mib / f.origin, mib / f.node, k * mib / f.parent, (n / k) * mib / f.cache)))
    # nodes straight on the bucket: the leader's pieces and then its blob go up (2x), and every
    # other node reads the model from the bucket as it lands
    out.append(Estimate("bucket", n, model, 0.0, 2 * model + (n - 1) * model,
                        max(mib / f.origin, mib / f.node, n * mib / (f.gateway * gateways))))
    # regional proxies on the bucket: R `hoard serve --blob-store` share it, nodes use their
    # region's proxies (--upstream); the bucket sees R readers, each proxy N/R nodes
    r = max(1, min(regions, n))
    out.append(Estimate("bucket+regional", n, model, n * model, 2 * model + (r - 1) * model,
                        max(mib / f.origin, mib / f.node, (n / r) * mib / f.parent, r * mib / (f.gateway * gateways))))
    return out


def _figures(path: Path, origin: float) -> Figures:
    if not path.exists():
        return Figures(origin=origin)
    doc = json.loads(path.read_text())
    m = doc.get("metrics", {})
    warm, plain = m.get("warm", {}), m.get("plain_get", {})
    return Figures(origin=origin, node=float(warm.get("per_node_MiBps") or 400.0) if doc["params"].get("nodes") == 1
                   else 400.0, gateway=float(plain.get("n_aggregate_MiBps") or 450.0))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="16GiB", help="model size (default 16GiB)")
    p.add_argument("--nodes", default="1,10,100,1000", help="fleet sizes (default 1,10,100,1000)")
    p.add_argument("--origin-MiBps", dest="origin", type=float, default=100.0)
    p.add_argument("--caches", type=int, default=10, help="nginx caches in the nginx tier (default 10)")
    p.add_argument("--bucket-servers", dest="gateways", type=int, default=4, help="bucket gateways (default 4)")
    p.add_argument("--regions", type=int, default=20, help="regional proxies on the bucket (default 20)")
    p.add_argument("--from", dest="source", default=str(RESULTS / "fleet.json"), help="measured figures (bench.fleet)")
    args = p.parse_args(argv)
    model = parse_size(args.model)
    figures = _figures(Path(args.source), args.origin)
    print(f"model {_size(model)}; {figures}")
    print(f"{'nodes':>6} {'deployment':<15} {'origin':>12} {'parent out':>12} {'bucket I/O':>12} {'time':>10}")
    for n in (int(x) for x in args.nodes.split(",")):
        for e in simulate(model, n, figures, caches=args.caches, gateways=args.gateways, regions=args.regions):
            print(f"{n:>6} {e.topology:<15} {_size(e.origin_bytes):>12} {_size(e.parent_bytes):>12} "
                  f"{_size(e.bucket_bytes):>12} {e.seconds:>9,.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
