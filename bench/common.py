"""What every benchmark shares: arguments, timing, page-cache control, reports, JSON output.

A benchmark builds a :class:`Report`: absolute measurements (``metric``) and ratios against
an anchor measured in the same run (``ratio``, each with its target). ``Report.finish`` prints
it and writes ``bench/results/<name>.json``. Each benchmark is bounded by a watchdog
(``--timeout``, SIGALRM) so it always stops by itself; servers it starts are context managers
that are torn down on every exit path.

The servers (nginx, ``hoard serve``, the fake Hub) live in :mod:`bench.servers`; HTTP
clients in :mod:`bench.clients`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1 << 20
GiB = 1 << 30

if str(ROOT) not in sys.path:  # `from tests.fakes...` needs the repo root importable
    sys.path.insert(0, str(ROOT))

__all__ = [
    "ROOT", "RESULTS", "MiB", "GiB", "Report", "Ratio", "base_parser", "parse_size", "fmt_bytes",
    "fmt_rate", "fmt_secs", "median", "percentile", "sync", "drop_caches", "workdir", "watchdog",
    "write_content", "timed", "BenchError",
]


class BenchError(RuntimeError):
    """A benchmark cannot run here (missing tool, failed setup); printed as one line."""


# -- numbers ----------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    from hoard.store.units import parse_size as _parse

    return _parse(text)


def fmt_bytes(n: float) -> str:
    from hoard.store.units import format_size

    return format_size(n)


def fmt_rate(nbytes: float, seconds: float) -> str:
    return f"{nbytes / seconds / MiB:,.0f} MiB/s" if seconds > 0 else "inf"


def fmt_secs(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile of an unsorted list (p in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# -- page cache -------------------------------------------------------------------------------

_DROP_WARNED = False


def sync() -> None:
    """Flush dirty pages so the previous run's writeback does not run during the next."""
    os.sync()


def drop_caches() -> bool:
    """Sync, then drop the page cache (root only). False, with one warning, where not allowed."""
    global _DROP_WARNED
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError as exc:
        if not _DROP_WARNED:
            print(f"  warning: cannot drop the page cache ({exc.strerror}); 'cold' runs are warm", file=sys.stderr)
            _DROP_WARNED = True
        return False


# -- arguments, work directory, watchdog ------------------------------------------------------


def base_parser(name: str, doc: str, *, size: str | None, quick_size: str | None, timeout: int = 600) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if size is not None:
        p.add_argument("--size", default=None, help=f"file size (default {size}; {quick_size} with --quick)")
        p.set_defaults(default_size=size, quick_size=quick_size)
    p.add_argument("--repeat", type=int, default=None, help="runs per measurement (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test in seconds")
    p.add_argument("--workdir", default=os.environ.get("HOARD_BENCH_DIR"),
                   help="where scratch files go (default a temp dir under /var/tmp; env HOARD_BENCH_DIR)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--timeout", type=int, default=timeout, help=f"abort after this many seconds (default {timeout})")
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/<name>.json")
    p.add_argument("--profile", action="store_true",
                   help="after the measured runs, one extra hoard run sampled with py-spy; prints where the time goes")
    return p


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve --quick defaults: ``args.size`` in bytes, ``args.repeat``."""
    if hasattr(args, "default_size"):
        args.size = parse_size(args.size or (args.quick_size if args.quick else args.default_size))
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


@contextlib.contextmanager
def workdir(args: argparse.Namespace, name: str) -> Iterator[Path]:
    """A scratch directory on a real disk (not tmpfs: O_DIRECT and the page cache matter)."""
    base = Path(args.workdir) if args.workdir else Path("/var/tmp")
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"hoard-bench-{name}-", dir=base))
    try:
        yield path
    finally:
        if args.keep:
            print(f"  kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def watchdog(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (cleanup still runs)."""

    def fire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"benchmark exceeded --timeout {seconds}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def write_content(path: Path, seed: str, size: int) -> None:
    """Write the fake Hub's deterministic content (BLAKE3 XOF of ``seed``) to ``path``."""
    from tests.fakes.content import Content

    content = Content(seed, size)
    with open(path, "wb") as fh:
        for block in content.iter_range(0, size, 16 * MiB):
            fh.write(block)


# -- reports ----------------------------------------------------------------------------------


@dataclass
class Ratio:
    name: str
    value: float
    target: float | None  # None: reported, no target
    higher_is_better: bool = True
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"met": self.met}

    def line(self) -> str:
        if self.target is None:
            verdict = ""
        else:
            op = ">=" if self.higher_is_better else "<="
            verdict = f"  target {op} {self.target:g}: {'MET' if self.met else 'MISSED'}"
        note = f"  ({self.note})" if self.note else ""
        return f"  RATIO {self.name}: {self.value:.3f}{verdict}{note}"


@dataclass
class Report:
    """Measurements of one benchmark run, printed and saved as JSON."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)

    def metric(self, key: str, value: Any, human: str | None = None) -> None:
        self.metrics[key] = value
        if human is not None:
            print(f"  {human}", flush=True)

    def ratio(self, name: str, value: float, target: float | None, *, higher_is_better: bool = True, note: str = "") -> Ratio:
        r = Ratio(name, value, target, higher_is_better, note)
        self.ratios.append(r)
        print(r.line(), flush=True)
        return r

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "duration_s": round(time.time() - self.started, 2),
            "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
            "params": self.params,
            "metrics": self.metrics,
            "ratios": [r.as_dict() for r in self.ratios],
            "notes": self.notes,
            "error": self.error,
        }

    def finish(self, args: argparse.Namespace) -> int:
        """Print the summary lines, write the JSON; exit code 0 if it ran (targets are data)."""
        print(f"== {self.name}: done in {time.time() - self.started:.1f}s" + (f"; ERROR: {self.error}" if self.error else ""))
        if not args.no_json:
            RESULTS.mkdir(parents=True, exist_ok=True)
            out = RESULTS / f"{self.name}.json"
            out.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")
            print(f"  wrote {out.relative_to(ROOT)}")
        return 1 if self.error else 0


def run_main(name: str, args: argparse.Namespace, body: Callable[[argparse.Namespace, Report], None]) -> int:
    """Run ``body`` under the watchdog; any failure is recorded in the report, not lost."""
    finish_args(args)
    report = Report(name, params={k: v for k, v in vars(args).items() if k not in ("default_size", "quick_size")})
    print(f"== {name}" + (" (quick)" if args.quick else ""), flush=True)
    try:
        with watchdog(args.timeout):
            body(args, report)
    except BenchError as exc:
        report.error = str(exc)
    except (Exception, KeyboardInterrupt) as exc:  # recorded, then re-raised with its traceback
        report.error = f"{type(exc).__name__}: {exc}"
        report.finish(args)
        raise
    return report.finish(args)
