"""The Arweave source end to end: Ritual repos on a fake ar.io gateway, read through hoard.

Everything runs against `tests.fakes.arweave.FakeGateway` (GraphQL with paging, pending
transactions, sectioned files, wrong and missing ``File-SHA256`` tags), through the real
proxy in a thread (`ProxyThread`), real ``hoard`` processes and a real mount. No test sleeps
to synchronise: the fake's switches (faults with a hit count, pause/resume, mining) drive
every case, and `wait_for` polls what the product reaches in the background.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.proxy.fetch import FetchConfig
from hoard.proxy.sources._arweave_tree import (
    MANIFEST_TYPE,
    file_entry,
    read_plan,
    section_order,
    usable_paths,
)
from hoard.store.errors import OriginError
from hoard.store.config import StoreConfig
from hoard.store.store import Store

from .fakes.arweave import FakeGateway, RitualRepo
from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import MountProcess, ProxyThread, serve_env, wait_for
from .httpcalls import Got, call, raw

MiB = 1 << 20
HOARD = [sys.executable, "-m", "hoard.cli.main"]
NO_HUB = "http://127.0.0.1:9"  # a Hub endpoint nothing listens on: these tests never need it
UNTAGGED = "no File-SHA256 tag on Arweave: verified by its length only"


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    with FakeGateway() as fake:
        yield fake


def proxy(tmp_path: Path, *gateways: str, name: str = "home", **config: Any) -> ProxyThread:
    """The proxy in a thread, reading Arweave through ``gateways`` in order."""
    return ProxyThread(tmp_path / name, config.pop("hf_endpoint", NO_HUB), chunk_size=config.pop("chunk_size", 256 << 10),
                       sources={"arweave_gateway": gateways}, **config)


def get(px: ProxyThread, address: str, method: str = "GET", **headers: str) -> Got:
    return call(method, f"{px.url}/v1/files/{address}", headers=headers)


def repo_of(repo: RitualRepo) -> str:
    return f"arweave/{repo.owner}/{repo.name}"


def cli(home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A real ``hoard`` process on ``home``, configured by its flags alone."""
    proc = subprocess.run([*HOARD, *args], env=dict(env or serve_env(), HOARD_HOME=str(home)),
                          capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"hoard {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def cli_json(home: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(cli(home, *args, "--json", env=env).stdout)


def data_requests(gw: FakeGateway, txid: str) -> int:
    return gw.count(route="data", txid=txid, method="GET")


# -- 1. files by address --------------------------------------------------------------------------


def test_files_by_address_latest_and_pinned_with_ranges_head_and_errors(gw: FakeGateway, tmp_path: Path) -> None:
    alice = gw.wallet("alice")
    old = gw.seed_ritual_repo(alice, "classifier", {"model.onnx": b"old weights", "README.md": b"# v1"})
    new_weights = Content("weights v2", 300_000)
    new = gw.seed_ritual_repo(alice, "classifier", {"model.onnx": new_weights, "README.md": b"# v2",
                                                    "../escape.txt": b"x", "sub": b"y", "sub/a.txt": b"z"})
    repo = repo_of(new)
    bob = gw.wallet("bob")
    gw.seed_ritual_repo(bob, "classifier", {"model.onnx": b"bob's"})
    with proxy(tmp_path, gw.url) as px:
        tree = call("GET", f"{px.url}/v1/trees/{repo}").json()
        assert [f["path"] for f in tree["files"]] == ["README.md", "model.onnx", "sub/a.txt"]  # unsafe names dropped
        got = get(px, f"{repo}/model.onnx")
        assert got.status == 200 and got.body == new_weights.read()
        assert got.headers["X-Hoard-Revision"] == new.manifest_id
        assert got.headers["X-Hoard-Identity"] == f"sha256:{new_weights.sha256}"

        pinned = get(px, f"{repo}@{old.manifest_id}/model.onnx")
        assert (pinned.status, pinned.body) == (200, b"old weights")
        assert pinned.headers["X-Hoard-Revision"] == old.manifest_id

        part = get(px, f"{repo}/model.onnx", Range="bytes=100000-100099")
        assert part.status == 206 and part.body == new_weights.read(100000, 100100)
        assert part.headers["Content-Range"] == f"bytes 100000-100099/{new_weights.size}"

        status, headers, body = raw("HEAD", f"{px.url}/v1/files/{repo}/README.md")
        assert (status, body, headers["Content-Length"]) == (200, b"", "4")

        for address, kind in [
            (f"{repo}/missing.bin", "entry_not_found"),
            (f"arweave/{alice.address}/no-such-repo/model.onnx", "repo_not_found"),
            (f"arweave/{gw.wallet('nobody').address}/classifier/model.onnx", "repo_not_found"),
            (f"{repo}@{new.files['model.onnx'].txid}/model.onnx", "revision_not_found"),  # a file, not a manifest
            (f"{repo}@v1/model.onnx", "revision_not_found"),
            (f"arweave/{bob.address}/classifier@{old.manifest_id}/model.onnx", "revision_not_found"),  # alice's
        ]:
            miss = get(px, address)
            assert (miss.status, miss.json()["kind"]) == (404, kind), (address, miss.body)
        bad = get(px, "arweave/not-a-wallet-address/classifier/model.onnx")
        assert bad.status == 400 and "wallet address" in bad.json()["error"]


# -- 2. latest --------------------------------------------------------------------------------------


def test_latest_is_the_greatest_unix_time_across_graphql_pages(tmp_path: Path) -> None:
    with FakeGateway(max_page_size=4) as gw:  # the gateway pages every 4 answers
        alice = gw.wallet("alice")
        # the upload with the greatest Unix-Time is the *oldest* block: on the last page
        uploads = [gw.seed_ritual_repo(alice, "m", {"v.txt": f"upload {i}".encode()}, unix_time=1_700_000_000.5 - i)
                   for i in range(11)]
        with proxy(tmp_path, gw.url) as px:
            got = get(px, f"{repo_of(uploads[0])}/v.txt")
            assert (got.status, got.body) == (200, b"upload 0")
            assert got.headers["X-Hoard-Revision"] == uploads[0].manifest_id
        asked = [r.graphql.get("variables") or {} for r in gw.find(route="graphql") if "Repo-Name" in (r.gql_query or "")]
        assert len(asked) == 3 and asked[0].get("after") is None
        assert all(isinstance(v.get("after"), str) for v in asked[1:]), asked


def test_a_pending_newest_upload_does_not_break_latest(gw: FakeGateway, tmp_path: Path) -> None:
    alice = gw.wallet("alice")
    mined = gw.seed_ritual_repo(alice, "m", {"v.txt": b"served"})
    pending = gw.seed_ritual_repo(alice, "m", {"v.txt": b"in flight"}, confirmations=None)
    solo = gw.seed_ritual_repo(alice, "solo", {"v.txt": b"first upload"}, confirmations=None)
    with proxy(tmp_path, gw.url, refs_ttl=0.0) as px:
        got = get(px, f"{repo_of(mined)}/v.txt")
        assert (got.status, got.body) == (200, b"served")  # its manifest is not served yet
        assert gw.count(route="tx", txid=pending.manifest_id) >= 1  # asked why: 202, pending
        gw.mine(pending.txids)
        got = get(px, f"{repo_of(mined)}/v.txt")
        assert (got.status, got.body) == (200, b"in flight")
        assert got.headers["X-Hoard-Revision"] == pending.manifest_id

        first = get(px, f"{repo_of(solo)}/v.txt")  # nothing older to fall back on: retryable
        assert first.status == 503 and first.json()["kind"] == "not_ready", first.body
        gw.mine(solo.txids)
        wait_for(lambda: get(px, f"{repo_of(solo)}/v.txt").body == b"first upload")


# -- 3. sectioned files -----------------------------------------------------------------------------


def test_sectioned_file_reads_only_the_sections_it_touches_and_verifies_whole(gw: FakeGateway, tmp_path: Path) -> None:
    big = Content("sectioned", 3 * MiB + 12345)
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "big", {"weights.bin": big}, max_upload_size=MiB)
    sections = repo.files["weights.bin"].sections
    assert len(sections) == 4
    with proxy(tmp_path, gw.url, chunk_size=256 << 10) as px:
        assert call("GET", f"{px.url}/v1/trees/{repo_of(repo)}").status == 200  # names first
        gw.clear_log()
        start = 2 * MiB + 300_000  # inside section 2
        got = get(px, f"{repo_of(repo)}/weights.bin", Range=f"bytes={start}-{start + 999}")
        assert got.status == 206 and got.body == big.read(start, start + 1000)
        sent = gw.tx_bytes_sent
        assert set(sent) == {sections[2]} and sent[sections[2]] <= 256 << 10, sent

        whole = get(px, f"{repo_of(repo)}/weights.bin")
        assert whole.status == 200 and whole.body == big.read()
        wait_for(lambda: px.store.resolve(f"sha256:{big.sha256}") is not None)
        # the sectioned file's tx holds the manifest of its sections, not its bytes: never its ar: name
        assert px.store.resolve(f"ar:{repo.files['weights.bin'].txid}") is None


