"""The origin of the soak benchmark: the test suite's fake Hub + CDN in its own process,
with one repo of files to hit and new repos made on demand for cold misses.

    python -m bench.soak_origin --repo bench/soak NAME:SIZE:SEED [...]

Prints one JSON line once both origins listen (urls, the hit repo's commit, its files), then
answers one JSON line per stdin command:

* ``cold R N SIZE`` — R new repos ``bench/cold-<k>``, each holding N files of SIZE bytes
  (``.bin``: LFS, so they go through the CDN redirect like model weights); replies, per repo,
  its commit and its files' paths and seeds, so the client can check what it receives;
* ``stats`` — payload bytes sent per origin and requests logged since the last ``stats``
  (the fake's log is cleared then, so it does not grow with the run); ``quit``.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import ROOT  # noqa: F401 - puts the repo root on sys.path


def main() -> None:
    from tests.fakes.content import Content
    from tests.fakes.hub import FakeHub

    p = argparse.ArgumentParser(prog="python -m bench.soak_origin")
    p.add_argument("--repo", required=True)
    p.add_argument("files", nargs="+", help="PATH:SIZE:SEED")
    args = p.parse_args()
    files = {}
    for spec in args.files:
        path, size, seed = spec.rsplit(":", 2)
        files[path] = Content(seed, int(size))
    hub = FakeHub(block_size=1 << 20, xet=True, ratelimit_headers=False)
    hub.start()
    try:
        commit = hub.add_repo(args.repo, files)
        print(json.dumps({"url": hub.url, "cdn_url": hub.cdn_url, "repo": args.repo, "commit": commit,
                          "files": {p: {"size": c.size, "blake3": c.blake3} for p, c in files.items()}}), flush=True)
        made = 0
        for line in sys.stdin:
            cmd, *rest = line.split()
            if cmd == "cold":
                repos, count, size = (int(x) for x in rest)
                made_now = []
                for _ in range(repos):
                    made += 1
                    repo = f"bench/cold-{made}"
                    cold = {f"w{i:04d}.bin": Content(f"{repo}/{i}", size) for i in range(count)}
                    sha = hub.add_repo(repo, cold)
                    made_now.append({"repo": repo, "commit": sha,
                                     "files": [[path, f"{repo}/{i}"] for i, path in enumerate(cold)]})
                print(json.dumps(made_now), flush=True)
            elif cmd == "stats":
                sent, n = hub.bytes_sent, len(hub.requests)
                hub.clear_log()
                print(json.dumps(sent | {"requests": n}), flush=True)
            elif cmd == "quit":
                break
            else:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
