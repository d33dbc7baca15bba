"""Proxy cache hit: ``hoard serve`` sending a blob it holds vs nginx sending the same file.

A 512 MiB file (``--size``) of a repo on the fake Hub is fetched once through ``hoard serve``
(which fills the store), then downloaded repeatedly, on a fresh connection each time:

* from hoard's own API, ``GET /v1/blobs/<b3>``;
* through the Hugging Face face, ``GET /<org>/<repo>/resolve/<commit>/<file>`` (snapshot
  lookup, alias resolution, HF headers, then the same sendfile);
* from nginx (Debian's package, one worker, ``sendfile on``) serving the store's ``blobs/``
  directory on another loopback port: the anchor.

Clients: aiohttp reading into nothing with a 4 MiB buffer, and curl ``-o /dev/null`` when it
is installed. Everything is in the page cache (each URL is read once before timing). Target:
throughput ratio hoard/nginx >= 0.9 for both faces; the median of ``--repeat`` runs, each run
being ``--gets`` downloads per URL with the URLs interleaved (single 512 MiB downloads take
~0.3 s on loopback, too short to time alone on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .clients import Fetch, aio_fetch, curl_fetch, have_curl
from .common import MiB, BenchError, Report, base_parser, fmt_bytes, fmt_rate, fmt_secs, median, run_main, workdir
from .profiling import maybe_profile
from .servers import FakeHubProcess, HoardServe, Nginx, summarize_errors

NAME = "proxy_hit"
TARGET = 0.9
REPO = "bench/hit"
FILE = "model.safetensors"


def body(args: argparse.Namespace, report: Report) -> None:
    size = args.size
    with workdir(args, NAME) as wd, FakeHubProcess(REPO, {FILE: (size, "bench-hit")}, log=wd / "hub.log") as hub:
        meta = hub.file(FILE)
        b3 = meta["blake3"]
        home = wd / "home"
        with HoardServe(home, hub.url) as serve:
            urls = {
                "hoard /v1/blobs": f"{serve.url}/v1/blobs/{b3}",
                "hoard HF resolve": f"{serve.url}/{REPO}/resolve/{hub.commit}/{FILE}",
            }
            print(f"  filling the store through hoard ({fmt_bytes(size)}) ...", flush=True)
            fill = aio_fetch(urls["hoard HF resolve"], size, resume=3)
            report.metric("fill_s", fill.seconds, f"first (cold) fetch {fmt_secs(fill.seconds)}")
            if fill.resumes:
                report.note(f"the cold fill's body was cut and resumed: {', '.join(fill.resumes)}")
            blob = home / "blobs" / b3[:2] / b3
            if not blob.exists():
                raise BenchError(f"after a full download the store has no blob {b3}")
            with Nginx(home / "blobs", wd / "nginx") as nginx:
                urls = {"nginx": nginx.url(f"{b3[:2]}/{b3}"), **urls}
                clients: dict[str, Callable[[str, int], Fetch]] = {"aiohttp": aio_fetch}
                if have_curl():
                    clients["curl"] = curl_fetch
                else:
                    report.note("curl not installed: aiohttp client only")
                for url in urls.values():
                    aio_fetch(url, size)  # page cache and connections warm, 200 everywhere
                for cname, fetch in clients.items():
                    measure(cname, fetch, urls, size, args, report)
                if args.profile:  # extra gets, not counted: the profiler slows what it samples
                    with maybe_profile(True, serve.pid, "serve", report):
                        for _ in range(args.gets):
                            aio_fetch(urls["hoard HF resolve"], size)
                            aio_fetch(urls["hoard /v1/blobs"], size)
            errors = serve.log_errors()
            if errors:
                report.metric("serve_errors", errors)
                report.note(f"hoard serve logged {len(errors)} error(s): {summarize_errors(errors)}")


def measure(cname: str, fetch: Callable[[str, int], Fetch], urls: dict[str, str], size: int, args: argparse.Namespace,
            report: Report) -> None:
    """``repeat`` runs; a run is ``gets`` sequential downloads per URL, URLs interleaved."""
    runs: dict[str, list[float]] = {k: [] for k in urls}
    ttfbs: dict[str, list[float]] = {k: [] for k in urls}
    names = list(urls)
    for i in range(args.repeat):
        total = dict.fromkeys(names, 0.0)
        for j in range(args.gets):
            k = i * args.gets + j
            for name in names[k % len(names):] + names[: k % len(names)]:  # rotate the order
                f = fetch(urls[name], size)
                total[name] += f.seconds
                ttfbs[name].append(f.ttfb)
        for name in names:
            runs[name].append(total[name] / args.gets)
    med = {k: median(v) for k, v in runs.items()}
    for name in names:
        ttfb = median(ttfbs[name])
        report.metric(f"{cname}.{name}", {"seconds_per_get": runs[name], "ttfb_s": ttfbs[name], "MiBps": size / med[name] / MiB},
                      f"{cname:7} {name:17} {fmt_secs(med[name]):>9}  {fmt_rate(size, med[name]):>12}  TTFB {fmt_secs(ttfb)}"
                      f"   runs {[round(size / x / MiB) for x in runs[name]]} MiB/s")
    for name in names[1:]:
        report.ratio(f"{cname}: {name} / nginx throughput", med["nginx"] / med[name], TARGET)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__ or "", size="512MiB", quick_size="64MiB", timeout=600)
    p.add_argument("--gets", type=int, default=4, help="downloads per URL in one run (default 4)")
    return run_main(NAME, p.parse_args(argv), body)


if __name__ == "__main__":
    raise SystemExit(main())