def test_gateway_answers_are_judged_like_client_input() -> None:
    tx = [c * 43 for c in "ABCD"]

    def node(txid: str, size: int, **tags: str) -> dict[str, Any]:
        return {"id": txid, "data": {"size": str(size)}, "tags": [{"name": k.replace("_", "-"), "value": v}
                                                                  for k, v in tags.items()]}

    assert section_order({"1.section": tx[1], "0.section": tx[0]}, "w") == [tx[0], tx[1]]
    for bad in ({"0.section": tx[0], "2.section": tx[1]}, {"0.section": tx[0], "x": tx[1]}, {"01.section": tx[0]}, {}):
        assert section_order(bad, "w") is None
    sha = "ab" * 32
    manifest = node(tx[0], 200, File_Type="Sectioned", File_Size="7", Content_Type=MANIFEST_TYPE)
    parts = [node(tx[1], 4, File_SHA256=sha, Content_Type="application/onnx"), node(tx[2], 3, File_SHA256=sha)]
    entry = file_entry(manifest, parts, "w")
    assert entry is not None and (entry.size, entry.identity) == (7, f"sha256:{sha}")
    assert entry.meta["sections"] == [[tx[1], 4], [tx[2], 3]] and entry.meta["content_type"] == "application/onnx"
    assert file_entry(manifest, [parts[0], node(tx[2], 3, File_SHA256="cd" * 32)], "w") is None  # disagree
    assert file_entry(node(tx[0], 200, File_Type="Sectioned", File_Size="8"), parts, "w") is None  # wrong size
    assert file_entry(node(tx[3], 10, Content_Type=MANIFEST_TYPE), None, "w") is None  # a nested manifest
    assert file_entry({"id": tx[3], "data": {"size": "-1"}, "tags": []}, None, "w") is None
    plain = file_entry(node(tx[3], 10, File_SHA256="not hex"), None, "w")
    assert plain is not None and (plain.identity, plain.expected, plain.meta["unverified"]) == (f"ar:{tx[3]}", None, UNTAGGED)
    assert usable_paths({"a": tx[0], "a/b": tx[1], "../c": tx[2], "d//e": tx[3]}, "w") == {"a/b": tx[1]}
    assert read_plan(entry.meta, entry.identity, 7, "w") == [(tx[1], 4), (tx[2], 3)]
    for meta in ({"tx": "../admin"}, {"sections": [[tx[1], 4]]}, {"sections": 5}, {"sections": [[tx[1], "7"]]}):
        with pytest.raises(OriginError):
            read_plan(meta, f"sha256:{sha}", 7, "w")


