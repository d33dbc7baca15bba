"""Parallel ranged connections (issue 12): the chunks of one file come over up to
``--origin-connections`` concurrent ranged requests per origin host, while the client still
receives every byte in order, and every guarantee of a fill still holds.

The origin is the fake Hub + CDN with a per-connection rate cap (``per_connection_rate``, as
real CDNs cap each connection), so chunk fetches last long enough for the request log to show
how many are in flight at once; the proxy is the real one in-process (``ProxyThread``). What
is checked:

* with N connections exactly N ranged requests are in flight at the peak, never more (also
  across two files of the same origin host), and every byte comes from the origin once;
* a dropped range resumes where it stopped (origin bytes still == file size); a corrupt byte
  in one of the parallel ranges is caught: nothing published, the client's body cut short;
* idle keep-alive connections are reused, and replaced when the origin closed them;
* the body client decodes chunked and gzip bodies and answers that end with the connection;
* chunk buffers still viewed by a reader are never reused; the chunk memory stays bounded;
* ``origin_connections`` comes from flag, environment or config.toml, at least 1;
* two ``hoard serve`` processes on one home, both cold on one file at once, cost the origin
  one copy (the store's chunk locks work with parallel connections).

No sleeps for synchronisation: the rate cap makes the windows, polls are bounded
(``wait_for``) and the request log says what the origin saw.
"""

from __future__ import annotations

import asyncio
import gzip
import mmap
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

import click
from click.testing import CliRunner

from hoard.cli.common import App, common_options
from hoard.cli.config import load_settings
from hoard.proxy.bodyconn import BodyClient
from hoard.proxy.fetch import FetchConfig
from hoard.store.address import parse_address
from hoard.store.chunk_memory import BUDGET, ChunkMemory
from hoard.store.directio import BufferPool
from hoard.store.errors import OriginUnavailable, UsageError
from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.harness import ProxyThread, ServeProcess, serve_env, wait_for
from tests.httpcalls import Got, call, raw

MiB = 1 << 20
CHUNK = 1 * MiB
#: each connection's speed at the fake CDN: a 1 MiB chunk takes ~0.25 s
RATE = 4 * MiB
MODEL = Content("parallel-model", 12 * MiB + 4321)  # 13 chunks, the last one short
OTHER = Content("parallel-other", 6 * MiB)
SMALL = Content("parallel-small", 3 * MiB + 17)
NCHUNKS = -(-MODEL.size // CHUNK)
#: liveness bound for one client request (a correct proxy needs ~1 s here)
LIVENESS = 30.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(per_connection_rate=RATE) as fake:
        fake.add_repo("org/model", {"model.safetensors": MODEL, "other.safetensors": OTHER, "small.bin": SMALL})
        yield fake


@pytest.fixture(autouse=True)
def clean_hub(hub: FakeHub) -> Iterator[None]:
    hub.resume()
    hub.clear_faults()
    hub.clear_log()
    yield
    hub.resume()
    hub.clear_faults()


def url(px: ProxyThread, path: str = "model.safetensors") -> str:
    return f"{px.url}/org/model/resolve/main/{path}"


def in_flight(hub: FakeHub) -> int:
    """Ranged GETs the CDN has answered and not finished sending."""
    return sum(1 for r in hub.find(origin="cdn", method="GET") if r.status == 206 and not r.completed and not r.aborted)


def watching(hub: FakeHub, *jobs: Callable[[], T]) -> tuple[list[T], int]:
    """Run every job at once (threads) while sampling how many ranged requests the CDN is
    serving; returns the jobs' results and the peak seen."""
    got: list[Any] = [None] * len(jobs)

    def one(i: int, job: Callable[[], T]) -> None:
        got[i] = job()

    threads = [threading.Thread(target=one, args=(i, j), daemon=True) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    peak = 0
    tick = threading.Event()
    while any(t.is_alive() for t in threads):
        peak = max(peak, in_flight(hub))
        tick.wait(0.005)
    for t in threads:
        t.join()
    return got, peak


def fetch_watching(hub: FakeHub, *urls: str) -> tuple[list[Got], int]:
    """GET every URL at once while sampling the CDN's ranged requests in flight."""
    return watching(hub, *(lambda u=u: call("GET", u, timeout=LIVENESS) for u in urls))


def published(px: ProxyThread, content: Content) -> bool:
    return px.store.resolve(f"sha256:{content.sha256}") == content.blake3


def test_one_file_comes_over_n_parallel_ranges_each_byte_once(hub: FakeHub, tmp_path: Path) -> None:
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, origin_connections=4) as px:
        [got], peak = fetch_watching(hub, url(px))
        assert got.error is None and got.status == 200
        assert got.body == MODEL.read(), "the client must get every byte, in order"
        print(f"peak ranged requests in flight: {peak} (origin_connections=4)")
        assert peak == 4, f"expected 4 ranged requests in flight at the peak, saw {peak}"
        ranges = [r for r in hub.find(origin="cdn", method="GET") if r.status == 206]
        assert len(ranges) == NCHUNKS, "one ranged request per chunk"
        assert hub.bytes_sent["cdn"] == MODEL.size, "every byte comes from the origin once"
        wait_for(lambda: published(px, MODEL))


def test_a_whole_file_fill_keeps_n_ranges_in_flight_with_no_reader(hub: FakeHub, tmp_path: Path) -> None:
    """A fill nobody reads along (prefetch, ``--fill open``) keeps N chunks in flight alone."""
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, origin_connections=4) as px:
        svc = px.server.svc  # type: ignore[union-attr]

        async def fill() -> str:
            resolved = await svc.catalog.resolve(parse_address("huggingface/org/model"), svc.config.local_creds)
            of = await svc.core.open(svc.catalog.file(resolved, "model.safetensors", svc.config.local_creds))
            try:
                return await svc.core.fill(of)
            finally:
                await svc.core.close(of)

        [b3], peak = watching(hub, lambda: px.call(fill()))
        print(f"peak ranged requests in flight for a fill: {peak} (origin_connections=4)")
        assert b3 == MODEL.blake3 and peak == 4
        assert hub.bytes_sent["cdn"] == MODEL.size


