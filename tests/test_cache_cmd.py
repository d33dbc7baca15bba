"""``hoard cache`` and ``GET /v1/cache``: what the cache holds, by source and by repo.

Totals by source and repo, blobs, partials (bytes present), pins, bytes deduplicated, and for
a running proxy its hit ratio and origin bytes since start; private repos stay hidden from
callers the origin would refuse.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import ProxyThread, serve_env, wait_for
from .httpcalls import call

HOARD = [sys.executable, "-m", "hoard.cli.main"]
SHARED = Content("cache-shared", 700_000)  # in both repos: stored once
ONLY_A = Content("cache-a", 300_000)
BIG = Content("cache-big", 4 << 20)
TOKEN = "hf_cache_reader"


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/a", {"shared.safetensors": SHARED, "a.safetensors": ONLY_A, "config.json": b'{"a": 1}'})
        fake.add_repo("org/b", {"shared.safetensors": SHARED, "config.json": b'{"b": 2}'})
        fake.add_repo("org/big", {"big.safetensors": BIG})
        fake.add_repo("org/private", {"p.safetensors": Content("cache-private", 100_000)}, private=True,
                      allowed_tokens=[TOKEN])
        yield fake


def cli(home: Path, *args: str, hub: FakeHub) -> subprocess.CompletedProcess[str]:
    env = dict(serve_env(), HOARD_HOME=str(home), HOARD_HF_ENDPOINT=hub.url)
    proc = subprocess.run([*HOARD, *args], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def by_repo(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["repo"]: r for r in doc["by_repo"]}


def test_cache_command_counts_repos_sources_dedup_partials_and_pins(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli(home, "prefetch", "org/a", "org/b", hub=hub)
    cli(home, "pin", "huggingface/org/a", hub=hub)
    with ProxyThread(home, hub.url, chunk_size=256 << 10) as px:  # a range of a big file: a partial
        got = call("GET", f"{px.url}/v1/files/huggingface/org/big/big.safetensors", headers={"Range": "bytes=0-99"})
        assert got.status == 206
        wait_for(lambda: px.store.partial_status(f"sha256:{BIG.sha256}") is not None)
        wait_for(lambda: px.metrics.total("hoard_inflight_fetches") == 0)  # its read-ahead settled
    doc = json.loads(cli(home, "cache", "--json", hub=hub).stdout)
    repos = by_repo(doc)
    assert sorted(repos) == ["huggingface/org/a", "huggingface/org/b", "huggingface/org/big"]
    gitattributes = hub.file("org/a", ".gitattributes").size
    a = repos["huggingface/org/a"]
    assert (a["files"], a["cached_files"], a["pinned"]) == (4, 4, True)
    assert a["cached_bytes"] == SHARED.size + ONLY_A.size + 8 + gitattributes
    big = repos["huggingface/org/big"]
    assert big["cached_bytes"] == gitattributes and 0 < big["partial_bytes"] < BIG.size  # the tree read it
    assert doc["partials"] == 1 and doc["partial_bytes"] == big["partial_bytes"]
    # SHARED is in two repos, the same .gitattributes in three: each stored once
    assert doc["deduplicated_bytes"] == SHARED.size + 2 * gitattributes
    assert doc["sources"]["huggingface"]["cached_bytes"] == doc["blob_bytes"] == (
        SHARED.size + ONLY_A.size + 8 + 8 + gitattributes)
    assert doc["pins"] == {"blobs": 0, "revisions": 1, "follows": 1}
    assert doc["total_bytes"] == doc["blob_bytes"] + doc["partial_bytes"]
    text = cli(home, "cache", hub=hub).stdout
    assert "huggingface/org/a" in text and "pinned" in text and "deduplicated:" in text
    assert "1 partial(s)" in text and "followed branch" in text
    only = json.loads(cli(home, "cache", "huggingface/org/b", "--json", hub=hub).stdout)
    assert [r["repo"] for r in only["by_repo"]] == ["huggingface/org/b"]


def test_v1_cache_has_traffic_and_hides_private_repos(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with ProxyThread(home, hub.url, chunk_size=256 << 10) as px:
        url = f"{px.url}/v1/files/huggingface/org/a/a.safetensors"
        assert call("GET", url).body == ONLY_A.read()  # a miss
        assert call("GET", url).body == ONLY_A.read()  # a hit
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert call("GET", f"{px.url}/v1/files/huggingface/org/private/p.safetensors", headers=auth).status == 200
        stranger = call("GET", f"{px.url}/v1/cache").json()
        assert stranger["hits"] == 1 and stranger["misses"] == 2 and stranger["hit_ratio"] == pytest.approx(1 / 3)
        assert stranger["origin_bytes"] >= ONLY_A.size + 100_000 and stranger["client_bytes"] >= 2 * ONLY_A.size
        assert [r["repo"] for r in stranger["by_repo"]] == ["huggingface/org/a"]
        assert stranger["hidden_repos"] == 1 and stranger["repos"] == 2  # counted, never named
        assert "private" not in json.dumps(stranger)
        allowed = call("GET", f"{px.url}/v1/cache", headers=auth).json()
        assert [r["repo"] for r in allowed["by_repo"]] == ["huggingface/org/a", "huggingface/org/private"]
        text = subprocess.run([*HOARD, "cache", "--upstream", px.url, "--home", str(tmp_path / "unused")],
                              env=serve_env(), capture_output=True, text=True, timeout=60)
        assert text.returncode == 0, text.stderr
        assert "hit ratio 33%" in text.stdout and "1 private or gated repo(s) not listed" in text.stdout
