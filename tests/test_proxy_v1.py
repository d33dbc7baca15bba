"""hoard's own HTTP API (/v1/...), /healthz, /metrics and the ``hoard serve`` process.

Real clients (aiohttp, and http.client where the exact bytes on the wire matter: raw paths
with ``..``/``%2e%2e``/NUL, keep-alive) against the real proxy on 127.0.0.1, with the fake
Hub + CDN as origin. Every test gets a fresh store. The only waits are bounded polls on a
prefetch job's state.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.fakes.samples import data_of
from tests.fixtures import CHUNK, fresh_hub, proxy  # noqa: F401  (fixtures)
from tests.harness import ProxyThread, ServeProcess, serve_env
from tests.httpcalls import call

MiB = 1 << 20
IMMUTABLE = "public, max-age=31536000, immutable"

CONFIG = b'{"model_type": "bert", "hidden_size": 32}'
MODEL = Content("v1-model", MiB + 777)  # 5 chunks
EXTRA = Content("v1-extra", 100_000)
NOTES = b"hello notes\n"
PR_CONFIG = b'{"from": "a pull request"}'
OTHER_BIN = Content("v1-other", 50_000)
BIG = Content("v1-big", 3 * MiB + 5)  # 13 chunks: a download long enough to interrupt
FILES: dict[str, bytes | Content] = {
    "config.json": CONFIG,
    "model.safetensors": MODEL,
    "sub/extra.bin": EXTRA,
    "sub/notes.txt": NOTES,
}


def b3_of(spec: bytes | Content) -> str:
    return Content.of(spec).blake3


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/model", FILES)
        fake.add_repo("org/other", {"config.json": CONFIG, "other.bin": OTHER_BIN})
        fake.add_repo("org/big", {"big.safetensors": BIG})
        fake.add_pr("org/other", {"config.json": PR_CONFIG})
        yield fake


# -- helpers ----------------------------------------------------------------------------------


def raw_request(base: str, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request whose target goes on the wire exactly as given (no normalisation)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def file_url(p: ProxyThread | ServeProcess, path: str = "model.safetensors", rev: str | None = None,
             repo: str = "org/model") -> str:
    at = f"@{quote(rev, safe='')}" if rev else ""
    return f"{p.url}/v1/files/huggingface/{repo}{at}/{path}"


def prefetch(p: ProxyThread | ServeProcess, address: str, timeout: float = 60.0) -> dict[str, Any]:
    """Start a prefetch job and poll it (bounded) until it leaves "running"."""
    started = call("POST", f"{p.url}/v1/prefetch", body={"address": address})
    assert started.status == 202, started.body
    job = started.json()
    assert job["state"] in ("running", "done") and job["address"] == address
    assert started.headers.get("Location") == f"/v1/prefetch/{job['id']}"
    deadline = time.monotonic() + timeout
    while job["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
        got = call("GET", f"{p.url}/v1/prefetch/{job['id']}")
        assert got.status == 200
        job = got.json()
    return job


def blob_files(home: Path) -> set[str]:
    root = home / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        assert m, f"not Prometheus text: {line!r}"
        out.setdefault(m.group(1), {})[m.group(2) or ""] = float(m.group(3))
    return out


# -- health and files ---------------------------------------------------------------------------


def test_healthz(proxy: ProxyThread) -> None:
    got = call("GET", f"{proxy.url}/healthz")
    assert got.status == 200 and got.json() == {"status": "ok"}


def test_files_whole_file_cold_then_warm(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    head = call("HEAD", file_url(proxy))
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(MODEL.size)
    assert hub.count(origin="cdn") == 0  # HEAD fetches nothing
    cold = call("GET", file_url(proxy))
    assert cold.status == 200 and cold.body == MODEL.read()
    assert cold.headers["X-Hoard-Revision"] == sha
    assert cold.headers["X-Hoard-Identity"] == f"sha256:{MODEL.sha256}"
    assert cold.headers["Content-Length"] == str(MODEL.size)
    assert cold.headers.get("Accept-Ranges") == "bytes"
    assert MODEL.blake3 in blob_files(home)
    hub.clear_log()
    warm = call("GET", file_url(proxy, rev=sha))
    assert warm.status == 200 and warm.body == MODEL.read()
    assert warm.headers["X-Hoard-Blake3"] == MODEL.blake3
    assert hub.count(origin="cdn") == 0
    # a non-LFS file by ref, and one in a folder
    cfg = call("GET", file_url(proxy, "config.json", "main"))
    assert cfg.status == 200 and cfg.body == CONFIG
    assert cfg.headers["X-Hoard-Identity"] == f"gitsha1:{hub.file('org/model', 'config.json').oid}"
    notes = call("GET", file_url(proxy, "sub/notes.txt"))
    assert notes.status == 200 and notes.body == NOTES


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_files_ranges_and_416(hub: FakeHub, proxy: ProxyThread, warm: bool) -> None:
    size = MODEL.size
    if warm:
        assert call("GET", file_url(proxy)).body == MODEL.read()
    cases = [
        ("bytes=0-0", 0, 1),
        ("bytes=10-99", 10, 100),
        (f"bytes={CHUNK - 5}-{CHUNK + 5}", CHUNK - 5, CHUNK + 6),  # across a chunk boundary
        ("bytes=-100", size - 100, size),
        (f"bytes={size - 7}-", size - 7, size),
        (f"bytes=1000-{size + 5000}", 1000, size),  # clamped
    ]
    for header, start, end in cases:
        got = call("GET", file_url(proxy), headers={"Range": header})
        assert got.status == 206, header
        assert got.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", header
        assert got.headers["Content-Length"] == str(end - start)
        assert got.body == MODEL.read(start, end), header
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        got = call("GET", file_url(proxy), headers={"Range": header})
        assert got.status == 416, header
        assert got.headers.get("Content-Range") == f"bytes */{size}", header
    # garbage is refused or ignored, never a 500
    got = call("GET", file_url(proxy, "config.json"), headers={"Range": "bytes=abc"})
    assert got.status in (200, 416)


# -- blobs --------------------------------------------------------------------------------------


def test_blobs_immutable_conditional_and_ranged(proxy: ProxyThread) -> None:
    assert call("GET", file_url(proxy)).status == 200
    url = f"{proxy.url}/v1/blobs/{MODEL.blake3}"
    got = call("GET", url)
    assert got.status == 200 and got.body == MODEL.read()
    assert got.headers["Cache-Control"] == IMMUTABLE
    assert got.headers["ETag"] == f'"{MODEL.blake3}"'
    assert got.headers["Content-Length"] == str(MODEL.size)
    head = call("HEAD", url)
    assert head.status == 200 and head.body == b"" and head.headers["Content-Length"] == str(MODEL.size)
    for inm in (f'"{MODEL.blake3}"', f'W/"x", "{MODEL.blake3}"'):
        nm = call("GET", url, headers={"If-None-Match": inm})
        assert nm.status == 304 and nm.body == b""
        assert nm.headers["ETag"] == f'"{MODEL.blake3}"' and nm.headers["Cache-Control"] == IMMUTABLE
    assert call("GET", url, headers={"If-None-Match": '"other"'}).status == 200
    part = call("GET", url, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and part.body == MODEL.read(100, 200)
    assert part.headers["Content-Range"] == f"bytes 100-199/{MODEL.size}"
    assert part.headers["Cache-Control"] == IMMUTABLE
    bad = call("GET", url, headers={"Range": f"bytes={MODEL.size}-"})
    assert bad.status == 416 and bad.headers.get("Content-Range") == f"bytes */{MODEL.size}"


def test_blobs_unknown_and_malformed(proxy: ProxyThread) -> None:
    assert call("GET", f"{proxy.url}/v1/blobs/{'0' * 64}").status == 404
    for name in ("zz", "A" * 64, "0" * 63, "0" * 65, "g" * 64):
        got = call("GET", f"{proxy.url}/v1/blobs/{name}")
        assert got.status == 400, name
        assert got.json()["kind"] == "invalid_address"


def test_cached_responses_keep_the_connection_usable(proxy: ProxyThread) -> None:
    """Several cached (sendfile) answers in a row on one keep-alive connection."""
    assert call("GET", file_url(proxy, "config.json")).status == 200
    assert call("GET", file_url(proxy)).status == 200
    parts = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        for target, want in [
            (f"/v1/blobs/{MODEL.blake3}", MODEL.read()),
            (f"/v1/blobs/{b3_of(CONFIG)}", CONFIG),
            ("/v1/files/huggingface/org/model/model.safetensors", MODEL.read()),
            ("/org/model/resolve/main/config.json", CONFIG),
            ("/healthz", b'{"status": "ok"}'),
        ]:
            try:
                conn.request("GET", target)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                pytest.fail(f"{target}: the connection broke after the previous cached answer: {exc!r}")
            assert resp.status == 200 and body == want, target
    finally:
        conn.close()


# -- trees --------------------------------------------------------------------------------------


def test_trees(hub: FakeHub, proxy: ProxyThread) -> None:
    sha = hub.head("org/model")
    got = call("GET", f"{proxy.url}/v1/trees/huggingface/org/model")
    assert got.status == 200 and got.headers["Content-Type"].startswith("application/json")
    doc = got.json()
    assert doc["repo"] == "huggingface/org/model" and doc["revision"] == sha and doc["stale"] is False
    files = {f["path"]: f for f in doc["files"]}
    assert set(files) == {*FILES, ".gitattributes"}
    for path, spec in FILES.items():
        entry = hub.file("org/model", path)
        assert files[path]["size"] == entry.size
        want = f"sha256:{entry.sha256}" if entry.lfs else f"gitsha1:{entry.oid}"
        assert files[path]["identity"] == want
        assert files[path]["blake3"] is None  # nothing cached yet
    assert call("GET", file_url(proxy, "sub/extra.bin")).status == 200
    sub = call("GET", f"{proxy.url}/v1/trees/huggingface/org/model@{sha}/sub").json()
    assert sub["revision"] == sha
    assert {f["path"]: f["blake3"] for f in sub["files"]} == {"sub/extra.bin": EXTRA.blake3, "sub/notes.txt": None}
    assert call("GET", f"{proxy.url}/v1/trees/huggingface/org/nope").status == 404
    assert call("GET", f"{proxy.url}/v1/trees/huggingface/org/model@{'f' * 40}").status == 404


# -- prefetch -----------------------------------------------------------------------------------


def test_prefetch_lifecycle(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    job = prefetch(proxy, "huggingface/org/model")
    assert job["state"] == "done", job
    assert job["revision"] == sha and job["error"] is None
    total = sum(len(data_of(s)) for s in FILES.values()) + hub.file("org/model", ".gitattributes").size
    assert job["files"] == job["done"] == len(FILES) + 1
    assert job["bytes"] == total
    for path, spec in FILES.items():
        b3 = b3_of(spec)
        assert b3 in blob_files(home), path
        assert proxy.store.resolve(f"sha256:{Content.of(spec).sha256}" if hub.file("org/model", path).lfs
                                   else f"gitsha1:{hub.file('org/model', path).oid}") == b3
    # a second prefetch fetches nothing
    hub.clear_log()
    again = prefetch(proxy, f"huggingface/org/model@{sha}/sub")
    assert again["state"] == "done" and again["files"] == 2
    assert hub.count(origin="cdn") == 0 and hub.count("/resolve/") == 0


def test_prefetch_failures(proxy: ProxyThread, hub: FakeHub) -> None:
    job = prefetch(proxy, "huggingface/org/does-not-exist")
    assert job["state"] == "failed" and job["error"]
    job = prefetch(proxy, "huggingface/org/model/no/such/file.bin")
    assert job["state"] == "failed" and job["error"]
    assert call("GET", f"{proxy.url}/v1/prefetch/nope").status == 404
    for raw in (b"not json", b"[1, 2]", b'{"address": 5}', b"{}"):
        got = call("POST", f"{proxy.url}/v1/prefetch", raw=raw, headers={"Content-Type": "application/json"})
        assert got.status == 400, raw
        assert got.json()["kind"] == "usage"
    for bad in ("huggingface/org/../etc", "nosuch/org/model", "huggingface/org", "huggingface/org/m\x00x"):
        got = call("POST", f"{proxy.url}/v1/prefetch", body={"address": bad})
        assert got.status == 400, bad


# -- models, cache, gc, pins --------------------------------------------------------------------


def test_models_list_info_delete(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha, other_sha = hub.head("org/model"), hub.head("org/other")
    assert prefetch(proxy, "huggingface/org/model")["state"] == "done"
    assert prefetch(proxy, "huggingface/org/other")["state"] == "done"
    listed = call("GET", f"{proxy.url}/v1/models")
    assert listed.status == 200
    repos = {r["repo"]: r for r in listed.json()}
    assert set(repos) == {"huggingface/org/model", "huggingface/org/other"}
    model_size = sum(len(data_of(s)) for s in FILES.values()) + hub.file("org/model", ".gitattributes").size
    assert repos["huggingface/org/model"]["refs"] == {"main": sha}
    assert repos["huggingface/org/model"]["revisions"] == [sha]
    assert repos["huggingface/org/model"]["files"] == len(FILES) + 1
    assert repos["huggingface/org/model"]["size"] == repos["huggingface/org/model"]["cached_bytes"] == model_size
    assert repos["huggingface/org/other"]["refs"] == {"main": other_sha}

    info = call("GET", f"{proxy.url}/v1/models/huggingface/org/model")
    assert info.status == 200
    doc = info.json()
    assert doc["repo"] == "huggingface/org/model" and doc["revision"] == sha and doc["refs"] == {"main": sha}
    assert doc["cached_bytes"] == doc["size"] == model_size and doc["pinned"] is False
    assert {f["path"]: f["blake3"] for f in doc["files"] if f["path"] in FILES} == {p: b3_of(s) for p, s in FILES.items()}
    one = call("GET", f"{proxy.url}/v1/models/huggingface/org/model@{sha}/sub/extra.bin")
    assert one.status == 200
    assert one.json()["blake3"] == EXTRA.blake3 and one.json()["present"] == EXTRA.size
    assert one.json()["revision"] == sha
    assert call("GET", f"{proxy.url}/v1/models/huggingface/org/nope").status == 404
    assert call("GET", f"{proxy.url}/v1/models/huggingface/org/model/nope.bin").status == 404

    # delete: dry run changes nothing; blobs shared with another repo are kept
    dry = call("DELETE", f"{proxy.url}/v1/models/huggingface/org/other?dry_run=1")
    assert dry.status == 200
    plan = dry.json()
    assert plan["dry_run"] is True
    assert plan["blobs"] == [OTHER_BIN.blake3] and plan["freed_bytes"] == OTHER_BIN.size
    assert plan["snapshots"] == [f"huggingface/org/other@{other_sha}"]
    assert OTHER_BIN.blake3 in blob_files(home)
    assert call("GET", f"{proxy.url}/v1/models/huggingface/org/other").status == 200
    done = call("DELETE", f"{proxy.url}/v1/models/huggingface/org/other")
    assert done.status == 200 and done.json()["dry_run"] is False
    assert OTHER_BIN.blake3 not in blob_files(home)
    assert b3_of(CONFIG) in blob_files(home)  # still used by org/model
    assert call("GET", f"{proxy.url}/v1/models/huggingface/org/other").status == 404
    assert {r["repo"] for r in call("GET", f"{proxy.url}/v1/models").json()} == {"huggingface/org/model"}
    assert call("DELETE", f"{proxy.url}/v1/models/huggingface/org/other").status == 404
    # the deleted repo can be fetched again
    hub.clear_log()
    got = call("GET", file_url(proxy, "other.bin", repo="org/other"))
    assert got.status == 200 and got.body == OTHER_BIN.read()
    assert hub.count(origin="cdn") >= 1
    # delete one file's blob
    one_del = call("DELETE", f"{proxy.url}/v1/models/huggingface/org/model/sub/extra.bin")
    assert one_del.status == 200 and one_del.json()["blobs"] == [EXTRA.blake3]
    assert EXTRA.blake3 not in blob_files(home)
    assert call("GET", file_url(proxy, "sub/extra.bin")).body == EXTRA.read()


def test_cache_summary(proxy: ProxyThread, home: Path) -> None:
    empty = call("GET", f"{proxy.url}/v1/cache").json()
    assert empty["blobs"] == 0 and empty["blob_bytes"] == 0 and empty["repos"] == 0
    assert call("GET", file_url(proxy)).status == 200
    assert call("GET", file_url(proxy, "config.json")).status == 200
    # a ranged read of a multi-chunk file leaves a partial holding the chunk it needed
    big = file_url(proxy, "big.safetensors", repo="org/big")
    assert call("GET", big, headers={"Range": "bytes=0-9"}).status == 206
    deadline = time.monotonic() + 30
    doc = call("GET", f"{proxy.url}/v1/cache").json()
    while doc["partial_bytes"] < CHUNK and time.monotonic() < deadline:  # the chunk lands after the answer
        time.sleep(0.02)
        doc = call("GET", f"{proxy.url}/v1/cache").json()
    assert doc["blobs"] == 2 and doc["blob_bytes"] == MODEL.size + len(CONFIG)
    assert doc["partials"] == 1 and doc["partial_bytes"] == CHUNK
    assert doc["total_bytes"] == doc["blob_bytes"] + doc["partial_bytes"]
    assert doc["repos"] == 2 and Path(doc["home"]) == home and doc["disk_free"] > 0


def test_gc_dry_run_then_real(hub: FakeHub, home: Path) -> None:
    with ProxyThread(home, hub.url, chunk_size=CHUNK, gc_grace=0) as proxy:  # no grace: just-used blobs go too
        _gc_dry_run_then_real(proxy, home)


def _gc_dry_run_then_real(proxy: ProxyThread, home: Path) -> None:
    assert prefetch(proxy, "huggingface/org/model")["state"] == "done"
    before = blob_files(home)
    assert len(before) == len(FILES) + 1
    dry = call("POST", f"{proxy.url}/v1/gc", body={"max_size": 0, "dry_run": True})
    assert dry.status == 200
    plan = dry.json()
    assert plan["dry_run"] is True and "result" not in plan
    assert {v["name"] for v in plan["victims"] if v["kind"] == "blob"} == before
    assert plan["total_after"] == 0
    assert blob_files(home) == before  # nothing removed
    # keep one file with a pin, trim the rest
    pin = call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/model/config.json"})
    assert pin.status == 201 and pin.json()["pinned"] == f"blob:{b3_of(CONFIG)}"
    real = call("POST", f"{proxy.url}/v1/gc", body={"max_size": "0B"})
    assert real.status == 200
    doc = real.json()
    assert doc["dry_run"] is False and doc["result"]["removed"] == len(before) - 1
    assert blob_files(home) == {b3_of(CONFIG)}
    assert call("GET", f"{proxy.url}/v1/cache").json()["blobs"] == 1
    # a generous limit removes nothing
    assert call("POST", f"{proxy.url}/v1/gc", body={"max_size": "1GiB"}).json()["victims"] == []
    for bad in ({"max_size": "lots"}, {"max_size": [1]}):
        assert call("POST", f"{proxy.url}/v1/gc", body=bad).status == 400, bad


def test_pins_add_list_delete(hub: FakeHub, proxy: ProxyThread, home: Path) -> None:
    sha = hub.head("org/model")
    assert call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/model"}).status == 404  # not cached
    assert prefetch(proxy, "huggingface/org/model")["state"] == "done"
    target = f"snapshot:huggingface/org/model@{sha}"
    first = call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/model"})
    assert first.status == 201 and first.json() == {"pinned": target, "new": True, "follows": "main"}
    second = call("POST", f"{proxy.url}/v1/pins", body={"address": f"huggingface/org/model@{sha}"})
    assert second.status == 200 and second.json() == {"pinned": target, "new": False}
    pins = call("GET", f"{proxy.url}/v1/pins").json()
    assert set(pins) == {target} and pins[target]["note"] == "huggingface/org/model"
    assert call("GET", f"{proxy.url}/v1/models/huggingface/org/model").json()["pinned"] is True
    # gc keeps a pinned snapshot's blobs
    before = blob_files(home)
    gc = call("POST", f"{proxy.url}/v1/gc", body={"max_size": 0}).json()
    assert gc["victims"] == [] and blob_files(home) == before
    gone = call("DELETE", f"{proxy.url}/v1/pins/huggingface/org/model")
    assert gone.status == 200 and gone.json() == {"unpinned": target}
    assert call("GET", f"{proxy.url}/v1/pins").json() == {}
    assert call("DELETE", f"{proxy.url}/v1/pins/huggingface/org/model").status == 404
    # a partial file cannot be pinned as a blob
    assert call("DELETE", f"{proxy.url}/v1/models/huggingface/org/model/sub/extra.bin").status == 200
    assert call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/model/sub/extra.bin"}).status == 404
    assert call("POST", f"{proxy.url}/v1/pins", body={"nope": 1}).status == 400


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_after_traffic(hub: FakeHub, proxy: ProxyThread) -> None:
    fresh = parse_metrics(call("GET", f"{proxy.url}/metrics").body.decode())
    assert fresh["hoard_cache_hits_total"] == {"": 0} and fresh["hoard_inflight_fetches"] == {"": 0}
    assert call("GET", file_url(proxy)).status == 200  # miss
    assert call("GET", file_url(proxy)).status == 200  # hit
    assert call("GET", file_url(proxy), headers={"Range": "bytes=0-99"}).status == 206  # hit
    assert call("GET", file_url(proxy, "nope.bin")).status == 404
    hub.fault(origin="cdn", corrupt=True)
    failed = prefetch(proxy, "huggingface/org/model/sub/extra.bin")
    assert failed["state"] == "failed"
    hub.clear_faults()
    got = call("GET", f"{proxy.url}/metrics")
    assert got.status == 200 and got.headers["Content-Type"].startswith("text/plain")
    text = got.body.decode()
    for name in ("hoard_cache_hits_total", "hoard_cache_misses_total", "hoard_origin_bytes_total",
                 "hoard_client_bytes_total", "hoard_inflight_fetches", "hoard_errors_total"):
        assert f"# TYPE {name} " in text, name
    m = parse_metrics(text)
    nchunks = -(-MODEL.size // CHUNK)
    # counters are exact integers on the wire (a byte counter rounded to 6 digits is useless)
    client_line = next(line for line in text.splitlines() if line.startswith("hoard_client_bytes_total"))
    assert client_line == f"hoard_client_bytes_total {2 * MODEL.size + 100}", client_line
    assert m["hoard_cache_misses_total"][""] >= 1
    assert m["hoard_cache_hits_total"][""] >= 2
    assert MODEL.size + EXTRA.size <= m["hoard_origin_bytes_total"][""] <= 1.05 * (MODEL.size + EXTRA.size)
    assert m["hoard_client_bytes_total"][""] == 2 * MODEL.size + 100
    assert m["hoard_inflight_fetches"][""] == 0
    assert m["hoard_chunks_fetched_total"][""] >= nchunks + 1
    assert m["hoard_blobs_published_total"][""] == 1
    assert m["hoard_errors_total"].get('{kind="integrity"}', 0) >= 1
    requests = m["hoard_http_requests_total"]
    assert requests['{face="v1",status="200"}'] >= 2
    assert requests['{face="v1",status="206"}'] == 1
    assert requests['{face="v1",status="404"}'] >= 1


# -- bad input ----------------------------------------------------------------------------------

BAD_TARGETS = [
    ("GET", "/v1/files/huggingface/org/model/../../../../etc/passwd"),
    ("GET", "/v1/files/huggingface/org/model/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
    ("GET", "/v1/files/huggingface/org/model/sub/..%2F..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/v1/files/huggingface/org/%2e%2e/config.json"),
    ("GET", "/v1/files/huggingface/org/model/a%00b"),
    ("GET", "/v1/files/huggingface/org/model@main%00/config.json"),
    ("GET", "/v1/files/huggingface/org/model@%2e%2e/config.json"),
    ("GET", "/v1/files/huggingface/org/model/" + "a" * 300),
    ("GET", "/v1/files/huggingface/org//model/config.json"),
    ("GET", "/v1/files/huggingface/org/model/./config.json"),
    ("GET", "/v1/files/huggingface/org/model@/config.json"),
    ("GET", "/v1/files/huggingface/org/model"),
    ("GET", "/v1/files/huggingface/org"),
    ("GET", "/v1/files/nosuchsource/org/model/config.json"),
    ("GET", "/v1/files/local/org/model/config.json"),
    ("GET", "/v1/files/huggingface/org/model/no-such-file.bin"),
    ("GET", "/v1/files/huggingface/org/model@0123456789012345678901234567890123456789/config.json"),
    ("GET", "/v1/blobs/../../etc/passwd"),
    ("GET", "/v1/blobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
    ("GET", "/v1/trees/huggingface/org/%2e%2e"),
    ("GET", "/v1/trees/huggingface/%00/model"),
    ("GET", "/v1/models/huggingface/org/%2e%2e"),
    ("GET", "/v1/models/huggingface/org/model/%2e%2e/%2e%2e/x"),
    ("DELETE", "/v1/models/huggingface/org/%2e%2e"),
    ("DELETE", "/v1/models/huggingface/org/model/%2e%2e/x"),
    ("DELETE", "/v1/pins/huggingface/org/%2e%2e"),
    ("GET", "/org/model/resolve/main/%2e%2e/%2e%2e/etc/passwd"),
    ("GET", "/org/model/resolve/main/..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/org/model/resolve/main/a%00b"),
    ("GET", "/%2e%2e/model/resolve/main/config.json"),
    ("GET", "/org/%2e%2e/resolve/main/config.json"),
    ("GET", "/api/models/org/%2e%2e"),
    ("GET", "/api/models/org/model/tree/main/%2e%2e"),
    ("GET", "/v1/prefetch/%2e%2e"),
]


def test_malformed_addresses_and_traversal(proxy: ProxyThread, home: Path) -> None:
    assert call("GET", file_url(proxy, "config.json")).status == 200  # something cached to reach for
    failures = []
    for method, target in BAD_TARGETS:
        status, headers, body = raw_request(proxy.url, method, target)
        if status not in (400, 404) or b"root:" in body:
            failures.append((method, target, status, body[:120]))
        elif target.startswith("/v1/") and status == 400:
            doc = json.loads(body)
            assert doc["kind"] in ("invalid_address", "name_too_long") and doc["error"], target
    assert failures == []
    assert call("GET", f"{proxy.url}/healthz").status == 200
    assert proxy.metrics.get("hoard_http_requests_total", face="v1", status="500") == 0


#: revisions that are, or hold, a "." or ".." segment (or another malformed one), on every route
#: that takes a revision; the Hub would see "/revision/.." as "/api/models/org/model" and "/tree/
#: ../refs" as "/refs", so none may get that far
DOT_REVISIONS = [
    ("GET", "/org/model/resolve/%2e%2e/config.json"),
    ("HEAD", "/org/model/resolve/%2e%2e/config.json"),
    ("GET", "/org/model/resolve/./config.json"),
    ("GET", "/org/model/resolve/refs%2F..%2Fmain/config.json"),
    ("GET", "/org/model/resolve/refs/pr/../config.json"),
    ("GET", "/org/model/resolve/main%0d%0aX-Injected:%201/config.json"),
    ("GET", "/datasets/org/model/resolve/%2e%2e/data.csv"),
    ("GET", "/spaces/org/model/resolve/%2e/app.py"),
    ("GET", "/model/resolve/%2e%2e/config.json"),
    ("GET", "/api/models/org/model/revision/%2e%2e"),
    ("GET", "/api/models/org/model/revision/."),
    ("GET", "/api/models/org/model/revision/%2e%2e?expand=sha"),
    ("GET", "/api/models/org/model/revision/refs%2F%2Fpr"),
    ("GET", "/api/models/org/model/tree/%2e%2e"),
    ("GET", "/api/models/org/model/tree/%2e%2e/refs"),
    ("GET", "/api/models/org/model/tree/%2e%2e/refs?expand=true"),
    ("GET", "/api/models/org/model/tree/main%00"),
    ("POST", "/api/models/org/model/paths-info/%2e%2e"),
    ("GET", "/api/models/org/model/commits/%2e%2e"),
    ("GET", "/api/models/org/model/commits/main%2F"),
    ("GET", "/v1/files/huggingface/org/model@./config.json"),
    ("GET", "/v1/files/huggingface/org/model@%2e/config.json"),
    ("GET", "/v1/files/huggingface/org/model@refs%2F.%2F1/config.json"),
    ("GET", "/v1/trees/huggingface/org/model@%2e%2e"),
    ("GET", "/v1/trees/huggingface/org/model@main%2F%2E"),
    ("GET", "/v1/models/huggingface/org/model@."),
]


def test_dot_revisions_are_refused_on_every_route_before_the_hub(hub: FakeHub, proxy: ProxyThread) -> None:
    answers = {(m, t): raw_request(proxy.url, m, t) for m, t in DOT_REVISIONS}
    assert {k: a[0] for k, a in answers.items()} == {k: 400 for k in answers}, {
        k: (a[0], a[2][:120]) for k, a in answers.items() if a[0] != 400
    }
    assert [r.target for r in hub.requests] == []  # nothing reached the Hub
    assert call("GET", f"{proxy.url}/v1/models").json() == []  # and no ref named ".." was stored
    for (method, target), (_, headers, body) in answers.items():
        if target.startswith("/v1/"):
            assert json.loads(body)["kind"] == "invalid_address", target
        else:
            assert headers.get("X-Error-Message") and "X-Injected" not in headers, (target, headers)


def test_quoted_revision_with_slashes_stays_one_revision(hub: FakeHub, proxy: ProxyThread) -> None:
    pr = hub.head("org/other", "refs/pr/1")
    got = call("GET", file_url(proxy, "config.json", "refs/pr/1", "org/other"))
    assert got.status == 200 and got.body == PR_CONFIG, (got.status, got.body[:200])
    assert got.headers["X-Hoard-Revision"] == pr
    tree = call("GET", f"{proxy.url}/v1/trees/huggingface/org/other@refs%2Fpr%2F1")
    assert tree.status == 200 and tree.json()["revision"] == pr
    info = call("GET", f"{proxy.url}/v1/models/huggingface/org/other@refs%2Fpr%2F1/config.json")
    assert info.status == 200 and info.json()["revision"] == pr and info.json()["blake3"] == b3_of(PR_CONFIG)


# -- hoard serve --------------------------------------------------------------------------------

_ACCESS = re.compile(r"hoard\.access: (GET|HEAD|POST|DELETE) (\S+) (\d{3}) [\d.]+ms$")


def test_serve_sigterm_clean_with_one_log_line_per_request(hub: FakeHub, home: Path) -> None:
    sha = hub.head("org/model")
    with ServeProcess(home, hub.url, "--chunk-size", "256KiB", env=serve_env()) as srv:
        host = urlsplit(srv.url).hostname
        assert host == "127.0.0.1"
        sent = [
            ("GET", "/healthz", None, 200),
            ("GET", f"/v1/files/huggingface/org/model@{sha}/model.safetensors", None, 200),
            ("GET", f"/v1/files/huggingface/org/model@{sha}/model.safetensors", None, 200),
            ("HEAD", f"/v1/blobs/{MODEL.blake3}", None, 200),
            ("GET", f"/v1/blobs/{MODEL.blake3}", {"Range": "bytes=0-9"}, 206),
            ("GET", "/org/model/resolve/main/config.json", None, 200),
            ("GET", "/v1/files/huggingface/org/model/missing.bin", None, 404),
            ("GET", "/v1/files/huggingface/org/%2e%2e/x", None, 400),
            ("GET", "/v1/cache", None, 200),
            ("GET", "/metrics", None, 200),
        ]
        for method, target, headers, want in sent:
            status, _, _ = raw_request(srv.url, method, target, headers)
            assert status == want, (method, target, status)
        log = srv.stop()
        assert srv.proc is not None and srv.proc.returncode == 0, log[-2000:]
    access = [m.groups() for m in map(_ACCESS.search, log.splitlines()) if m]
    assert len(access) == len(sent), log[-3000:]
    assert [(a[0], int(a[2])) for a in access] == [(s[0], s[3]) for s in sent]
    assert "shutting down" in log
    assert "Traceback" not in log and "Error handling request" not in log, log[-3000:]


def test_serve_sigterm_during_download_exits_cleanly_and_keeps_partial(hub: FakeHub, home: Path) -> None:
    sha = hub.head("org/big")
    hub.fault(origin="cdn", method="GET", slow=256 << 10)  # ~1 s per chunk
    with ServeProcess(home, hub.url, "--chunk-size", "256KiB", env=serve_env()) as srv:
        job = call("POST", f"{srv.url}/v1/prefetch", body={"address": f"huggingface/org/big@{sha}/big.safetensors"})
        assert job.status == 202
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded poll: until a chunk is on disk
            cache = call("GET", f"{srv.url}/v1/cache")
            assert cache.status == 200, cache
            if cache.json()["partial_bytes"] >= CHUNK:
                break
            time.sleep(0.02)
        log = srv.stop()
        assert srv.proc is not None and srv.proc.returncode == 0, log[-2000:]
    hub.clear_faults()
    hub.clear_log()
    with ProxyThread(home, hub.url, chunk_size=CHUNK) as proxy:
        cache = call("GET", f"{proxy.url}/v1/cache").json()
        assert cache["partials"] == 1 and cache["blobs"] == 0, cache
        kept = cache["partial_bytes"]
        assert CHUNK <= kept < BIG.size
        got = call("GET", file_url(proxy, "big.safetensors", sha, "org/big"))
        assert got.status == 200 and got.body == BIG.read()
    assert hub.bytes_sent["cdn"] <= 1.05 * (BIG.size - kept)


def test_serve_configured_from_environment(hub: FakeHub, home: Path) -> None:
    env = serve_env() | {"HOARD_HOME": str(home), "HOARD_HF_ENDPOINT": hub.url, "HOARD_LISTEN": ":0",
                          "HOARD_CHUNK_SIZE": "256KiB"}
    srv = ServeProcess(home, hub.url, env=env)
    srv.args = srv.args[: srv.args.index("serve") + 1]  # no flags: everything from the environment
    with srv:
        assert urlsplit(srv.url).hostname == "127.0.0.1"  # loopback by default
        got = call("GET", file_url(srv, "config.json"))
        assert got.status == 200 and got.body == CONFIG
        log = srv.stop()
        assert srv.proc is not None and srv.proc.returncode == 0, log
    assert b3_of(CONFIG) in blob_files(home)
