"""Several real processes on one store, and processes killed with SIGKILL at chosen points."""

from __future__ import annotations

import collections
import hashlib
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from hoard.store.config import StoreConfig
from hoard.store.store import Store
from hoard.store.verify import select_blobs, verify

from .proc_worker import CHUNK, content

ROOT = Path(__file__).resolve().parent.parent
SIZE = 40 * CHUNK + 4321


def alias_for(seed: str, size: int = SIZE) -> str:
    return "sha256:" + hashlib.sha256(content(seed, size)).hexdigest()


def spawn(
    home: Path, seed: str, log: Path, die_at: str = "", size: int = SIZE, extra: list[str] | None = None
) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.proc_worker", str(home), alias_for(seed, size), str(size), seed, str(log)]
    if die_at:
        cmd += ["--die-at", die_at]
    cmd += extra or []
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claims(log: Path) -> collections.Counter[int]:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(int(line.split()[1]) for line in log.read_text().splitlines())


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def check_store_clean(home: Path) -> None:
    s = Store(StoreConfig(home, chunk_size=CHUNK))
    try:
        report = verify(s, select_blobs(s), dry_run=True)
        assert report.ok, report.findings
    finally:
        s.close()


def test_concurrent_processes_fetch_each_chunk_once(home: Path, tmp_path: Path) -> None:
    log = tmp_path / "claims.log"
    procs = [spawn(home, "alpha", log) for _ in range(3)]
    outs = [finish(p) for p in procs]
    want = blake3.blake3(content("alpha", SIZE)).hexdigest()
    assert all(o.strip().endswith(want) for o in outs), outs
    counts = claims(log)
    assert sorted(counts) == list(range(41))
    assert set(counts.values()) == {1}, "a chunk was filled twice"
    check_store_clean(home)


@pytest.mark.parametrize("die_at", ["mid-chunk:3", "after-mark:5", "after-link"])
def test_sigkill_leaves_a_store_that_resumes(home: Path, tmp_path: Path, die_at: str) -> None:
    log = tmp_path / "claims.log"
    victim = spawn(home, "beta", log, die_at)
    out, _ = victim.communicate(timeout=120)
    assert "dying" in out and victim.returncode == -9
    before = claims(log)

    survivor = spawn(home, "beta", log)
    out = finish(survivor)
    assert out.strip().endswith(blake3.blake3(content("beta", SIZE)).hexdigest())
    after = claims(log) - before
    if die_at.startswith("after-mark"):
        # every chunk committed before the kill is kept: the survivor only fills the rest
        assert set(after).isdisjoint(set(before))
        assert len(after) == 41 - len(before)
    elif die_at.startswith("mid-chunk"):
        # the chunk in flight (and only it) is filled again
        assert sum(after.values()) == 41 - len(before) + 1
    check_store_clean(home)


def test_kill_while_another_process_fills(home: Path, tmp_path: Path) -> None:
    log = tmp_path / "claims.log"
    gate = tmp_path / "go"
    helper = spawn(home, "gamma", log, extra=["--hold-until", str(gate)])
    assert helper.stdout is not None and helper.stdout.readline().strip() == "holding"
    victim = spawn(home, "gamma", log, "mid-chunk:1")
    out, _ = victim.communicate(timeout=120)
    assert "dying" in out and victim.returncode == -9
    gate.touch()
    finish(helper)
    counts = claims(log)
    assert sorted(counts) == list(range(41))
    # only the chunk the victim died in is claimed twice
    assert sum(counts.values()) == 42
    check_store_clean(home)
