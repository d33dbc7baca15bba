"""The Hub goes down after the refs TTL has passed: cached content keeps flowing at once.

Hardening issue, item 13. With ``refs_ttl=0`` every ref is expired, so every request would
re-resolve its branch at the origin; the proxy runs with a realistic retry budget (about
1.5-3 s per origin call: 5 attempts, backoff 0.2 s doubling), which is what each request used
to wait for the dead Hub. What must hold once one origin call has failed:

* commit-pinned requests for cached content never reach the origin, and their first byte
  comes at once (target 50 ms: asserted with slack for a loaded 2-core CI box, and always far
  below the retry budget);
* branch names resolve to their last known revision at once;
* while the origin is down, at most one background probe asks it again, whatever the number
  of distinct names requested; names never seen fail fast with a 503;
* when the origin is back, the probe notices and branches move on again;
* a fresh ``datasets.load_dataset`` (new process, empty HF cache) with the Hub down is
  served by hoard from its store, without a retry budget per request.

"Down" is either a closed port (connection refused, `FakeHub.pause`) or a Hub that answers
every request 503 (a fault switch): the latter logs what reached it, so the tests can count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from hoard.proxy.http import HttpConfig
from hoard.store.errors import OriginUnavailable
from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.fixtures import fresh_hub  # noqa: F401  (fixture)
from tests.harness import ProxyThread, wait_for
from tests.hfclients.runner import run_script
from tests.httpcalls import exchange, session

MiB = 1 << 20
MODEL = Content("offline-model", 2 * MiB + 77)
CONFIG = b'{"model_type": "bert", "hidden_size": 8}'
CSV = b"text,label\nhello,1\nworld,0\nagain,1\n"
#: what each origin call used to cost a request with the origin down: 5 attempts with backoff
#: 0.2, 0.4, 0.8, 1.6 s (each jittered to 50-100 %), so at least 1.5 s and at most 3 s
RETRYING = HttpConfig(connect_timeout=5.0, read_timeout=10.0, retries=4, backoff=0.2, max_backoff=5.0)
RETRY_BUDGET_MIN = 0.2 * 0.5 * (1 + 2 + 4 + 8)
#: the issue's bound for the first byte of cached content is 50 ms; the assertion allows 250 ms
#: because other test runs share this 2-core machine (the measured values are printed)
FIRST_BYTE_BOUND = 0.25
OTHERS = [f"org/other-{i}" for i in range(6)]


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/model", {"config.json": CONFIG, "model.safetensors": MODEL}, tags=("v1",))
        for name in OTHERS:
            fake.add_repo(name, {"config.json": b"{}"})
        fake.add_repo("org/ds", {"data/train.csv": CSV, "README.md": b"# ds\n"}, repo_type="dataset")
        yield fake


def retrying_proxy(home: Path, hub: FakeHub, http: HttpConfig = RETRYING) -> ProxyThread:
    """The real proxy with ``refs_ttl=0`` and a production-like retry budget."""
    px = ProxyThread(home, hub.url, refs_ttl=0.0)
    px.config = dataclasses.replace(px.config, http=http)
    return px


@dataclasses.dataclass
class Timed:
    status: int
    first_byte: float  # seconds from sending the request to its first response byte
    headers: dict[str, str]
    body: bytes


def timed_get(base: str, path: str) -> Timed:
    """GET with a raw socket, timing the first byte of the answer (no client library between)."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n".encode())
        first = sock.recv(65536)
        first_byte = time.perf_counter() - started
        chunks = [first]
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return Timed(int(lines[0].split()[1]), first_byte, headers, body)


def take_down(hub: FakeHub, how: str) -> None:
    if how == "refused":
        hub.pause()
    else:
        hub.fault(status=503, retry_after=0)


def burst(base: str, paths: list[str]) -> list[int | None]:
    """Send requests for ``paths`` all at once; their statuses."""

    async def run() -> list[int | None]:
        async with session(30) as s:
            got = await asyncio.gather(*(exchange(s, "GET", base + p) for p in paths))
        return [g.status for g in got]

    return asyncio.run(run())


