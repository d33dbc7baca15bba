"""Faithfulness tests for the fake Arweave / ar.io gateway (``tests.fakes.arweave``).

The stock clients — ritual-arweave 0.2.0 and infernet-ml 2.0.0 (which pins ritual-arweave
0.1.1) — run as scripts in their own virtualenvs (`tests.clientvenv`) against the fake: the
0.2.0 client uploads a repository for real (signed txs, ``POST /tx`` + ``POST /chunk``) and
downloads it back; both clients download repositories written by the fake's seeding helper,
and react to pending txs and to a slow first byte as the reference measured. Wire details the
clients hide (ranges, 416/400, digest headers, 304, manifests, node routes, faults) are checked
with ``http.client``. No test sleeps to synchronise or asserts on timing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from http.client import IncompleteRead
from pathlib import Path
from typing import Any

import pytest

from tests.clientvenv import INFERNET_ML, RITUAL_ARWEAVE, client_python
from tests.fakes.arweave import (
    FakeGateway,
    RitualRepo,
    b64url_decode,
    b64url_encode,
    infernet_manifest,
)
from tests.fakes.arweave.identity import chunk_bounds, data_root, owner_address
from tests.fakes.content import Content
from tests.hfclients.runner import run_script
from tests.httpcalls import raw

MiB = 1 << 20
MANIFEST_TYPE = "application/x.arweave-manifest+json"

# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ritual_py() -> str:
    return client_python(*RITUAL_ARWEAVE)


@pytest.fixture(scope="module")
def infernet_py() -> str:
    return client_python(*INFERNET_ML)


WALLET_SCRIPT = r"""
import base64
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
nums = key.private_numbers()
def b64(i):
    return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
jwk = {"kty": "RSA", "n": b64(nums.public_numbers.n), "e": b64(nums.public_numbers.e), "d": b64(nums.d),
       "p": b64(nums.p), "q": b64(nums.q), "dp": b64(nums.dmp1), "dq": b64(nums.dmq1), "qi": b64(nums.iqmp)}
with open(ARGS["path"], "w") as f:
    json.dump(jwk, f)
from ar import Wallet
OUT["address"] = Wallet(ARGS["path"]).address
"""


@pytest.fixture(scope="module")
def wallet(ritual_py: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An RSA-4096 JWK made with ``cryptography`` in the client venv, and its address per ``ar``."""
    where = tmp_path_factory.mktemp("wallet")
    path = where / "wallet.json"
    out = run_script("http://unused", where / "home", WALLET_SCRIPT, python=ritual_py, args={"path": str(path)})
    return path, out["address"]


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    with FakeGateway() as fake:
        yield fake


def client(python: str, gw: FakeGateway, tmp_path: Path, script: str, **args: Any) -> dict[str, Any]:
    """Run ``script`` (after the runner's PRELUDE: ARGS, OUT, attempt, sha256) with ``python``."""
    return run_script(gw.url, tmp_path / "home", script, python=python, args={"url": gw.url, **args}, timeout=240)


DOWNLOAD_020 = """
from ritual_arweave.repo_manager import RepoManager
rm = RepoManager(gateways=[ARGS["url"]], show_progress_bar=False)
attempt("download", lambda: {os.path.relpath(p, ARGS["dest"]): sha256(p)
                             for p in rm.download_repo(ARGS["repo"], base_path=ARGS["dest"])})
"""
DOWNLOAD_011 = """
from ritual_arweave.repo_manager import RepoManager
rm = RepoManager(api_url=ARGS["url"])
attempt("download", lambda: {os.path.relpath(p, ARGS["dest"]): sha256(p)
                             for p in rm.download_repo(ARGS["repo"], base_path=ARGS["dest"])})
"""


def http(
    gw: FakeGateway, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, Any, bytes]:
    return raw(method, gw.url + path, headers, body)


def gql(gw: FakeGateway, query: str, variables: dict[str, Any] | None = None) -> tuple[int, Any]:
    body = json.dumps({"operationName": None, "query": query, "variables": variables or {}}).encode()
    status, _, payload = http(gw, "POST", "/graphql", {"Content-Type": "application/json"}, body)
    return status, json.loads(payload)


def sha(content: bytes | Content) -> str:
    return Content.of(content).sha256


def q(template: str, **values: object) -> str:
    """``template`` with its ``<name>`` placeholders filled (GraphQL's braces left alone)."""
    for key, value in values.items():
        template = template.replace(f"<{key}>", str(value))
    return template


def tag_list(gw: FakeGateway, txid: str) -> list[tuple[str, str]]:
    tx = gw.tx(txid)
    assert tx is not None
    return tx.str_tags


def routes(gw: FakeGateway, txid: str) -> list[str]:
    """The routes the log shows for one tx, in order."""
    return [r.route for r in gw.requests if r.txid == txid]


QUERY_A = """query { transactions( sort:HEIGHT_DESC, owners: ["<owner>"],
  tags: [ {name: "App-Name", values: ["Ritual"]},
  {name: "Repo-Name", values: ["<repo>"]}, {name: "Type", values: ["manifest"]} ] )
  { edges { node { block { id timestamp } id owner { address } tags { name value } } } } }"""


# --------------------------------------------------------------------------------------
# identities: the fake computes what the real library computes
# --------------------------------------------------------------------------------------

IDENTITY_SCRIPT = """
import io
from ar.utils import owner_to_address
from ar.utils.merkle import compute_root_hash
from ar.utils import b64enc
for n in ARGS["sizes"]:
    data = bytes((i * 131 + 7) % 251 for i in range(n))
    OUT[str(n)] = b64enc(compute_root_hash(io.BytesIO(data)))
OUT["address"] = owner_to_address(ARGS["owner"])
"""


