"""A store on a filesystem at 100 %: clean errors, and gc and rm still make room.

Each test mounts a small tmpfs (24 MiB) and puts ``HOARD_HOME`` on it, fills it through the
product (fetches through a real ``hoard serve`` from the fake Hub) and then with a plain file
to the last block, and drives the CLI and the proxy as users would:

* failures are HTTP 507 (or, once a response has started, a cut body) and exit code 8 with
  one line — never 500, never exit 1 or a traceback;
* ``hoard rm`` and ``hoard gc --max-size 0`` succeed on the full filesystem and free room;
* with a size cap, a fetch that hits ENOSPC runs gc down to the cap and succeeds;
* afterwards fetches work and ``hoard verify`` finds the store clean.

Mounting needs root: the tests skip, saying so, for anyone else.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.harness import ServeProcess, serve_env, wait_for
from tests.httpcalls import Got, call

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")

MiB = 1 << 20
HOARD = [sys.executable, "-m", "hoard.cli.main"]
BIG = {f"w{i}.bin": Content(f"disk-full-{i}", 4 * MiB + 1234) for i in range(6)}
SMALL = b'{"model_type": "tiny"}\n'


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/big", {**BIG, "config.json": SMALL})
        yield fake


@contextlib.contextmanager
def small_fs(path: Path, size: str = "24m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``, unmounted however the test ends."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(path: Path) -> None:
    """Append zeros to ``path`` until the filesystem has not one block left."""
    with open(path, "ab", buffering=0) as fh:
        for block in (MiB, 4096, 512):
            data = bytes(block)
            try:
                while True:
                    fh.write(data)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    st = os.statvfs(path)
    assert st.f_bavail == 0


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def hoard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(serve_env(), HOARD_HOME=str(home))
    proc = subprocess.run([*HOARD, *args], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc


def get(serve: ServeProcess, name: str) -> Got:
    return call("GET", f"{serve.url}/v1/files/huggingface/org/big/{name}")


def served_whole(got: Got, name: str) -> bool:
    return got.status == 200 and got.error is None and got.body == BIG[name].read()


def assert_clean_failure(got: Got, name: str) -> None:
    """A failed fetch is a 507, or a response cut after its headers: never 500, never a
    complete body with wrong bytes."""
    if got.status == 507:
        assert got.json()["kind"] == "store_full", got.body
        return
    assert got.status == 200, (got.status, got.body[:200])
    assert got.error is not None or len(got.body) < BIG[name].size


def serve(home: Path, hub: FakeHub) -> ServeProcess:
    return ServeProcess(home, hub.url, "--chunk-size", "1MiB", env=serve_env())


def test_full_disk_gives_clean_errors_and_gc_and_rm_make_room(hub: FakeHub, tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        home = fs / "home"
        home.mkdir()
        (home / "config.toml").write_text("gc_grace = 0\n")  # gc may take what was just fetched
        with serve(home, hub) as px:
            fetched = []
            for name in BIG:  # fill the store through the product until the disk refuses
                got = get(px, name)
                if not served_whole(got, name):
                    assert_clean_failure(got, name)
                    break
                fetched.append(name)
            else:
                pytest.fail("the filesystem never filled up")
            assert len(fetched) >= 2
            fill_up(fs / "filler")  # and the last blocks too
            small = call("GET", f"{px.url}/v1/files/huggingface/org/big/config.json")
            assert small.status == 507 and small.json()["kind"] == "store_full"
            assert_clean_failure(get(px, name), name)

            src = tmp_path / "src"
            src.mkdir()
            (src / "w.bin").write_bytes(os.urandom(2 * MiB))
            added = hoard(home, "add", str(src), "local/me/m")
            assert added.returncode == 8 and added.stderr.startswith("hoard: "), added.stderr

            # rm of one file works on the full disk and frees its blob
            removed = hoard(home, "rm", f"huggingface/org/big/{fetched[0]}")
            assert removed.returncode == 0, removed.stderr
            # (tmpfs frees a file's pages when the server's last descriptor on it closes)
            wait_for(lambda: free_bytes(fs) >= BIG[fetched[0]].size, timeout=10)
            fill_up(fs / "filler2")
            # so does gc
            collected = hoard(home, "gc", "--max-size", "0", "--json")
            assert collected.returncode == 0, collected.stderr
            assert free_bytes(fs) >= 4 * MiB

            got = get(px, fetched[1])
            assert served_whole(got, fetched[1]), (got.status, got.error)
        verified = hoard(home, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "no problems found" in verified.stdout


def test_a_fill_that_hits_enospc_runs_gc_down_to_the_cap_and_succeeds(hub: FakeHub, tmp_path: Path) -> None:
    names = list(BIG)
    with small_fs(tmp_path / "fs") as fs:
        home = fs / "home"
        home.mkdir()
        # a cap below what is kept (nothing trims the store while it fills, only gc does)
        (home / "config.toml").write_text('gc_grace = 0\nmax_size = "6MiB"\n')
        with serve(home, hub) as px:
            for name in names[:2]:
                assert served_whole(get(px, name), name)
            fill_up(fs / "filler")
            got = get(px, names[2])
            assert served_whole(got, names[2]), (got.status, got.error, got.body[:200])
        verified = hoard(home, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        present = {}
        for name in (names[0], names[2]):
            shown = hoard(home, "info", f"huggingface/org/big/{name}", "--json")
            present[name] = json.loads(shown.stdout)["blake3"] is not None
        # gc took the least recently used first (and, if publishing needed more room, the next)
        assert present == {names[0]: False, names[2]: True}
