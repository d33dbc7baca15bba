"""Faithfulness tests for the fake Hub: the REAL ``huggingface_hub`` client driven at it.

Client calls run in subprocesses because ``HF_ENDPOINT`` is read when
``huggingface_hub`` is imported; each subprocess gets a fresh ``HF_HOME``, telemetry
off and (except in the Xet test) ``HF_HUB_DISABLE_XET=1``: the fake advertises Xet
like the live Hub, and a stock client with ``hf_xet`` would otherwise try Xet
against it. Wire-level details the client hides (exact headers, gzip, 206/416,
signatures, faults) are checked with ``http.client``, which follows no redirects
and decodes nothing. No test sleeps to synchronise or asserts on timing.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.fakes.samples import CONFIG, GOOD, OTHER, TINY, sha
from tests.fixtures import fresh_hub  # noqa: F401  (fixture)
from tests.hfclients.runner import run_script
from tests.httpcalls import raw

MiB = 1 << 20
BIG = Content("big-model", 12 * MiB + 5)  # > one 10 MiB client chunk: exercises resume


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(page_size=3) as fake:
        fake.add_repo("org/tiny", TINY, tags=("v1.0",))
        fake.add_pr("org/tiny", {"config.json": b'{"pr": 1}'})
        fake.add_repo("org/big", {"big.bin": BIG})
        fake.add_repo(
            "org/gated", {"config.json": b"{}", "w.bin": Content("g", 1000)}, gated="manual", allowed_tokens={GOOD}
        )
        fake.add_repo("org/private", {"config.json": b"{}"}, private=True, allowed_tokens={GOOD})
        fake.add_repo("org/ds", {"data/train.csv": b"a,b\n1,2\n"}, repo_type="dataset")
        fake.add_repo("org/sp", {"app.py": b"print('hi')\n"}, repo_type="space")
        yield fake


def run_client(
    hub: FakeHub,
    home: Path,
    script: str,
    *,
    xet: bool = False,
    token: str | None = None,
    args: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``script`` with a stock huggingface_hub pointed at the fake; return its OUT dict."""
    extra_env = {} if xet else {"HF_HUB_DISABLE_XET": "1"}
    return run_script(hub.url, home, script, token=token, args=args, extra_env=extra_env, timeout=120)


# --------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------


def test_content_ranges_and_identities() -> None:
    c = Content("seed", 20 * MiB + 3)
    whole = c.read()
    assert len(whole) == c.size
    for start, end in [(0, 1), (5, 70000), (8 * MiB - 3, 8 * MiB + 5), (c.size - 10, c.size + 99)]:
        assert c.read(start, end) == whole[start:end]
    assert b"".join(c.iter_range(1000, 3 * MiB + 7, block=65536)) == whole[1000 : 3 * MiB + 7]
    assert c.sha256 == sha(whole)
    assert c.git_sha1 == hashlib.sha1(b"blob %d\0" % len(whole) + whole).hexdigest()
    literal = Content.from_bytes(whole)
    assert (literal.sha256, literal.git_sha1, literal.blake3) == (c.sha256, c.git_sha1, c.blake3)
    assert Content("seed", 10).read() == whole[:10] and Content("other", 10).read() != whole[:10]
    # the well-known git id of an empty blob
    assert Content.from_bytes(b"").git_sha1 == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


# --------------------------------------------------------------------------------------
# real client against the fake
# --------------------------------------------------------------------------------------