def test_the_limit_is_per_origin_host_across_files(hub: FakeHub, tmp_path: Path) -> None:
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, origin_connections=3) as px:
        got, peak = fetch_watching(hub, url(px), url(px, "other.safetensors"))
        assert [g.body for g in got] == [MODEL.read(), OTHER.read()]
        print(f"peak ranged requests in flight for two files: {peak} (origin_connections=3)")
        assert peak == 3
        assert hub.bytes_sent["cdn"] == MODEL.size + OTHER.size


def test_a_dropped_parallel_range_resumes_where_it_stopped(hub: FakeHub, tmp_path: Path) -> None:
    drop = hub.fault(origin="cdn", method="GET", drop_after=300_000, times=2)
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, origin_connections=4) as px:
        [got], _ = fetch_watching(hub, url(px))
        assert got.error is None and got.body == MODEL.read()
        assert drop.hits == 2
        assert hub.bytes_sent["cdn"] == MODEL.size, "a resume asks only for what did not land"
        wait_for(lambda: published(px, MODEL))


def test_a_corrupt_byte_in_one_parallel_range_is_never_published(hub: FakeHub, tmp_path: Path) -> None:
    bad = hub.fault(origin="cdn", method="GET", corrupt=True, times=1)
    home = tmp_path / "home"
    with ProxyThread(home, hub.url, chunk_size=CHUNK, origin_connections=4) as px:
        [got], peak = fetch_watching(hub, url(px))
        assert bad.hits == 1 and peak == 4
        assert len(got.body) < MODEL.size, "a complete wrong file was delivered"
        assert got.status == 200 and got.error is not None, "the body must end in a broken connection"
        assert px.store.resolve(f"sha256:{MODEL.sha256}") is None
        blobs = home / "blobs"
        assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()], "nothing may be published"
        assert px.metrics.get("hoard_errors_total", kind="integrity") >= 1
        # the origin is healthy again: fetched afresh, right, published
        again = call("GET", url(px), timeout=LIVENESS)
        assert again.error is None and again.body == MODEL.read()
        wait_for(lambda: published(px, MODEL))