# -- 4. verification --------------------------------------------------------------------------------


def test_wrong_hash_is_never_published_and_an_untagged_file_is_verified_by_length(gw: FakeGateway, tmp_path: Path) -> None:
    bad, plain = Content("bad", 200_000), Content("plain", 50_000)
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"bad.bin": bad, "plain.bin": plain},
                               wrong_sha256=["bad.bin"], missing_sha256=["plain.bin"])
    with proxy(tmp_path, gw.url) as px:
        for _ in range(2):  # and never later either
            got = get(px, f"{repo_of(repo)}/bad.bin")
            assert not (got.status == 200 and got.error is None and got.body == bad.read()), got
        assert px.store.resolve(f"sha256:{bad.sha256}") is None
        tree = call("GET", f"{px.url}/v1/trees/{repo_of(repo)}").json()
        claimed = next(f for f in tree["files"] if f["path"] == "bad.bin")["identity"]
        assert claimed != f"sha256:{bad.sha256}" and px.store.resolve(claimed) is None

        got = get(px, f"{repo_of(repo)}/plain.bin")
        assert (got.status, got.body) == (200, plain.read())
        assert got.headers["X-Hoard-Identity"] == f"ar:{repo.files['plain.bin'].txid}"
        wait_for(lambda: px.store.resolve(f"ar:{repo.files['plain.bin'].txid}") is not None)
        info = cli_json(tmp_path / "home", "info", f"{repo_of(repo)}/plain.bin")
        assert info["verified_by"] == "length only" and info["unverified"] == UNTAGGED and info["expected"] is None
        text = cli(tmp_path / "home", "info", f"{repo_of(repo)}/plain.bin").stdout
        assert f"length only: {UNTAGGED}" in text
        tagged = cli_json(tmp_path / "home", "info", f"{repo_of(repo)}/bad.bin")
        assert tagged["verified_by"] == "sha256" and tagged["expected"] == claimed and tagged["blake3"] is None


