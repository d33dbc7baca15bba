"""The ``url`` source end to end: plain HTTP files on `tests.fakes.urlorigin.FakeURLOrigin`,
read through hoard.

Everything goes through the real proxy in a thread (`ProxyThread`, ``/v1/files``), real
``hoard`` processes (``prefetch``, ``rm``, ``export``/``import``), a parent hoard tier and a
real mount. The fake's switches (digest kinds, lying digests, no ranges, redirects,
throttling, faults, pause/resume, ``change``) drive every case; no test sleeps to synchronise.
Revalidation is driven by ``refs_ttl=0`` (every request revalidates), not by waiting.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from multidict import CIMultiDict

from hoard.proxy.sources._url_headers import IDENTITY_SHAPE, read_facts, url_identity
from hoard.proxy.sources.url import origin_url
from hoard.store.address import parse_address
from hoard.store.errors import InvalidAddress, OriginError

from .fakes.content import Content
from .fakes.hub import FakeHub
from .fakes.urlorigin import FakeURLOrigin
from .harness import MountProcess, ProxyThread, serve_env
from .httpcalls import Got, call

KiB = 1 << 10
CHUNK = 256 * KiB
HOARD = [sys.executable, "-m", "hoard.cli.main"]
NO_HUB = "http://127.0.0.1:9"  # a Hub endpoint nothing listens on
DATA = Content("url-source", 5 * CHUNK + 12_345)  # six chunks, the last one short





@pytest.fixture
def origin() -> Iterator[FakeURLOrigin]:
    with FakeURLOrigin() as fake:
        yield fake


def proxy(tmp_path: Path, name: str = "home", **config: Any) -> ProxyThread:
    """The proxy in a thread, reading url/... addresses over plain http."""
    sources = {"insecure_http": True, **config.pop("sources", {})}
    return ProxyThread(tmp_path / name, config.pop("hf_endpoint", NO_HUB), chunk_size=CHUNK, sources=sources, **config)


def address(origin: FakeURLOrigin, path: str, which: str = "origin") -> str:
    """The hoard address of ``path`` on one of the fake's origins: url/127.0.0.1:<port>/..."""
    return f"url/{urlsplit(origin.origin_url(which)).netloc}{path}"


def get(px: ProxyThread, addr: str, method: str = "GET", **headers: str) -> Got:
    return call(method, f"{px.url}/v1/files/{addr}", headers=headers)


def tree_entry(px: ProxyThread, addr: str) -> dict[str, Any]:
    """The /v1/trees entry of one file."""
    repo = "/".join(addr.split("/")[:3])
    path = addr[len(repo) + 1 :]
    got = call("GET", f"{px.url}/v1/trees/{repo}")
    assert got.status == 200, got.body
    files = {f["path"]: f for f in got.json()["files"]}
    return files[path]