def test_hf_hub_download_non_lfs_follows_307_chain(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import hf_hub_download
        for i in range(2):
            p = hf_hub_download("org/tiny", "config.json")
        OUT["data"] = open(p, "rb").read().decode()
        OUT["blob"] = os.path.basename(os.path.realpath(p))
        OUT["ref"] = open(os.path.join(os.environ["HF_HOME"], "hub/models--org--tiny/refs/main")).read()
        p = hf_hub_download("org/tiny", "with space \u00e9.txt")
        OUT["unicode"] = open(p, "rb").read().decode()
    """,
    )
    entry = hub.file("org/tiny", "config.json")
    assert out["data"].encode() == CONFIG
    assert out["blob"] == entry.oid  # git blob sha1 of a non-LFS file
    assert out["ref"] == hub.head("org/tiny")
    assert out["unicode"] == "unicode \u2713\n"
    heads = [r for r in hub.find(method="HEAD") if r.path == "/org/tiny/resolve/main/config.json"]
    assert [r.status for r in heads] == [307, 307]
    assert hub.count("/api/resolve-cache/models/org/tiny/", method="HEAD", status=200) >= 2
    assert hub.count("config.json", method="GET", origin="hub") == 1  # second call: pointer exists
    assert hub.count(origin="cdn") == 0


def test_hf_hub_download_lfs_goes_to_cdn_without_token(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import hf_hub_download
        p = hf_hub_download("org/tiny", "model.safetensors")
        OUT["sha"] = sha256(p)
        OUT["blob"] = os.path.basename(os.path.realpath(p))
    """,
        token=GOOD,
    )
    model = TINY["model.safetensors"]
    assert isinstance(model, Content)
    assert out["sha"] == out["blob"] == model.sha256
    head = hub.find("/org/tiny/resolve/main/model.safetensors", method="HEAD")
    assert [r.status for r in head] == [302] and head[0].authorization == f"Bearer {GOOD}"
    cdn = hub.find(origin="cdn")
    assert [(r.method, r.status) for r in cdn] == [("GET", 200)]
    assert all(r.authorization is None for r in cdn)  # cross-origin: the client dropped it
    assert model.size <= hub.bytes_sent["cdn"] <= 1.05 * model.size