# -- 5. pending transactions ------------------------------------------------------------------------


def test_data_not_served_yet_is_retried_then_served(gw: FakeGateway, tmp_path: Path) -> None:
    weights = Content("soon", 100_000)
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"model.onnx": weights})
    txid = repo.files["model.onnx"].txid
    # the gateway has not got the data yet, twice: 404 at /{id}, 202 (pending) at /tx/{id}
    gw.fault(route="data", txid=txid, status=404, times=2)
    gw.fault(route="tx", txid=txid, status=202, times=2)
    with proxy(tmp_path, gw.url, fetch=FetchConfig(chunk_attempts=4)) as px:
        got = get(px, f"{repo_of(repo)}/model.onnx")
        assert (got.status, got.body) == (200, weights.read())
    assert data_requests(gw, txid) == 3 and gw.count(route="tx", txid=txid, status=202) == 2


def test_a_pending_file_is_a_retryable_503_until_mined(gw: FakeGateway, tmp_path: Path) -> None:
    weights = Content("pending", 80_000)
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"model.onnx": weights}, confirmations=None)
    gw.mine([repo.manifest_id])  # the manifest is in a block; the file is still in the mempool
    txid = repo.files["model.onnx"].txid
    with proxy(tmp_path, gw.url, fetch=FetchConfig(chunk_attempts=3)) as px:
        got = get(px, f"{repo_of(repo)}/model.onnx")
        assert got.status == 503 and got.json()["kind"] == "not_ready", got.body  # not "unreachable"
        assert "pending" in got.json()["error"]
        assert data_requests(gw, txid) == 3  # retried, not given up as "not found"

        # mined while a reader waits: the next try gets it
        def mine_after_first_probe() -> None:
            wait_for(lambda: gw.count(route="tx", txid=txid) >= 4)
            gw.mine([txid])

        miner = threading.Thread(target=mine_after_first_probe, daemon=True)
        miner.start()
        got = get(px, f"{repo_of(repo)}/model.onnx")
        miner.join(30)
        assert (got.status, got.body) == (200, weights.read())