def test_idle_connections_are_reused_and_replaced_once_the_origin_closed_them(hub: FakeHub, tmp_path: Path) -> None:
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, origin_connections=2) as px:
        bodies = px.server.svc.http.bodies  # type: ignore[union-attr]
        first = call("GET", url(px), timeout=LIVENESS)
        assert first.body == MODEL.read()
        opened = bodies.opened
        print(f"connections opened for {NCHUNKS} chunks with 2 per host: {opened}")
        assert opened <= 4, "keep-alive: two per host (the Hub's redirect and the CDN)"
        hub.restart()  # every connection dropped, same ports: the idle ones in the pool are dead
        second = call("GET", url(px, "other.safetensors"), timeout=LIVENESS)
        assert second.error is None and second.body == OTHER.read()
        assert hub.bytes_sent["cdn"] == MODEL.size + OTHER.size


def test_sequential_mount_style_reads_start_chunks_past_what_they_ask(hub: FakeHub, tmp_path: Path) -> None:
    """A reader asking piece by piece (as the kernel does) with read-ahead keeps the next
    chunks coming: after reading the first 64 KiB, the following chunks are being fetched."""
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, origin_connections=4) as px:
        svc = px.server.svc  # type: ignore[union-attr]

        async def first_piece() -> bytes:
            resolved = await svc.catalog.resolve(parse_address("huggingface/org/model"), svc.config.local_creds)
            of = await svc.core.open(svc.catalog.file(resolved, "small.bin", svc.config.local_creds))
            try:
                return await svc.core.read_bytes(of, 0, 64 << 10, readahead=3)
            finally:
                await svc.core.close(of)

        assert px.call(first_piece()) == SMALL.read(0, 64 << 10)
        wait_for(lambda: len([r for r in hub.find(origin="cdn", method="GET") if r.status == 206]) == 4)


def test_a_kept_connection_the_origin_closed_meanwhile_is_replaced_at_once() -> None:
    """The origin drops an idle connection just as the next request goes out on it (it reads
    the request and closes): the client asks again on a fresh connection, no error."""
    body = b"x" * 1000
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        served.append(1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: hang up
        writer.close()

    async def run() -> tuple[list[bytes], int]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f"
        client = BodyClient(per_host=1)
        out = []
        try:
            for _ in range(3):
                async with client.get(url) as resp:
                    out.append(await resp.read())
            return out, client.opened
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    bodies, opened = asyncio.run(run())
    assert bodies == [body] * 3 and len(served) == 3
    assert opened == 3, "each reuse found its connection closed and opened a new one"


# -- the body client against an origin that frames its answers differently -----------------------


async def _origin(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_body_client_framings() -> None:
    payload = Content("framings", 700_000).read()

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(payload), 99_999):
            await resp.write(payload[i : i + 99_999])
        await resp.write_eof()
        return resp

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(payload), headers={"Content-Encoding": "gzip"})

    async def until_close(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Connection": "close"})
        resp.force_close()
        await resp.prepare(request)
        await resp.write(payload)
        await resp.write_eof()
        return resp

    async def run() -> list[tuple[int, bytes, bool]]:
        app = web.Application()
        app.router.add_get("/chunked", chunked)
        app.router.add_get("/gzip", gzipped)
        app.router.add_get("/close", until_close)
        runner, base = await _origin(app)
        client = BodyClient(per_host=2)
        out = []
        try:
            for path in ("/chunked", "/gzip", "/close", "/chunked"):
                async with client.get(base + path) as resp:
                    buf = memoryview(bytearray(65536))
                    body = bytearray()
                    while n := await resp.readinto(buf):
                        body += buf[:n]
                    out.append((resp.status, bytes(body), resp.keep_alive))
        finally:
            await client.close()
            await runner.cleanup()
        return out

    got = asyncio.run(run())
    assert [g[0] for g in got] == [200, 200, 200, 200]
    assert all(g[1] == payload for g in got)
    assert [g[2] for g in got] == [True, True, False, True]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hoard-test-origin")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = tmp / "cert.pem", tmp / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem


def test_body_client_over_tls_keeps_alive_and_verifies(tmp_path: Path) -> None:
    """Real origins are https: ranges over TLS land right, on one kept-alive connection, and
    an origin whose certificate the system does not trust is refused (a retryable error)."""
    import ssl

    payload = Content("tls", 3 * MiB).read()
    cert, key = _self_signed(tmp_path)

    async def serve(request: web.Request) -> web.Response:
        first, last = (int(x) for x in request.headers["Range"].removeprefix("bytes=").split("-"))
        return web.Response(status=206, body=payload[first : last + 1],
                            headers={"Content-Range": f"bytes {first}-{last}/{len(payload)}"})

    async def run() -> tuple[list[bytes], int, str]:
        app = web.Application()
        app.router.add_get("/f", serve)
        runner = web.AppRunner(app)
        await runner.setup()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}/f"
        trusting = ssl.create_default_context()
        trusting.load_verify_locations(cert)
        client, stock = BodyClient(ssl_context=trusting), BodyClient()
        bodies = []
        try:
            for first, last in ((0, MiB - 1), (MiB, 3 * MiB - 1), (17, 1016)):
                async with client.get(url, {"Range": f"bytes={first}-{last}"}) as resp:
                    buf, body = memoryview(bytearray(MiB)), bytearray()
                    while n := await resp.readinto(buf, MiB):
                        body += buf[:n]
                    bodies.append(bytes(body))
            try:
                async with stock.get(url, {"Range": "bytes=0-9"}):
                    refused = "no"
            except OriginUnavailable as exc:
                refused = str(exc)
            return bodies, client.opened, refused
        finally:
            await client.close()
            await stock.close()
            await runner.cleanup()

    bodies, opened, refused = asyncio.run(run())
    assert bodies == [payload[: MiB], payload[MiB:], payload[17:1017]]
    assert opened == 1, "one TLS connection, kept alive"
    assert "CERTIFICATE_VERIFY_FAILED" in refused