def test_snapshot_download_listing_and_metadata(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import HfApi, snapshot_download
        api = HfApi()
        root = snapshot_download("org/tiny")
        OUT["files"] = {os.path.relpath(os.path.join(d, f), root): sha256(os.path.join(d, f))
                        for d, _, fs in os.walk(root) for f in fs}
        OUT["listed"] = sorted(api.list_repo_files("org/tiny"))
        info = api.model_info("org/tiny", files_metadata=True)
        sib = {s.rfilename: [s.size, s.blob_id, s.lfs.sha256 if s.lfs else None] for s in info.siblings}
        OUT["info"] = {"sha": info.sha, "gated": info.gated, "sib": sib}
        got = api.get_paths_info("org/tiny", ["config.json", "sub", "model.safetensors", "missing.txt"])
        OUT["paths"] = [[type(e).__name__, e.path, getattr(e, "lfs", None) and e.lfs.sha256] for e in got]
        OUT["tree_sub"] = sorted(e.path for e in api.list_repo_tree("org/tiny", path_in_repo="sub"))
        refs = api.list_repo_refs("org/tiny", include_pull_requests=True)
        OUT["refs"] = {"branches": [b.name for b in refs.branches], "tags": [t.name for t in refs.tags],
                       "prs": [p.ref for p in refs.pull_requests]}
        OUT["commits"] = [c.title for c in api.list_repo_commits("org/tiny")]
    """,
    )
    expected = {p: sha(c.read() if isinstance(c, Content) else c) for p, c in TINY.items()}
    files = {p: s for p, s in out["files"].items() if p != ".gitattributes"}
    assert files == expected and ".gitattributes" in out["files"]
    assert out["listed"] == sorted([*TINY, ".gitattributes"])
    trees = hub.find("/api/models/org/tiny/tree/", method="GET")
    assert len(trees) >= 2 and any("cursor=" in r.query for r in trees)  # page_size=3 -> pages
    info = out["info"]
    assert info["sha"] == hub.head("org/tiny") and info["gated"] is False
    model = hub.file("org/tiny", "model.safetensors")
    assert info["sib"]["model.safetensors"] == [model.size, model.oid, model.sha256]
    assert info["sib"]["config.json"] == [len(CONFIG), hub.file("org/tiny", "config.json").oid, None]
    assert out["paths"] == [
        ["RepoFile", "config.json", None],
        ["RepoFolder", "sub", None],
        ["RepoFile", "model.safetensors", model.sha256],
    ]
    assert out["tree_sub"] == ["sub/c.txt", "sub/dir"]
    assert out["refs"] == {"branches": ["main"], "tags": ["v1.0"], "prs": ["refs/pr/1"]}
    assert out["commits"] == ["Upload folder using huggingface_hub", "initial commit"]


def test_revisions_repo_types_and_moving_branches(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo("org/moving", {"f.txt": b"one"})
    old = hub.head("org/moving")
    script = """
        from huggingface_hub import hf_hub_download as dl
        read = lambda p: open(p, "rb").read().decode()
        OUT["tag"] = read(dl("org/tiny", "config.json", revision="v1.0"))
        OUT["pr"] = read(dl("org/tiny", "config.json", revision="refs/pr/1"))
        OUT["ds"] = read(dl("org/ds", "data/train.csv", repo_type="dataset"))
        OUT["space"] = read(dl("org/sp", "app.py", repo_type="space"))
        OUT["main"] = read(dl("org/moving", "f.txt"))
        OUT["pinned"] = read(dl("org/moving", "f.txt", revision=ARGS["old"]))
    """
    first = run_client(hub, tmp_path / "a", script, args={"old": old})
    assert first["tag"].encode() == CONFIG and first["pr"] == '{"pr": 1}'
    assert (first["ds"], first["space"], first["main"], first["pinned"]) == (
        "a,b\n1,2\n",
        "print('hi')\n",
        "one",
        "one",
    )
    assert [r.status for r in hub.find(method="HEAD") if r.path == "/org/tiny/resolve/refs%2Fpr%2F1/config.json"] == [
        307
    ]
    assert hub.count(f"/org/moving/resolve/{old}/f.txt") == 0  # cached commit: zero requests
    hub.commit("org/moving", {"f.txt": b"two"})
    second = run_client(hub, tmp_path / "b", script, args={"old": old})
    assert (second["main"], second["pinned"]) == ("two", "one")
    pinned = [r for r in hub.find(method="HEAD") if r.path == f"/org/moving/resolve/{old}/f.txt"]
    assert [r.status for r in pinned] == [200]  # commit revision: served directly, no 307


def test_error_classes(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import HfApi, hf_hub_download as dl
        api = HfApi()
        attempt("missing_file", lambda: dl("org/tiny", "nope.txt"))
        OUT["no_exist"] = os.path.exists(os.path.join(os.environ["HF_HOME"], "hub/models--org--tiny/.no_exist",
                                                      ARGS["head"], "nope.txt"))
        attempt("bad_rev", lambda: dl("org/tiny", "config.json", revision="no-such-branch"))
        attempt("unknown_anon_dl", lambda: dl("org/unknown", "config.json", token=False))
        attempt("unknown_anon_api", lambda: api.model_info("org/unknown", token=False))
        attempt("unknown_token", lambda: dl("org/unknown", "config.json", token=ARGS["other"]))
        attempt("private_other", lambda: api.model_info("org/private", token=ARGS["other"]))
        attempt("private_good", lambda: api.model_info("org/private", token=ARGS["good"]).id)
        attempt("gated_anon", lambda: dl("org/gated", "w.bin", token=False))
        attempt("gated_other", lambda: dl("org/gated", "w.bin", token=ARGS["other"]))
        attempt("gated_good", lambda: sha256(dl("org/gated", "w.bin", token=ARGS["good"])))
        attempt("gated_info_anon", lambda: api.model_info("org/gated", token=False).gated)
        attempt("repo_exists_unknown", lambda: api.repo_exists("org/unknown", token=ARGS["other"]))
        attempt("file_exists", lambda: [api.file_exists("org/tiny", "config.json"), api.file_exists("org/tiny", "x")])
    """,
        args={"head": hub.head("org/tiny"), "good": GOOD, "other": OTHER},
    )
    assert out["missing_file"]["error"] == "RemoteEntryNotFoundError" and out["no_exist"]
    assert out["bad_rev"]["error"] == "RevisionNotFoundError"
    # Observed: the bare anti-enumeration 401 is NOT mapped to RepositoryNotFoundError on
    # http:// endpoints (the client's regex wants https://): a plain HfHubHTTPError 401.
    for name in ("unknown_anon_dl", "unknown_anon_api"):
        assert out[name]["error"] == "HfHubHTTPError" and out[name]["status"] == 401
        assert "RepositoryNotFoundError" not in out[name]["mro"]
    assert out["unknown_token"]["error"] == "RepositoryNotFoundError" and out["unknown_token"]["status"] == 404
    assert out["private_other"]["error"] == "RepositoryNotFoundError"
    assert out["private_good"] == {"ok": "org/private"}
    assert (out["gated_anon"]["error"], out["gated_anon"]["status"]) == ("GatedRepoError", 401)
    assert (out["gated_other"]["error"], out["gated_other"]["status"]) == ("GatedRepoError", 403)
    assert out["gated_good"] == {"ok": Content("g", 1000).sha256}
    assert out["gated_info_anon"] == {"ok": "manual"}
    assert out["repo_exists_unknown"] == {"ok": False}
    assert out["file_exists"] == {"ok": [True, False]}