# -- 6. several gateways ----------------------------------------------------------------------------


def test_gateways_are_tried_in_order(gw: FakeGateway, tmp_path: Path) -> None:
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"model.onnx": Content("two", 70_000)})
    with FakeGateway() as dead:
        dead.pause()  # connections refused
        with proxy(tmp_path, dead.url, gw.url) as px:
            for _ in range(2):
                got = get(px, f"{repo_of(repo)}/model.onnx")
                assert (got.status, got.body) == (200, Content("two", 70_000).read())
        dead.resume()
        assert dead.requests == []
    assert gw.count(route="graphql") >= 1 and data_requests(gw, repo.files["model.onnx"].txid) >= 1


# -- 7. offline -------------------------------------------------------------------------------------


def test_offline_latest_is_the_last_known_upload(gw: FakeGateway, tmp_path: Path) -> None:
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"model.onnx": b"cached bytes", "other.bin": b"never read"})
    with proxy(tmp_path, gw.url, refs_ttl=0.0) as px:
        assert get(px, f"{repo_of(repo)}/model.onnx").body == b"cached bytes"
        gw.pause()
        got = get(px, f"{repo_of(repo)}/model.onnx")  # the ref expired; the gateway is gone
        assert (got.status, got.body) == (200, b"cached bytes")
        assert got.headers["X-Hoard-Revision"] == repo.manifest_id
        tree = call("GET", f"{px.url}/v1/trees/{repo_of(repo)}").json()
        assert tree["revision"] == repo.manifest_id and tree["stale"] is True
        missing = get(px, f"{repo_of(repo)}/other.bin")
        assert missing.status == 503 and missing.json()["kind"] == "origin_unavailable"
        never = get(px, f"arweave/{gw.wallet('bob').address}/m/model.onnx")
        assert never.status == 503
        gw.resume()


# -- 8. dedup across sources ------------------------------------------------------------------------


def test_the_same_bytes_on_the_hub_and_on_arweave_are_one_blob(gw: FakeGateway, tmp_path: Path) -> None:
    first_hub, first_ar = Content("hub first", 400_000), Content("arweave first", 300_000)
    with FakeHub() as hub:
        hub.add_repo("org/m", {"model.onnx": first_hub, "other.onnx": first_ar})
        repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"model.onnx": first_hub, "other.onnx": first_ar})
        with proxy(tmp_path, gw.url, hf_endpoint=hub.url) as px:
            # Hub first, then Arweave: no byte from the gateway
            assert get(px, "huggingface/org/m/model.onnx").body == first_hub.read()
            b3 = px.store.resolve(f"sha256:{first_hub.sha256}")
            assert b3 is not None
            gw.clear_log()
            got = get(px, f"{repo_of(repo)}/model.onnx")
            assert (got.status, got.body) == (200, first_hub.read())
            assert data_requests(gw, repo.files["model.onnx"].txid) == 0
            assert repo.files["model.onnx"].txid not in gw.tx_bytes_sent
            assert px.store.resolve(f"ar:{repo.files['model.onnx'].txid}") == b3

            # Arweave first, then the Hub: no byte from the CDN
            assert get(px, f"{repo_of(repo)}/other.onnx").body == first_ar.read()
            wait_for(lambda: px.store.resolve(f"ar:{repo.files['other.onnx'].txid}") is not None)
            hub.clear_log()
            assert get(px, "huggingface/org/m/other.onnx").body == first_ar.read()
            assert hub.bytes_sent["cdn"] == 0
            assert px.store.resolve(f"sha256:{first_ar.sha256}") == px.store.resolve(
                f"ar:{repo.files['other.onnx'].txid}")
        info = cli_json(tmp_path / "home", "info", f"{repo_of(repo)}/model.onnx")
        assert set(info["aliases"]) >= {f"sha256:{first_hub.sha256}", f"ar:{repo.files['model.onnx'].txid}"}
        assert cli_json(tmp_path / "home", "info")["blobs"] == 2