# -- memory: views and bounds --------------------------------------------------------------------


def test_a_buffer_still_viewed_is_never_reused() -> None:
    pool = BufferPool(max_idle=4)
    buf = pool.get(CHUNK)
    buf[:5] = b"hello"
    view = memoryview(buf)[:5]
    pool.put(buf)  # a reader still holds a view: the pool must not hand it out again
    other = pool.get(CHUNK)
    assert other is not buf
    other[:5] = b"XXXXX"
    assert bytes(view) == b"hello"
    view.release()
    pool.put(other)
    assert pool.get(CHUNK) is other  # no view of it: reused


def test_a_buffer_put_back_while_viewed_is_reused_once_the_view_is_gone() -> None:
    """A response still sending from a chunk's buffer must not cost a fresh map (2,048 page
    faults) for every chunk: the buffer comes back once the response let go of it."""
    pool = BufferPool(max_idle=4, reserve=0)
    buf = pool.get(CHUNK)
    view = memoryview(buf)[:5]
    pool.put(buf)
    assert pool.get(CHUNK) is not buf  # viewed: not handed out
    view.release()
    created = pool.created
    assert pool.get(CHUNK) is buf and pool.created == created  # the view is gone: reused, no new map


def test_chunk_memory_stays_bounded_and_keeps_what_the_hasher_needs() -> None:
    used = BUDGET.used
    mem = ChunkMemory(CHUNK, 10 * CHUNK, limit=3)
    bufs = [mmap.mmap(-1, CHUNK) for _ in range(6)]
    for i in range(3):
        assert mem.keep(i, bufs[i])
    # full, nothing hashed yet: the next one is not kept (the hasher reads it from disk)
    assert not mem.keep(3, bufs[3]) and len(mem) == 3
    pinned = mem.pin(0)
    assert pinned is bufs[0]
    mem.unpin(0, 2)  # chunks 0 and 1 hashed
    assert mem.keep(4, bufs[4]) and len(mem) == 3, "a hashed chunk gives its place up"
    assert not mem.has(0) and mem.has(1)
    mem.keep_from(3)  # readers are past chunk 2: hashed chunks below it go
    assert not mem.has(1) and mem.has(2) and mem.has(4)
    assert mem.pin(2) is bufs[2]
    mem.close()  # chunk 2 is pinned: it goes when the hasher lets go
    assert mem.has(2) and not mem.has(4)
    mem.unpin(2, 3)
    assert len(mem) == 0 and BUDGET.used == used


# -- the setting -------------------------------------------------------------------------------------


def test_origin_connections_from_flag_env_and_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()

    @click.command()
    @common_options("origin_connections")
    def show(app: App) -> None:
        click.echo(app.settings.origin_connections)

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        result = CliRunner().invoke(show, ["--home", str(home), *args], env=env or {})
        return result.output.strip()

    assert run() == "8"
    assert run(env={"HOARD_ORIGIN_CONNECTIONS": "2"}) == "2"
    assert run("--origin-connections", "3", env={"HOARD_ORIGIN_CONNECTIONS": "2"}) == "3"
    (home / "config.toml").write_text("origin_connections = 5\n")
    assert run() == "5"
    for bad in ("0", "-2", "many"):
        with pytest.raises(UsageError, match="origin_connections"):
            load_settings({"home": str(home), "origin_connections": bad}, environ={})
    with pytest.raises(ValueError):
        FetchConfig(origin_connections=0)
    assert FetchConfig(origin_connections=6).ahead == 5 and FetchConfig(origin_connections=6).fill_width == 6


