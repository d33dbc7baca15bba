"""hoard serve as an Arweave gateway for Ritual's own clients (proxy/arweave_face.py).

The stock clients run in their own virtualenvs (`tests.clientvenv`) and are pointed at hoard:
ritual-arweave 0.2.0 ``RepoManager(gateways=[hoard])`` and infernet-ml 2.0.0
``ModelManager().download_model(..., repomanager_kwargs={"api_url": hoard})``; hoard's gateway
is the fake of `tests.fakes.arweave`. Each downloads a repo cold, then again into an empty
directory with the fake gateway down (and hoard restarted: its tx index comes back from the
store). Wire details the clients hide — a cold file's first byte, ``/tx/{id}/offset`` and
``/chunk``, what the origin sent, errors — are checked with raw HTTP. No sleeps; the one timing
assertion is the first-byte bound, printed.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.clientvenv import INFERNET_ML, RITUAL_ARWEAVE, client_python
from tests.fakes.arweave import FakeGateway, RitualRepo, b64url_decode, infernet_manifest
from tests.fakes.content import Content
from tests.harness import ProxyThread, ServeProcess, serve_env, wait_for
from tests.hfclients.runner import run_script
from tests.httpcalls import raw

MiB = 1 << 20
NO_HUB = "http://127.0.0.1:9"  # no Hugging Face here

DOWNLOAD_020 = """
from ritual_arweave.repo_manager import RepoManager
rm = RepoManager(gateways=[ARGS["url"]], show_progress_bar=False)
attempt("download", lambda: {os.path.relpath(p, ARGS["dest"]): sha256(p)
                             for p in rm.download_repo(ARGS["repo"], base_path=ARGS["dest"])})
"""
DOWNLOAD_MODEL = """
from infernet_ml.utils.model_manager import ModelManager
def run():
    art = ModelManager(cache_dir=ARGS["cache"]).download_model(ARGS["model"], repomanager_kwargs={"api_url": ARGS["url"]})
    folder = art.files[0].parent
    return {"files": {p.name: sha256(p) for p in art.files}, "on_disk": {n: sha256(folder / n) for n in os.listdir(folder)}}
