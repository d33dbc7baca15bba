"""Fault injection against the real proxy (in-process ``ProxyThread`` and ``hoard serve``).

The origin is the fake Hub + CDN (tests/fakes/hub.py) with its fault switches; clients are
real HTTP clients (aiohttp) on 127.0.0.1. What is checked, per the proxy issue:

* drops, stalls, transient 5xx, wrong lengths and ignored ranges at the origin still give the
  client exactly the right bytes, with about one copy of the file read from the origin;
* a persistent origin failure gives a retryable 5xx, never a hang; corrupt origin bytes never
  reach a client as a complete file and are never published under ``blobs/``;
* offline: cached names keep working, uncached ones get a retryable 5xx (never 401/404);
* a SIGKILLed ``hoard serve`` restarted on the same home resumes its partials;
* one in-flight fetch per chunk across clients (and processes);
* private/gated content is served from the cache only to tokens the Hub accepts, and tokens
  never reach logs or the store.

No sleeps for synchronisation: the fake's ``stall``/``slow`` switches create the windows, the
request log tells what the origin saw, and the only waits are bounded polls on the store.
Client-side timeouts are liveness bounds ("never a hang"), not timing assertions.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hoard.store.config import StoreConfig
from hoard.store.store import Store
from tests.fakes.content import Content
from tests.fakes.hub import FakeHub, RequestRecord
from tests.fixtures import CHUNK, fresh_hub, proxy  # noqa: F401  (fixtures)
from tests.harness import ProxyThread, ServeProcess, serve_env
from tests.httpcalls import Got, call, exchange, session

MiB = 1 << 20
#: liveness bound for one client request: a correct proxy answers in well under a second here
LIVENESS = 8.0

MODEL = Content("faults-model", 3 * MiB + 12345)  # 13 chunks of 256 KiB, last one short
NCHUNKS = -(-MODEL.size // CHUNK)
CONFIG = b'{"model_type": "bert", "hidden_size": 32}'
PRIV = Content("faults-private", 600_000)
GATED = Content("faults-gated", 700_000)
GOOD = "hf_GOODtoken_5b1e9c0f7d2a4e6b"
OTHER = "hf_OTHERtoken_c3d8a1f2e9b7"


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/model", {"config.json": CONFIG, "model.safetensors": MODEL})
        fake.add_repo("org/private", {"config.json": b"{}", "weights.bin": PRIV}, private=True, allowed_tokens={GOOD})
        fake.add_repo("org/gated", {"config.json": b"{}", "w.bin": GATED}, gated="manual", allowed_tokens={GOOD})
        yield fake


# -- helpers ----------------------------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None, *, method: str = "GET", timeout: float = LIVENESS) -> Got:
    return call(method, url, headers=headers, timeout=timeout)


def get_many(requests: list[tuple[str, dict[str, str] | None]], timeout: float = 60.0) -> list[Got]:
    async def run() -> list[Got]:
        async with session(timeout) as s:
            return await asyncio.gather(*(exchange(s, "GET", u, headers=h) for u, h in requests))

    return asyncio.run(run())


async def _status_first(url: str, timeout: float) -> tuple[int | None, str | None]:
    """The status line of a response (does not wait for the body)."""
    async with session(timeout) as s:
        try:
            async with s.get(url) as resp:
                return resp.status, None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return None, type(exc).__name__


def v1_url(p: ProxyThread | ServeProcess, rev: str, path: str = "model.safetensors", repo: str = "org/model") -> str:
    return f"{p.url}/v1/files/huggingface/{repo}@{rev}/{path}"


def hf_url(p: ProxyThread | ServeProcess, path: str = "model.safetensors", repo: str = "org/model", rev: str = "main") -> str:
    return f"{p.url}/{repo}/resolve/{rev}/{path}"


def blob_files(home: Path) -> list[Path]:
    root = home / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def alias(content: Content) -> str:
    return f"sha256:{content.sha256}"


def cdn_gets(hub: FakeHub) -> list[RequestRecord]:
    return hub.find(origin="cdn", method="GET")


_RANGE = re.compile(r"bytes=(\d+)-(\d+)$")


def range_of(record: RequestRecord) -> tuple[int, int]:
    """[start, end) a logged ranged request asked for."""
    m = _RANGE.match(record.range or "")
    assert m, f"origin request without a closed range: {record.range!r}"
    return int(m.group(1)), int(m.group(2)) + 1


def assert_published(store: Store, home: Path, content: Content) -> None:
    b3 = store.resolve(alias(content))
    assert b3 == content.blake3, "the file was not verified and published"
    path = store.blob_path(b3)
    assert path.is_file() and path.stat().st_size == content.size
    assert path.read_bytes() == content.read()


# -- origin faults during a fill ----------------------------------------------------------------


def test_drop_mid_body_resumes_from_last_byte(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    drop = hub.fault(origin="cdn", method="GET", drop_after=100_000, times=3)
    got = get(v1_url(proxy, sha))
    assert got.error is None and got.status == 200
    assert got.body == MODEL.read()
    assert drop.hits == 3
    gets = cdn_gets(hub)
    dropped = [r for r in gets if r.aborted]
    assert len(dropped) == 3
    # every dropped transfer is resumed from the byte where it broke, not from its chunk's start
    for rec in dropped:
        start, end = range_of(rec)
        later = gets[gets.index(rec) + 1 :]
        assert any(range_of(r) == (start + rec.bytes_sent, end) for r in later), (rec.range, rec.bytes_sent)
    assert MODEL.size <= hub.bytes_sent["cdn"] <= 1.05 * MODEL.size
    assert_published(proxy.store, home, MODEL)


def test_stall_shorter_than_read_timeout_is_waited_out(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    stall = hub.fault(origin="cdn", method="GET", stall=1.0, stall_at=60_000, times=1)
    got = get(v1_url(proxy, sha))
    assert got.error is None and got.status == 200 and got.body == MODEL.read()
    assert stall.hits == 1
    gets = cdn_gets(hub)
    assert not any(r.aborted for r in gets)
    assert len(gets) == NCHUNKS, "a stall shorter than the read timeout must not cause a retry"
    assert hub.bytes_sent["cdn"] == MODEL.size
    assert_published(proxy.store, home, MODEL)


def test_streams_while_filling_and_tail_waits_for_verification(hub: FakeHub, proxy: ProxyThread) -> None:
    """First bytes reach the client while the file is still being fetched; the end of the
    body is released only once the file is verified and published."""
    sha = hub.head("org/model")
    hub.fault(origin="cdn", method="GET", slow=1 * MiB)  # ~0.25 s per chunk

    async def run() -> tuple[str | None, str | None, bytes]:
        async with session(LIVENESS) as s:
            async with s.get(v1_url(proxy, sha)) as resp:
                assert resp.status == 200
                first = await resp.content.readany()
                at_first = proxy.store.resolve(alias(MODEL))
                rest = await resp.read()
                at_end = proxy.store.resolve(alias(MODEL))
                return at_first, at_end, first + rest

    at_first, at_end, body = asyncio.run(run())
    assert body == MODEL.read()
    assert at_first is None, "the first bytes waited for the whole file"
    assert at_end == MODEL.blake3, "the body completed before the file was verified and published"


def test_client_leaving_early_does_not_stop_the_fill(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    hub.fault(origin="cdn", method="GET", slow=2 * MiB)

    async def run() -> None:
        async with session(LIVENESS) as s:
            async with s.get(v1_url(proxy, sha)) as resp:
                assert resp.status == 200
                await resp.content.readexactly(50_000)
                resp.close()  # drop the connection mid-body

    asyncio.run(run())
    deadline = time.monotonic() + 30
    while proxy.store.resolve(alias(MODEL)) is None and time.monotonic() < deadline:  # bounded poll
        time.sleep(0.02)
    assert_published(proxy.store, home, MODEL)
    assert hub.bytes_sent["cdn"] <= 1.05 * MODEL.size


@pytest.mark.parametrize(
    "where",
    [
        {"origin": "cdn", "method": "GET", "times": 2},
        {"origin": "hub", "path_contains": "/resolve/", "times": 2},
        {"origin": "hub", "path_contains": "/api/models/org/model/revision/main", "times": 2},
        {"origin": "hub", "path_contains": "/api/models/org/model/tree/", "times": 2},
    ],
    ids=["cdn", "hub-resolve", "hub-revision", "hub-tree"],
)
def test_503_then_success(hub: FakeHub, proxy: ProxyThread, home: Path, where: dict[str, Any]) -> None:
    fault = hub.fault(status=503, **where)
    got = get(f"{proxy.url}/v1/files/huggingface/org/model/model.safetensors")  # by ref: asks the API
    assert got.error is None and got.status == 200 and got.body == MODEL.read()
    assert fault.hits == 2
    assert hub.bytes_sent["cdn"] <= 1.05 * MODEL.size
    assert_published(proxy.store, home, MODEL)


def test_persistent_503_gives_retryable_error_not_a_hang(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    hub.fault(origin="cdn", status=503)
    status, error = asyncio.run(_status_first(v1_url(proxy, sha), LIVENESS))
    ranged = get(hf_url(proxy, rev=sha), {"Range": "bytes=0-999"})
    assert blob_files(home) == []
    assert proxy.store.resolve(alias(MODEL)) is None
    assert not (ranged.status == 206 and ranged.error is None and ranged.body != MODEL.read(0, 1000)), (
        f"a complete 206 answer carried wrong bytes: {ranged.body[:100]!r}"
    )
    assert error is None, f"no answer from the proxy ({error})"
    assert status in (503, 504), f"a file the origin cannot deliver was answered {status}"
    assert not ranged.hung, f"a ranged read on a failing origin was left hanging (status {ranged.status})"
    assert ranged.status in (503, 504)


@pytest.mark.parametrize("face", ["v1", "hf"])
def test_corrupt_cdn_bytes_never_reach_client_complete_nor_publish(
    hub: FakeHub, proxy: ProxyThread, home: Path, face: str
) -> None:
    sha = hub.head("org/model")
    url = v1_url(proxy, sha) if face == "v1" else hf_url(proxy, rev=sha)
    hub.fault(origin="cdn", corrupt=True)
    got = get(url)
    # the store: nothing published, the mismatch counted
    assert blob_files(home) == []
    assert proxy.store.resolve(alias(MODEL)) is None
    assert proxy.metrics.get("hoard_errors_total", kind="integrity") >= 1
    # once the origin is healthy again the same name is fetched afresh and published
    hub.clear_faults()
    again = get(url)
    assert again.error is None and again.status == 200 and again.body == MODEL.read()
    assert_published(proxy.store, home, MODEL)
    # the client of the corrupt transfer: never a complete file, never left hanging
    assert len(got.body) < MODEL.size, "a complete wrong file was delivered"
    assert not got.hung, (
        f"the proxy left the client hanging after the hash mismatch: status {got.status}, "
        f"{len(got.body)} of {MODEL.size} bytes, then silence; tail of body: {got.body[-200:]!r}"
    )
    if got.status == 200:  # headers went out before the mismatch: the body must be cut short
        assert got.error is not None, "a short body must end in a broken connection"
    else:
        assert got.status is None or got.status >= 500


@pytest.mark.parametrize(
    "wrong, header", [(1000, False), (1000, True), (-1000, False), (-1000, True)], ids=["+body", "+both", "-body", "-both"]
)
def test_wrong_length_from_cdn(hub: FakeHub, proxy: ProxyThread, home: Path, wrong: int, header: bool) -> None:
    sha = hub.head("org/model")
    fault = hub.fault(origin="cdn", method="GET", wrong_length=wrong, wrong_length_header=header, times=2)
    got = get(v1_url(proxy, sha))
    assert got.error is None and got.status == 200 and got.body == MODEL.read()
    assert fault.hits == 2
    assert hub.bytes_sent["cdn"] <= 1.05 * MODEL.size
    assert_published(proxy.store, home, MODEL)


def test_cdn_ignoring_range(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    hub.fault(origin="cdn", ignore_range=True)
    part = get(v1_url(proxy, sha), {"Range": "bytes=1000000-1000999"})
    assert part.error is None and part.status == 206
    assert part.body == MODEL.read(1_000_000, 1_001_000)
    got = get(v1_url(proxy, sha))
    assert got.error is None and got.status == 200 and got.body == MODEL.read()
    assert_published(proxy.store, home, MODEL)


# -- offline ------------------------------------------------------------------------------------


def test_offline_cached_file_is_served(hub: FakeHub, home: Path) -> None:
    with ProxyThread(home, hub.url, chunk_size=CHUNK, refs_ttl=0.0) as proxy:
        warm = get(hf_url(proxy))
        assert warm.status == 200 and warm.body == MODEL.read()
        assert get(hf_url(proxy, "config.json")).body == CONFIG
        hub.pause()
        hub.clear_log()
        try:
            for url in (hf_url(proxy), f"{proxy.url}/v1/files/huggingface/org/model/model.safetensors"):
                got = get(url)
                assert got.error is None and got.status == 200 and got.body == MODEL.read(), url
            cfg = get(hf_url(proxy, "config.json"))
            assert cfg.status == 200 and cfg.body == CONFIG
            ranged = get(hf_url(proxy), {"Range": "bytes=5-9"})
            assert ranged.status == 206 and ranged.body == MODEL.read(5, 10)
            info = get(f"{proxy.url}/api/models/org/model/revision/main")
            assert info.status == 200
        finally:
            hub.resume()
        assert hub.requests == []  # nothing reached the (paused) origins


def test_offline_uncached_names_get_503_not_401_404(hub: FakeHub, proxy: ProxyThread) -> None:
    hub.pause()
    for url in (
        hf_url(proxy, repo="org/never-seen", path="model.bin"),
        hf_url(proxy, repo="org/model", path="config.json"),
        f"{proxy.url}/v1/files/huggingface/org/never-seen/model.bin",
        f"{proxy.url}/v1/trees/huggingface/org/never-seen",
        f"{proxy.url}/api/models/org/never-seen",
    ):
        got = get(url)
        assert not got.hung, url
        assert got.status == 503, (url, got.status, got.body[:200])
    hf = get(hf_url(proxy, repo="org/never-seen", path="model.bin"))
    assert hf.headers.get("Retry-After")


def test_offline_cached_tree_uncached_bytes_get_503(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    """The tree is cached, the file's bytes are not: the bytes need the origin → 503, no hang."""
    tree = get(f"{proxy.url}/v1/trees/huggingface/org/model")
    assert tree.status == 200
    hub.pause()
    statuses = {}
    for url in (hf_url(proxy), f"{proxy.url}/v1/files/huggingface/org/model/model.safetensors"):
        statuses[url] = asyncio.run(_status_first(url, LIVENESS))
    ranged = get(hf_url(proxy), {"Range": "bytes=0-99"})
    assert blob_files(home) == []
    assert not (ranged.status == 206 and ranged.error is None and ranged.body != MODEL.read(0, 100)), (
        f"a complete 206 answer carried wrong bytes: {ranged.body[:100]!r}"
    )
    for url, (status, error) in statuses.items():
        assert error is None, (url, error)
        assert status == 503, (url, status)
    assert not ranged.hung, f"a ranged read with the origin down was left hanging (status {ranged.status})"
    assert ranged.status == 503