@pytest.mark.parametrize("how", ["refused", "503"])
def test_cached_content_is_served_at_once_while_the_hub_is_down(hub: FakeHub, tmp_path: Path, how: str) -> None:
    sha = hub.head("org/model")  # earlier cases may have moved main: take it as it is now
    config = hub.file("org/model", "config.json").content.read()
    pinned = [f"/org/model/resolve/{sha}/model.safetensors", f"/org/model/resolve/{sha}/config.json",
              f"/v1/files/huggingface/org/model@{sha}/model.safetensors"]
    branch = ["/org/model/resolve/main/model.safetensors", "/org/model/resolve/main/config.json",
              "/org/model/resolve/v1/config.json", "/v1/files/huggingface/org/model/config.json"]
    with retrying_proxy(tmp_path / "home", hub) as px:
        others = [f"/{name}/resolve/main/config.json" for name in OTHERS]
        for path in pinned + branch + others:
            assert timed_get(px.url, path).status == 200, path
        take_down(hub, how)
        # the first request after the outage finds it out (it may wait for the retry budget once)
        found = timed_get(px.url, "/org/model/resolve/main/config.json")
        assert found.status == 200 and found.body == config
        print(f"\n[{how}] the request that found the Hub down waited {found.first_byte * 1000:.0f} ms")
        hub.clear_log()
        times: dict[str, float] = {}
        for _ in range(5):
            for path in pinned + branch:
                got = timed_get(px.url, path)
                assert got.status == 200, (path, got.status, got.body[:200])
                pinned_v1 = path.startswith("/org/model/resolve/v1/")  # the tag stays on the first commit
                want = (CONFIG if pinned_v1 else config) if path.endswith("config.json") else MODEL.read()
                assert got.body == want, path
                revision = got.headers["x-repo-commit" if "/resolve/" in path else "x-hoard-revision"]
                assert revision == (hub.head("org/model", "v1") if pinned_v1 else sha), path
                times[path] = max(times.get(path, 0.0), got.first_byte)
        print(f"[{how}] slowest first byte per path, Hub down (ms):",
              {p: round(t * 1000, 1) for p, t in times.items()})
        assert not [r for r in hub.requests if sha in r.path], "a commit-pinned request reached the origin"
        assert max(times.values()) < FIRST_BYTE_BOUND, times
        # many distinct names at once: still one probe at a time, not one origin call per name
        hub.clear_log()
        statuses = burst(px.url, branch + others)
        assert statuses == [200] * len(statuses)
        if how == "503":
            # one probe makes its attempts one after the other, at least 0.1 s apart: two of
            # them at most fall within the burst; one call per name would be 8 at once
            in_flight = hub.count()
            assert in_flight <= 2, f"{in_flight} origin calls during one burst (one probe expected)"
        # back up: the probe notices, the branch moves on
        hub.resume()
        hub.clear_faults()
        new = hub.commit("org/model", {"config.json": f'{{"after": "{how}"}}'.encode()})
        wait_for(lambda: timed_get(px.url, "/org/model/resolve/main/config.json").headers.get("x-repo-commit") == new,
                 timeout=30, interval=0.1)
        assert timed_get(px.url, "/org/model/resolve/main/config.json").body == f'{{"after": "{how}"}}'.encode()


def test_names_never_seen_fail_fast_while_the_hub_is_down(hub: FakeHub, tmp_path: Path) -> None:
    with retrying_proxy(tmp_path / "home", hub) as px:
        assert timed_get(px.url, "/org/model/resolve/main/config.json").status == 200
        hub.fault(status=503, retry_after=0)
        assert timed_get(px.url, "/org/model/resolve/main/config.json").status == 200  # finds it down
        unknown = ["/org/never-seen/resolve/main/config.json", f"/org/model/resolve/{'0' * 40}/config.json",
                   "/api/models/org/never-seen/revision/main"]
        for path in unknown:
            got = timed_get(px.url, path)
            print(f"\n{path}: {got.status} in {got.first_byte * 1000:.0f} ms")
            assert got.status == 503, (path, got.status)
            assert got.headers.get("retry-after")
            assert got.first_byte < RETRY_BUDGET_MIN / 2, f"{path} waited {got.first_byte:.2f}s for the dead Hub"