attempt("model", run)
"""


@pytest.fixture(scope="module")
def ritual_py() -> str:
    return client_python(*RITUAL_ARWEAVE)


@pytest.fixture(scope="module")
def infernet_py() -> str:
    return client_python(*INFERNET_ML)


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    with FakeGateway() as fake:
        yield fake


def hoard(home: Path, gw: FakeGateway, **config: Any) -> ProxyThread:
    return ProxyThread(home, NO_HUB, sources={"arweave_gateway": (gw.url,)}, **config)


def client(python: str, url: str, tmp_path: Path, script: str, **args: Any) -> dict[str, Any]:
    return run_script(url, tmp_path / "client", script, python=python, args={"url": url, **args}, timeout=300)


def sha(data: bytes | Content) -> str:
    return Content.of(data).sha256


def model_repo(gw: FakeGateway, name: str, **options: Any) -> tuple[RitualRepo, dict[str, bytes | Content]]:
    """A Ritual repo infernet-ml accepts: a model, a bigger file, an empty one, its manifest."""
    owner = gw.wallet(name)
    files: dict[str, bytes | Content] = {
        "model.onnx": Content(f"{name}-onnx", 200_000),
        "big.bin": Content(f"{name}-big", 650_000),
        "empty.txt": b"",
    }
    files["ritual_manifest.json"] = infernet_manifest(owner.address, name, {"model.onnx": files["model.onnx"]})
    return gw.seed_ritual_repo(owner, name, files, **options), files


def data_txids(gw: FakeGateway, repo: RitualRepo) -> dict[str, int]:
    """Every non-empty tx holding file bytes (plain files and sections) → its size."""
    ids = [t for f in repo.files.values() for t in (f.sections or [f.txid])]
    sizes = {t: gw.tx(t).data_size for t in ids}  # type: ignore[union-attr]
    return {t: n for t, n in sizes.items() if n}


# --------------------------------------------------------------------------------------
# (1) ritual-arweave 0.2.0, cold then with the gateway down
# --------------------------------------------------------------------------------------


def test_ritual_020_downloads_through_hoard_then_offline(ritual_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    repo, files = model_repo(gw, "iris", max_upload_size=256 * 1024)
    assert len(repo.files["big.bin"].sections) == 3  # sectioned: read section by section
    want = {p: sha(c) for p, c in files.items()}
    with hoard(tmp_path / "home", gw) as proxy:
        out = client(ritual_py, proxy.url, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=str(tmp_path / "d1"))
        assert out["download"] == {"ok": want}
        for path, content in files.items():
            assert (tmp_path / "d1" / path).read_bytes() == Content.of(content).read()
        # the bytes came through hoard's store: every file is a verified blob now
        unpublished = [p for p in files if p != "empty.txt" and not proxy.store.resolve(f"sha256:{want[p]}")]
        assert not unpublished, [(r.method, r.path, r.status) for r in gw.requests if r.route == "data"]
        assert gw.count(route="data") == len(data_txids(gw, repo))  # once each; the empty file needs none
    gw.pause()  # the gateway is down; hoard restarts and rebuilds its tx index from the store
    with hoard(tmp_path / "home", gw) as proxy:
        out = client(ritual_py, proxy.url, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=str(tmp_path / "d2"))
    assert out["download"] == {"ok": want}
    for path, content in files.items():
        assert (tmp_path / "d2" / path).read_bytes() == Content.of(content).read()


# --------------------------------------------------------------------------------------
# (2) infernet-ml 2.0.0 (ritual-arweave 0.1.1) through `hoard serve`, cold then offline
# --------------------------------------------------------------------------------------


def test_infernet_ml_downloads_through_hoard_serve_then_offline(
    infernet_py: str, gw: FakeGateway, tmp_path: Path
) -> None:
    repo, files = model_repo(gw, "mnist", app_version="0.1.0")  # what 0.1.1 uploads: never sectioned
    model = f"arweave/{repo.repo_id}:model.onnx"
    want = {"files": {"model.onnx": sha(files["model.onnx"])}, "on_disk": {p: sha(c) for p, c in files.items()}}
    home = tmp_path / "home"
    args = ("--arweave-gateway", gw.url, "--log-level", "info")
    with ServeProcess(home, NO_HUB, *args, env=serve_env()) as srv:
        out = client(infernet_py, srv.url, tmp_path, DOWNLOAD_MODEL, model=model, cache=str(tmp_path / "c1"))
        log = srv.stop()
    assert out["model"] == {"ok": want}, log[-3000:]
    for txid in (f.txid for f in repo.files.values() if f.content.size):
        assert gw.count(route="data", txid=txid) == 1  # hoard fetched each file once
    gw.pause()
    with ServeProcess(home, NO_HUB, *args, env=serve_env()) as srv:
        out = client(infernet_py, srv.url, tmp_path, DOWNLOAD_MODEL, model=model, cache=str(tmp_path / "c2"))
        log = srv.stop()
    assert out["model"] == {"ok": want}, log[-3000:]
    assert " 503 " not in log and " 500 " not in log


# --------------------------------------------------------------------------------------
# (3) a cold big file: the first byte goes out long before ritual-arweave's 3 s timeout
# --------------------------------------------------------------------------------------


def first_byte(url: str, path: str) -> tuple[float, int, bytes]:
    """Seconds until the first byte of the answer to ``GET path``, its status and body."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        received = [sock.recv(65536)]
        elapsed = time.monotonic() - started
        while block := sock.recv(1 << 20):
            received.append(block)
    head, _, body = b"".join(received).partition(b"\r\n\r\n")
    return elapsed, int(head.split()[1]), body