def test_hffs_range_reads_and_listing(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import HfFileSystem
        fs = HfFileSystem()
        with fs.open("org/tiny/model.safetensors", "rb", block_size=4096) as f:
            f.seek(1000)
            OUT["model"] = f.read(10).hex()
        with fs.open("org/tiny/config.json", "rb", block_size=16) as f:
            f.seek(3)
            OUT["config"] = f.read(5).hex()
        OUT["ls"] = sorted(e["name"] for e in fs.ls("org/tiny", detail=True))
        OUT["glob"] = sorted(fs.glob("org/tiny/sub/**/*.txt"))
        OUT["csv"] = fs.read_text("datasets/org/ds/data/train.csv")
    """,
    )
    model = TINY["model.safetensors"]
    assert isinstance(model, Content)
    assert bytes.fromhex(out["model"]) == model.read(1000, 1010)
    assert bytes.fromhex(out["config"]) == CONFIG[3:8]
    assert "org/tiny/sub" in out["ls"] and "org/tiny/model.safetensors" in out["ls"]
    assert out["glob"] == ["org/tiny/sub/c.txt", "org/tiny/sub/dir/b.txt"]
    assert out["csv"] == "a,b\n1,2\n"
    assert any(r.status == 206 for r in hub.find(origin="cdn"))
    assert all(r.authorization is None for r in hub.find(origin="cdn"))


def test_drop_mid_body_is_resumed_with_range(hub: FakeHub, tmp_path: Path) -> None:
    drop = hub.fault(origin="cdn", method="GET", drop_after=11 * MiB, times=1)
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import hf_hub_download
        OUT["sha"] = sha256(hf_hub_download("org/big", "big.bin"))
    """,
    )
    assert out["sha"] == BIG.sha256 and drop.hits == 1
    gets = hub.find(origin="cdn", method="GET")
    assert [(r.status, r.completed, r.range) for r in gets] == [(200, False, None), (206, True, "bytes=10485760-")]
    assert gets[0].bytes_sent == 11 * MiB


def test_corruption_reaches_a_client_that_trusts_the_origin(hub: FakeHub, tmp_path: Path) -> None:
    hub.fault(origin="cdn", corrupt=True, times=1)
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import hf_hub_download
        p = hf_hub_download("org/tiny", "model.safetensors")
        OUT["sha"], OUT["size"], OUT["blob"] = sha256(p), os.path.getsize(p), os.path.basename(os.path.realpath(p))
    """,
    )
    model = hub.file("org/tiny", "model.safetensors")
    assert out["size"] == model.size and out["blob"] == model.sha256
    assert out["sha"] != model.sha256  # the stock client does not verify what it stores


def test_xet_is_advertised_by_default_and_stock_client_takes_it(hub: FakeHub, tmp_path: Path) -> None:
    status, headers, _ = raw("HEAD", hub.resolve_url("org/tiny", "model.safetensors"))
    entry = hub.file("org/tiny", "model.safetensors")
    assert status == 302 and headers["X-Xet-Hash"] == entry.xet_hash
    assert 'rel="xet-auth"' in headers["Link"] and 'rel="xet-reconstruction-info"' in headers["Link"]
    tree = json.loads(
        raw(
            "GET",
            f"{hub.url}/api/models/org/tiny/tree/main?recursive=true&cursor="
            + "eyJmaWxlX25hbWUiOiAiY29uZmlnLmpzb24ifQ",
        )[2]
    )
    assert next(e for e in tree if e["path"] == "model.safetensors")["xetHash"] == entry.xet_hash
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        meta = get_hf_file_metadata(hf_hub_url("org/tiny", "model.safetensors"))
        OUT["xet"] = meta.xet_file_data is not None
        attempt("download", lambda: hf_hub_download("org/tiny", "model.safetensors"))
    """,
        xet=True,
    )
    assert out["xet"] is True and "error" in out["download"]
    assert hub.count("/xet-read-token/") >= 1  # what a proxy must make impossible
    hub.xet = False
    status, headers, _ = raw("HEAD", hub.resolve_url("org/tiny", "model.safetensors"))
    assert status == 302 and "X-Xet-Hash" not in headers and "Link" not in headers
    body = raw(
        "POST",
        f"{hub.url}/api/models/org/tiny/paths-info/main",
        {"Content-Type": "application/json"},
        json.dumps({"paths": ["model.safetensors"]}).encode(),
    )[2]
    assert "xetHash" not in json.loads(body)[0]


