"""The fleet's shared blob tier (``--blob-store s3://...``) against a real S3-compatible store:
SeaweedFS on 127.0.0.1 (:mod:`tests.seaweed`), the fake Hub as the origin.

Nodes are separate homes (in-process proxies, or `hoard prefetch` processes) sharing one
bucket. What is proven: a file one node fetched reaches another with no origin bytes; a
commit-pinned tree resolves from the bucket; a corrupt or truncated object is refused,
refetched from the origin and rewritten; a store that dies mid-read leaves the read to the
origin, and so does one that dies while a GET streams (cut mid-body by :class:`CutRelay`);
private content stays out unless the bucket is trusted with it; nodes cold at once cost the
origin one copy; two uploads of one blob at once are harmless; `hoard prefetch` finds the
bucket and the store in the environment alone (``HOARD_BLOB_STORE``, ``AWS_ENDPOINT_URL``);
`hoard mount --blob-store` reads what another node filled with no origin bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import blake3
import pytest

from hoard.proxy.bucket import BlobStoreConfig, Bucket, parse_blob_store
from hoard.proxy.bucket_tier import BLOCK, BucketTier
from hoard.store.config import StoreConfig
from hoard.store.errors import UsageError
from hoard.store.store import Store

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import MountProcess, ProxyThread, serve_env, wait_for
from .httpcalls import call, raw
from .seaweed import REGION, Seaweed, seaweed, seaweed_env  # noqa: F401 - the fixture

MiB = 1 << 20
CHUNK = 256 << 10

__all__: list[str] = []


@pytest.fixture
def hub() -> FakeHub:
    with FakeHub() as h:
        yield h


def node(tmp_path: Path, name: str, hub: FakeHub, sw: Seaweed, bucket: str, **config: object) -> ProxyThread:
    private = bool(config.pop("private", False))
    return ProxyThread(tmp_path / name, hub.url, chunk_size=CHUNK, blob_store=sw.blob_store(bucket, private=private),
                       **config)


def get(base: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    status, _, body = raw("GET", f"{base}{path}", headers)
    assert status in (200, 206), (status, body[:300])
    return body


def uploaded(sw: Seaweed, bucket: str, sha256: str) -> bool:
    return f"aliases/sha256/{sha256}" in sw.keys(bucket, "aliases/")


def test_a_file_one_node_fetched_reaches_another_with_no_origin_bytes(
    seaweed: Seaweed, hub: FakeHub, tmp_path: Path
) -> None:
    data = Content("fleet-one", 3 * MiB + 12345)
    commit = hub.add_repo("org/m", {"model.safetensors": data, "config.json": b'{"a": 1}'})
    bucket = seaweed.make_bucket()
    with node(tmp_path, "a", hub, seaweed, bucket) as a:
        assert get(a.url, "/v1/files/huggingface/org/m/model.safetensors") == data.read()
        wait_for(lambda: uploaded(seaweed, bucket, data.sha256))
        wait_for(lambda: not seaweed.keys(bucket, "fills/"))  # the shared fill cleans up after itself
    b3 = data.blake3
    keys = seaweed.keys(bucket)
    assert f"blobs/{b3}" in keys and f"digests/{b3}" in keys
    assert f"trees/huggingface/org/m@{commit}.json" in keys
    assert seaweed.get(bucket, f"blobs/{b3}") == data.read()

    origin_bytes = hub.bytes_sent["cdn"]
    assert origin_bytes == data.size
    with node(tmp_path, "b", hub, seaweed, bucket) as b:
        assert get(b.url, "/v1/files/huggingface/org/m/model.safetensors") == data.read()
        assert hub.bytes_sent["cdn"] == origin_bytes  # node B: zero bytes from the origin
        # B verified and published it like any origin's bytes
        tree = get(b.url, "/v1/trees/huggingface/org/m").decode()
        assert b3 in tree


def test_a_commit_pinned_tree_resolves_from_the_bucket(seaweed: Seaweed, hub: FakeHub, tmp_path: Path) -> None:
    data = Content("fleet-pinned", 2 * MiB)
    commit = hub.add_repo("org/p", {"model.safetensors": data})
    bucket = seaweed.make_bucket()
    with node(tmp_path, "a", hub, seaweed, bucket) as a:
        get(a.url, f"/v1/files/huggingface/org/p@{commit}/model.safetensors")
        wait_for(lambda: uploaded(seaweed, bucket, data.sha256))
    hub.clear_log()
    with node(tmp_path, "b", hub, seaweed, bucket) as b:
        assert get(b.url, f"/v1/files/huggingface/org/p@{commit}/model.safetensors") == data.read()
    # the tree and the revision's info came from the bucket: the Hub was asked only for the
    # default branch (the catalog's check that the repo has not turned private since)
    asked = [r.path for r in hub.requests]
    assert not [p for p in asked if "/tree/" in p or commit in p], asked
    assert hub.bytes_sent["cdn"] == 0

    hub.pause()  # and with the origin unreachable, a third node still gets the pinned file
    with node(tmp_path, "c", hub, seaweed, bucket) as c:
        assert get(c.url, f"/v1/files/huggingface/org/p@{commit}/model.safetensors") == data.read()


@pytest.mark.parametrize("damage", ["other-bytes", "truncated"])
def test_a_bad_object_is_refused_refetched_from_the_origin_and_rewritten(
    seaweed: Seaweed, hub: FakeHub, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = Content(f"fleet-bad-{damage}", 3 * MiB)
    hub.add_repo("org/bad", {"model.safetensors": data})
    bucket = seaweed.make_bucket()
    with node(tmp_path, "a", hub, seaweed, bucket) as a:
        get(a.url, "/v1/files/huggingface/org/bad/model.safetensors")
        wait_for(lambda: uploaded(seaweed, bucket, data.sha256))
    key = f"blobs/{data.blake3}"
    bad = Content("not-the-model", data.size).read() if damage == "other-bytes" else data.read()[: 2 * MiB]
    seaweed.put(bucket, key, bad)
    before = hub.bytes_sent["cdn"]
    caplog.set_level(logging.WARNING, logger="hoard.bucket")
    with node(tmp_path, "b", hub, seaweed, bucket) as b:
        assert get(b.url, "/v1/files/huggingface/org/bad/model.safetensors") == data.read()
        assert hub.bytes_sent["cdn"] - before == data.size  # refetched from the origin
        assert f"blobs/{data.blake3} is bad" in caplog.text  # and reported
        wait_for(lambda: seaweed.get(bucket, key) == data.read())  # the copy is rewritten


def test_a_forged_copy_fails_one_read_then_the_origin_serves(
    seaweed: Seaweed, hub: FakeHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Other bytes under the blob's key with block digests forged to match them: each block
    checks, only the whole file's hash tells. That read fails; the next ones do not use the copy."""
    data = Content("fleet-forged", 3 * MiB)
    hub.add_repo("org/forged", {"model.safetensors": data})
    bucket = seaweed.make_bucket()
    with node(tmp_path, "a", hub, seaweed, bucket) as a:
        get(a.url, "/v1/files/huggingface/org/forged/model.safetensors")
        wait_for(lambda: uploaded(seaweed, bucket, data.sha256))
    forged = Content("forged-model", data.size).read()
    blocks = b"".join(blake3.blake3(forged[i : i + BLOCK]).digest() for i in range(0, len(forged), BLOCK))
    seaweed.put(bucket, f"blobs/{data.blake3}", forged)
    doc = {"b3": data.blake3, "size": data.size, "block": BLOCK, "blake3": blocks.hex()}
    seaweed.put(bucket, f"digests/{data.blake3}", json.dumps(doc).encode())
    before = hub.bytes_sent["cdn"]
    caplog.set_level(logging.WARNING, logger="hoard.bucket")
    url = "/v1/files/huggingface/org/forged/model.safetensors"
    with node(tmp_path, "b", hub, seaweed, bucket) as b:
        first = call("GET", b.url + url)
        assert first.error is not None or first.status != 200, "forged bytes were served whole"
        assert first.body != data.read() and hub.bytes_sent["cdn"] == before
        for _ in range(2):  # not again: the origin's bytes, verified
            again = call("GET", b.url + url)
            assert (again.status, again.error, again.body == data.read()) == (200, None, True)
        assert hub.bytes_sent["cdn"] - before == data.size
        assert f"blobs/{data.blake3} is bad" in caplog.text
        wait_for(lambda: seaweed.get(bucket, f"blobs/{data.blake3}") == data.read())  # and rewritten