# -- across processes ------------------------------------------------------------------------------


def metric(base: str, name: str) -> int:
    """The sum of a counter's series at a running ``hoard serve`` (its /metrics)."""
    status, _, body = raw("GET", f"{base}/metrics")
    assert status == 200
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body.decode(), re.M)
    return sum(int(float(v)) for v in found)


def test_two_processes_on_one_home_fetch_each_chunk_once_over_parallel_connections(
    hub: FakeHub, tmp_path: Path
) -> None:
    """Two ``hoard serve`` processes on one home, each with four ranged connections, asked for
    the same cold multi-chunk file at once: the store's chunk locks make one of them fetch
    each chunk while the other waits for it, so both send every byte and the origin sends each
    byte once. Both answering it as a cache miss proves the two requests overlapped: a file
    is published before its response ends, so a later request would have been a hit."""
    home = tmp_path / "home"
    flags = ("--chunk-size", "1MiB", "--origin-connections", "4")
    with ServeProcess(home, hub.url, *flags, env=serve_env()) as one, \
            ServeProcess(home, hub.url, *flags, env=serve_env()) as two:
        path = "/org/model/resolve/main/model.safetensors"
        got, peak = fetch_watching(hub, one.url + path, two.url + path)
        for g in got:
            assert (g.status, g.error) == (200, None) and g.body == MODEL.read(), "exact bytes to both clients"
        misses = [metric(p.url, "hoard_cache_misses_total") for p in (one, two)]
        origin = hub.bytes_sent["cdn"]
        print(f"origin bytes for two processes: {origin} for a file of {MODEL.size} "
              f"({origin / MODEL.size:.3f}x); misses {misses}; peak ranged requests {peak}")
        assert misses == [1, 1], "both requests must have found the file cold"
        assert origin == MODEL.size, "each byte from the origin once, across both processes"


def test_a_file_read_whole_is_published_by_a_shutdown_right_after(hub: FakeHub, tmp_path: Path) -> None:
    """A mount unmounted the moment a reader got the last byte: every chunk is there, so
    shutdown verifies and publishes the file rather than leave it to the next open."""
    home = tmp_path / "home"
    with ProxyThread(home, hub.url, chunk_size=CHUNK, origin_connections=4) as px:
        svc = px.server.svc  # type: ignore[union-attr]

        async def read_all_then_shut_down() -> bytes:
            resolved = await svc.catalog.resolve(parse_address("huggingface/org/model"), svc.config.local_creds)
            of = await svc.core.open(svc.catalog.file(resolved, "model.safetensors", svc.config.local_creds))
            try:
                data = await svc.core.read_bytes(of, 0, MODEL.size)  # as the mount reads: no tail held
            finally:
                await svc.core.close(of)
            await svc.core.aclose()  # at once, as an unmount does
            return data

        assert px.call(read_all_then_shut_down()) == MODEL.read()
        assert published(px, MODEL), "a complete file was left unpublished at shutdown"
    assert hub.bytes_sent["cdn"] == MODEL.size


def test_a_chunk_that_failed_for_good_fails_its_reader_even_with_no_failure_hold(hub: FakeHub, tmp_path: Path) -> None:
    """A chunk fetch that used its retries ends the read with its error; the reader must not
    start the chunk again and again (with ``failure_hold`` 0 nothing else would stop it)."""
    fetch = FetchConfig(chunk_attempts=2, failure_hold=0)
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, origin_connections=2, fetch=fetch) as px:
        hub.fault(origin="cdn", method="GET", status=503)  # every ranged GET, for good
        got = call("GET", url(px), timeout=60)  # a liveness bound: it must answer, not loop
        assert got.status is not None and (got.status >= 500 or got.error is not None), got
        gets = len(hub.find(origin="cdn", method="GET"))
        print(f"ranged GETs before the read failed: {gets}")
        assert gets <= 2 * NCHUNKS, f"{gets} GETs: chunks were started again after failing for good"