def test_rename_and_legacy_names_redirect(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo("org/before", {"config.json": b'{"renamed": true}'})
    hub.rename("org/before", "org/after")
    hub.alias("legacy", "org/after")
    status, headers, _ = raw("GET", f"{hub.url}/api/models/org/before/revision/main?blobs=true")
    assert (status, headers["Location"]) == (307, "/api/models/org/after/revision/main?blobs=true")
    status, headers, _ = raw("HEAD", f"{hub.url}/legacy/resolve/main/config.json")
    assert (status, headers["Location"]) == (307, "/org/after/resolve/main/config.json")
    status, headers, _ = raw("HEAD", f"{hub.url}/ORG/After/resolve/main/config.json")
    assert (status, headers["Location"]) == (307, "/org/after/resolve/main/config.json")
    out = run_client(
        hub,
        tmp_path,
        """
        from huggingface_hub import HfApi, hf_hub_download
        OUT["data"] = open(hf_hub_download("org/before", "config.json"), "rb").read().decode()
        OUT["id"] = HfApi().model_info("org/before").id
    """,
    )
    assert out == {"data": '{"renamed": true}', "id": "org/after"}


# --------------------------------------------------------------------------------------
# wire-level details
# --------------------------------------------------------------------------------------


def test_resolve_cache_ranges_gzip_and_conditionals(hub: FakeHub) -> None:
    status, headers, _ = raw("HEAD", hub.resolve_url("org/tiny", "config.json"))
    assert status == 307 and headers["Location"].startswith("/api/resolve-cache/models/org/tiny/")
    entry = hub.file("org/tiny", "config.json")
    assert f"etag=%22{entry.oid}%22" in headers["Location"]
    target = hub.url + headers["Location"]
    status, headers, body = raw("HEAD", target, {"Accept-Encoding": "gzip"})
    assert (status, headers["Content-Length"], body) == (200, str(len(CONFIG)), b"")
    assert headers["ETag"] == f'"{entry.oid}"' and "Content-Encoding" not in headers
    status, headers, body = raw("GET", target, {"Accept-Encoding": "gzip, deflate"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == CONFIG
    status, headers, body = raw("GET", target, {"Accept-Encoding": "gzip", "Range": "bytes=2-5"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 2-5/{len(CONFIG)}", CONFIG[2:6])
    assert "Content-Encoding" not in headers
    status, headers, _ = raw("GET", target, {"Range": f"bytes={len(CONFIG)}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(CONFIG)}")
    status, _, body = raw("GET", target, {"Range": "bytes=-4"})
    assert (status, body) == (206, CONFIG[-4:])
    assert raw("GET", target, {"If-None-Match": f'"{entry.oid}"'})[0] == 304
    status, headers, body = raw("GET", hub.resolve_url("org/tiny", "config.json", hub.head("org/tiny")))
    assert (status, body, headers["X-Repo-Commit"]) == (200, CONFIG, hub.head("org/tiny"))


def test_cdn_signatures_ranges_and_auth_recording(hub: FakeHub) -> None:
    _, headers, _ = raw("HEAD", hub.resolve_url("org/tiny", "model.safetensors"))
    model = hub.file("org/tiny", "model.safetensors")
    assert headers["X-Linked-Size"] == str(model.size) and headers["X-Linked-Etag"] == f'"{model.sha256}"'
    assert int(headers["Content-Length"]) < 1000  # the redirect's own small body
    cdn = headers["Location"]
    assert cdn.startswith(hub.cdn_url) and "Signature=" in cdn and "Expires=" in cdn
    status, cdn_headers, body = raw("GET", cdn, {"Range": "bytes=100-199", "Authorization": "Bearer leak"})
    assert (status, body) == (206, model.content.read(100, 200))
    assert cdn_headers["Content-Range"] == f"bytes 100-199/{model.size}"
    assert cdn_headers["ETag"] != f'"{model.sha256}"'  # the CDN's etag is not the sha256
    assert 'filename="model.safetensors";' in cdn_headers["Content-Disposition"]
    assert hub.find(origin="cdn")[-1].authorization == "Bearer leak"  # recorded, ignored
    assert raw("GET", cdn, {"Range": f"bytes={model.size}-"})[0] == 416
    assert raw("GET", cdn.replace("Signature=", "Signature=0"))[0] == 403
    hub.time_shift = 2 * hub.url_ttl
    try:
        status, _, body = raw("GET", cdn)
        assert status == 403 and b"expired" in body
    finally:
        hub.time_shift = 0.0


def test_api_shapes_errors_and_encodings(hub: FakeHub) -> None:
    api = f"{hub.url}/api/models/org/tiny"
    status, headers, body = raw("GET", f"{api}/tree/main/sub%2Fdir?recursive=True&expand=True")
    entries = json.loads(body)
    assert status == 200 and [e["path"] for e in entries] == ["sub/dir/b.txt"]
    assert entries[0]["lastCommit"]["id"] == hub.head("org/tiny")
    status, headers, body = raw("GET", f"{api}/revision/refs%2Fpr%2F1?expand=sha&expand=siblings")
    assert json.loads(body).keys() == {"_id", "id", "sha", "siblings"}
    assert json.loads(body)["sha"] == hub.head("org/tiny", "refs/pr/1")
    form = b"paths=config.json&paths=sub%2Fdir&paths=ghost&expand=false"
    body = raw("POST", f"{api}/paths-info/main", {"Content-Type": "application/x-www-form-urlencoded"}, form)[2]
    assert [(e["type"], e["path"]) for e in json.loads(body)] == [("file", "config.json"), ("directory", "sub/dir")]
    status, headers, body = raw("GET", f"{hub.url}/api/models/org/unknown")
    assert (status, headers["X-Error-Message"], headers.get("X-Error-Code")) == (
        401,
        "Invalid username or password.",
        None,
    )
    status, headers, body = raw("GET", f"{hub.url}/api/models/org/unknown", {"Authorization": f"Bearer {OTHER}"})
    assert (status, headers["X-Error-Code"], json.loads(body)) == (
        404,
        "RepoNotFound",
        {"error": "Repository not found"},
    )
    status, headers, body = raw("HEAD", hub.resolve_url("org/tiny", "ghost.txt"))
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (404, "EntryNotFound", hub.head("org/tiny"))
    assert raw("GET", hub.resolve_url("org/tiny", "ghost.txt"))[2] == b"Entry not found"
    status, headers, _ = raw("GET", f"{api}/tree/nope")
    assert (status, headers["X-Error-Code"], headers["X-Error-Message"]) == (
        404,
        "RevisionNotFound",
        "Invalid rev id: nope",
    )
    assert raw("GET", f"{api}/tree/main/ghost")[1]["X-Error-Code"] == "EntryNotFound"
    assert raw("GET", f"{hub.url}/api/models/org/gated/tree/main")[0] == 200
    assert raw("GET", f"{hub.url}/api/agent-harnesses")[0] == 404
    assert raw("GET", f"{hub.url}/api/whatever/else")[0] == 404
    status, headers, body = raw("GET", api, {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and json.loads(gzip.decompress(body))["id"] == "org/tiny"
    assert raw("GET", api, {"If-None-Match": headers["ETag"]})[0] == 304
    assert "RateLimit" in headers and "RateLimit-Policy" in headers
    hub.warning = "maintenance; read-only for 5 minutes"
    try:
        assert raw("GET", api)[1]["X-HF-Warning"] == hub.warning
    finally:
        hub.warning = None


# --------------------------------------------------------------------------------------
# faults and lifecycle
# --------------------------------------------------------------------------------------


def test_fault_switches_on_the_wire(hub: FakeHub) -> None:
    model = hub.file("org/tiny", "model.safetensors")
    _, headers, _ = raw("HEAD", hub.resolve_url("org/tiny", "model.safetensors"))
    cdn, size = headers["Location"], model.size
    hub.fault(path_contains="config.json", status=503, times=1)
    assert raw("GET", f"{hub.url}/api/models/org/tiny")[0] == 200  # scoped by path
    assert raw("HEAD", hub.resolve_url("org/tiny", "config.json"))[0] == 503
    assert raw("HEAD", hub.resolve_url("org/tiny", "config.json"))[0] == 307  # times=1 used up
    hub.fault(origin="hub", status=429, retry_after=7, times=1)
    status, headers, _ = raw("GET", f"{hub.url}/api/models/org/tiny")
    assert (status, headers["Retry-After"]) == (429, "7")
    hub.fault(origin="cdn", drop_after=1000, times=1)
    with pytest.raises(http.client.IncompleteRead) as dropped:
        raw("GET", cdn)
    assert len(dropped.value.partial) == 1000 and hub.find(origin="cdn")[-1].completed is False
    hub.fault(origin="cdn", wrong_length=-10, times=1)
    with pytest.raises(http.client.IncompleteRead):
        raw("GET", cdn)
    hub.fault(origin="cdn", wrong_length=-10, wrong_length_header=True, times=1)
    status, headers, body = raw("GET", cdn)
    assert (status, headers["Content-Length"], body) == (200, str(size - 10), model.content.read(0, size - 10))
    hub.fault(origin="cdn", wrong_length=5, wrong_length_header=True, times=1)
    assert len(raw("GET", cdn)[2]) == size + 5
    hub.fault(origin="cdn", ignore_range=True, times=1)
    status, headers, body = raw("GET", cdn, {"Range": "bytes=10-19"})
    assert (status, len(body)) == (200, size) and "Content-Range" not in headers
    hub.fault(origin="cdn", corrupt=True, times=1)
    body = raw("GET", cdn, {"Range": "bytes=0-99"})[2]
    assert len(body) == 100 and body != model.content.read(0, 100)
    slow = hub.fault(origin="cdn", slow=4 * MiB, stall=0.05, stall_at=50, latency=0.01, times=1)
    assert raw("GET", cdn, {"Range": "bytes=0-65535"})[2] == model.content.read(0, 65536) and slow.hits == 1


def test_pause_resume_restart_keep_ports(tmp_path: Path) -> None:
    with FakeHub() as fake:
        fake.add_repo("org/x", {"a.txt": b"a"})
        url, cdn = fake.url, fake.cdn_url
        assert url != cdn
        fake.pause()
        with pytest.raises(ConnectionRefusedError):
            raw("GET", f"{url}/api/models/org/x")
        fake.resume()
        assert raw("GET", f"{url}/api/models/org/x")[0] == 200
        fake.restart()
        assert (fake.url, fake.cdn_url) == (url, cdn)
        fake.pause("cdn")
        assert raw("HEAD", fake.resolve_url("org/x", "a.txt"))[0] == 307  # hub still up
        fake.resume("cdn")


def test_async_context_and_large_streamed_file() -> None:
    big = Content("huge", 512 * MiB + 1)

    async def scenario() -> tuple[int, bytes, int]:
        async with FakeHub(xet=False) as fake:
            fake.add_repo("org/huge", {"huge.gguf": big})
            async with aiohttp.ClientSession() as session:
                url = fake.resolve_url("org/huge", "huge.gguf")
                headers = {"Range": f"bytes={big.size - 4096}-"}
                async with session.get(url, headers=headers) as resp:
                    return resp.status, await resp.read(), fake.bytes_sent["cdn"]

    status, tail, sent = asyncio.run(scenario())
    assert (status, tail) == (206, big.read(big.size - 4096, big.size))
    assert sent == 4096  # streamed from Content: only the range was produced
