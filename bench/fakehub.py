"""Run the test suite's fake Hub + CDN in this process for a benchmark (see bench.servers).

    python -m bench.fakehub --repo org/name model.safetensors:536870912:seed [...]
    python -m bench.fakehub --per-connection-rate 100e6 ...    # a CDN capping each connection

Prints one JSON line (urls, commit, per-file size/sha256/blake3) once both origins listen,
then answers one JSON line per command read from stdin: ``bytes`` (payload bytes per
origin), ``requests`` (requests logged), ``clear``. Exits at EOF or ``quit``.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import ROOT  # noqa: F401 - puts the repo root on sys.path


def main() -> None:
    from tests.fakes.content import Content
    from tests.fakes.hub import FakeHub

    p = argparse.ArgumentParser(prog="python -m bench.fakehub")
    p.add_argument("--repo", required=True)
    p.add_argument("--block-size", type=int, default=1 << 20)
    p.add_argument("--no-xet", action="store_true")
    p.add_argument("--per-connection-rate", type=float, default=None,
                   help="bytes per second each connection's body is paced at (a CDN's per-connection cap)")
    p.add_argument("files", nargs="+", help="PATH:SIZE:SEED")
    args = p.parse_args()
    files: dict[str, Content] = {}
    for spec in args.files:
        path, size, seed = spec.rsplit(":", 2)
        files[path] = Content(seed, int(size))
    # no rate-limit headers or gzip games needed; keep the Hub's redirect/LFS behaviour
    hub = FakeHub(block_size=args.block_size, xet=not args.no_xet, per_connection_rate=args.per_connection_rate)
    hub.start()
    try:
        commit = hub.add_repo(args.repo, files)
        out = {
            "url": hub.url,
            "cdn_url": hub.cdn_url,
            "repo": args.repo,
            "commit": commit,
            "files": {p: {"size": c.size, "sha256": c.sha256, "blake3": c.blake3} for p, c in files.items()},
        }
        print(json.dumps(out), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "bytes":
                print(json.dumps(hub.bytes_sent), flush=True)
            elif cmd == "requests":
                print(json.dumps(len(hub.requests)), flush=True)
            elif cmd == "clear":
                hub.clear_log()
                print("true", flush=True)
            elif cmd == "quit":
                break
            else:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