# -- 9. the mount -----------------------------------------------------------------------------------


def onnx_model() -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return bytes(helper.make_model(graph).SerializeToString())


@pytest.mark.fuse
def test_mount_lists_cached_repos_and_reads_any_repo_looked_up(gw: FakeGateway, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    alice = gw.wallet("alice")
    model = onnx_model()
    repo = gw.seed_ritual_repo(alice, "relu", {"model.onnx": model, "notes.txt": b"untagged notes"},
                               missing_sha256=["notes.txt"])
    env = dict(serve_env(), HOARD_CHUNK_SIZE="1MiB", HF_TOKEN="hf_mounttoken")
    with MountProcess(tmp_path / "home", tmp_path / "mnt", NO_HUB, "--arweave-gateway", gw.url, env=env) as m:
        owner = m.path(f"arweave/{alice.address}")
        assert os.listdir(owner) == []  # nothing cached yet
        root = owner / "relu"
        assert sorted(os.listdir(root)) == ["model.onnx", "notes.txt"]  # looked up at the gateway
        assert os.listdir(owner) == ["relu"]
        assert os.stat(root / "model.onnx").st_size == len(model)
        code = "import onnx, sys; print(onnx.load(sys.argv[1]).graph.node[0].op_type)"
        out = subprocess.run([sys.executable, "-c", code, str(root / "model.onnx")],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.strip() == "Relu", out.stderr
        assert (root / "notes.txt").read_bytes() == b"untagged notes"
        assert os.getxattr(root / "model.onnx", "user.hoard.verified_by") == b"sha256"
        assert os.getxattr(root / "notes.txt", "user.hoard.verified_by") == b"length only"
        assert os.getxattr(root / "model.onnx", "user.hoard.sha256").decode() == Content.of(model).sha256
        pinned = m.path(f"arweave/{alice.address}/relu@{repo.manifest_id}/notes.txt")
        assert pinned.read_bytes() == b"untagged notes"
    assert all(r.authorization is None for r in gw.requests)


# -- 10. the commands -------------------------------------------------------------------------------


def test_commands_take_model_ids_and_arweave_repos(gw: FakeGateway, tmp_path: Path) -> None:
    a, b, c = Content("a", 120_000), Content("b", 60_000), Content("c", 90_000)
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "trio", {"a.onnx": a, "b.onnx": b, "c.bin": c},
                               missing_sha256=["b.onnx"])
    home, other = tmp_path / "home", tmp_path / "other"
    name = repo_of(repo)
    done = cli_json(home, "prefetch", f"{name}:a.onnx,b.onnx", "--arweave-gateway", gw.url)
    assert (done["files"], done["fetched"], done["revision"]) == (2, 2, repo.manifest_id)
    assert gw.tx_bytes_sent.get(repo.files["c.bin"].txid, 0) == 0  # only the named files
    listing = cli_json(home, "ls", name)
    assert [(f["path"], f["blake3"] is not None) for f in listing["files"]] == [
        ("a.onnx", True), ("b.onnx", True), ("c.bin", False)]
    assert [f["path"] for f in cli_json(home, "ls", f"{name}:b.onnx")["files"]] == ["b.onnx"]
    assert [r["repo"] for r in cli_json(home, "ls", "arweave/")] == [name]
    assert f"{name}" in cli(home, "ls").stdout

    infos = cli_json(home, "info", f"{name}:a.onnx,b.onnx")
    assert [(i["path"], i["verified_by"]) for i in infos] == [("a.onnx", "sha256"), ("b.onnx", "length only")]
    assert infos[1]["unverified"] == UNTAGGED
    missing = cli(home, "prefetch", f"{name}:nope.onnx", "--arweave-gateway", gw.url, check=False)
    assert missing.returncode == 3 and "nope.onnx" in missing.stderr

    pins = cli_json(home, "pin", f"{name}:a.onnx,b.onnx")
    assert [p["pinned"] for p in pins] == [f"blob:{i['blake3']}" for i in infos]
    assert cli_json(home, "pin", name)["pinned"] == f"snapshot:{name}@{repo.manifest_id}"
    cli(home, "unpin", f"{name}:a.onnx,b.onnx")
    assert cli_json(home, "unpin", name)["was_pinned"] is True

    # export needs every file: fetch the rest, then move the revision to another home
    cli(home, "prefetch", name, "--arweave-gateway", gw.url)
    assert cli(home, "verify", "--deep").returncode == 0  # tx-id names are no hashes to re-check
    cli(home, "export", name, str(tmp_path / "plain"), "--format", "dir")
    assert (tmp_path / "plain" / "b.onnx").read_bytes() == b.read()
    cli(home, "export", f"{name}:a.onnx", str(tmp_path / "bundle.tar"), "--format", "hoard")
    imported = cli_json(other, "import", str(tmp_path / "bundle.tar"))
    assert imported["revisions"] == [f"{name}@{repo.manifest_id}"]
    moved = cli_json(other, "info", f"{name}:b.onnx")
    assert moved["verified_by"] == "length only" and moved["unverified"] == UNTAGGED
    assert moved["blake3"] == infos[1]["blake3"] and f"ar:{repo.files['b.onnx'].txid}" in moved["aliases"]
    assert cli_json(other, "info", f"{name}/a.onnx")["expected"] == f"sha256:{a.sha256}"

    removed = cli_json(home, "rm", f"{name}:c.bin")
    assert len(removed["blobs"]) == 1
    assert [f["blake3"] is None for f in cli_json(home, "ls", name)["files"]] == [False, False, True]
    gone = cli_json(home, "rm", name)
    assert gone["snapshots"] == [f"{name}@{repo.manifest_id}"]
    assert cli_json(home, "ls") == []


def test_a_bundle_cannot_rename_bytes_verified_by_length_only(gw: FakeGateway, tmp_path: Path) -> None:
    plain, tagged = Content("plain", 40_000), Content("tagged", 30_000)
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"plain.bin": plain, "tagged.bin": tagged},
                               missing_sha256=["plain.bin"])
    home, other = tmp_path / "home", tmp_path / "other"
    alias = f"ar:{repo.files['plain.bin'].txid}"
    cli(home, "prefetch", repo_of(repo), "--arweave-gateway", gw.url)
    cli(home, "export", repo_of(repo), str(tmp_path / "b") + os.sep, "--format", "hoard")  # DEST/: a directory
    manifest_path = tmp_path / "b" / "hoard-export.json"
    original = json.loads(manifest_path.read_text())
    assert original["files"]["tagged.bin"]["expected"] == f"sha256:{tagged.sha256}"
    entry = original["files"]["plain.bin"]
    assert (entry["identity"], entry["expected"]) == (alias, None)

    blob = tmp_path / "b" / "blobs" / entry["blake3"]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"X" * plain.size)  # other bytes, the same length
    refused = cli(other, "import", str(tmp_path / "b"), check=False)
    assert refused.returncode == 5 and "hashes to" in refused.stderr
    assert cli_json(other, "ls") == []
    with Store(StoreConfig(other)) as store:
        assert store.resolve(alias) is None  # the name never pointed at the other bytes

    blob.write_bytes(plain.read())
    for change in ({"meta": {}}, {"identity": "ar:short"}, {"expected": f"sha256:{plain.sha256}*"}):
        manifest_path.write_text(json.dumps({**original, "files": {"plain.bin": {**entry, **change}}}))
        bad = cli(other, "import", str(tmp_path / "b"), check=False)
        assert bad.returncode == 5 and "bundle manifest" in bad.stderr, (change, bad.stderr)
    manifest_path.write_text(json.dumps(original))
    assert cli_json(other, "import", str(tmp_path / "b"))["revisions"] == [f"{repo_of(repo)}@{repo.manifest_id}"]
    with Store(StoreConfig(other)) as store:
        assert store.resolve(alias) == entry["blake3"]