def test_cold_big_file_streams_before_the_client_timeout(
    ritual_py: str, gw: FakeGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hoard.access")
    files = {"a.bin": Content("slow-a", 48 * MiB), "b.bin": Content("slow-b", 48 * MiB)}
    repo = gw.seed_ritual_repo(gw.wallet("slow"), "slow", files, max_upload_size=64 * MiB)
    gw.fault(route="data", latency=0.3)  # every data request waits 0.3 s for its first byte
    with hoard(tmp_path / "home", gw) as proxy:
        # hoard has never heard of this repo: it looks the tx up, resolves the repo, streams
        elapsed, status, body = first_byte(proxy.url, f"/{repo.files['a.bin'].txid}")
        print(f"first byte of a cold 48 MiB file through hoard: {elapsed:.3f}s")
        assert status == 200 and sha(body) == files["a.bin"].sha256
        assert elapsed < 2.5
        # the client: a.bin is in the store now, b.bin is cold; neither may fall back to chunks
        out = client(ritual_py, proxy.url, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=str(tmp_path / "d"))
    assert out["download"] == {"ok": {p: c.sha256 for p, c in files.items()}}
    served = [r.getMessage() for r in caplog.records if r.name == "hoard.access"]
    cold = [line.split()[2] for line in served if line.startswith(f"GET /{repo.files['b.bin'].txid} ")]
    assert cold == ["200"]  # one request, answered in time: no timeout, no retry
    assert not [line for line in served if "/chunk/" in line or "/offset" in line]
    assert gw.count(route="chunk") == gw.count(route="tx_offset") == 0


# --------------------------------------------------------------------------------------
# (4) /tx/{id}/offset and /chunk/{offset} through hoard
# --------------------------------------------------------------------------------------


def chunks_of(url: str, txid: str) -> tuple[bytes, list[int]]:
    """A tx's data the way ritual-arweave reads it when ``GET /{id}`` fails: its offset, then
    ``/chunk`` from ``offset - size + 1`` on; also each chunk's ``arweave-absolute-end-offset``."""
    status, _, body = raw("GET", f"{url}/tx/{txid}/offset")
    assert status == 200, body
    offset = json.loads(body)
    end, size = int(offset["offset"]), int(offset["size"])
    pos, parts, ends = end - size + 1, [], []
    while pos <= end:
        status, headers, body = raw("GET", f"{url}/chunk/{pos}", {"x-packing": "unpacked"})
        assert status == 200, body
        parts.append(b64url_decode(json.loads(body)["chunk"]))
        ends.append(int(headers["arweave-absolute-end-offset"]))
        pos += len(parts[-1])
    return b"".join(parts), ends


def test_offset_and_chunks_through_hoard(gw: FakeGateway, tmp_path: Path) -> None:
    files = {"plain.bin": Content("plain", 3 * 256 * 1024 + 77), "cut.bin": Content("cut", 1_000_000)}
    repo = gw.seed_ritual_repo(gw.wallet("chunky"), "chunky", files, max_upload_size=800_000)
    plain, cut = repo.files["plain.bin"], repo.files["cut.bin"]
    assert not plain.sections and len(cut.sections) == 2
    direct = {t: chunks_of(gw.url, t) for t in (plain.txid, *cut.sections)}  # the gateway's own answers
    gw.clear_log()
    with hoard(tmp_path / "home", gw) as proxy:
        assert raw("GET", f"{proxy.url}/tx/{repo.manifest_id}/data.")[0] == 200  # as a client starts
        for txid, want in direct.items():
            assert chunks_of(proxy.url, txid) == want
        assert b"".join(chunks_of(proxy.url, s)[0] for s in cut.sections) == cut.content.read()
        assert gw.count(route="chunk") == 0  # every chunk came from hoard's store
        for txid, size in data_txids(gw, repo).items():
            assert gw.tx_bytes_sent[txid] == size  # each byte fetched once
        gw.pause()
        for txid, want in direct.items():  # offsets kept, bytes stored: no gateway needed
            assert chunks_of(proxy.url, txid) == want


# --------------------------------------------------------------------------------------
# (5) two clients at once cost the origin one copy of the repo
# --------------------------------------------------------------------------------------


def test_two_clients_cost_the_origin_one_copy(ritual_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    repo, files = model_repo(gw, "twice", max_upload_size=256 * 1024)
    with hoard(tmp_path / "home", gw) as proxy:
        results: dict[int, dict[str, Any]] = {}

        def run(i: int) -> None:
            where = tmp_path / str(i)
            where.mkdir()
            results[i] = client(ritual_py, proxy.url, where, DOWNLOAD_020, repo=repo.repo_id, dest=str(where / "d"))

        threads = [threading.Thread(target=run, args=(i,)) for i in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    want = {"ok": {p: sha(c) for p, c in files.items()}}
    assert results == {1: {"download": want}, 2: {"download": want}}
    sent = gw.tx_bytes_sent
    assert {t: sent.get(t, 0) for t in data_txids(gw, repo)} == data_txids(gw, repo)
    manifests = [repo.manifest_id, repo.files["big.bin"].txid]
    assert all(sent[m] <= 2 * gw.tx(m).data_size for m in manifests)  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------
# (6) errors as the gateway gives them, and never what breaks ar.Peer
# --------------------------------------------------------------------------------------


def gql(url: str, query: str) -> tuple[int, Any, bytes]:
    body = json.dumps({"operationName": None, "query": query, "variables": {}}).encode()
    return raw("POST", f"{url}/graphql", {"Content-Type": "application/json"}, body)


def test_errors_like_the_gateway(gw: FakeGateway, tmp_path: Path) -> None:
    pending = gw.seed_ritual_repo(gw.wallet("p"), "p", {"a.bin": b"abc"}, confirmations=None)
    mined = gw.seed_ritual_repo(gw.wallet("m"), "m", {"b.bin": b"hello"}).files["b.bin"].txid
    unknown = "A" * 43
    with hoard(tmp_path / "home", gw) as proxy:
        url = proxy.url
        status, headers, _ = raw("GET", f"{url}/{mined}", {"Range": "bytes=5-"})
        assert (status, headers["Content-Range"]) == (416, "bytes */5")
        assert raw("GET", f"{url}/{mined}", {"Range": "bytes=1-2"})[::2] == (206, b"el")
        assert raw("POST", f"{url}/graphql", {"Content-Type": "application/json"}, b" " * (5 << 20))[0] == 413
        assert raw("GET", f"{url}/{unknown}")[0] == 404
        assert raw("HEAD", f"{url}/{unknown}")[0] == 404
        assert raw("GET", f"{url}/tx/{unknown}")[::2] == (404, b"Not Found.")
        assert raw("GET", f"{url}/tx/{unknown}/offset")[0] == 404
        file_id = pending.files["a.bin"].txid
        assert raw("GET", f"{url}/tx/{file_id}")[::2] == (202, b"Pending")
        assert raw("GET", f"{url}/tx/{file_id}/data_size")[::2] == (202, b"Pending")
        assert raw("GET", f"{url}/{file_id}")[0] == 404
        assert raw("GET", f"{url}/tx/{pending.manifest_id}/data.")[0] == 404  # not served while pending
        gw.fault(path_contains="/tx_anchor", status=429)
        status, headers, _ = raw("GET", f"{url}/tx_anchor")
        assert status == 503 and "Retry-After" not in headers  # never a 429: ar.Peer loops on one
        gw.clear_faults()  # marked down meanwhile: answers come back once hoard's probe gets one
        wait_for(lambda: raw("GET", f"{url}/tx_anchor")[0] == 200)
        assert int(raw("GET", f"{url}/price/1000")[2]) > 0
        gw.pause()
        for method, path in (("GET", f"/tx/{'B' * 43}"), ("GET", f"/{'B' * 43}"), ("GET", f"/tx/{'B' * 43}/status"),
                             ("GET", "/tx_anchor"), ("GET", "/price/1000"), ("GET", f"/chunk/{10**9}")):
            status, headers, body = raw(method, url + path)
            assert status == 503, (path, status, body)
            assert "Retry-After" not in headers and body
        assert gql(url, "{ transactions { edges { cursor } } }")[0] == 503


def test_empty_data_is_never_a_zero_length_200(gw: FakeGateway, tmp_path: Path) -> None:
    repo = gw.seed_ritual_repo(gw.wallet("e"), "e", {"empty.txt": b"", "one.txt": b"1"})
    with hoard(tmp_path / "home", gw) as proxy:
        assert raw("GET", f"{proxy.url}/tx/{repo.manifest_id}/data.")[0] == 200
        status, headers, body = raw("GET", f"{proxy.url}/{repo.files['empty.txt'].txid}")
        assert (status, body) == (200, b"") and "Content-Length" not in headers  # chunked, as ar.io
        status, headers, body = raw("GET", f"{proxy.url}/{repo.files['one.txt'].txid}")
        assert (status, body, headers["Content-Length"]) == (200, b"1", "1")


def test_plain_transaction_is_served_and_kept(gw: FakeGateway, tmp_path: Path) -> None:
    """A tx outside any Ritual repo is served as itself, through the store (length-verified)."""
    data = Content("plain-tx", 300_000)
    tx = gw.add_tx(gw.wallet("anyone"), {"Content-Type": "image/png"}, data)
    with hoard(tmp_path / "home", gw) as proxy:
        status, headers, body = raw("GET", f"{proxy.url}/{tx.id}")
        assert (status, headers["Content-Type"], body) == (200, "image/png", data.read())
        assert headers["X-AR-IO-Data-Id"] == tx.id
        assert proxy.store.resolve(f"ar:{tx.id}") is not None
        gw.pause()
        assert raw("GET", f"{proxy.url}/raw/{tx.id}", {"Range": "bytes=10-19"})[::2] == (206, data.read(10, 20))
    assert gw.count(route="data", txid=tx.id) == 1


# --------------------------------------------------------------------------------------
# (7) GraphQL: latest stays latest; kept answers only while no gateway answers
# --------------------------------------------------------------------------------------

QUERY_A = """query { transactions( sort:HEIGHT_DESC, owners: ["%s"],
  tags: [ {name: "App-Name", values: ["Ritual"]},
  {name: "Repo-Name", values: ["%s"]}, {name: "Type", values: ["manifest"]} ] )
  { edges { node { block { id timestamp } id owner { address } tags { name value } } } } }"""


def test_graphql_answers_stay_fresh_and_are_kept_for_offline(gw: FakeGateway, tmp_path: Path) -> None:
    owner = gw.wallet("fresh")
    first = gw.seed_ritual_repo(owner, "r", {"w.bin": b"one"})
    query = QUERY_A % (owner.address, "r")

    def manifests(url: str) -> tuple[list[str], Any]:
        status, headers, body = gql(url, query)
        assert status == 200, body
        return [e["node"]["id"] for e in json.loads(body)["data"]["transactions"]["edges"]], headers

    with hoard(tmp_path / "home", gw) as proxy:
        assert manifests(proxy.url)[0] == [first.manifest_id]
        second = gw.seed_ritual_repo(owner, "r", {"w.bin": b"two"})
        ids, headers = manifests(proxy.url)
        assert ids == [second.manifest_id, first.manifest_id] and "X-Hoard-Source" not in headers
        gw.pause()
        ids, headers = manifests(proxy.url)
        assert ids == [second.manifest_id, first.manifest_id] and headers["X-Hoard-Source"] == "store"


def test_routes_leave_the_other_faces_alone(gw: FakeGateway, tmp_path: Path) -> None:
    with hoard(tmp_path / "home", gw) as proxy:
        assert raw("GET", f"{proxy.url}/healthz")[0] == 200
        assert raw("GET", f"{proxy.url}/v1/cache")[0] == 200
        assert raw("GET", f"{proxy.url}/{'x' * 42}")[0] == 404  # not a tx id: no gateway asked
        assert gw.requests == []


# --------------------------------------------------------------------------------------
# (8) HEAD /{txid} of a cached file: the gateway's headers, no body, online and offline
# --------------------------------------------------------------------------------------

#: what ar.io sends on a HEAD of stable data with its digest (sources.md §3), and hoard too
GATEWAY_HEAD = ("content-length", "content-type", "accept-ranges", "cache-control", "x-ar-io-data-id",
                "etag", "x-ar-io-digest", "content-digest")


def head(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """``HEAD path`` on a raw socket read to its close: the status, the headers (lower-case
    names; ``Date``, ``Server`` and ``Connection`` left out) and whatever followed them, which
    for a HEAD must be nothing (http.client would not read a body a HEAD got)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}Connection: close\r\n\r\n".encode())
        received = [sock.recv(65536)]
        while block := sock.recv(65536):
            received.append(block)
    top, _, rest = b"".join(received).partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    for name in ("date", "server", "connection"):
        fields.pop(name, None)
    return int(lines[0].split()[1]), fields, rest


def test_head_of_a_cached_file_answers_as_the_gateway_online_and_offline(gw: FakeGateway, tmp_path: Path) -> None:
    model = Content("head-model", 300_000)
    repo = gw.seed_ritual_repo(gw.wallet("head"), "head", {"model.onnx": model, "config.json": b"{}"})
    txid = repo.files["model.onnx"].txid
    status, want, rest = head(gw.url, f"/{txid}")  # the gateway's own answer (digests on HEAD)
    assert (status, rest) == (200, b"") and want["etag"] and want["content-digest"]
    status, want_part, _ = head(gw.url, f"/{txid}", {"Range": "bytes=100-199"})
    assert status == 206
    with hoard(tmp_path / "home", gw) as proxy:
        status, cold, rest = head(proxy.url, f"/{txid}")  # not cached yet: the size, no bytes fetched
        assert (status, rest, cold["content-length"], cold["x-cache"]) == (200, b"", str(model.size), "MISS")
        assert gw.count(route="data", txid=txid, method="GET") == 0
        assert raw("GET", f"{proxy.url}/{txid}")[2] == model.read()  # now in the store, verified
        online = head(proxy.url, f"/{txid}")
        status, got, rest = online
        assert (status, rest, got["x-cache"]) == (200, b"", "HIT")
        assert {k: got.get(k) for k in GATEWAY_HEAD} == {k: want[k] for k in GATEWAY_HEAD}
        partial = head(proxy.url, f"/{txid}", {"Range": "bytes=100-199"})
        assert partial[0] == 206 and partial[2] == b""
        assert "content-digest" not in partial[1]  # RFC 9530: it would be the range's digest
        assert {k: partial[1].get(k) for k in ("content-range", "content-length")} == {
            k: want_part[k] for k in ("content-range", "content-length")}
        gw.pause()  # the gateway is down: the same answers, from the store
        assert head(proxy.url, f"/{txid}") == online
        assert head(proxy.url, f"/{txid}", {"Range": "bytes=100-199"}) == partial
    with hoard(tmp_path / "home", gw) as proxy:  # and after a restart with the gateway still down
        assert head(proxy.url, f"/{txid}") == online
    assert gw.count(route="data", txid=txid, method="GET") == 1  # the one GET


# --------------------------------------------------------------------------------------
# (9) /tx/{id}/status: passed through, fresh every time (confirmations change every block)
# --------------------------------------------------------------------------------------


def test_tx_status_is_passed_through_and_never_kept(gw: FakeGateway, tmp_path: Path) -> None:
    mined = gw.seed_ritual_repo(gw.wallet("status"), "status", {"a.bin": b"abc"}).files["a.bin"].txid
    pending = gw.add_tx(gw.wallet("status"), {"Content-Type": "text/plain"}, b"later", confirmations=None)
    with hoard(tmp_path / "home", gw) as proxy:

        def both(txid: str) -> tuple[tuple[int, str, bytes], tuple[int, str, bytes]]:
            """(status, Content-Type, body) from hoard, then from the gateway itself."""
            got = raw("GET", f"{proxy.url}/tx/{txid}/status")
            want = raw("GET", f"{gw.url}/tx/{txid}/status")
            return (got[0], got[1]["Content-Type"], got[2]), (want[0], want[1]["Content-Type"], want[2])

        got, want = both(mined)
        assert got == want and got[0] == 200
        confirmations = json.loads(got[2])["number_of_confirmations"]
        gw.weave.advance(3)  # three more blocks: hoard's answer follows, nothing stale
        got, want = both(mined)
        assert got == want and json.loads(got[2])["number_of_confirmations"] == confirmations + 3

        got, want = both(pending.id)  # in the mempool: the node's 202 Pending, as it came
        assert got[::2] == want[::2] == (202, b"Pending")
        height = gw.mine([pending.id])  # mined: the status now, the 202 was not kept
        got, want = both(pending.id)
        assert got == want and json.loads(got[2])["block_height"] == height

        gw.pause()  # never kept, so never served stale: no gateway is a 503 (no Retry-After)
        status, headers, body = raw("GET", f"{proxy.url}/tx/{mined}/status")
        assert status == 503 and "Retry-After" not in headers and body