# -- kill and restart ---------------------------------------------------------------------------


def _present_chunks(store: Store, name: str) -> set[int]:
    with store.index.read() as txn:
        if store.index.get_partial(name, txn) is None:
            return set()
        return set(store.index.chunk_sums(name, txn))


def test_sigkill_mid_download_then_restart_resumes(hub: FakeHub, home: Path) -> None:
    sha = hub.head("org/model")
    name = alias(MODEL)
    hub.fault(origin="cdn", method="GET", slow=256 << 10)  # ~1 s per chunk: a window to kill in
    observer = Store(StoreConfig(home, chunk_size=CHUNK))
    try:
        first = ServeProcess(home, hub.url, "--chunk-size", "256KiB", env=serve_env()).start()
        try:
            job = asyncio.run(_post_json(f"{first.url}/v1/prefetch", {"address": f"huggingface/org/model@{sha}"}))
            assert job[0] == 202
            deadline = time.monotonic() + 60
            present: set[int] = set()
            while time.monotonic() < deadline:  # bounded poll: until some chunks are on disk
                present = _present_chunks(observer, name)
                if len(present) >= 2:
                    break
                time.sleep(0.02)
            first.kill()
        finally:
            if first.proc is not None and first.proc.poll() is None:
                first.kill()
        present = _present_chunks(observer, name)
        assert 2 <= len(present) < NCHUNKS, present
        assert observer.resolve(name) is None
        hub.clear_faults()
        hub.clear_log()
        with ServeProcess(home, hub.url, "--chunk-size", "256KiB", env=serve_env()) as second:
            got = get(v1_url(second, sha))
            assert got.error is None and got.status == 200 and got.body == MODEL.read()
            second.stop()
        gets = cdn_gets(hub)
        asked = [range_of(r) for r in gets]
        for start, end in asked:
            for i in present:
                cs, ce = i * CHUNK, min((i + 1) * CHUNK, MODEL.size)
                assert end <= cs or start >= ce, f"chunk {i} was on disk but fetched again ({start}-{end})"
        have = sum(min(CHUNK, MODEL.size - i * CHUNK) for i in present)
        assert sum(r.bytes_sent for r in gets) <= 1.05 * (MODEL.size - have)
        assert observer.resolve(name) == MODEL.blake3
    finally:
        observer.close()