# -- 11. the parent tier ----------------------------------------------------------------------------


def test_a_node_fills_arweave_files_from_a_parent_and_verifies_them(gw: FakeGateway, tmp_path: Path) -> None:
    model, notes, bad = Content("model", 500_000), Content("notes", 30_000), Content("bad", 70_000)
    repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"model.onnx": model, "notes.txt": notes, "bad.bin": bad},
                               missing_sha256=["notes.txt"], wrong_sha256=["bad.bin"])
    with proxy(tmp_path, gw.url, name="parent") as parent, \
            proxy(tmp_path, "http://127.0.0.1:9", name="node", upstream=parent.url) as node:
        got = get(node, f"{repo_of(repo)}/model.onnx")
        assert (got.status, got.body) == (200, model.read())
        wait_for(lambda: node.store.resolve(f"sha256:{model.sha256}") is not None)
        assert node.store.resolve(f"ar:{repo.files['model.onnx'].txid}") == node.store.resolve(f"sha256:{model.sha256}")

        plain = get(node, f"{repo_of(repo)}/notes.txt")
        assert (plain.status, plain.body) == (200, notes.read())
        wait_for(lambda: node.store.resolve(f"ar:{repo.files['notes.txt'].txid}") is not None)

        wrong = get(node, f"{repo_of(repo)}/bad.bin")
        assert not (wrong.status == 200 and wrong.error is None and wrong.body == bad.read())
        assert node.store.resolve(f"sha256:{bad.sha256}") is None
    info = cli_json(tmp_path / "node", "info", f"{repo_of(repo)}:model.onnx,notes.txt")
    assert [i["verified_by"] for i in info] == ["sha256", "length only"]
    assert gw.count() > 0 and all(r.authorization is None for r in gw.requests)