def test_data_root_and_address_match_pyarweave(ritual_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    sizes = [1, 1000, 256 * 1024, 256 * 1024 + 1, 600_000, 3 * 256 * 1024]
    owner = gw.wallet("x").owner
    out = client(ritual_py, gw, tmp_path, IDENTITY_SCRIPT, sizes=sizes, owner=owner)
    for n in sizes:
        data = Content.from_bytes(bytes((i * 131 + 7) % 251 for i in range(n)))
        assert b64url_encode(data_root(data, chunk_bounds(n))) == out[str(n)], n
    assert owner_address(owner) == out["address"] == gw.wallet("x").address


# --------------------------------------------------------------------------------------
# (1) ritual-arweave 0.2.0 uploads for real, then downloads what it uploaded
# --------------------------------------------------------------------------------------

UPLOAD_020 = """
from ritual_arweave.repo_manager import RepoManager
rm = RepoManager(gateways=[ARGS["url"]], wallet_path=ARGS["wallet"], max_upload_size=ARGS["max"],
                 show_progress_bar=False)
res = rm.upload_repo(ARGS["name"], ARGS["dir"])
OUT["repo_id"] = f"{res.repo_id.owner}/{res.repo_id.name}"
OUT["manifest"] = res.transaction_id
"""


def test_ritual_020_uploads_then_downloads(
    ritual_py: str, wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    wallet_path, address = wallet
    src = tmp_path / "repo"
    src.mkdir()
    files = {
        "config.json": b'{"hidden_size": 8}',
        "model.bin": Content("uploaded-model", 700_001).read(),  # > max_upload_size: sectioned
        "notes.txt": b"hello arweave\n",
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    out = client(ritual_py, gw, tmp_path, UPLOAD_020, wallet=str(wallet_path), max=300_000, name="up", dir=str(src))
    assert out["repo_id"] == f"{address}/up"
    manifest_tx = gw.tx(out["manifest"])
    assert manifest_tx is not None and manifest_tx.pending and manifest_tx.data is not None
    assert manifest_tx.owner_address == address  # computed by the fake from the posted `owner`
    assert gw.count(route="post_chunk") == 4  # two 300,000-byte sections, two chunks each
    assert all(r.status == 200 for r in gw.find(route="post_tx") + gw.find(route="post_chunk"))

    # what landed is exactly what the seeding helper writes for the same files
    paths = {p: e["id"] for p, e in json.loads(manifest_tx.data.read())["paths"].items()}
    assert set(paths) == set(files)
    unix_time = float(dict(tag_list(gw, out["manifest"]))["Unix-Time"])
    twin = FakeGateway()  # not started: only its weave is used
    seeded = twin.seed_ritual_repo(
        twin.wallet("twin"), "up", {p: files[p] for p in paths}, unix_time=unix_time, max_upload_size=300_000
    )
    assert tag_list(gw, out["manifest"]) == tag_list(twin, seeded.manifest_id)
    for path, txid in paths.items():
        mine, theirs = tag_list(gw, txid), tag_list(twin, seeded.files[path].txid)
        if path == "model.bin":  # the sectioned manifest's Unix-Time is taken later, by both
            assert [n for n, _ in mine] == [n for n, _ in theirs]
            assert [kv for kv in mine if kv[0] != "Unix-Time"] == [kv for kv in theirs if kv[0] != "Unix-Time"]
            sections = json.loads(gw.tx(txid).data.read())["paths"]  # type: ignore[union-attr]
            assert sorted(sections) == ["0.section", "1.section", "2.section"]
            for i, sid in enumerate(seeded.files[path].sections):
                assert tag_list(gw, sections[f"{i}.section"]["id"]) == tag_list(twin, sid)
                uploaded = gw.tx(sections[f"{i}.section"]["id"])
                assert uploaded is not None and uploaded.data_root == twin.tx(sid).data_root  # type: ignore[union-attr]
        else:
            assert mine == theirs
            assert gw.tx(txid).data_root == twin.tx(seeded.files[path].txid).data_root  # type: ignore[union-attr]

    # not mined yet: the client refuses; mined: it downloads the same bytes
    dest = tmp_path / "down"
    early = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=out["repo_id"], dest=str(dest))
    assert early["download"]["error"] == "NotFinalizedException"
    gw.mine()
    gw.clear_log()
    got = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=out["repo_id"], dest=str(dest))
    assert got["download"] == {"ok": {name: sha(data) for name, data in files.items()}}
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
    # per tx, what the client asked (graphql = a transaction(id:) query: C, then D)
    assert routes(gw, out["manifest"]) == ["tx_data_raw"]
    for name in ("config.json", "notes.txt"):
        assert routes(gw, paths[name]) == ["graphql", "tx", "graphql", "tx_field", "tx", "tx_field", "data"]
    assert routes(gw, paths["model.bin"]) == ["graphql", "tx", "graphql", "tx_data_raw", "tx_tags"]
    sectioned = gw.tx(paths["model.bin"])
    assert sectioned is not None and sectioned.data is not None
    section_ids = [e["id"] for e in json.loads(sectioned.data.read())["paths"].values()]
    for sid in section_ids:  # each section, on a worker: readiness, data size, the bytes
        assert routes(gw, sid) == ["tx", "tx_field", "data"]


# --------------------------------------------------------------------------------------
# (2) seeded repositories download correctly with both stock clients
# --------------------------------------------------------------------------------------


def _seed_model_repo(gw: FakeGateway, **options: Any) -> tuple[RitualRepo, dict[str, bytes | Content]]:
    owner = gw.wallet("ritual")
    files: dict[str, bytes | Content] = {
        "model.onnx": Content("onnx-model", 300_000),
        "big.bin": Content("big", 650_000),
    }
    files["ritual_manifest.json"] = infernet_manifest(owner.address, "iris", {"model.onnx": files["model.onnx"]})
    return gw.seed_ritual_repo(owner, "iris", files, **options), files


def test_seeded_repo_downloads_with_ritual_020(ritual_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    repo, files = _seed_model_repo(gw, max_upload_size=256 * 1024)
    assert len(repo.files["big.bin"].sections) == 3
    got = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=str(tmp_path / "d"))
    assert got["download"] == {"ok": {p: sha(c) for p, c in files.items()}}
    # the repo manifest itself is read through the node's data route, never `/{id}` (a 404)
    assert routes(gw, repo.manifest_id) == ["tx_data_raw"]
    assert http(gw, "GET", f"/{repo.manifest_id}")[0] == 404


def test_seeded_repo_downloads_with_infernet_ml(infernet_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    repo, files = _seed_model_repo(gw, app_version="0.1.0")  # what 0.1.1 itself would upload
    assert "File-Size" not in dict(tag_list(gw, repo.files["big.bin"].txid))
    script = """
from infernet_ml.utils.model_manager import ModelManager
m = ModelManager(cache_dir=ARGS["cache"])
def run():
    art = m.download_model(ARGS["model"], repomanager_kwargs={"api_url": ARGS["url"]})
    return {"files": {p.name: sha256(p) for p in art.files}, "model": str(art.get_file(ARGS["model"]).name),
            "on_disk": sorted(os.listdir(art.files[0].parent))}
attempt("model", run)
"""
    out = client(
        infernet_py, gw, tmp_path, script, model=f"arweave/{repo.repo_id}:model.onnx", cache=str(tmp_path / "c")
    )
    assert out["model"]["ok"]["files"] == {"model.onnx": sha(files["model.onnx"])}
    assert out["model"]["ok"]["model"] == "model.onnx"
    assert out["model"]["ok"]["on_disk"] == sorted(files)  # the whole repo is always downloaded
    for txid in (f.txid for f in repo.files.values()):  # 0.1.1: query C, readiness, then the bytes
        assert routes(gw, txid) == ["graphql", "tx", "data"]


def test_ritual_011_writes_the_sectioned_manifest_as_the_file(
    infernet_py: str, gw: FakeGateway, tmp_path: Path
) -> None:
    """The reference's trap, reproduced: 0.1.1 does not understand 0.2.0 sectioned files."""
    repo, files = _seed_model_repo(gw, max_upload_size=400_000)  # only big.bin is sectioned
    assert [len(f.sections) for f in repo.files.values()] == [0, 2, 0]
    out = client(infernet_py, gw, tmp_path, DOWNLOAD_011, repo=repo.repo_id, dest=str(tmp_path / "d"))
    sectioned = gw.tx(repo.files["big.bin"].txid)
    assert sectioned is not None and sectioned.data is not None
    assert out["download"]["ok"]["big.bin"] == sectioned.data.sha256 != sha(files["big.bin"])
    assert out["download"]["ok"]["model.onnx"] == sha(files["model.onnx"])


def test_newest_unix_time_wins_not_newest_block(ritual_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    owner = gw.wallet("w")
    newer = gw.seed_ritual_repo(owner, "r", {"w.bin": b"newer"}, unix_time=1_800_000_000.5)
    older = gw.seed_ritual_repo(owner, "r", {"w.bin": b"older"}, unix_time=1_700_000_000.25)
    assert gw.tx(older.manifest_id).height > gw.tx(newer.manifest_id).height  # type: ignore[operator,union-attr]
    _, body = gql(gw, q(QUERY_A, owner=owner.address, repo="r"))
    assert [e["node"]["id"] for e in body["data"]["transactions"]["edges"]] == [older.manifest_id, newer.manifest_id]
    got = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=newer.repo_id, dest=str(tmp_path / "d"))
    assert got["download"] == {"ok": {"w.bin": sha(b"newer")}}


def test_file_sha256_tag_drives_the_clients_reuse_check(ritual_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    files = {"good.bin": b"good", "wrong.bin": b"wrong", "bare.bin": b"bare"}
    repo = gw.seed_ritual_repo(gw.wallet("s"), "s", files, wrong_sha256=["wrong.bin"], missing_sha256=["bare.bin"])
    assert "File-SHA256" not in dict(tag_list(gw, repo.files["bare.bin"].txid))
    assert dict(tag_list(gw, repo.files["wrong.bin"].txid))["File-SHA256"] != sha(b"wrong")
    dest = str(tmp_path / "d")
    first = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=dest)
    assert first["download"]["ok"] == {p: sha(d) for p, d in files.items()}  # nothing verifies after download
    gw.clear_log()
    again = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=dest)
    assert sorted(again["download"]["ok"]) == ["bare.bin", "wrong.bin"]  # size + tag match: kept
    assert gw.count(route="data", txid=repo.files["good.bin"].txid) == 0
    assert gw.count(route="data", txid=repo.files["wrong.bin"].txid) == 1


# --------------------------------------------------------------------------------------
# (3) GraphQL: paging, filters, only the requested fields, errors
# --------------------------------------------------------------------------------------

PAGE = """query Page($after: String, $first: Int) { transactions(first: $first, after: $after,
  tags: [{name: "Kind", values: ["paged"]}]) { pageInfo { hasNextPage } edges { cursor node { id } } } }"""


def test_graphql_pages_beyond_ten_with_first_and_after() -> None:
    with FakeGateway(max_page_size=100) as gw:
        owner = gw.wallet("pager")
        ids = [gw.add_tx(owner, {"Kind": "paged", "N": str(i)}, f"#{i}").id for i in range(23)]
        gw.add_tx(owner, {"Kind": "other"}, b"x")
        _, default = gql(gw, PAGE)
        assert len(default["data"]["transactions"]["edges"]) == 10  # no `first`: ar.io's page of 10
        seen, after, flags = [], None, []
        while True:
            status, body = gql(gw, PAGE, {"after": after, "first": 10})
            assert status == 200
            page = body["data"]["transactions"]
            seen += [e["node"]["id"] for e in page["edges"]]
            flags.append(page["pageInfo"]["hasNextPage"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["edges"][-1]["cursor"]
        assert flags == [True, True, False] and seen == ids[::-1]  # HEIGHT_DESC: newest first
        _, capped = gql(gw, PAGE, {"first": 1000})
        assert len(capped["data"]["transactions"]["edges"]) == 23
    with FakeGateway(max_page_size=5) as small:
        owner = small.wallet("pager")
        for i in range(7):
            small.add_tx(owner, {"Kind": "paged"}, f"{i}")
        _, body = gql(small, PAGE, {"first": 1000})
        assert len(body["data"]["transactions"]["edges"]) == 5
        assert body["data"]["transactions"]["pageInfo"]["hasNextPage"] is True


def test_graphql_filters_sort_and_pending(gw: FakeGateway) -> None:
    alice, bob = gw.wallet("alice"), gw.wallet("bob")
    a1 = gw.add_tx(alice, [("App", "x"), ("Color", "red")], b"1")
    a2 = gw.add_tx(alice, [("App", "x"), ("Color", "blue")], b"2")
    b1 = gw.add_tx(bob, [("App", "x"), ("Color", "red")], b"3")
    p1 = gw.add_tx(alice, [("App", "x"), ("Color", "red")], b"4", confirmations=None)

    def ids(args: str) -> list[str]:
        status, body = gql(gw, q("{ transactions(<args>) { edges { node { id } } } }", args=args))
        assert status == 200, body
        return [e["node"]["id"] for e in body["data"]["transactions"]["edges"]]

    assert ids('tags: [{name: "App", values: ["x"]}]') == [p1.id, b1.id, a2.id, a1.id]  # pending first
    assert ids('sort: HEIGHT_ASC, tags: [{name: "App", values: ["x"]}]') == [a1.id, a2.id, b1.id, p1.id]
    assert ids('tags: [{name: "App", values: ["x"]}, {name: "Color", values: ["red"]}]') == [p1.id, b1.id, a1.id]
    assert ids(q('tags: [{name: "Color", values: ["blue", "red"]}], owners: ["<a>"]', a=alice.address)) == [
        p1.id,
        a2.id,
        a1.id,
    ]
    assert ids(q('owners: ["<key>"]', key=bob.owner)) == [b1.id]  # an owner key works like its address
    assert ids(f'ids: ["{a2.id}", "{p1.id}"]') == [p1.id, a2.id]
    height = gw.tx(b1.id).height  # type: ignore[union-attr]
    assert ids(q('tags: [{name: "Color", values: ["red"], op: EQ}], block: {min: <h>}', h=height)) == [b1.id]
    _, node = gql(gw, q('{ transaction(id: "<id>") { id block { height } } }', id=p1.id))
    assert node == {"data": {"transaction": {"id": p1.id, "block": None}}}
    _, missing = gql(gw, q('{ transaction(id: "<id>") { id } }', id="A" * 43))
    assert missing == {"data": {"transaction": None}}


def test_graphql_returns_only_requested_fields(gw: FakeGateway) -> None:
    tx = gw.add_tx(gw.wallet("f"), [("Content-Type", "text/plain"), ("Zed", "z")], b"hello")
    inline = q(
        '{ transaction(id: "<id>") { data { size type } t: tags { value } owner { address } __typename } }', id=tx.id
    )
    with_vars = """query One($id: ID!) {
        transaction(id: $id) { ...Fields owner { ... on Owner { address } } __typename } }
      fragment Fields on Transaction { data { size type } t: tags { value } }"""
    want = {
        "data": {"size": "5", "type": "text/plain"},
        "t": [{"value": "text/plain"}, {"value": "z"}],
        "owner": {"address": tx.owner_address},
        "__typename": "Transaction",
    }
    assert gql(gw, inline) == (200, {"data": {"transaction": want}})
    status, body = gql(gw, with_vars, {"id": tx.id})
    assert status == 200 and body["data"]["transaction"] == want
    assert list(body["data"]["transaction"]) == ["data", "t", "owner", "__typename"]
    _, full = gql(
        gw,
        q(
            '{ transaction(id: "<id>") { id fee { winston ar } quantity { ar } '
            "block { id height previous timestamp } } }",
            id=tx.id,
        ),
    )
    node = full["data"]["transaction"]
    assert node["fee"] == {"winston": "0", "ar": "0"} and node["quantity"] == {"ar": "0"}
    assert node["block"]["height"] == tx.height and len(node["block"]["id"]) == 64


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("{ transactions { edges { node { id nope } } } }", 400, "GRAPHQL_VALIDATION_FAILED"),
        ("{ transactions(colour: 1) { edges { node { id } } } }", 400, "GRAPHQL_VALIDATION_FAILED"),
        ("{ transactions { edges { node { owner } } } }", 400, "GRAPHQL_VALIDATION_FAILED"),
        ("{ transactions(sort: SIDEWAYS) { edges { cursor } } }", 400, "GRAPHQL_VALIDATION_FAILED"),
        ('{ transactions(first: "ten") { edges { cursor } } }', 400, "GRAPHQL_VALIDATION_FAILED"),
        (
            '{ transactions(tags: [{name: "a", values: ["b"], op: NEQ}]) { edges { cursor } } }',
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ("{ transactions(first: 3 { edges { cursor } } }", 400, "GRAPHQL_PARSE_FAILED"),
        ("mutation { transactions { edges { cursor } } }", 400, "GRAPHQL_VALIDATION_FAILED"),
        ('{ transactions(after: "bm90IGEgY3Vyc29y") { edges { cursor } } }', 200, "INTERNAL_SERVER_ERROR"),
    ],
)
def test_graphql_errors_like_apollo(gw: FakeGateway, query: str, status: int, code: str) -> None:
    got_status, body = gql(gw, query)
    assert got_status == status
    assert body["errors"][0]["extensions"]["code"] == code
    assert ("data" in body) == (status == 200)


# --------------------------------------------------------------------------------------
# (4) pending transactions
# --------------------------------------------------------------------------------------


def test_pending_tx_is_202_and_stops_both_clients(
    ritual_py: str, infernet_py: str, gw: FakeGateway, tmp_path: Path
) -> None:
    repo = gw.seed_ritual_repo(gw.wallet("p"), "p", {"a.bin": b"abc"}, confirmations=None)
    file_id = repo.files["a.bin"].txid
    assert http(gw, "GET", f"/tx/{file_id}")[::2] == (202, b"Pending")
    assert http(gw, "GET", f"/tx/{file_id}/status")[::2] == (202, b"Pending")
    assert http(gw, "GET", f"/tx/{file_id}/data_size")[::2] == (202, b"Pending")
    assert http(gw, "GET", f"/tx/{file_id}/data.")[0] == 404  # the node's not-found page, even pending
    assert http(gw, "GET", f"/tx/{file_id}/offset")[::2] == (404, b"")
    assert http(gw, "GET", f"/{file_id}")[0] == 404
    for python, script in ((ritual_py, DOWNLOAD_020), (infernet_py, DOWNLOAD_011)):
        out = client(python, gw, tmp_path, script, repo=repo.repo_id, dest=str(tmp_path / "d"))
        assert out["download"]["error"] == "NotFinalizedException"
    gw.mine([repo.manifest_id])  # manifest mined, file still pending
    assert http(gw, "GET", f"/tx/{repo.manifest_id}/status")[0] == 200
    gw.clear_log()
    out = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=str(tmp_path / "d"))
    assert out["download"]["error"] == "FileNotReadyException"
    assert gw.count(route="tx", txid=file_id, status=202) == 15  # check_ready 3x inside a 5x retry
    out = client(infernet_py, gw, tmp_path, DOWNLOAD_011, repo=repo.repo_id, dest=str(tmp_path / "e"))
    assert out["download"]["error"] == "FileNotReadyException"
    gw.mine()
    status = json.loads(http(gw, "GET", f"/tx/{file_id}/status")[2])
    assert status["number_of_confirmations"] == 1
    assert status["block_height"] == gw.tx(file_id).height  # type: ignore[union-attr]
    out = client(infernet_py, gw, tmp_path, DOWNLOAD_011, repo=repo.repo_id, dest=str(tmp_path / "e"))
    assert out["download"] == {"ok": {"a.bin": sha(b"abc")}}


# --------------------------------------------------------------------------------------
# (5) a slow first byte sends ritual-arweave 0.2.0 to the offset/chunk fallback
# --------------------------------------------------------------------------------------


def test_slow_first_byte_makes_ritual_020_fall_back(ritual_py: str, gw: FakeGateway, tmp_path: Path) -> None:
    files = {"big.bin": Content("slow-big", 10_500_000), "mid.bin": Content("slow-mid", 1_000_000)}
    repo = gw.seed_ritual_repo(gw.wallet("slow"), "slow", files, max_upload_size=20 * MiB)
    big, mid = repo.files["big.bin"].txid, repo.files["mid.bin"].txid
    slow = [gw.fault(route="data", txid=t, latency=4.0) for t in (big, mid)]  # client read timeout: 3 s
    out = client(ritual_py, gw, tmp_path, DOWNLOAD_020, repo=repo.repo_id, dest=str(tmp_path / "d"))
    assert out["download"] == {"ok": {p: c.sha256 for p, c in files.items()}}
    assert all(f.hits == 6 for f in slow)  # one try + urllib3's 5 retries, each abandoned at 3 s
    # >= 1e7 bytes: /tx/{id}/offset, then /chunk from offset - size + 1 upwards
    tail = [r for r in gw.requests if r.txid == big and r.route in ("tx_offset", "chunk")]
    assert tail[0].route == "tx_offset" and all(r.route == "chunk" for r in tail[1:])
    offset = json.loads(http(gw, "GET", f"/tx/{big}/offset")[2])
    start = int(offset["offset"]) - int(offset["size"]) + 1
    asked = [int(r.path.rsplit("/", 1)[1]) for r in tail[1:]]
    assert asked == list(range(start, start + 10_500_000, 256 * 1024))
    assert all(r.headers.get("x-packing") == "unpacked" for r in tail[1:])
    # < 1e7 bytes: /tx/{id}/offset, then the node's /tx/{id}/data.
    assert [r.route for r in gw.requests if r.txid == mid][-2:] == ["tx_offset", "tx_data_raw"]


# --------------------------------------------------------------------------------------
# (6) the ar.io data routes: ranges, digests, caching, manifests
# --------------------------------------------------------------------------------------


def test_data_ranges_and_errors(gw: FakeGateway) -> None:
    body = Content("ranged", 1000)
    tx = gw.add_tx(gw.wallet("r"), {"Content-Type": "image/png"}, body)
    status, headers, got = http(gw, "GET", f"/{tx.id}")
    assert (status, got) == (200, body.read())
    assert headers["Content-Type"] == "image/png" and headers["Content-Length"] == "1000"
    assert headers["Accept-Ranges"] == "bytes" and headers["X-AR-IO-Data-Id"] == tx.id
    status, headers, got = http(gw, "GET", f"/{tx.id}", {"Range": "bytes=10-19"})
    assert (status, headers["Content-Range"], got) == (206, "bytes 10-19/1000", body.read(10, 20))
    status, headers, got = http(gw, "GET", f"/{tx.id}", {"Range": "bytes=-5"})
    assert (status, headers["Content-Range"], got) == (206, "bytes 995-999/1000", body.read(995))
    status, headers, got = http(gw, "GET", f"/{tx.id}", {"Range": "bytes=990-"})
    assert (status, got) == (206, body.read(990))
    for bad in ("bytes=1000-", "bytes=5-2", "bytes=-2000", "items=0-1"):  # range-parser: -1 / not bytes
        status, headers, got = http(gw, "GET", f"/{tx.id}", {"Range": bad})
        assert (status, headers["Content-Range"], got) == (416, "bytes */1000", b"Range not satisfiable"), bad
    status, _, got = http(gw, "GET", f"/{tx.id}", {"Range": "0-5"})
    assert (status, got) == (400, b"Malformed 'range' header")
    status, headers, got = http(gw, "GET", f"/{tx.id}", {"Range": "bytes=0-1,998-999"})
    assert status == 206 and headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    boundary = headers["Content-Type"].split("=", 1)[1]
    want = (
        f"--{boundary}\r\nContent-Type: image/png\r\nContent-Range: bytes 0-1/1000\r\n\r\n".encode() + body.read(0, 2)
        + f"\r\n--{boundary}\r\nContent-Type: image/png\r\nContent-Range: bytes 998-999/1000\r\n\r\n".encode()
        + body.read(998) + f"\r\n--{boundary}--\r\n".encode()
    )  # fmt: skip
    assert got == want and headers["Content-Length"] == str(len(want))
    assert http(gw, "GET", "/" + "A" * 42 + "B")[::2] == (400, f"Invalid ID: {'A' * 42}B".encode())
    status, headers, got = http(gw, "GET", "/" + "A" * 43)
    assert (status, got, headers["Cache-Control"]) == (404, b"Not found", "public, max-age=60, immutable")


def test_digest_headers_only_on_head_or_cached(gw: FakeGateway) -> None:
    data = Content("digest", 5000)
    digest = b64url_encode(bytes.fromhex(data.sha256))
    tx = gw.add_tx(gw.wallet("d"), {}, data)
    status, headers, _ = http(gw, "HEAD", f"/{tx.id}")
    assert status == 200 and headers["ETag"] == f'"{digest}"' and headers["X-AR-IO-Digest"] == digest
    assert headers["Content-Digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(data.sha256)).decode()}:"
    assert headers["Content-Length"] == "5000" and headers["Content-Type"] == "application/octet-stream"
    status, headers, _ = http(gw, "GET", f"/{tx.id}", {"Range": "bytes=0-9"})
    assert status == 206 and "ETag" not in headers and headers["X-Cache"] == "MISS"  # a range does not cache
    status, headers, _ = http(gw, "GET", f"/{tx.id}")  # the first full GET: a MISS, no digest
    assert status == 200 and "ETag" not in headers and "X-AR-IO-Digest" not in headers and headers["X-Cache"] == "MISS"
    assert headers["Cache-Control"] == "public, max-age=2592000, immutable" and headers["X-AR-IO-Stable"] == "true"
    status, headers, _ = http(gw, "GET", f"/{tx.id}")  # now served from the gateway's cache
    assert headers["X-Cache"] == "HIT" and headers["ETag"] == f'"{digest}"' and headers["X-AR-IO-Verified"] == "true"
    status, headers, got = http(gw, "GET", f"/{tx.id}", {"If-None-Match": f'"{digest}"'})
    assert (status, got) == (304, b"") and "Content-Length" not in headers
    with FakeGateway(digests_on_head=False, cache_on_read=False) as plain:
        tx = plain.add_tx(plain.wallet("d"), {}, data, confirmations=1)
        for method in ("HEAD", "GET", "GET"):
            status, headers, _ = http(plain, method, f"/{tx.id}")
            assert status == 200 and "ETag" not in headers
        assert headers["Cache-Control"] == "public, max-age=43200" and headers["X-AR-IO-Stable"] == "false"
        tx.cached = True
        assert http(plain, "GET", f"/{tx.id}")[1]["ETag"] == f'"{digest}"'
    with FakeGateway(cache_all=True, trusted=False) as cached:
        tx = cached.add_tx(cached.wallet("d"), {}, data, confirmations=1)
        headers = http(cached, "GET", f"/{tx.id}")[1]
        assert headers["ETag"] == f'"{digest}"' and headers["Cache-Control"] == "public, max-age=7200"


def test_manifest_resolution(gw: FakeGateway) -> None:
    owner = gw.wallet("m")
    page = gw.add_tx(owner, {"Content-Type": "text/html"}, b"<h1>index</h1>")
    other = gw.add_tx(owner, {"Content-Type": "text/plain"}, b"other")
    paths = {"index.html": {"id": page.id}, "docs/a.txt": {"id": other.id}}
    with_index = gw.add_tx(
        owner,
        {"Content-Type": MANIFEST_TYPE},
        json.dumps({"manifest": "arweave/paths", "version": "0.1.0", "index": {"path": "index.html"}, "paths": paths}),
    )
    no_index = gw.add_tx(
        owner,
        {"Content-Type": MANIFEST_TYPE},
        json.dumps({"manifest": "arweave/paths", "version": "0.1.0", "paths": paths}),
    )
    status, headers, _ = http(gw, "GET", f"/{with_index.id}?x=1")
    assert (status, headers["Location"]) == (301, f"/{with_index.id}/?x=1")
    status, headers, got = http(gw, "GET", f"/{with_index.id}/")
    assert (status, got, headers["X-AR-IO-Data-Id"], headers["Content-Type"]) == (
        200,
        b"<h1>index</h1>",
        page.id,
        "text/html",
    )
    status, headers, got = http(gw, "GET", f"/{no_index.id}/docs/a.txt")
    assert (status, got, headers["X-AR-IO-Data-Id"]) == (200, b"other", other.id)
    assert http(gw, "GET", f"/{no_index.id}/docs/a.txt/")[2] == b"other"  # trailing slash ignored
    assert http(gw, "GET", f"/{no_index.id}")[0] == 404  # a Ritual repo manifest: no index
    assert http(gw, "GET", f"/{no_index.id}/missing")[0] == 404
    status, headers, got = http(gw, "GET", f"/raw/{no_index.id}")
    assert status == 200 and json.loads(got)["paths"] == paths and headers["Content-Type"] == MANIFEST_TYPE
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert http(gw, "GET", f"/{page.id}/ignored/path")[2] == b"<h1>index</h1>"  # not a manifest
    v2 = gw.add_tx(
        owner,
        {"Content-Type": MANIFEST_TYPE},
        json.dumps({"manifest": "arweave/paths", "version": "0.2.0", "fallback": {"id": other.id}, "paths": paths}),
    )
    assert http(gw, "GET", f"/{v2.id}/nope")[2] == b"other"


# --------------------------------------------------------------------------------------
# node routes
# --------------------------------------------------------------------------------------


def test_node_tx_routes(gw: FakeGateway) -> None:
    data = Content("node", 300_000)
    tx = gw.add_tx(gw.wallet("n"), [("Content-Type", "application/json"), ("Name", "ü")], data)
    status, _, body = http(gw, "GET", f"/tx/{tx.id}")
    header = json.loads(body)
    assert status == 200 and header["format"] == 2 and header["id"] == tx.id and header["data"] == ""
    assert header["data_size"] == "300000" and header["data_root"] == tx.data_root and header["owner"] == tx.owner
    assert [(b64url_decode(t["name"]), b64url_decode(t["value"])) for t in header["tags"]] == [
        (b"Content-Type", b"application/json"), (b"Name", "ü".encode())]  # fmt: skip
    assert json.loads(http(gw, "GET", f"/tx/{tx.id}/tags")[2]) == header["tags"]
    assert http(gw, "GET", f"/tx/{tx.id}/data_size")[::2] == (200, b"300000")
    assert http(gw, "GET", f"/tx/{tx.id}/data_root")[2] == tx.data_root.encode()
    assert http(gw, "GET", f"/tx/{tx.id}/colour")[::2] == (400, b'{"error":"invalid_field"}')
    assert b64url_decode(http(gw, "GET", f"/tx/{tx.id}/data")[2]) == data.read()
    status, headers, body = http(gw, "GET", f"/tx/{tx.id}/data.")
    assert (status, headers["content-type"], body) == (200, "application/json", data.read())
    assert http(gw, "GET", f"/tx/{'A' * 43}")[::2] == (404, b"Not Found.")
    assert http(gw, "GET", "/tx/not*base64")[::2] == (400, b"Invalid hash.")
    untyped = gw.add_tx(gw.wallet("n"), [], b"plain")
    assert http(gw, "GET", f"/tx/{untyped.id}/data.txt")[1]["content-type"] == "text/html"
    huge = gw.add_tx(gw.wallet("n"), [], Content("huge", 12 * MiB + 1))
    for path in (f"/tx/{huge.id}/data", f"/tx/{huge.id}/data."):
        assert http(gw, "GET", path)[::2] == (400, b'{"error":"tx_data_too_big"}')
    empty = gw.add_tx(gw.wallet("n"), [], b"")
    status, headers, body = http(gw, "GET", f"/tx/{empty.id}/data.")
    assert (status, headers["Content-Length"], body) == (200, "0", b"")  # what makes ar.Peer raise
    status, headers, body = http(gw, "GET", f"/{empty.id}")
    assert (status, body) == (200, b"") and "Content-Length" not in headers  # ar.io streams it chunked
    gw.drop(untyped.id)
    assert http(gw, "GET", f"/tx/{untyped.id}")[::2] == (410, b"tx_dropped")
    gw.block(tx.id)
    assert http(gw, "GET", f"/{tx.id}")[0] == 451


def test_offsets_and_chunks_rebuild_the_data(gw: FakeGateway) -> None:
    data = Content("chunked", 3 * 256 * 1024 + 77)
    first = gw.add_tx(gw.wallet("c"), [], b"before")
    tx = gw.add_tx(gw.wallet("c"), [], data)
    offset = json.loads(http(gw, "GET", f"/tx/{tx.id}/offset")[2])
    assert offset["size"] == str(data.size) and isinstance(offset["offset"], str)
    end, size = int(offset["offset"]), int(offset["size"])
    assert end - size >= int(json.loads(http(gw, "GET", f"/tx/{first.id}/offset")[2])["offset"])
    pos, parts = end - size + 1, []
    while pos <= end:
        status, headers, body = http(gw, "GET", f"/chunk/{pos}", {"x-packing": "unpacked"})
        assert status == 200
        chunk = json.loads(body)
        assert set(chunk) == {"chunk", "data_path", "tx_path", "packing"} and chunk["packing"] == "unpacked"
        parts.append(b64url_decode(chunk["chunk"]))
        assert int(headers["arweave-absolute-end-offset"]) == pos + len(parts[-1]) - 1
        pos += len(parts[-1])
    assert b"".join(parts) == data.read() and [len(p) for p in parts] == [262144, 262144, 262144, 77]
    assert http(gw, "GET", f"/chunk/{end - 5}")[0] == 200  # any offset inside a chunk finds it
    assert http(gw, "GET", f"/chunk/{end + 1}")[::2] == (404, b"")
    assert http(gw, "GET", f"/chunk/{end}", {"x-packing": "spora_2_6_x"})[::2] == (404, b"")
    assert http(gw, "GET", "/chunk/abc")[::2] == (400, b'{"error":"invalid_offset"}')
    assert http(gw, "GET", f"/tx/{'B' * 43}/offset")[::2] == (404, b"")
    assert gw.tx_bytes_sent[tx.id] > data.size  # base64url JSON chunks


def test_anchor_price_and_balance(gw: FakeGateway) -> None:
    anchor = http(gw, "GET", "/tx_anchor")[2].decode()
    assert len(b64url_decode(anchor)) == 48
    small, big = (int(http(gw, "GET", f"/price/{n}")[2]) for n in (1000, 10 * MiB))
    assert 0 < small < big
    assert int(http(gw, "GET", f"/price/1000/{'C' * 43}")[2]) > small  # new-wallet fee
    assert http(gw, "GET", "/price/lots")[0] == 400
    address = gw.wallet("rich").address
    assert http(gw, "GET", f"/wallet/{address}/balance")[2] == str(10**15).encode()
    gw.set_balance(address, 1234)
    assert http(gw, "GET", f"/wallet/{address}/balance")[::2] == (200, b"1234")


def test_post_tx_validation(gw: FakeGateway) -> None:
    sig = os.urandom(512)
    tx: dict[str, Any] = {
        "format": 2, "id": b64url_encode(hashlib.sha256(sig).digest()), "last_tx": gw.weave.anchor(),
        "owner": gw.wallet("poster").owner, "tags": [], "target": "", "quantity": "0", "data": b64url_encode(b"hi"),
        "data_size": "2", "data_root": b64url_encode(data_root(Content.from_bytes(b"hi"), chunk_bounds(2))),
        "reward": "100", "signature": b64url_encode(sig),
    }  # fmt: skip

    def post(obj: dict[str, Any]) -> tuple[int, bytes]:
        status, _, body = http(gw, "POST", "/tx", {"Content-Type": "application/json"}, json.dumps(obj).encode())
        return status, body

    assert post({**tx, "id": "A" * 43}) == (400, b"Invalid hash.")
    assert post({**tx, "last_tx": "Z" * 64}) == (400, b"Invalid anchor (last_tx).")
    assert post({**tx, "data_root": "A" * 43}) == (400, b"Transaction verification failed.")
    gw.set_balance(gw.wallet("poster").address, 99)
    assert post(tx) == (400, b"Transaction verification failed.")
    gw.set_balance(gw.wallet("poster").address, 100)
    assert post(tx) == (200, b"OK")
    assert post(tx) == (208, b"Transaction already processed.")
    assert http(gw, "GET", f"/tx/{tx['id']}")[0] == 202
    assert http(gw, "GET", f"/wallet/{gw.wallet('poster').address}/balance")[2] == b"0"
    gw.mine()
    assert http(gw, "GET", f"/{tx['id']}")[2] == b"hi"


def test_chunked_upload_by_hand_with_auto_mine() -> None:
    data = Content("by-hand", 300_000)
    root = b64url_encode(data_root(data, chunk_bounds(data.size)))
    with FakeGateway(auto_mine=True) as gw:
        sig = os.urandom(512)
        header = {
            "format": 2, "id": b64url_encode(hashlib.sha256(sig).digest()), "last_tx": gw.weave.anchor(),
            "owner": gw.wallet("hand").owner, "tags": [], "target": "", "quantity": "0", "data": "",
            "data_size": str(data.size), "data_root": root, "reward": "0", "signature": b64url_encode(sig),
        }  # fmt: skip
        txid = header["id"]
        status, _, body = http(gw, "POST", "/tx", {"Content-Type": "application/json"}, json.dumps(header).encode())
        assert (status, body) == (200, b"OK") and http(gw, "GET", f"/tx/{txid}")[0] == 200  # auto-mined
        assert http(gw, "GET", f"/{txid}")[0] == 404  # no data yet
        assert json.loads(http(gw, "GET", f"/tx/{txid}/offset")[2])["size"] == str(data.size)

        def chunk(start: int, end: int, payload: bytes | None = None, data_root_: str = root) -> tuple[int, bytes]:
            part = data.read(start, end) if payload is None else payload
            obj = {"data_root": data_root_, "data_size": str(data.size), "data_path": "", "offset": str(end - 1)}
            body = json.dumps({**obj, "chunk": b64url_encode(part)}).encode()
            status, _, reply = http(gw, "POST", "/chunk", {"Content-Type": "application/json"}, body)
            return status, reply

        assert chunk(0, 262144, data_root_="A" * 43) == (400, b'{"error":"data_root_not_found"}')
        assert chunk(0, 262144) == (200, b"")
        assert http(gw, "GET", f"/{txid}")[0] == 404  # still incomplete
        assert chunk(262144, data.size, b"x" * (data.size - 262144)) == (400, b'{"error":"invalid_proof"}')
        assert chunk(262144, data.size) == (200, b"")  # the good first chunk was kept
        assert http(gw, "GET", f"/{txid}")[2] == data.read()


# --------------------------------------------------------------------------------------
# fault switches, the request log, gateway down
# --------------------------------------------------------------------------------------


def test_faults_and_log(gw: FakeGateway) -> None:
    data = Content("faulty", 100_000)
    tx = gw.add_tx(gw.wallet("f"), [], data)
    for code in (404, 410, 451, 500, 502, 503, 504):
        fault = gw.fault(route="data", txid=tx.id, status=code, times=1)
        assert http(gw, "GET", f"/{tx.id}")[0] == code and fault.hits == 1
    assert http(gw, "GET", f"/tx/{tx.id}")[0] == 200  # scoped to the data route
    gw.fault(route="data", txid=tx.id, drop_after=1000, times=1)
    with pytest.raises(IncompleteRead):
        http(gw, "GET", f"/{tx.id}")
    assert gw.find(route="data", txid=tx.id)[-1].aborted
    gw.fault(route="data", txid=tx.id, corrupt=True, times=1)
    body = http(gw, "GET", f"/{tx.id}")[2]
    assert len(body) == data.size and body != data.read()
    gw.fault(path_contains="/graphql", status=503, times=1)
    query = json.dumps({"query": "{ transactions { edges { cursor } } }"}).encode()
    assert http(gw, "POST", "/graphql", {"Content-Type": "application/json"}, query)[::2] == (
        503,
        b"no healthy upstream",
    )
    record = gw.find(route="graphql")[-1]
    assert record.origin == "gateway" and record.gql_query == "{ transactions { edges { cursor } } }"
    before = gw.bytes_sent
    assert http(gw, "GET", f"/{tx.id}")[2] == data.read()
    assert gw.bytes_sent - before == data.size and gw.requests[-1].completed
    gw.pause()  # gateway down: connection refused
    with pytest.raises(ConnectionRefusedError):
        http(gw, "GET", f"/{tx.id}")
    gw.resume()
    assert http(gw, "GET", f"/{tx.id}")[0] == 200
    gw.clear_log()
    assert gw.requests == [] and gw.bytes_sent == 0