def cli(
    home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A real ``hoard`` process on ``home``, configured by its flags alone."""
    proc = subprocess.run([*HOARD, *args], env=dict(env or serve_env(), HOARD_HOME=str(home)),
                          capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"hoard {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def gets(origin: FakeURLOrigin, path: str) -> int:
    return origin.count(path, method="GET")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# -- 1. names and headers -------------------------------------------------------------------------


def test_addresses_map_to_urls_and_bad_owners_are_refused(tmp_path: Path) -> None:
    def url(text: str, scheme: str = "https") -> str:
        return origin_url(parse_address(text), scheme)

    assert url("url/example.com/models/v1/model.onnx") == "https://example.com/models/v1/model.onnx"
    assert url("url/example.com/-/model.pt") == "https://example.com/model.pt"  # '-': the root
    assert url("url/example.com/-/models/v1/m.onnx") == url("url/example.com/models/v1/m.onnx")
    assert url("url/example.com/-/-/x.bin") == "https://example.com/-/x.bin"
    assert url("url/Example.COM:8443/a/b.bin", "http") == "http://example.com:8443/a/b.bin"
    assert url("url/[::1]:8080/a/b.bin") == "https://[::1]:8080/a/b.bin"
    # no query strings: '?' and '#' are characters of the path; escapes pass as written
    assert url("url/h.io/a/b?x=1#f") == "https://h.io/a/b%3Fx=1%23f"
    assert url("url/h.io/a/b%20c/50%") == "https://h.io/a/b%20c/50%25"
    assert url("url/h.io/a/é") == "https://h.io/a/%C3%A9"
    for bad in ("url/user@evil.com/a/b", "url/h.io:0/a/b", "url/h.io:1:2/a/b", "url/-h.io/a/b", "url/h.io/-"):
        with pytest.raises(InvalidAddress):
            url(bad)
    with proxy(tmp_path) as px:
        got = get(px, "url/user@127.0.0.1:9/a/b.bin")
        assert got.status == 400 and got.json()["kind"] == "invalid_address"


def test_header_facts() -> None:
    data = b"x" * 1000
    sha = hashlib.sha256(data).digest()
    other = hashlib.sha256(b"other").digest()

    def facts(status: int = 200, **fields: str | list[str]) -> Any:
        headers: CIMultiDict[str] = CIMultiDict({"Content-Length": "1000"})
        for name, value in fields.items():
            for v in value if isinstance(value, list) else [value]:
                headers.add(name.replace("_", "-"), v)
        return read_facts(status, headers, "w")

    both = f"sha-512=:{b64(hashlib.sha512(data).digest())}:, sha-256=:{b64(sha)}:"
    assert facts(Repr_Digest=both).sha256 == sha.hex()
    assert facts(Digest=f"md5=abc, sha-256={b64(sha)}").digest_from == "digest"
    assert facts(x_amz_checksum_sha256=b64(sha)).sha256 == sha.hex()
    composite = facts(x_amz_checksum_sha256=f"{b64(sha)}-4", x_amz_checksum_type="COMPOSITE")
    assert composite.sha256 is None and "composite" in composite.ignored[0]
    goog = facts(x_goog_hash=["crc32c=n03x6A==", "md5=Ojk9c3dhfxgoKVVHYwFbHQ=="])
    assert goog.sha256 is None and "crc32c/md5" in goog.ignored[0]
    assert facts(Content_Digest=f"sha-256=:{b64(sha)}:").sha256 is None  # one message's bytes
    assert facts(Repr_Digest="sha-256=:bm90IDMyIGJ5dGVz:").sha256 is None  # not 32 bytes
    with pytest.raises(OriginError, match="contradict"):
        facts(Repr_Digest=f"sha-256=:{b64(sha)}:", Digest=f"SHA-256={b64(other)}")
    with pytest.raises(OriginError, match="encoded"):
        facts(Content_Encoding="gzip")
    part = read_facts(206, CIMultiDict({"Content-Range": "bytes 0-0/77", "Content-Length": "1"}), "w")
    assert part.size == 77 and part.ranges
    assert not facts().ranges and facts(Accept_Ranges="bytes").ranges and not facts(Accept_Ranges="none").ranges
    with pytest.raises(OriginError, match="size"):
        read_facts(200, CIMultiDict(), "w")
    # identities: the validator, bounded and printable
    assert url_identity("http://h/a", facts(ETag='"abc"')) == "url:http://h/a@etag=abc"
    assert url_identity("http://h/a", facts(ETag='W/"abc"')) == "url:http://h/a@wetag=abc"
    dated = facts(Last_Modified="Sat, 22 Jul 2023 05:26:40 GMT")
    assert url_identity("http://h/a", dated) == "url:http://h/a@lm=1690003600"
    assert url_identity("http://h/a", facts()) == "url:http://h/a@size=1000"
    long = url_identity("http://h/" + "a" * 300, facts(ETag='"x"'))
    assert long.startswith("url:h-") and IDENTITY_SHAPE.fullmatch(long)


# -- 2. digests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["repr-digest", "digest", "amz"])
def test_a_digest_names_and_verifies_the_file(origin: FakeURLOrigin, tmp_path: Path, kind: str) -> None:
    addr = address(origin, "/m/weights.bin")
    origin.put("/m/weights.bin", DATA, digests=(kind,))
    with proxy(tmp_path) as px:
        got = get(px, addr)
        assert (got.status, got.error) == (200, None) and got.body == DATA.read()
        assert got.headers["X-Hoard-Identity"] == f"sha256:{DATA.sha256}"
        entry = tree_entry(px, addr)
        assert entry["expected"] == f"sha256:{DATA.sha256}" and entry["blake3"] == DATA.blake3
        assert "unverified" not in entry["meta"]
        before = gets(origin, "/m/weights.bin")
        assert get(px, addr, Range="bytes=100-199").body == DATA.read(100, 200)
        assert gets(origin, "/m/weights.bin") == before  # served from the blob


@pytest.mark.parametrize("kind", ["repr-digest", "digest", "amz"])
def test_bytes_that_contradict_the_digest_are_refused(origin: FakeURLOrigin, tmp_path: Path, kind: str) -> None:
    addr = address(origin, "/m/lie.bin")
    origin.put("/m/lie.bin", DATA, digests=(kind,), lying_digest=True)
    with proxy(tmp_path) as px:
        for _ in range(2):
            got = get(px, addr)
            assert got.status != 200 or got.error is not None, "a complete body of unverified bytes went out"
            assert got.body != DATA.read()
        assert px.store.usage()["blobs"] == 0 and px.store.resolve(tree_entry(px, addr)["identity"]) is None


@pytest.mark.parametrize(
    ("switches", "ignored"),
    [
        ({}, None),
        ({"digests": ("content-digest",)}, "Content-Digest"),
        ({"digests": ("goog",)}, "x-goog-hash crc32c/md5"),
        ({"digests": ("goog-composite",)}, "x-goog-hash crc32c"),
        ({"digests": ("amz",), "amz_parts": 3}, "composite"),
    ],
)
def test_without_a_file_digest_it_is_served_by_length(
    origin: FakeURLOrigin, tmp_path: Path, switches: dict[str, Any], ignored: str | None
) -> None:
    addr = address(origin, "/m/plain.bin")
    origin.put("/m/plain.bin", DATA, **switches)
    with proxy(tmp_path) as px:
        got = get(px, addr)
        assert (got.status, got.error, got.body == DATA.read()) == (200, None, True)
        entry = tree_entry(px, addr)
        assert entry["identity"].startswith(f"url:{origin.url}/m/plain.bin@") and entry["expected"] is None
        assert "verified by its length only" in entry["meta"]["unverified"]
        if ignored:
            assert ignored in entry["meta"]["unverified"]


def test_the_first_complete_fetch_verifies_later_ones(origin: FakeURLOrigin, tmp_path: Path) -> None:
    """No digest: the sha256 of the first fetch becomes the expected hash of that version, so
    after the blob is removed, a refetch whose bytes differ (same validator) is refused."""
    addr = address(origin, "/m/lm.bin")
    origin.put("/m/lm.bin", DATA, etag=False)  # validated by Last-Modified only
    with proxy(tmp_path, refs_ttl=0.0) as px:
        assert get(px, addr).body == DATA.read()
        assert tree_entry(px, addr)["expected"] is None
        origin.clear_log()
        assert get(px, addr).body == DATA.read()  # revalidated: 304
        assert origin.trace() == [f"origin HEAD /m/lm.bin -> 304"]
        assert origin.requests[0].headers["if-modified-since"]
        entry = tree_entry(px, addr)
        assert entry["expected"] == f"sha256:{DATA.sha256}" and "unverified" not in entry["meta"]
        assert px.store.resolve(f"sha256:{DATA.sha256}") == DATA.blake3

        cli(px.store.home, "rm", addr)
        origin.clear_log()
        assert px.store.resolve(entry["identity"]) is None
        origin.file("/m/lm.bin").content = Content("not-the-first", DATA.size)  # same Last-Modified
        got = get(px, addr)
        assert got.status != 200 or got.error is not None
        assert px.store.resolve(entry["identity"]) is None and px.store.usage()["blobs"] == 0
        # every ranged read asked for the version looked up (a conforming origin answers 412)
        reads = origin.find("/m/lm.bin", method="GET")
        assert reads and all(r.headers.get("if-unmodified-since") for r in reads)


def test_the_sha256_is_recorded_when_first_published(origin: FakeURLOrigin, tmp_path: Path) -> None:
    """Without hashing the blob again at revalidation: the store names the blob by its sha256
    as it publishes it."""
    addr = address(origin, "/m/first.bin")
    origin.put("/m/first.bin", DATA)
    with proxy(tmp_path) as px:
        assert get(px, addr).body == DATA.read()
        assert px.store.resolve(f"sha256:{DATA.sha256}") == DATA.blake3


# -- 3. transport --------------------------------------------------------------------------------


def test_an_origin_without_ranges_is_downloaded_once(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/m/noranges.bin")
    origin.put("/m/noranges.bin", DATA, ranges=False)
    with proxy(tmp_path) as px:
        got = get(px, addr)
        assert (got.status, got.error, got.body == DATA.read()) == (200, None, True)
        assert tree_entry(px, addr)["meta"]["no_ranges"] is True
        print(f"origin bytes for a {DATA.size}-byte file in 6 chunks: {origin.bytes_sent['origin']}")
        assert gets(origin, "/m/noranges.bin") == 1 and origin.bytes_sent["origin"] == DATA.size
    origin.clear_log()
    with proxy(tmp_path, "home2") as px:  # a read from the middle first, then the rest
        got = get(px, addr, Range=f"bytes={3 * CHUNK + 5}-{4 * CHUNK}")
        assert got.status == 206 and got.body == DATA.read(3 * CHUNK + 5, 4 * CHUNK + 1)
        assert get(px, addr).body == DATA.read()
        assert px.store.resolve(tree_entry(px, addr)["identity"]) == DATA.blake3
    origin.clear_log()
    origin.fault(path_contains="/m/noranges.bin", method="GET", times=1, drop_after=2 * CHUNK + 100)
    with proxy(tmp_path, "home3") as px:  # the stream drops: it starts again, reading past what landed
        got = get(px, addr)
        assert (got.status, got.error, got.body == DATA.read()) == (200, None, True)
        assert gets(origin, "/m/noranges.bin") == 2  # the resumed chunk went first on the new one
        assert origin.bytes_sent["origin"] == 2 * CHUNK + 100 + DATA.size


def test_redirects_are_followed_and_no_credential_reaches_the_origin(origin: FakeURLOrigin, tmp_path: Path) -> None:
    final = origin.put("/cdn/final.bin", DATA, origin="other", digests=("repr-digest",))
    origin.redirect_chain("/r/model.bin", final, statuses=(301, 302, 307))
    addr = address(origin, "/r/model.bin")
    with proxy(tmp_path) as px:
        got = get(px, addr, Authorization="Bearer hf_client_secret")
        assert (got.status, got.body == DATA.read()) == (200, True)
        assert got.headers["X-Hoard-Identity"] == f"sha256:{DATA.sha256}"
    trace = origin.trace()
    assert trace[:4] == [
        "origin HEAD /r/model.bin -> 301",
        "other HEAD /hop1/r/model.bin -> 302",
        "origin HEAD /hop2/r/model.bin -> 307",
        "other HEAD /cdn/final.bin -> 200",
    ]
    assert any(t.startswith("other GET /cdn/final.bin -> 206") for t in trace)
    assert all(r.authorization is None for r in origin.requests), "a credential reached a url origin"


def test_rate_limits_and_busy_answers_are_retried(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/t/model.bin")
    origin.put("/t/model.bin", DATA, digests=("digest",))
    looked = origin.throttle("/t/model.bin", times=2, retry_after=1)  # the lookup
    with proxy(tmp_path) as px:
        fetch = origin.fault(path_contains="/t/model.bin", method="GET", times=2, status=503, retry_after=1)
        got = get(px, addr)
        assert (got.status, got.error, got.body == DATA.read()) == (200, None, True)
        assert looked.hits == 2 and fetch.hits == 2
        assert origin.count("/t/model.bin", method="HEAD", status=429) == 2


def test_head_refused_falls_back_to_a_one_byte_get(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/h/model.bin")
    origin.put("/h/model.bin", DATA, digests=("repr-digest",))
    origin.fault(path_contains="/h/model.bin", method="HEAD", status=405)
    with proxy(tmp_path) as px:
        got = get(px, addr)
        assert (got.status, got.body == DATA.read()) == (200, True)
        probe = origin.find("/h/model.bin", method="GET")[0]
        assert probe.range == "bytes=0-0" and probe.status == 206


def test_missing_and_refused_files(origin: FakeURLOrigin, tmp_path: Path) -> None:
    origin.put("/e/secret.bin", DATA)
    origin.fault(path_contains="/e/secret.bin", status=403)
    with proxy(tmp_path) as px:
        got = get(px, address(origin, "/e/missing.bin"))
        assert got.status == 404 and got.json()["kind"] == "entry_not_found"
        assert get(px, address(origin, "/e/missing.bin")).status == 404
        assert origin.count("/e/missing.bin") == 1  # the miss is remembered
        got = get(px, address(origin, "/e/secret.bin"))
        assert got.status == 403 and got.json()["kind"] == "access_denied"
        assert "no credentials" in got.json()["error"]
        origin.put("/e/moving.bin", DATA)
        origin.fault(path_contains="/e/moving.bin", method="GET", status=412)  # changed meanwhile
        got = get(px, address(origin, "/e/moving.bin"), Range="bytes=0-99")
        assert got.status == 502 and "changed at the origin" in got.json()["error"]
        assert px.store.usage()["blobs"] == 0


# -- 4. revalidation and offline -----------------------------------------------------------------


def test_revalidation_after_the_refs_ttl(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/v/model.bin")
    origin.put("/v/model.bin", DATA)
    with proxy(tmp_path, refs_ttl=0.0) as px:
        first = get(px, addr)
        assert first.body == DATA.read()
        assert {r.headers.get("if-match") for r in origin.find("/v/model.bin", method="GET")} == {
            origin.file("/v/model.bin").etag_value
        }
        sent = origin.bytes_sent["origin"]
        origin.clear_log()
        again = get(px, addr)
        assert again.body == DATA.read() and again.headers["X-Hoard-Identity"] == first.headers["X-Hoard-Identity"]
        assert origin.trace() == ["origin HEAD /v/model.bin -> 304"]  # no body downloaded again
        assert origin.requests[0].headers["if-none-match"] and origin.bytes_sent["origin"] == 0 < sent

        new = origin.change("/v/model.bin")
        changed = get(px, addr)
        assert changed.body == new.read() != DATA.read()
        assert changed.headers["X-Hoard-Identity"] != first.headers["X-Hoard-Identity"]
        assert px.store.resolve(first.headers["X-Hoard-Identity"]) == DATA.blake3  # kept until gc


def test_cached_files_are_served_while_the_origin_is_down(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/o/model.bin")
    origin.put("/o/model.bin", DATA)
    with proxy(tmp_path, refs_ttl=0.0) as px:
        assert get(px, addr).body == DATA.read()
        origin.pause()
        try:
            got = get(px, addr)
            assert (got.status, got.body == DATA.read()) == (200, True)
            never = get(px, address(origin, "/o/never.bin"))
            assert never.status == 503 and never.json()["kind"] == "origin_unavailable"
        finally:
            origin.resume()


def test_a_dead_host_does_not_stop_another(origin: FakeURLOrigin, tmp_path: Path) -> None:
    origin.put("/d/a.bin", DATA, digests=("digest",), origin="other")
    with proxy(tmp_path) as px:
        origin.pause("origin")
        try:
            assert get(px, address(origin, "/d/gone.bin")).status == 503
            got = get(px, address(origin, "/d/a.bin", "other"))
            assert (got.status, got.body == DATA.read()) == (200, True)
        finally:
            origin.resume("origin")


# -- 5. dedup, prefetch, parent tier, mount ------------------------------------------------------


def test_a_url_with_a_hub_files_digest_reuses_its_blob(origin: FakeURLOrigin, tmp_path: Path) -> None:
    with FakeHub() as hub:
        hub.add_repo("org/model", {"model.safetensors": DATA})
        origin.put("/mirror/model.safetensors", DATA, digests=("repr-digest",))
        with proxy(tmp_path, hf_endpoint=hub.url) as px:
            assert get(px, "huggingface/org/model/model.safetensors").body == DATA.read()
            got = get(px, address(origin, "/mirror/model.safetensors"))
            assert (got.status, got.body == DATA.read()) == (200, True)
            assert origin.bytes_sent["origin"] == 0 and gets(origin, "/mirror/") == 0
            assert px.store.usage()["blobs"] == 1


def test_prefetch_then_offline(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/p/model.bin")
    origin.put("/p/model.bin", DATA)
    home = tmp_path / "home"
    env = dict(serve_env(), HF_TOKEN="hf_local_secret")
    out = json.loads(cli(home, "prefetch", addr, "--insecure-http", "--json", env=env).stdout)
    assert out["fetched_bytes"] == DATA.size
    assert all(r.authorization is None for r in origin.requests)
    origin.pause()
    with proxy(tmp_path) as px:
        got = get(px, addr)
        assert (got.status, got.body == DATA.read()) == (200, True)


def test_through_a_parent_hoard(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/up/model.bin")
    origin.put("/up/model.bin", DATA, digests=("repr-digest",))
    origin.put("/up/plain.bin", DATA, ranges=False)
    with proxy(tmp_path, "parent") as parent, proxy(tmp_path, "child", upstream=parent.url) as child:
        for path in ("/up/model.bin", "/up/plain.bin"):
            got = get(child, address(origin, path))
            assert (got.status, got.error, got.body == DATA.read()) == (200, None, True)
        assert tree_entry(child, addr)["identity"] == f"sha256:{DATA.sha256}"
        assert child.store.resolve(f"sha256:{DATA.sha256}") == DATA.blake3
        origin.pause()
        assert get(child, addr).body == DATA.read()
        origin.resume()


def test_a_bundle_carries_url_files(origin: FakeURLOrigin, tmp_path: Path) -> None:
    """``hoard export --format hoard`` then ``hoard import`` elsewhere: a file with a digest,
    one without, and one whose sha256 was learnt from its first fetch."""
    origin.put("/b/digest.bin", DATA, digests=("digest",))
    origin.put("/b/plain.bin", Content("plain", 1000))
    origin.put("/b/learnt.bin", Content("learnt", 2000))
    with proxy(tmp_path, refs_ttl=0.0) as px:
        for name in ("digest", "plain", "learnt", "learnt"):  # learnt: revalidated once
            assert get(px, address(origin, f"/b/{name}.bin")).status == 200
        assert tree_entry(px, address(origin, "/b/learnt.bin"))["expected"] is not None
        repo = address(origin, "/b")
        cli(px.store.home, "export", repo, str(tmp_path / "bundle"), "--format", "hoard")
    cli(tmp_path / "other", "import", str(tmp_path / "bundle"))
    origin.pause()
    with proxy(tmp_path, "other") as px:
        for name, content in (("digest", DATA), ("plain", Content("plain", 1000)), ("learnt", Content("learnt", 2000))):
            got = get(px, address(origin, f"/b/{name}.bin"))
            assert (got.status, got.body == content.read()) == (200, True)


def _mount_read(tmp_path: Path, origin: FakeURLOrigin, rel: str) -> bytes:
    home = tmp_path / "home"
    env = dict(serve_env(), HOARD_HOME=str(home), HF_TOKEN="hf_local_secret")
    with MountProcess(home, tmp_path / "mnt", NO_HUB, "--insecure-http", env=env) as m:
        path = m.path(rel)
        with open(path, "rb") as f:
            f.seek(CHUNK + 7)
            middle = f.read(1000)
            f.seek(0)
            whole = f.read()
        assert middle == DATA.read(CHUNK + 7, CHUNK + 1007)
        return whole


@pytest.mark.fuse
def test_mount_reads_a_file_looked_up_before(origin: FakeURLOrigin, tmp_path: Path) -> None:
    addr = address(origin, "/mnt/model.bin")
    origin.put("/mnt/model.bin", DATA, digests=("digest",))
    with proxy(tmp_path) as px:
        assert get(px, addr, "HEAD").status == 200  # looked up, nothing fetched
    assert origin.bytes_sent["origin"] == 0
    assert _mount_read(tmp_path, origin, addr) == DATA.read()
    assert origin.bytes_sent["origin"] == DATA.size
    assert all(r.authorization is None for r in origin.requests), "the local user's Hub token reached a url origin"


@pytest.mark.fuse
def test_mount_looks_a_name_up(origin: FakeURLOrigin, tmp_path: Path) -> None:
    origin.put("/mnt/fresh.bin", DATA, ranges=False)
    assert _mount_read(tmp_path, origin, address(origin, "/mnt/fresh.bin")) == DATA.read()