# -- 12. credentials ------------------------------------------------------------------------------


def test_tokens_reach_only_their_own_origin(gw: FakeGateway, tmp_path: Path) -> None:
    token = "hf_secret_token"
    hub_weights, ar_weights = Content("hub", 300_000), Content("ar", 200_000)
    with FakeHub() as hub:
        hub.add_repo("org/m", {"model.onnx": hub_weights})
        repo = gw.seed_ritual_repo(gw.wallet("alice"), "m", {"model.onnx": ar_weights, "extra.bin": b"more"})
        auth = {"Authorization": f"Bearer {token}"}
        with proxy(tmp_path, gw.url, hf_endpoint=hub.url) as px:
            assert call("GET", f"{px.url}/org/m/resolve/main/model.onnx", headers=auth).body == hub_weights.read()
            assert call("GET", f"{px.url}/v1/files/{repo_of(repo)}/model.onnx", headers=auth).body == ar_weights.read()
            assert call("GET", f"{px.url}/v1/trees/{repo_of(repo)}", headers=auth).status == 200
        env = dict(serve_env(), HF_TOKEN=token)
        cli(tmp_path / "cli", "prefetch", f"{repo_of(repo)}:extra.bin", "--arweave-gateway", gw.url,
            "--hf-endpoint", hub.url, env=env)
        cli(tmp_path / "cli", "prefetch", "org/m", "--arweave-gateway", gw.url, "--hf-endpoint", hub.url, env=env)
        assert any(r.authorization == f"Bearer {token}" for r in hub.find(origin="hub"))
        assert hub.find(origin="cdn") and all(r.authorization is None for r in hub.find(origin="cdn"))
        assert all(token not in json.dumps(r.headers) for r in hub.find(origin="cdn"))
    assert gw.count(route="data") >= 2
    assert all(r.authorization is None and token not in json.dumps(r.headers) for r in gw.requests)