def test_a_store_that_dies_mid_file_leaves_the_rest_to_the_origin(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Content("fleet-dies", 6 * MiB)
    hub.add_repo("org/d", {"model.safetensors": data})
    with Seaweed(tmp_path / "sw") as sw:  # its own store: this test stops it
        for name, value in seaweed_env(sw, {}).items():
            monkeypatch.setenv(name, value)
        bucket = sw.make_bucket()
        with node(tmp_path, "a", hub, sw, bucket) as a:
            get(a.url, "/v1/files/huggingface/org/d/model.safetensors")
            wait_for(lambda: uploaded(sw, bucket, data.sha256))
        before = hub.bytes_sent["cdn"]
        with node(tmp_path, "b", hub, sw, bucket) as b:
            path = "/v1/files/huggingface/org/d/model.safetensors"
            head = get(b.url, path, {"Range": f"bytes=0-{MiB - 1}"})  # from the bucket
            assert head == data.read(0, MiB) and hub.bytes_sent["cdn"] == before
            sw.stop()  # the store dies with the file planned from it
            rest = get(b.url, path, {"Range": f"bytes={MiB}-"})
            assert rest == data.read(MiB, data.size)
            assert hub.bytes_sent["cdn"] - before >= data.size - 2 * MiB  # the origin gave the rest
            assert data.blake3 in get(b.url, "/v1/trees/huggingface/org/d").decode()  # verified, published


def test_private_content_stays_out_of_the_bucket_unless_trusted(
    seaweed: Seaweed, hub: FakeHub, tmp_path: Path
) -> None:
    data = Content("fleet-secret", 2 * MiB)
    gated = Content("fleet-gated", MiB)
    commit = hub.add_repo("org/secret", {"model.safetensors": data}, private=True, allowed_tokens=["tok"])
    hub.add_repo("org/gated", {"model.safetensors": gated}, gated="auto", allowed_tokens=["tok"])
    auth = {"Authorization": "Bearer tok"}
    bucket = seaweed.make_bucket()
    with node(tmp_path, "a", hub, seaweed, bucket) as a:
        assert get(a.url, "/v1/files/huggingface/org/secret/model.safetensors", auth) == data.read()
        assert get(a.url, "/v1/files/huggingface/org/gated/model.safetensors", auth) == gated.read()
        public = Content("fleet-public", MiB)
        hub.add_repo("org/public", {"model.safetensors": public})
        get(a.url, "/v1/files/huggingface/org/public/model.safetensors")
        wait_for(lambda: uploaded(seaweed, bucket, public.sha256))  # uploads do happen
    keys = seaweed.keys(bucket)
    for secret in (data, gated):
        assert not [k for k in keys if secret.sha256 in k or secret.blake3 in k], keys
    assert not [k for k in keys if "org/secret" in k or "org/gated" in k], keys
    assert not [k for k in keys if k.startswith("fills/")], keys

    with node(tmp_path, "p", hub, seaweed, bucket, private=True) as p:
        assert get(p.url, "/v1/files/huggingface/org/secret/model.safetensors", auth) == data.read()
        wait_for(lambda: uploaded(seaweed, bucket, data.sha256))
    assert f"trees/huggingface/org/secret@{commit}.json" in seaweed.keys(bucket)
    raw_tree = seaweed.get(bucket, f"trees/huggingface/org/secret@{commit}.json")
    assert b"tok" not in raw_tree  # no token is ever written


def test_nodes_cold_at_once_cost_the_origin_one_copy(seaweed: Seaweed, hub: FakeHub, tmp_path: Path) -> None:
    data = Content("fleet-cold", 8 * MiB)
    hub.add_repo("org/cold", {"model.safetensors": data})
    bucket = seaweed.make_bucket()
    hub.fault(origin="cdn", slow=4 * MiB)  # an origin slower than the bucket, as in life
    nodes = [node(tmp_path, f"n{i}", hub, seaweed, bucket).start() for i in range(3)]
    try:
        got: dict[int, bytes] = {}

        def pull(i: int) -> None:
            got[i] = get(nodes[i].url, "/v1/files/huggingface/org/cold/model.safetensors")

        threads = [threading.Thread(target=pull, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(got.get(i) == data.read() for i in range(3))
        print(f"origin bytes for 3 cold nodes: {hub.bytes_sent['cdn'] / data.size:.3f}x the file")
        assert hub.bytes_sent["cdn"] <= 1.05 * data.size
        wait_for(lambda: uploaded(seaweed, bucket, data.sha256))
        wait_for(lambda: not seaweed.keys(bucket, "fills/"))  # the leader removed its pieces
    finally:
        for n in nodes:
            n.stop()


def test_two_uploads_of_one_blob_at_once_are_harmless(seaweed: Seaweed, tmp_path: Path) -> None:
    data = Content("fleet-race", 20 * MiB + 7).read()  # several parts: a real multipart upload
    bucket = seaweed.make_bucket()
    stores = [Store(StoreConfig(tmp_path / f"s{i}", chunk_size=CHUNK)) for i in range(2)]
    alias = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        b3 = stores[0].add_bytes(data)[0]
        assert stores[1].add_bytes(data)[0] == b3 == blake3.blake3(data).hexdigest()

        async def race() -> list[bool]:
            tiers = [BucketTier(Bucket(seaweed.blob_store(bucket, part_size=5 * MiB)), s) for s in stores]
            try:
                return list(await asyncio.gather(*(t.upload(b3, [alias]) for t in tiers)))
            finally:
                for t in tiers:
                    await t.close()

        assert asyncio.run(race()) == [True, True]
        assert seaweed.get(bucket, f"blobs/{b3}") == data

        async def read_back() -> bytes:
            tier = BucketTier(Bucket(seaweed.blob_store(bucket)), stores[0])
            try:
                blob = await tier.lookup(alias, len(data))
                assert blob is not None and blob.b3 == b3 and len(blob.digests) == -(-len(data) // BLOCK)
                return b"".join([b async for b in tier.read(blob, 3, len(data))])
            finally:
                await tier.close()

        assert asyncio.run(read_back()) == data[3:]
    finally:
        for s in stores:
            s.close()


def test_prefetch_processes_share_through_the_bucket(seaweed: Seaweed, hub: FakeHub, tmp_path: Path) -> None:
    data = Content("fleet-cli", 2 * MiB)
    hub.add_repo("org/cli", {"model.safetensors": data})
    bucket = seaweed.make_bucket()
    env = seaweed_env(seaweed, serve_env())
    env.pop("AWS_ENDPOINT_URL")  # given as the flag instead

    def prefetch(home: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hoard.cli.main", "prefetch", "huggingface/org/cli", "--home", str(tmp_path / home),
             "--hf-endpoint", hub.url, "--blob-store", f"s3://{bucket}/fleet", "--s3-endpoint", seaweed.endpoint],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    log = prefetch("a")
    assert f"fleet/aliases/sha256/{data.sha256}" in seaweed.keys(bucket, "fleet/"), log  # uploaded before it exited
    before = hub.bytes_sent["cdn"]
    prefetch("b")
    assert hub.bytes_sent["cdn"] == before


def test_blob_store_settings_are_checked() -> None:
    assert parse_blob_store("s3://models-bucket/site/a/").prefix == "site/a/"
    assert parse_blob_store("s3://models-bucket").url == "s3://models-bucket"
    for bad in ("http://x/y", "s3://A_B", "s3://ab", "s3://bucket/../x"):
        with pytest.raises(ValueError):
            parse_blob_store(bad)
    from hoard.cli.config import load_settings

    settings = load_settings({"home": "/tmp/x", "upstream": ("http://a:1,http://b:2/", "http://a:1"),
                              "blob_store": "s3://fleet-bucket/p", "blob_store_private": True}, {"AWS_REGION": "eu-west-3"})
    assert settings.upstream == ("http://a:1", "http://b:2")
    assert (settings.blob_store, settings.blob_store_private, settings.s3_region) == ("s3://fleet-bucket/p", True, "eu-west-3")
    with pytest.raises(UsageError):
        load_settings({"home": "/tmp/x", "blob_store": "s3://No"}, {})
    with pytest.raises(UsageError):
        load_settings({"home": "/tmp/x", "upstream": ("ftp://x",)}, {})


def test_prefetch_takes_the_bucket_and_its_endpoint_from_the_environment(
    seaweed: Seaweed, hub: FakeHub, tmp_path: Path
) -> None:
    """No flag at all: the bucket from ``HOARD_BLOB_STORE``, the store from
    ``AWS_ENDPOINT_URL`` and the credentials from ``AWS_ACCESS_KEY_ID``/``..._SECRET_...``,
    the standard AWS way every other tool of a fleet is configured."""
    data = Content("fleet-env", 2 * MiB + 3)
    hub.add_repo("org/env", {"model.safetensors": data})
    bucket = seaweed.make_bucket()
    env = seaweed_env(seaweed, serve_env())
    assert env["AWS_ENDPOINT_URL"] == seaweed.endpoint
    env["HOARD_BLOB_STORE"] = f"s3://{bucket}/site-a"
    done = subprocess.run(
        [sys.executable, "-m", "hoard.cli.main", "prefetch", "huggingface/org/env", "--home", str(tmp_path / "a"),
         "--hf-endpoint", hub.url],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    keys = seaweed.keys(bucket)
    assert f"site-a/blobs/{data.blake3}" in keys, (keys, done.stderr)
    assert f"site-a/aliases/sha256/{data.sha256}" in keys and f"site-a/digests/{data.blake3}" in keys
    assert seaweed.get(bucket, f"site-a/blobs/{data.blake3}") == data.read()


@pytest.mark.fuse
def test_a_mount_reads_from_the_bucket_what_another_node_filled(seaweed: Seaweed, hub: FakeHub, tmp_path: Path) -> None:
    """``hoard mount --blob-store s3://...``: a file another node already put in the bucket is
    read through the mount with no byte from the origin, verified and published locally."""
    data = Content("fleet-mount", 3 * MiB + 777)
    hub.add_repo("org/mnt", {"model.safetensors": data})
    bucket = seaweed.make_bucket()
    with node(tmp_path, "a", hub, seaweed, bucket) as a:
        assert get(a.url, "/v1/files/huggingface/org/mnt/model.safetensors") == data.read()
        wait_for(lambda: uploaded(seaweed, bucket, data.sha256))
    before = hub.bytes_sent["cdn"]
    home = tmp_path / "m"
    with MountProcess(home, tmp_path / "mnt", hub.url, "--blob-store", f"s3://{bucket}",
                      env=seaweed_env(seaweed, serve_env())) as m:
        assert m.path("huggingface/org/mnt/model.safetensors").read_bytes() == data.read()
        assert hub.bytes_sent["cdn"] == before  # not one byte from the origin
        store = Store(StoreConfig(home))
        try:
            wait_for(lambda: store.resolve(f"sha256:{data.sha256}") == data.blake3)  # verified and published
        finally:
            store.close()


class CutRelay:
    """A TCP relay between a node and the store, to cut a bucket GET in the middle of its body.

    Bytes pass both ways unchanged until :meth:`cut_after` arms a budget: once that many more
    bytes have come from the store (over all connections), nothing more from the store is
    passed on; what arrives is held back and :attr:`cut` is set. When the store's side of a
    connection closes (the store died), the node's side is closed without the held bytes:
    the node sees the body end early. A connection opened while the store is down is closed
    at once. Threads, blocking sockets; ``with CutRelay(port) as relay:``."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.cut = threading.Event()
        self._budget: int | None = None
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def cut_after(self, nbytes: int) -> None:
        with self._lock:
            self._budget = nbytes

    def _spawn(self, fn: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()  # the store is down: as good as refused
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            self._spawn(self._to_store, client, upstream)
            self._spawn(self._from_store, upstream, client)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _to_store(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(1 << 16):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _from_store(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(1 << 16):
                with self._lock:
                    n = len(data) if self._budget is None else min(len(data), self._budget)
                    if self._budget is not None:
                        self._budget -= n
                if n:
                    client.sendall(data[:n])
                if n < len(data):
                    self.cut.set()  # the rest is held back
        except OSError:
            pass
        finally:
            self._close(upstream, client)

    def __enter__(self) -> CutRelay:
        self._spawn(self._accept)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.listener.close()
        with self._lock:
            socks = list(self._socks)
        self._close(*socks)
        for t in self._threads:
            t.join(5)


def test_a_store_that_dies_while_a_get_streams_leaves_the_rest_to_the_origin(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store dies while bucket GETs of a file are streaming into the node (their bodies
    cut where a relay held them), in the middle of one client's download: the node reads on
    from the origin from the byte it had reached, and the client gets the whole, exact file."""
    data = Content("fleet-cut", 40 * MiB + 5)
    hub.add_repo("org/cut", {"model.safetensors": data})
    path = "/v1/files/huggingface/org/cut/model.safetensors"
    with Seaweed(tmp_path / "sw") as sw, CutRelay(sw.ports["s3"]) as relay:  # its own store: this test stops it
        for name, value in seaweed_env(sw, {}).items():
            monkeypatch.setenv(name, value)
        bucket = sw.make_bucket()
        with node(tmp_path, "a", hub, sw, bucket) as a:
            get(a.url, path)
            wait_for(lambda: uploaded(sw, bucket, data.sha256))
        before = hub.bytes_sent["cdn"]
        through_relay = BlobStoreConfig(bucket, endpoint=relay.url, region=REGION)
        with ProxyThread(tmp_path / "b", hub.url, chunk_size=MiB, blob_store=through_relay) as b:
            where = urlsplit(b.url)
            conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200
            got = bytearray(resp.read(4 * MiB))
            assert got == data.read(0, 4 * MiB) and hub.bytes_sent["cdn"] == before  # from the bucket

            relay.cut_after(64 << 10)  # the GETs under way stop mid-body...
            rest = threading.Thread(target=lambda: got.extend(resp.read()), daemon=True)
            rest.start()
            wait_for(relay.cut.is_set)
            sw.stop()  # ...and the store dies under them
            rest.join(120)
            assert not rest.is_alive()
            conn.close()
            assert bytes(got) == data.read()
            from_origin = hub.bytes_sent["cdn"] - before
            print(f"the store died mid-GET: the origin sent {from_origin} of the file's {data.size} bytes")
            assert 0 < from_origin <= data.size - 4 * MiB  # the origin gave the rest, not what the bucket had
            assert data.blake3 in get(b.url, "/v1/trees/huggingface/org/cut").decode()  # verified, published