async def _post_json(url: str, doc: Any) -> tuple[int, Any]:
    async with session(LIVENESS) as s:
        async with s.post(url, json=doc) as resp:
            return resp.status, await resp.json(content_type=None)


# -- one fetch per chunk ------------------------------------------------------------------------


def test_concurrent_clients_of_one_cold_file_fetch_it_once(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    hub.fault(origin="cdn", method="GET", slow=4 * MiB)  # chunks stay in flight while clients pile up
    reqs: list[tuple[str, dict[str, str] | None]] = []
    for _ in range(4):
        reqs.append((v1_url(proxy, sha), None))
        reqs.append((hf_url(proxy, rev=sha), None))
    reqs.append((hf_url(proxy, rev=sha), {"Range": "bytes=300000-1300000"}))
    reqs.append((v1_url(proxy, sha), {"Range": f"bytes=-{CHUNK + 7}"}))
    got = get_many(reqs)
    for g in got[:8]:
        assert g.error is None and g.status == 200 and g.body == MODEL.read()
    assert got[8].status == 206 and got[8].body == MODEL.read(300000, 1300001)
    assert got[9].status == 206 and got[9].body == MODEL.read(MODEL.size - CHUNK - 7)
    assert hub.bytes_sent["cdn"] <= 1.05 * MODEL.size
    starts = [range_of(r)[0] for r in cdn_gets(hub)]
    assert len(starts) == len(set(starts)) == NCHUNKS, "a chunk was fetched more than once"
    assert_published(proxy.store, home, MODEL)


def test_two_processes_on_one_home_fetch_each_chunk_once(hub: FakeHub, home: Path) -> None:
    sha = hub.head("org/model")
    hub.fault(origin="cdn", method="GET", slow=2 * MiB)
    with ServeProcess(home, hub.url, "--chunk-size", "256KiB", env=serve_env()) as other:
        with ProxyThread(home, hub.url, chunk_size=CHUNK) as proxy:
            got = get_many([(v1_url(proxy, sha), None), (v1_url(other, sha), None), (hf_url(other, rev=sha), None)])
            for g in got:
                assert g.error is None and g.status == 200 and g.body == MODEL.read()
            assert_published(proxy.store, home, MODEL)
        other.stop()
    assert hub.bytes_sent["cdn"] <= 1.05 * MODEL.size


# -- private and gated repos --------------------------------------------------------------------


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.mark.parametrize("repo, path, content", [("org/private", "weights.bin", PRIV), ("org/gated", "w.bin", GATED)])
def test_cached_restricted_file_only_for_accepted_tokens(
    hub: FakeHub, proxy: ProxyThread, home: Path, repo: str, path: str, content: Content
) -> None:
    warm = get(hf_url(proxy, path, repo), _bearer(GOOD))
    assert warm.status == 200 and warm.body == content.read()
    assert_published(proxy.store, home, content)
    # the token went to the Hub, never to the CDN
    assert any(r.authorization == f"Bearer {GOOD}" for r in hub.find(origin="hub"))
    assert all(r.authorization is None for r in hub.find(origin="cdn"))
    hub.clear_log()
    sha = hub.head(repo)
    urls = [hf_url(proxy, path, repo), hf_url(proxy, path, repo, rev=sha), v1_url(proxy, "main", path, repo),
            v1_url(proxy, sha, path, repo)]
    for token in (None, OTHER):
        for url in urls:
            got = get(url, _bearer(token))
            assert got.status in (401, 403, 404), (url, token and "other", got.status)
            assert content.read(0, 4096) not in got.body
    for url in urls:
        got = get(url, _bearer(GOOD))
        assert got.status == 200 and got.body == content.read(), url
        part = get(url, {**_bearer(GOOD), "Range": "bytes=10-19"})
        assert part.status == 206 and part.body == content.read(10, 20)
    assert hub.count(origin="cdn") == 0  # the allowed token was served from the cache


def test_private_metadata_not_served_to_anonymous(hub: FakeHub, proxy: ProxyThread) -> None:
    assert get(f"{proxy.url}/api/models/org/private", _bearer(GOOD)).status == 200
    assert get(f"{proxy.url}/v1/trees/huggingface/org/private", _bearer(GOOD)).status == 200
    for token in (None, OTHER):
        for url in (f"{proxy.url}/api/models/org/private", f"{proxy.url}/v1/trees/huggingface/org/private",
                    f"{proxy.url}/api/models/org/private/tree/main"):
            got = get(url, _bearer(token))
            assert got.status in (401, 403, 404), (url, got.status)
            assert b"weights.bin" not in got.body


def _grep_tree(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file():
            try:
                if needle in p.read_bytes():
                    hits.append(p)
            except OSError:
                pass
    return hits


def test_tokens_never_logged_or_stored(hub: FakeHub, home: Path) -> None:
    with ServeProcess(home, hub.url, "--chunk-size", "256KiB", env=serve_env()) as srv:
        sha = hub.head("org/private")
        for url, token in [
            (hf_url(srv, "weights.bin", "org/private"), GOOD),
            (hf_url(srv, "weights.bin", "org/private"), OTHER),
            (hf_url(srv, "w.bin", "org/gated"), GOOD),
            (hf_url(srv, "w.bin", "org/gated"), OTHER),
            (v1_url(srv, sha, "weights.bin", "org/private"), GOOD),
            (f"{srv.url}/api/models/org/private", GOOD),
            (f"{srv.url}/api/models/org/private/tree/main", OTHER),
            (f"{srv.url}/api/whoami-v2", GOOD),
        ]:
            get(url, _bearer(token))
        log = srv.stop()
        assert srv.proc is not None and srv.proc.returncode == 0
    assert "GET /org/private/resolve/main/weights.bin 200" in log  # the log is there ...
    for token in (GOOD, OTHER):  # ... without the tokens
        assert token not in log
        assert _grep_tree(home, token.encode()) == []
        assert _grep_tree(home, token[3:].encode()) == []
    assert any(r.authorization == f"Bearer {GOOD}" for r in hub.find(origin="hub"))
