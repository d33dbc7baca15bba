"""hoard vs olah (vtuber-plan/olah, the closest existing HF pull-through mirror, also Python).

olah is installed from PyPI into its own venv (``--olah-venv``, default
/tmp/hoard-bench-venvs/olah, created on first use) so its dependencies never touch hoard's.
Both proxies point at the same fake Hub + CDN (``tests/fakes/hub.py``, own process): olah
with ``--hf-scheme http --hf-netloc <hub> --hf-lfs-netloc <cdn>`` (its mirror netlocs set to
its own loopback port), hoard with ``--hf-endpoint``. Each run starts both with empty caches.

Clients, identical for both:

* ``GET /<org>/<repo>/resolve/<commit>/<file>`` with aiohttp (follows redirects), cold (the
  proxy's cache is empty) then hot (twice; the median);
  (a body cut short is resumed with ``Range`` and counted, as huggingface_hub would);
* ``huggingface_hub.hf_hub_download`` in a subprocess with ``HF_ENDPOINT`` at the proxy and an
  empty client cache each time (so "hot" means the proxy's cache, not the client's), timed
  around the call only.

Reported: times, origin bytes, and the ratios olah time / hoard time (> 1: hoard faster).
There is no target in the issues; hoard is expected to be no slower than olah (ratio >= 1).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import venv
from pathlib import Path

from .clients import aio_fetch, hf_download
from .common import BenchError, Report, base_parser, fmt_rate, fmt_secs, median, run_main, workdir
from .profiling import maybe_profile
from .servers import FakeHubProcess, HoardServe, _stop, clean_env, free_port, summarize_errors, wait_port

NAME = "olah_compare"
REPO = "bench/olah"
FILE = "model.safetensors"
DEFAULT_VENV = Path("/tmp/hoard-bench-venvs/olah")
RESUMES = 3  # a cut body is resumed with Range (as huggingface_hub does) and counted

def ensure_olah(path: Path) -> Path:
    """olah-cli from its own venv, installed with pip on first use."""
    cli = path / "bin" / "olah-cli"
    if cli.exists():
        return cli
    print(f"  installing olah into {path} (pip install olah) ...", flush=True)
    try:
        venv.create(path, with_pip=True, clear=True)
        out = subprocess.run([str(path / "bin" / "pip"), "install", "--quiet", "olah"],
                             capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"cannot create a venv for olah at {path}: {exc}") from None
    if out.returncode != 0 or not cli.exists():
        raise BenchError(f"pip install olah failed into {path}: {out.stderr.strip()[-500:]}")
    return cli


class Olah:
    """``olah-cli`` on a loopback port with a fresh cache, upstream = the fake Hub."""

    def __init__(self, cli: Path, hub: FakeHubProcess, root: Path) -> None:
        self.cli, self.hub, self.root = cli, hub, root
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Olah:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        me = f"127.0.0.1:{self.port}"
        cmd = [str(self.cli), "--host", "127.0.0.1", "--port", str(self.port),
               "--hf-scheme", "http", "--hf-netloc", self.hub.url.split("//", 1)[1],
               "--hf-lfs-netloc", self.hub.cdn_url.split("//", 1)[1],
               "--mirror-scheme", "http", "--mirror-netloc", me, "--mirror-lfs-netloc", me,
               "--repos-path", str(self.root / "repos"), "--log-path", str(self.root / "logs")]
        with open(self.root / "olah.log", "w") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, 60, self.proc)
        except BenchError as exc:
            _stop(self.proc)
            tail = (self.root / "olah.log").read_text()[-1500:]
            raise BenchError(f"olah did not start: {exc}: {tail}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


def one_run(which: str, server: HoardServe | Olah, hub: FakeHubProcess, size: int, wd: Path) -> dict[str, float]:
    url = f"{server.url}/{REPO}/resolve/{hub.commit}/{FILE}"
    hub.clear()
    cold = aio_fetch(url, size, resume=RESUMES)
    origin = sum(hub.bytes_sent().values())
    hot = median([aio_fetch(url, size, resume=RESUMES).seconds for _ in range(2)])
    hf_hot = hf_download(server.url, REPO, FILE, hub.commit, wd / f"hf-cache-{which}", size)
    return {"get_cold_s": cold.seconds, "get_cold_ttfb_s": cold.ttfb, "get_hot_s": hot,
            "hf_hot_s": hf_hot, "origin_bytes": origin, "get_cold_cuts": len(cold.resumes)}


def hf_cold(which: str, start: object, hub: FakeHubProcess, size: int, wd: Path, errors: list[str]) -> float:
    """hf_hub_download through a proxy with an empty cache (a second, fresh proxy instance)."""
    with start(wd / f"{which}-hfcold") as server:  # type: ignore[operator]
        dt = hf_download(server.url, REPO, FILE, hub.commit, wd / f"hf-cache-cold-{which}", size)
    if isinstance(server, HoardServe):
        errors += server.log_errors()
    return dt


def body(args: argparse.Namespace, report: Report) -> None:
    size = args.size
    cli = ensure_olah(Path(args.olah_venv))
    with workdir(args, NAME) as wd, FakeHubProcess(REPO, {FILE: (size, "bench-olah")}, log=wd / "hub.log") as hub:
        starters = {
            "hoard": lambda root: HoardServe(root / "home", hub.url, log=root.with_suffix(".serve.log")),
            "olah": lambda root: Olah(cli, hub, root),
        }
        runs: dict[str, list[dict[str, float]]] = {"hoard": [], "olah": []}
        errors: list[str] = []
        for i in range(args.repeat):
            for which in (("hoard", "olah") if i % 2 == 0 else ("olah", "hoard")):
                root = wd / f"{which}-{i}"
                with starters[which](root) as server:
                    r = one_run(which, server, hub, size, wd)
                if isinstance(server, HoardServe):
                    errors += server.log_errors()
                r["hf_cold_s"] = hf_cold(which, starters[which], hub, size, wd / f"r{i}", errors)
                shutil.rmtree(root, ignore_errors=True)
                shutil.rmtree(wd / f"r{i}", ignore_errors=True)
                runs[which].append(r)
                print(f"  run {i + 1} {which:5}: GET cold {fmt_secs(r['get_cold_s'])}, hot {fmt_secs(r['get_hot_s'])}; "
                      f"hf_hub_download cold {fmt_secs(r['hf_cold_s'])}, hot {fmt_secs(r['hf_hot_s'])}", flush=True)
        if args.profile:  # one more hoard run, not counted: the profiler slows what it samples
            with starters["hoard"](wd / "hoard-profiled") as server, maybe_profile(True, server.pid, "serve", report):
                one_run("hoard", server, hub, size, wd)
        for which, rs in runs.items():
            cuts = sum(int(r["get_cold_cuts"]) for r in rs)
            if cuts:
                report.note(f"{which}: {cuts} cold GET body cut(s), resumed with Range; times include the resume")
        if errors:
            report.metric("serve_errors", errors)
            report.note(f"hoard serve logged {len(errors)} error(s): {summarize_errors(errors)}")
        med = {w: {k: median([r[k] for r in rs]) for k in rs[0]} for w, rs in runs.items()}
        for which, m in med.items():
            report.metric(which, m | {"runs": runs[which]},
                          f"{which:5}: GET cold {fmt_secs(m['get_cold_s'])} ({fmt_rate(size, m['get_cold_s'])}, TTFB "
                          f"{fmt_secs(m['get_cold_ttfb_s'])}), hot {fmt_secs(m['get_hot_s'])} ({fmt_rate(size, m['get_hot_s'])}); "
                          f"hf_hub_download cold {fmt_secs(m['hf_cold_s'])}, hot {fmt_secs(m['hf_hot_s'])}; "
                          f"origin {m['origin_bytes'] / size:.3f} x file")
        for key, label in (("get_cold_s", "GET cold"), ("get_hot_s", "GET hot"),
                           ("hf_cold_s", "hf_hub_download cold"), ("hf_hot_s", "hf_hub_download hot")):
            report.ratio(f"{label}: olah time / hoard time", med["olah"][key] / med["hoard"][key], None,
                         note="> 1: hoard faster")


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__ or "", size="512MiB", quick_size="32MiB", timeout=900)
    p.add_argument("--olah-venv", default=str(DEFAULT_VENV), help=f"venv holding olah (default {DEFAULT_VENV})")
    return run_main(NAME, p.parse_args(argv), body)


if __name__ == "__main__":
    raise SystemExit(main())
