"""Sampling profiles of a running process with py-spy, summarised without a browser.

``PySpy(pid, out)`` records while the ``with`` block runs (``--format raw``: one collapsed
stack per line with its sample count) and :func:`summarize` reads that back: the share of
samples per thread, and the functions with the most samples on top of the stack ("self")
and anywhere on it ("total"). Installed with ``pip install py-spy`` into hoard's venv.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from .common import RESULTS, Report

__all__ = ["PySpy", "summarize", "have_py_spy", "print_summary", "maybe_profile"]


def _binary() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def have_py_spy() -> bool:
    return _binary() is not None


class PySpy:
    """Record ``pid`` (all threads, idle included) into ``out`` (collapsed stacks)."""

    def __init__(self, pid: int, out: Path, rate: int = 250, idle: bool = False) -> None:
        self.pid, self.out, self.rate, self.idle = pid, out, rate, idle
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        binary = _binary()
        if binary is None:
            raise RuntimeError("py-spy is not installed: pip install py-spy")
        cmd = [binary, "record", "-p", str(self.pid), "-o", str(self.out), "-f", "raw", "-r", str(self.rate),
               "--threads", "--nonblocking"] + (["--idle"] if self.idle else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attach before the measured work starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    func, _, where = frame.partition(" (")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{func} ({file})" if file else func


#: frames from these source folders are hoard's own ("hoard" rows of the summary)
FOCUS = re.compile(r"\((?:.*/)?(?:store|proxy|fuse)/[^/]+\.py:")


def summarize(raw: Path, top: int = 15) -> dict[str, object]:
    """Per-thread shares, the top self/total functions, and hoard's own functions (inclusive)
    of a py-spy raw profile."""
    threads: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        # "thread (1234): asyncio_3" -> "asyncio_*" (executor workers pooled together)
        threads[re.sub(r"_\d+$", "_*", frames[0].split(": ", 1)[-1])] += n
        names = [_name(f) for f in frames[1:]] or ["?"]
        self_[names[-1]] += n
        for name in set(names):
            total[name] += n
        for name in {_name(f) for f in frames[1:] if FOCUS.search(f)}:
            ours[name] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / samples, 1)) for k, v in c.most_common(top)] if samples else []

    return {"samples": samples, "threads": pct(threads), "self": pct(self_), "total": pct(total), "hoard": pct(ours)}


def print_summary(summary: dict[str, object], title: str) -> None:
    print(f"  profile {title}: {summary['samples']} samples")
    for key in ("threads", "self", "hoard"):
        rows = summary[key]
        assert isinstance(rows, list)
        print(f"    {key}: " + "; ".join(f"{p}% {k}" for k, p in rows[:10]))


@contextlib.contextmanager
def maybe_profile(enabled: bool, pid: int, label: str, report: Report) -> Iterator[None]:
    """Profile ``pid`` during the block when ``enabled``; summary printed and in the report."""
    if not enabled:
        yield
        return
    if not have_py_spy():
        report.note("--profile: py-spy is not installed (pip install py-spy); not profiled")
        yield
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{report.name}-{label}.pyspy.txt"
    with PySpy(pid, out):
        yield
    if not out.exists():
        report.note(f"--profile: py-spy wrote nothing for {label}")
        return
    summary = summarize(out)
    report.metric(f"profile.{label}", summary | {"raw": str(out)})
    print_summary(summary, f"{label} (py-spy, on-CPU samples; raw stacks in {out.name})")