def test_requests_waiting_on_the_origin_stop_waiting_once_it_is_found_down(hub: FakeHub, tmp_path: Path) -> None:
    """A request already waiting for a stalled origin (here: the tag's re-resolution hangs)
    gets its cached answer as soon as another request finds the origin down, instead of
    waiting out its own read timeouts and retries (10 s per attempt here)."""
    with retrying_proxy(tmp_path / "home", hub) as px, ThreadPoolExecutor(1) as pool:
        tag, branch = "/org/model/resolve/v1/config.json", "/org/model/resolve/main/config.json"
        assert timed_get(px.url, tag).status == 200 and timed_get(px.url, branch).status == 200
        hub.fault(path_contains="/revision/v1", latency=60)
        hub.fault(path_contains="/revision/main", status=503, retry_after=0)
        waiting = pool.submit(timed_get, px.url, tag)
        wait_for(lambda: hub.count("/revision/v1") >= 1, timeout=10)
        finder = timed_get(px.url, branch)  # pays the retry budget, then marks the origin down
        stalled = waiting.result(timeout=60)
    print(f"\nthe request that found the Hub down: {finder.first_byte:.1f}s; the one waiting on a "
          f"stalled call meanwhile: {stalled.first_byte:.1f}s")
    assert finder.status == 200 and stalled.status == 200 and stalled.body == CONFIG
    assert stalled.first_byte < RETRYING.read_timeout - 2, "it waited for its own stalled origin call"


def test_other_origin_calls_fail_fast_while_the_hub_is_down(hub: FakeHub, tmp_path: Path) -> None:
    """``Catalog.origin_call``, for origin calls the catalog does not make itself (API
    pass-throughs): while the Hub is known down it raises OriginUnavailable at once (its call
    becomes the probe); once a probe gets an answer, calls run again."""
    calls = 0

    async def ask_hub() -> int:
        nonlocal calls
        calls += 1
        async with aiohttp.ClientSession() as s, s.get(f"{hub.url}/api/models/org/model") as resp:
            if resp.status >= 500:
                raise OriginUnavailable(f"Hub answered {resp.status}")  # as the faces translate it
            return resp.status

    def try_call() -> int | None:
        try:
            return px.call(px.server.svc.catalog.origin_call("huggingface", ask_hub))
        except OriginUnavailable:
            return None

    with retrying_proxy(tmp_path / "home", hub) as px:
        assert px.server is not None
        catalog = px.server.svc.catalog
        assert timed_get(px.url, "/org/model/resolve/main/config.json").status == 200
        hub.fault(status=503, retry_after=0)
        timed_get(px.url, "/org/model/resolve/main/config.json")  # finds it down
        assert catalog.origin_down("huggingface")
        started = time.monotonic()
        assert try_call() is None
        assert time.monotonic() - started < RETRY_BUDGET_MIN / 2, "it waited for the dead Hub"
        hub.clear_faults()
        wait_for(lambda: try_call() == 200, timeout=30, interval=0.1)
        assert not catalog.origin_down("huggingface") and calls >= 2


LOAD_DATASET = """
import time
started = time.monotonic()
from datasets import load_dataset
ds = load_dataset("org/ds", split="train")
OUT["rows"] = [dict(r) for r in ds]
OUT["seconds"] = time.monotonic() - started
"""


def test_fresh_load_dataset_with_the_hub_down(hub: FakeHub, tmp_path: Path) -> None:
    rows = [{"text": "hello", "label": 1}, {"text": "world", "label": 0}, {"text": "again", "label": 1}]
    # a budget of 3-6 s per origin call: the ~10 requests of a load then cost at least 30 s
    # if each of them pays it (the 36 s), about 10 s if only the first one does
    slow = dataclasses.replace(RETRYING, backoff=0.4)
    with retrying_proxy(tmp_path / "home", hub, slow) as px:
        warm = run_script(px.url, tmp_path / "client-up", LOAD_DATASET)
        assert warm["rows"] == rows
        hub.pause()
        started = time.monotonic()
        cold = run_script(px.url, tmp_path / "client-down", LOAD_DATASET)  # a new process, empty HF cache
        elapsed = time.monotonic() - started
    print(f"\nload_dataset, fresh client: Hub up {warm['seconds']:.1f}s; Hub down {cold['seconds']:.1f}s "
          f"({elapsed:.1f}s with interpreter start)")
    assert cold["rows"] == rows
    assert elapsed < 20, f"load_dataset took {elapsed:.1f}s with the Hub down"
