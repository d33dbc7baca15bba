"""A cache that stays inside its budget, and pins that keep what matters in it.

* ``--max-size`` on a running ``hoard serve`` (and ``hoard mount``): past ``gc_high_water``
  (95 %) of it, gc runs in the background down to ``gc_low_water`` (80 %), least recently
  used first, while clients keep reading (no request fails); pins and origin-less content
  are kept; the watermarks are settings.
* ``hoard pin <repo>`` follows the repo's branch: when it moves, the new revision is pinned
  and the old one unpinned once the new one is complete — by ``hoard prefetch``, and by the
  maintenance task of a running proxy, which fetches the new revision itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hoard.store.config import StoreConfig
from hoard.store.pins import advance_follows
from hoard.store.store import Store

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import MountProcess, ProxyThread, ServeProcess, serve_env, wait_for

MiB = 1 << 20
HOARD = [sys.executable, "-m", "hoard.cli.main"]
FILES = {f"w{i}.bin": Content(f"budget-{i}", MiB) for i in range(6)}


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/big", dict(FILES))
        fake.add_repo("org/keep", {"keep.bin": Content("budget-keep", 300_000)})
        fake.add_repo("org/follow", {"config.json": b'{"v": 1}', "w.bin": Content("follow-1", 200_000)})
        yield fake


def cli(home: Path, *args: str, hub: FakeHub, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(serve_env(), HOARD_HOME=str(home), HOARD_HF_ENDPOINT=hub.url)
    proc = subprocess.run([*HOARD, *args], env=env, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"hoard {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def cli_json(home: Path, *args: str, hub: FakeHub) -> Any:
    return json.loads(cli(home, *args, "--json", hub=hub).stdout)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert resp.status == 200
        return resp.read()  # type: ignore[no-any-return]


def cache(url: str) -> dict[str, Any]:
    return json.loads(get(f"{url}/v1/cache"))


# -- the budget ------------------------------------------------------------------------------------


def test_serve_keeps_the_store_inside_max_size(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("gc_grace = 0\n")  # everything idle is fair game
    local = tmp_path / "local"
    local.mkdir()
    (local / "only-copy.bin").write_bytes(Content("budget-local", 300_000).read())
    cli(home, "add", str(local), "local/me/precious", hub=hub)
    cli(home, "prefetch", "org/keep", hub=hub)
    cli(home, "pin", "huggingface/org/keep", hub=hub)
    cap = 4 * MiB
    args = ("--max-size", "4MiB", "--chunk-size", "256KiB")
    # a client reading one file after another: each background run trims the store to the low watermark
    with ServeProcess(home, hub.url, *args, env=serve_env()) as px:
        for name in sorted(FILES):
            assert get(f"{px.url}/v1/files/huggingface/org/big/{name}") == FILES[name].read()
        wait_for(lambda: cache(px.url)["total_bytes"] <= 0.95 * cap)
        log = px.stop()
    runs = [int(m) for m in re.findall(r"gc removed \d+ item\(s\), freed \d+ bytes; store at (\d+) bytes", log)]
    print(f"budget gc runs, store after each: {runs} (cap {cap})")
    assert runs and all(after <= 0.8 * cap for after in runs), log[-3000:]

    # pinned and origin-less content stayed through every run
    with Store(StoreConfig(home)) as store:
        assert store.resolve(f"sha256:{Content('budget-keep', 300_000).sha256}") is not None
        assert [r for r in store.repos() if r.startswith("local/")] == ["local/me/precious"]
        snap = store.get_snapshot("local/me/precious", store.get_ref("local/me/precious", "main").revision)  # type: ignore[union-attr]
        assert snap is not None and all(store.resolve(e.identity) for e in snap.files.values())


def test_watermarks_are_settings_and_are_checked(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("gc_grace = 0\ngc_high_water = 0.5\ngc_low_water = 0.25\n")
    with ServeProcess(home, hub.url, "--max-size", "4MiB", "--chunk-size", "256KiB", env=serve_env()) as px:
        for name in sorted(FILES)[:3]:  # 3 MiB: past half of the cap, under 95 % of it
            get(f"{px.url}/v1/files/huggingface/org/big/{name}")
        wait_for(lambda: cache(px.url)["total_bytes"] <= 0.25 * 4 * MiB)
        assert cache(px.url)["gc_high_water"] == 0.5
    (home / "config.toml").write_text("gc_high_water = 0.5\ngc_low_water = 0.9\n")
    bad = subprocess.run([*HOARD, "serve", "--home", str(home), "--listen", "127.0.0.1:0"], env=serve_env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "gc_low_water < gc_high_water" in bad.stderr


def test_background_gc_never_fails_a_reader(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("gc_grace = 0\n")  # everything idle is fair game, at once
    cap = 4 * MiB
    args = ("--max-size", "4MiB", "--chunk-size", "256KiB")
    # clients reading at once while gc runs under them: no request fails, the budget holds
    errors: list[str] = []
    with ServeProcess(home, hub.url, *args, env=serve_env()) as px:

        def read(name: str) -> None:
            try:
                if get(f"{px.url}/v1/files/huggingface/org/big/{name}") != FILES[name].read():
                    errors.append(f"{name}: wrong bytes")
            except Exception as exc:  # noqa: BLE001 - every failure is reported by the assertion below
                errors.append(f"{name}: {exc}")

        with ThreadPoolExecutor(3) as pool:
            for _ in range(2):
                list(pool.map(read, sorted(FILES) + sorted(FILES)[:2]))
        wait_for(lambda: cache(px.url)["total_bytes"] <= 0.95 * cap)
        summary = cache(px.url)
        log = px.stop()
    assert errors == [], log[-6000:]
    assert "gc removed" in log and summary["max_size"] == cap


@pytest.mark.fuse
def test_mount_keeps_its_store_inside_max_size(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("gc_grace = 0\n")
    with MountProcess(home, tmp_path / "mnt", hub.url, "--max-size", "3MiB", "--chunk-size", "256KiB",
                      env=serve_env()) as mnt:
        for name in sorted(FILES):
            assert mnt.path(f"huggingface/org/big/{name}").read_bytes() == FILES[name].read()

        def total() -> int:
            with Store(StoreConfig(home)) as store:
                return store.usage()["total_bytes"]

        wait_for(lambda: total() <= 0.95 * 3 * MiB)
        log = mnt.unmount()
    assert "gc removed" in log, log[-3000:]


# -- pins that follow a branch ---------------------------------------------------------------------


def pins(home: Path) -> set[str]:
    with Store(StoreConfig(home)) as store:
        return {t for t in store.pins() if not t.startswith("ref:")}


def test_a_pinned_repo_follows_its_branch_once_the_new_revision_is_complete(tmp_path: Path) -> None:
    with FakeHub() as hub:
        first = hub.add_repo("org/follow", {"config.json": b'{"v": 1}', "w.bin": Content("follow-1", 200_000)})
        home = tmp_path / "home"
        home.mkdir()
        (home / "config.toml").write_text("refs_ttl = 0\ngc_grace = 0\n")  # ask the Hub where main is, every time
        cli(home, "prefetch", "org/follow", hub=hub)
        pinned = cli_json(home, "pin", "huggingface/org/follow", hub=hub)
        assert pinned == {"pinned": f"snapshot:huggingface/org/follow@{first}", "new": True, "follows": "main"}
        second = hub.commit("org/follow", {"w.bin": Content("follow-2", 200_000)})

        # the branch moved, the new revision is not complete: the old one stays pinned
        cli(home, "prefetch", "org/follow", "--include", "config.json", hub=hub)
        assert pins(home) == {f"snapshot:huggingface/org/follow@{first}", f"snapshot:huggingface/org/follow@{second}"}
        plan = cli_json(home, "gc", "--max-size", "0", "--dry-run", hub=hub)
        assert {k["reason"] for k in plan["kept"]} >= {f"pinned revision huggingface/org/follow@{first}"}
        # complete: the old revision is let go
        cli(home, "prefetch", "org/follow", hub=hub)
        assert pins(home) == {f"snapshot:huggingface/org/follow@{second}"}
        plan = cli_json(home, "gc", "--max-size", "0", "--dry-run", hub=hub)
        old_only = Content("follow-1", 200_000).blake3
        assert old_only in {v["name"] for v in plan["victims"]}
        assert [r["repo"] for r in cli_json(home, "ls", "--pinned", hub=hub)] == ["huggingface/org/follow"]

        # a revision pinned by hand is never unpinned by the follow
        cli(home, "pin", f"huggingface/org/follow@{second}", hub=hub)
        third = hub.commit("org/follow", {"config.json": b'{"v": 3}'})
        cli(home, "prefetch", "org/follow", hub=hub)
        assert pins(home) == {f"snapshot:huggingface/org/follow@{second}", f"snapshot:huggingface/org/follow@{third}"}
        done = cli_json(home, "unpin", "huggingface/org/follow", hub=hub)
        assert done["was_pinned"] and pins(home) == {f"snapshot:huggingface/org/follow@{second}"}

        # a followed repo removed for good: its follow goes too (and fetches nothing again)
        cli(home, "pin", "huggingface/org/follow", hub=hub)
        cli(home, "rm", "huggingface/org/follow", "--force", hub=hub)
        with Store(StoreConfig(home)) as store:
            advance_follows(store)
            assert store.pins() == {}


def test_a_running_proxy_fetches_a_followed_repos_new_revision(tmp_path: Path) -> None:
    with FakeHub() as hub:
        first = hub.add_repo("org/live", {"config.json": b'{"v": 1}', "w.bin": Content("live-1", 300_000)})
        home = tmp_path / "home"
        cli(home, "prefetch", "org/live", hub=hub)
        cli(home, "pin", "huggingface/org/live", hub=hub)
        with ProxyThread(home, hub.url, refs_ttl=0.0, pin_refresh=0.1) as px:
            second = hub.commit("org/live", {"w.bin": Content("live-2", 300_000)})

            def moved() -> bool:
                return {t for t in px.store.pins() if not t.startswith("ref:")} == {
                    f"snapshot:huggingface/org/live@{second}"}

            wait_for(moved)
            assert px.store.resolve(f"sha256:{Content('live-2', 300_000).sha256}") is not None  # fetched
            listed = json.loads(get(f"{px.url}/v1/pins"))
            assert listed[f"snapshot:huggingface/org/live@{second}"]["follows"] == "main"
        assert first != second
