"""Several parents (``--upstream A,B``): a node uses the first that answers, fails over within
seconds when it dies mid-file (resuming from the bytes it has: the next parent is asked only
for what is still missing), and returns to it later.

The parents are real ``hoard serve`` processes (so one can be killed); the node is an
in-process proxy or a ``hoard prefetch`` process; the fake Hub is the origin of both parents.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import ProxyThread, ServeProcess, serve_env, wait_for
from .httpcalls import raw

MiB = 1 << 20
#: the stated bound on how long a read may stall when its parent dies (generous slack:
#: failing over itself is one refused connection)
FAILOVER_BOUND = 5.0

__all__: list[str] = []


@pytest.fixture
def hub() -> FakeHub:
    with FakeHub() as h:
        yield h


def parent(tmp_path: Path, name: str, hub: FakeHub, port: int = 0) -> ServeProcess:
    return ServeProcess(tmp_path / name, hub.url, "--chunk-size", "1MiB", "--listen", f"127.0.0.1:{port}",
                        env=serve_env())


def served(base: str) -> int:
    """/v1 requests a parent has answered (its /metrics; these calls are not /v1 ones)."""
    status, _, body = raw("GET", f"{base}/metrics")
    assert status == 200
    return sum(int(float(v)) for v in re.findall(r'^hoard_http_requests_total\{face="v1"[^}]*\} (\S+)$', body.decode(), re.M))


def test_a_parent_dying_mid_file_fails_over_to_the_next_within_seconds(hub: FakeHub, tmp_path: Path) -> None:
    data = Content("failover", 24 * MiB)
    hub.add_repo("org/f", {"model.safetensors": data})
    hub.fault(origin="cdn", slow=6 * MiB)  # slow enough that the first parent dies mid-file
    with parent(tmp_path, "p1", hub) as p1, parent(tmp_path, "p2", hub) as p2, \
            ProxyThread(tmp_path / "node", "http://127.0.0.1:9", chunk_size=256 << 10,
                        upstream=(p1.url, p2.url), upstream_retry=60.0) as node:
        before_p2 = served(p2.url)
        url = urlsplit(node.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        conn.request("GET", "/v1/files/huggingface/org/f/model.safetensors")
        resp = conn.getresponse()
        assert resp.status == 200
        got = bytearray(resp.read(2 * MiB))
        assert served(p2.url) == before_p2  # p1, the first parent, was serving it
        p1.kill()
        killed = time.monotonic()
        longest, last = 0.0, killed
        while True:
            block = resp.read(64 << 10)
            now = time.monotonic()
            if not block:
                break
            longest, last = max(longest, now - last), now
            got += block
        conn.close()
        print(f"longest stall after the first parent died: {longest:.2f}s (bound {FAILOVER_BOUND}s)")
        assert bytes(got) == data.read()
        assert longest < FAILOVER_BOUND
        assert served(p2.url) > before_p2


def test_a_node_returns_to_its_first_parent_once_it_is_back(hub: FakeHub, tmp_path: Path) -> None:
    one, two = Content("return-1", 2 * MiB), Content("return-2", 2 * MiB)
    hub.add_repo("org/one", {"model.safetensors": one})
    hub.add_repo("org/two", {"model.safetensors": two})
    first = parent(tmp_path, "p1", hub).start()
    port = urlsplit(first.url).port
    try:
        with parent(tmp_path, "p2", hub) as p2, \
                ProxyThread(tmp_path / "node", "http://127.0.0.1:9", chunk_size=256 << 10, refs_ttl=0.0,
                            upstream=(first.url, p2.url), upstream_retry=1.0) as node:
            first.kill()
            status, _, body = raw("GET", f"{node.url}/v1/files/huggingface/org/one/model.safetensors")
            assert status == 200 and body == one.read()  # from p2, with p1 down
            back = parent(tmp_path, "p1", hub, port=port).start()  # p1 again, same address
            try:
                before = served(back.url)
                # the node asks p1 first again once its retry time has passed (each tree
                # request is a fresh ref resolution: refs_ttl is 0)
                wait_for(lambda: raw("GET", f"{node.url}/v1/trees/huggingface/org/two")[0] == 200
                         and served(back.url) > before, timeout=30, interval=0.2)
                status, _, body = raw("GET", f"{node.url}/v1/files/huggingface/org/two/model.safetensors")
                assert status == 200 and body == two.read()
                assert "huggingface/org/two" in raw("GET", f"{back.url}/v1/trees/huggingface/org/two")[2].decode()
            finally:
                back.stop()
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.kill()


def test_prefetch_takes_several_parents_and_skips_a_dead_one(hub: FakeHub, tmp_path: Path) -> None:
    data = Content("cli-failover", MiB)
    hub.add_repo("org/c", {"model.safetensors": data})
    with parent(tmp_path, "p2", hub) as p2:
        dead = "http://127.0.0.1:9"  # nothing listens there
        env = serve_env()
        env["HOARD_UPSTREAM"] = f"{dead},{p2.url}"
        done = subprocess.run([sys.executable, "-m", "hoard.cli.main", "prefetch", "huggingface/org/c", "--json",
                               "--local", "--home", str(tmp_path / "node")], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        repeated = subprocess.run([sys.executable, "-m", "hoard.cli.main", "prefetch", "huggingface/org/c",
                                   "--local", "--home", str(tmp_path / "node2"), "--upstream", dead, "--upstream", p2.url],
                                  env=serve_env(), capture_output=True, text=True, timeout=120)
        assert repeated.returncode == 0, repeated.stderr


def bytes_sent(base: str) -> int:
    """File bytes a parent has sent to its clients (its /metrics ``hoard_client_bytes_total``)."""
    status, _, body = raw("GET", f"{base}/metrics")
    assert status == 200
    return sum(int(float(v)) for v in re.findall(r"^hoard_client_bytes_total(?:\{[^}]*\})? (\S+)$", body.decode(), re.M))


def test_failing_over_asks_the_next_parent_only_for_what_is_still_missing(hub: FakeHub, tmp_path: Path) -> None:
    """When the first parent dies mid-file, the node keeps every byte that landed from it
    (whole chunks and the part of a chunk in flight) and asks the second parent only for the
    rest: the node receives each byte of the file once in all, and the second parent sends no
    more than what was missing when the first one died."""
    data = Content("failover-resume", 12 * MiB)
    hub.add_repo("org/r", {"model.safetensors": data})
    # p1 fetches one chunk at a time from a slow origin: the node's reads from it stream
    # slowly, so it dies in the middle of one (the node then holds part of a chunk)
    hub.fault(origin="cdn", slow=2 * MiB)
    first = ServeProcess(tmp_path / "p1", hub.url, "--chunk-size", "1MiB", "--origin-connections", "1",
                         env=serve_env())
    with first as p1, parent(tmp_path, "p2", hub) as p2, \
            ProxyThread(tmp_path / "node", "http://127.0.0.1:9", chunk_size=256 << 10,
                        upstream=(p1.url, p2.url), upstream_retry=60.0) as node:
        from_p2_before = bytes_sent(p2.url)
        url = urlsplit(node.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        conn.request("GET", "/v1/files/huggingface/org/r/model.safetensors")
        resp = conn.getresponse()
        assert resp.status == 200
        got = bytearray(resp.read(2 * MiB + (100 << 10)))  # part of the node's ninth chunk
        # what the node holds now came from p1; more may land from it before it dies
        had = int(node.metrics.total("hoard_origin_bytes_total"))
        assert bytes_sent(p2.url) == from_p2_before and had >= len(got)
        p1.kill()
        got += resp.read()
        conn.close()
        assert bytes(got) == data.read()
        received = int(node.metrics.total("hoard_origin_bytes_total"))
        from_p2 = bytes_sent(p2.url) - from_p2_before
        print(f"file {data.size}: the node had {had} from p1 before it died, received {received} in all; "
              f"p2 sent {from_p2} ({from_p2 % (256 << 10)} of them the rest of a chunk begun at p1)")
        assert received == data.size, "each byte reached the node once, over both parents"
        assert 0 < from_p2 <= data.size - had, "p2 was asked again for bytes the node had from p1"
