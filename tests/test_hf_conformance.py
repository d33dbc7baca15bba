"""Conformance of hoard's Hugging Face face with REAL clients (hf_protocol.md §10, §11).

Every client call runs a stock ``huggingface_hub`` (2.x from the project venv, and 0.36.2
from a cached venv) or ``transformers`` in a subprocess with ``HF_ENDPOINT`` = the proxy,
a private ``HF_HOME``, telemetry off and hf_xet installed with Xet NOT disabled. Behind
the proxy is the fake Hub + CDN (``tests/fakes``), which advertises Xet like the live Hub.

What a client sent to the proxy is read from the proxy's own access log and cross-checked
with its ``hoard_http_requests_total`` metric (``Proxy.since``); what the proxy sent
upstream is read from the fake's request log. Error classes: ``test_hf_conformance_errors``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.hub import FakeHub
from tests.fakes.samples import CONFIG, GOOD, TINY, data_of, git_sha1, sha
from tests.fixtures import fresh_hub  # noqa: F401  (fixture)
from tests.hfclients.common import (  # noqa: F401  (fixtures)
    BIG,
    CSV,
    KiB,
    MANY,
    MiB,
    PR_CONFIG,
    Proxy,
    Seen,
    hub,
    proxy,
    raw,
    run_client,
    running_proxy,
    xet_headers,
    xet_keys,
)
from tests.hfclients.runner import hub_python

OLD_HUB = "0.36.2"


def _files_of(repo: dict[str, Any]) -> dict[str, str]:
    return {p: sha(data_of(c)) for p, c in repo.items()}


def _resolve_gets(seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.method == "GET" and "/resolve/" in s.path]


def _assert_nothing_bypassed_the_proxy(hub: FakeHub) -> None:
    """Every request the fake saw came from hoard (its user agent), none from a client."""
    foreign = [(r.origin, r.method, r.target, r.headers.get("user-agent")) for r in hub.requests
               if not r.headers.get("user-agent", "").startswith("hoard/")]
    assert foreign == [], f"clients talked to the upstream directly: {foreign}"


def _assert_no_token_on_cdn(hub: FakeHub) -> None:
    leaked = [(r.target, r.authorization) for r in hub.find(origin="cdn") if r.authorization is not None]
    assert leaked == [], f"Authorization reached the cross-origin CDN: {leaked}"


# --------------------------------------------------------------------------------------
# 1, 2: hf_hub_download of a plain file; cache layout; warm calls
# --------------------------------------------------------------------------------------

DOWNLOAD_CONFIG = """
    from huggingface_hub import hf_hub_download
    p = hf_hub_download("org/tiny", "config.json", **ARGS.get("kw", {}))
    OUT["file"] = describe(p)
    OUT["data"] = read(p, "rb").hex()
    OUT["ref"] = read(os.path.join(repo_dir("org/tiny"), "refs", "main"))
    OUT["blobs"] = sorted(os.listdir(os.path.join(repo_dir("org/tiny"), "blobs")))
"""


def _check_config_download(out: dict[str, Any], home: Path, hub: FakeHub) -> None:
    head = hub.head("org/tiny")
    oid = hub.file("org/tiny", "config.json").oid
    assert oid == git_sha1(CONFIG)
    assert bytes.fromhex(out["data"]) == CONFIG
    f = out["file"]
    assert f["path"] == str(home / "hub" / "models--org--tiny" / "snapshots" / head / "config.json")
    assert f["islink"] and f["link"] == f"../../blobs/{oid}", f  # relative symlink into blobs/
    assert f["blob"] == oid  # blob named by the git blob sha1
    assert out["ref"] == head  # refs/main holds the commit, verbatim
    assert out["blobs"] == [oid]


def test_01_02_download_plain_file_then_warm(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    home = tmp_path / "client"
    head = hub.head("org/tiny")
    mark = proxy.mark()
    out = run_client(proxy.url, home, DOWNLOAD_CONFIG)
    cold = proxy.since(mark)
    _check_config_download(out, home, hub)
    assert Seen("HEAD", "/org/tiny/resolve/main/config.json", 200) in cold, cold
    assert _resolve_gets(cold) == [Seen("GET", "/org/tiny/resolve/main/config.json", 200)], cold

    # commit-pinned and cached: the client must not ask anything
    mark = proxy.mark()
    out = run_client(proxy.url, home, DOWNLOAD_CONFIG, args={"kw": {"revision": head}})
    assert proxy.since(mark) == []
    _check_config_download(out, home, hub)

    # branch, cached: only the metadata HEAD(s), no GET
    mark = proxy.mark()
    out = run_client(proxy.url, home, DOWNLOAD_CONFIG)
    warm = proxy.since(mark)
    assert warm and all(s.method == "HEAD" for s in warm), warm
    _check_config_download(out, home, hub)
    _assert_nothing_bypassed_the_proxy(hub)


# --------------------------------------------------------------------------------------
# 3: LFS file, token stays on the Hub
# --------------------------------------------------------------------------------------

DOWNLOAD_LFS = """
    from huggingface_hub import hf_hub_download
    p = hf_hub_download("org/tiny", "model.safetensors")
    OUT["file"] = describe(p)
    OUT["blobs"] = sorted(os.listdir(os.path.join(repo_dir("org/tiny"), "blobs")))
"""


def _check_lfs_download(out: dict[str, Any], home: Path, hub: FakeHub, proxy: Proxy, cold: list[Seen]) -> None:
    model = hub.file("org/tiny", "model.safetensors")
    f = out["file"]
    assert f["sha256"] == model.sha256 and f["size"] == model.size
    assert f["blob"] == model.sha256 and out["blobs"] == [model.sha256]  # blobs/<sha256>
    assert f["link"] == f"../../blobs/{model.sha256}"
    assert f["path"].startswith(str(home / "hub" / "models--org--tiny" / "snapshots" / hub.head("org/tiny")))
    # the client never left the proxy: no redirect to the CDN, the bytes came from hoard
    assert [s for s in cold if s.status >= 300] == [], cold
    assert _resolve_gets(cold) == [Seen("GET", "/org/tiny/resolve/main/model.safetensors", 200)], cold
    _assert_nothing_bypassed_the_proxy(hub)
    _assert_no_token_on_cdn(hub)
    hub_auth = {r.authorization for r in hub.find(origin="hub")}
    assert hub_auth == {f"Bearer {GOOD}"}, hub_auth  # the client's token went to the Hub only
    assert model.size <= hub.bytes_sent["cdn"] <= 1.05 * model.size


def test_03_lfs_download_sha256_blob_and_no_token_on_cdn(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    home = tmp_path / "client"
    mark = proxy.mark()
    out = run_client(proxy.url, home, DOWNLOAD_LFS, token=GOOD)
    _check_lfs_download(out, home, hub, proxy, proxy.since(mark))


# --------------------------------------------------------------------------------------
# 4, 5: subfolders, odd names, tags, PR refs, datasets, spaces
# --------------------------------------------------------------------------------------


def test_04_05_subfolder_unicode_revisions_and_repo_types(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    home = tmp_path / "client"
    out = run_client(
        proxy.url,
        home,
        """
        from huggingface_hub import hf_hub_download as dl
        OUT["sub"] = describe(dl("org/tiny", "b.txt", subfolder="sub/dir"))
        OUT["uni"] = describe(dl("org/tiny", "with space \u00e9.txt"))
        OUT["tag"] = describe(dl("org/tiny", "config.json", revision="v1.0"))
        OUT["pr"] = describe(dl("org/tiny", "config.json", revision="refs/pr/1"))
        OUT["refs"] = {r: read(os.path.join(repo_dir("org/tiny"), "refs", r)) for r in ("v1.0", "refs/pr/1")}
        OUT["ds"] = describe(dl("org/ds", "data/train.csv", repo_type="dataset"))
        OUT["ds_lfs"] = describe(dl("org/ds", "data/part-0.parquet", repo_type="dataset"))
        OUT["space"] = describe(dl("org/sp", "app.py", repo_type="space"))
        OUT["dirs"] = sorted(d for d in os.listdir(HUB) if "--" in d)
    """,
    )
    head, pr = hub.head("org/tiny"), hub.head("org/tiny", "refs/pr/1")
    snap = home / "hub" / "models--org--tiny" / "snapshots"
    assert out["sub"]["path"] == str(snap / head / "sub" / "dir" / "b.txt")
    nested = git_sha1(b"nested\n")
    assert out["sub"]["sha256"] == sha(b"nested\n") and out["sub"]["link"] == f"../../../../blobs/{nested}"
    assert out["uni"]["path"] == str(snap / head / "with space \u00e9.txt")
    assert out["uni"]["sha256"] == sha("unicode \u2713\n".encode())
    assert out["tag"]["sha256"] == sha(CONFIG) and out["tag"]["path"] == str(snap / head / "config.json")
    assert out["pr"]["sha256"] == sha(PR_CONFIG) and out["pr"]["path"] == str(snap / pr / "config.json")
    assert out["pr"]["blob"] == git_sha1(PR_CONFIG)
    assert out["refs"] == {"v1.0": head, "refs/pr/1": pr}
    ds_head = hub.head("org/ds", repo_type="dataset")
    assert out["ds"]["path"] == str(home / "hub" / "datasets--org--ds" / "snapshots" / ds_head / "data" / "train.csv")
    assert out["ds"]["sha256"] == sha(CSV) and out["ds"]["blob"] == git_sha1(CSV)
    parquet = hub.file("org/ds", "data/part-0.parquet", repo_type="dataset")
    assert parquet.lfs and out["ds_lfs"]["blob"] == out["ds_lfs"]["sha256"] == parquet.sha256
    assert out["space"]["sha256"] == sha(b"print('hi')\n")
    assert "/spaces--org--sp/snapshots/" in out["space"]["path"]
    assert out["dirs"] == ["datasets--org--ds", "models--org--tiny", "spaces--org--sp"]
    _assert_nothing_bypassed_the_proxy(hub)


# --------------------------------------------------------------------------------------
# 7: HfApi metadata calls
# --------------------------------------------------------------------------------------


def test_07_hfapi_metadata(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    mark = proxy.mark()
    out = run_client(
        proxy.url,
        tmp_path / "client",
        """
        from huggingface_hub import HfApi
        api = HfApi()
        info = api.model_info("org/tiny")
        OUT["info"] = {"id": info.id, "sha": info.sha, "siblings": sorted(s.rfilename for s in info.siblings),
                       "private": info.private, "gated": info.gated}
        info = api.model_info("org/tiny", files_metadata=True)
        OUT["meta"] = {s.rfilename: [s.size, s.blob_id, s.lfs.sha256 if s.lfs else None, s.lfs.size if s.lfs else None]
                       for s in info.siblings}
        ds = api.repo_info("org/ds", repo_type="dataset", revision="main")
        OUT["ds"] = {"type": type(ds).__name__, "id": ds.id, "sha": ds.sha,
                     "siblings": sorted(s.rfilename for s in ds.siblings)}
        OUT["many"] = api.list_repo_files("org/many")
        OUT["tree_sub"] = sorted([type(e).__name__, e.path] for e in api.list_repo_tree("org/tiny", path_in_repo="sub"))
        OUT["tree_all"] = sorted([type(e).__name__, e.path, getattr(e, "size", None), getattr(e, "blob_id", None),
                                  e.lfs.sha256 if getattr(e, "lfs", None) else None]
                                 for e in api.list_repo_tree("org/tiny", recursive=True))
        got = api.get_paths_info("org/tiny", ["config.json", "sub", "model.safetensors", "missing.txt"])
        OUT["paths"] = [[type(e).__name__, e.path, getattr(e, "size", None),
                         e.lfs.sha256 if getattr(e, "lfs", None) else None] for e in got]
        OUT["file_exists"] = [api.file_exists("org/tiny", "config.json"), api.file_exists("org/tiny", "nope.txt"),
                              api.file_exists("org/tiny", "sub/dir/b.txt")]
        OUT["repo_exists"] = [api.repo_exists("org/tiny"), api.repo_exists("org/unknown"),
                              api.repo_exists("org/ds", repo_type="dataset")]
        refs = api.list_repo_refs("org/tiny", include_pull_requests=True)
        OUT["refs"] = {"branches": [[b.name, b.target_commit] for b in refs.branches],
                       "tags": [[t.name, t.target_commit] for t in refs.tags],
                       "prs": [[p.ref, p.target_commit] for p in (refs.pull_requests or [])]}
    """,
    )
    seen = proxy.since(mark)
    head = hub.head("org/tiny")
    names = sorted([*TINY, ".gitattributes"])
    assert out["info"] == {"id": "org/tiny", "sha": head, "siblings": names, "private": False, "gated": False}
    for path, spec in TINY.items():
        entry = hub.file("org/tiny", path)
        lfs = [entry.sha256, entry.size] if entry.lfs else [None, None]
        assert out["meta"][path] == [len(data_of(spec)), entry.oid, *lfs], path
    assert out["ds"] == {
        "type": "DatasetInfo",
        "id": "org/ds",
        "sha": hub.head("org/ds", repo_type="dataset"),
        "siblings": [".gitattributes", "README.md", "data/part-0.parquet", "data/train.csv"],
    }
    assert sorted(out["many"]) == sorted([".gitattributes", *(f"f/{i:05d}.txt" for i in range(MANY))])
    assert len(out["many"]) == MANY + 1  # no page lost or repeated
    tree_pages = [s for s in seen if s.method == "GET" and s.path == "/api/models/org/many/tree/main"]
    assert len(tree_pages) >= 2, f"expected the listing in >1 page (Link: rel=next): {tree_pages}"
    assert out["tree_sub"] == [["RepoFile", "sub/c.txt"], ["RepoFolder", "sub/dir"]]
    model = hub.file("org/tiny", "model.safetensors")
    expected_all = sorted(
        [["RepoFolder", d, None, None, None] for d in ("sub", "sub/dir")]
        + [
            ["RepoFile", p, e.size, e.oid, e.sha256 if e.lfs else None]
            for p in names
            for e in [hub.file("org/tiny", p)]
        ]
    )
    assert [x[:2] for x in out["tree_all"]] == [x[:2] for x in expected_all]
    assert [x for x in out["tree_all"] if x[0] == "RepoFile"] == [x for x in expected_all if x[0] == "RepoFile"]
    assert out["paths"] == [
        ["RepoFile", "config.json", len(CONFIG), None],
        ["RepoFolder", "sub", None, None],
        ["RepoFile", "model.safetensors", model.size, model.sha256],
    ]
    assert out["file_exists"] == [True, False, True]
    assert out["repo_exists"] == [True, False, True]
    assert out["refs"] == {
        "branches": [["main", head]],
        "tags": [["v1.0", head]],
        "prs": [["refs/pr/1", hub.head("org/tiny", "refs/pr/1")]],
    }


# --------------------------------------------------------------------------------------
# 7b: paged tree listings link to the proxy's public URL, never to the client's Host
# --------------------------------------------------------------------------------------

#: a Host header naming somewhere else (port 1: nothing listens there)
BOGUS_HOST = {"Host": "127.0.0.1:1"}


def test_07_tree_pages_link_to_the_public_url_not_the_host_header(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    tree = "/api/models/org/many/tree/main"
    # built by the proxy (1000-entry pages) and passed through from the Hub (expand: 50 a page)
    for query in ("recursive=true", "recursive=true&expand=true"):
        status, headers, _ = raw("GET", f"{proxy.url}{tree}?{query}", BOGUS_HOST)
        assert status == 200
        link = headers["Link"]
        assert link.startswith(f"<{proxy.url}{tree}?") and link.endswith('>; rel="next"') and "cursor=" in link, link
    with running_proxy(tmp_path / "hoard2", hub.url, public_url="https://hoard.example/") as other:
        for query in ("recursive=true", "recursive=true&expand=true"):
            status, headers, _ = raw("GET", f"{other.url}{tree}?{query}", BOGUS_HOST)
            assert status == 200 and headers["Link"].startswith(f"<https://hoard.example{tree}?"), headers["Link"]


def test_07_stock_client_pages_a_long_tree_whatever_host_it_sends(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    mark = proxy.mark()
    out = run_client(
        proxy.url,
        tmp_path / "client",
        """
        from huggingface_hub import HfApi
        api = HfApi(headers=ARGS["headers"])
        OUT["tree"] = [e.path for e in api.list_repo_tree("org/many", recursive=True)]
    """,
        args={"headers": BOGUS_HOST},
    )
    assert sorted(out["tree"]) == sorted([".gitattributes", "f", *(f"f/{i:05d}.txt" for i in range(MANY))])
    pages = [s for s in proxy.since(mark) if s.method == "GET" and s.path == "/api/models/org/many/tree/main"]
    assert len(pages) == 2 and all(s.status == 200 for s in pages), pages  # 1007 entries, 1000 a page


# --------------------------------------------------------------------------------------
# 8: snapshot_download, local_dir, offline, scan/delete
# --------------------------------------------------------------------------------------

SNAPSHOT = """
    from huggingface_hub import snapshot_download
    root = snapshot_download("org/tiny")
    OUT["root"] = root
    OUT["files"] = tree(root)
    OUT["all_links"] = all(os.path.islink(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    OUT["blobs"] = sorted(os.listdir(os.path.join(repo_dir("org/tiny"), "blobs")))
    trees = os.path.join(repo_dir("org/tiny"), "trees")
    OUT["trees"] = {f: json.loads(read(os.path.join(trees, f))) for f in os.listdir(trees)} if os.path.isdir(trees) else None
    other = os.path.join(HOME, "other-cache")
    OUT["allow"] = sorted(tree(snapshot_download("org/tiny", allow_patterns=["*.json", "sub/*"], cache_dir=other)))
    local = os.path.join(HOME, "local")
    snapshot_download("org/tiny", local_dir=local)
    OUT["local"] = {p: s for p, s in tree(local).items() if not p.startswith(".cache")}
    OUT["local_links"] = [p for p in OUT["local"] if os.path.islink(os.path.join(local, p))]
    OUT["local_meta"] = read(os.path.join(local, ".cache", "huggingface", "download", "model.safetensors.metadata")).splitlines()
"""

OFFLINE_SNAPSHOT = """
    from huggingface_hub import scan_cache_dir, snapshot_download
    root = snapshot_download("org/tiny")
    OUT["root"] = root
    OUT["files"] = tree(root)
    info = scan_cache_dir()
    OUT["warnings"] = [str(w) for w in info.warnings]
    OUT["scan"] = {r.repo_id: {"type": r.repo_type, "refs": sorted(r.refs), "nb_files": r.nb_files,
                               "revisions": sorted(v.commit_hash for v in r.revisions)} for r in info.repos}
    strategy = info.delete_revisions(ARGS["head"])
    OUT["freed"] = strategy.expected_freed_size
    strategy.execute()
    blobs = os.path.join(repo_dir("org/tiny"), "blobs")
    OUT["after"] = {"snapshot": os.path.exists(root), "blobs": sorted(os.listdir(blobs)) if os.path.isdir(blobs) else [],
                    "repos": sorted(r.repo_id for r in scan_cache_dir().repos)}
"""


def _check_snapshots(hub: FakeHub, proxy: Proxy, home: Path, python: str) -> None:
    head = hub.head("org/tiny")
    expected = _files_of({**TINY, ".gitattributes": data_of_attr(hub)})
    mark = proxy.mark()
    out = run_client(proxy.url, home, SNAPSHOT, python=python)
    seen = proxy.since(mark)
    assert out["root"] == str(home / "hub" / "models--org--tiny" / "snapshots" / head)
    assert out["files"] == expected and out["all_links"]
    model = hub.file("org/tiny", "model.safetensors")
    assert model.sha256 in out["blobs"] and hub.file("org/tiny", "config.json").oid in out["blobs"]
    assert len(out["blobs"]) == len(expected)
    for name, doc in (out["trees"] or {}).items():  # 2.x caches the listing: no Xet there
        assert name == f"{head}.json" and xet_keys(doc) == [], doc
    assert out["allow"] == ["config.json", "sub/c.txt", "sub/dir/b.txt", "tokenizer.json"]  # fnmatch: * spans /
    assert out["local"] == expected and out["local_links"] == []
    assert out["local_meta"][:2] == [head, model.sha256]
    assert [s for s in seen if s.status not in (200, 206)] == []
    _assert_nothing_bypassed_the_proxy(hub)

    mark = proxy.mark()
    out = run_client(proxy.url, home, OFFLINE_SNAPSHOT, python=python, offline=True, args={"head": head})
    assert proxy.since(mark) == []  # HF_HUB_OFFLINE=1: zero requests
    assert out["root"] == str(home / "hub" / "models--org--tiny" / "snapshots" / head)
    assert out["files"] == expected
    assert out["warnings"] == []
    assert out["scan"] == {
        "org/tiny": {"type": "model", "refs": ["main"], "nb_files": len(expected), "revisions": [head]}
    }
    assert out["freed"] == sum(len(data_of(c)) for c in TINY.values()) + len(data_of_attr(hub))
    assert out["after"] == {"snapshot": False, "blobs": [], "repos": []}


def data_of_attr(hub: FakeHub) -> bytes:
    return hub.file("org/tiny", ".gitattributes").content.read()


def test_08_snapshot_download_local_dir_offline_scan_delete(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    _check_snapshots(hub, proxy, tmp_path / "client", sys.executable)


# --------------------------------------------------------------------------------------
# 9: HfFileSystem
# --------------------------------------------------------------------------------------


def test_09_hffilesystem(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    mark = proxy.mark()
    out = run_client(
        proxy.url,
        tmp_path / "client",
        """
        from huggingface_hub import HfFileSystem
        fs = HfFileSystem()
        OUT["ls"] = sorted([e["name"], e["type"], e["size"]] for e in fs.ls("org/tiny", detail=True))
        OUT["ls_sub"] = sorted(fs.ls("org/tiny/sub", detail=False))
        OUT["ls_subdir"] = sorted(fs.ls("org/tiny/sub/dir", detail=False))
        info = fs.info("org/tiny/model.safetensors")
        OUT["info"] = [info["name"], info["type"], info["size"], (info.get("lfs") or {}).get("sha256")]
        OUT["info_cfg"] = [fs.info("org/tiny/config.json")["size"], fs.info("org/tiny/sub")["type"]]
        OUT["glob"] = sorted(fs.glob("org/tiny/**/*.txt"))
        OUT["glob_deep"] = sorted(fs.glob("org/tiny/sub/dir/*.txt"))
        with fs.open("org/tiny/config.json", "rb") as f:
            OUT["read"] = f.read().hex()
        with fs.open("org/tiny/model.safetensors", "rb") as f:
            OUT["model"] = hashlib.sha256(f.read()).hexdigest()
        with fs.open("org/tiny/model.safetensors", "rb", block_size=4096) as f:
            f.seek(1000)
            OUT["seek"] = f.read(10).hex()
            f.seek(2 * 1024 * 1024 + 5)
            OUT["seek2"] = f.read(300).hex()
        with fs.open("org/tiny/config.json", "rb", block_size=16) as f:
            f.seek(3)
            OUT["seek_cfg"] = f.read(5).hex()
        OUT["csv"] = fs.read_text("datasets/org/ds/data/train.csv")
        OUT["ds_ls"] = sorted(fs.ls("datasets/org/ds/data", detail=False))
        with fs.open("datasets/org/ds/data/part-0.parquet", "rb", block_size=1024) as f:
            f.seek(100000)
            OUT["ds_seek"] = f.read(64).hex()
    """,
    )
    seen = proxy.since(mark)
    model = hub.file("org/tiny", "model.safetensors")
    assert ["org/tiny/model.safetensors", "file", model.size] in out["ls"]
    assert ["org/tiny/sub", "directory", 0] in out["ls"]
    assert ["org/tiny/config.json", "file", len(CONFIG)] in out["ls"]
    top = {f"org/tiny/{p}" for p in (*TINY, ".gitattributes") if "/" not in p}
    assert {e[0] for e in out["ls"]} == top | {"org/tiny/sub"}
    assert out["ls_sub"] == ["org/tiny/sub/c.txt", "org/tiny/sub/dir"]
    assert out["ls_subdir"] == ["org/tiny/sub/dir/b.txt"]
    assert out["info"] == ["org/tiny/model.safetensors", "file", model.size, model.sha256]
    assert out["info_cfg"] == [len(CONFIG), "directory"]
    assert out["glob"] == ["org/tiny/sub/c.txt", "org/tiny/sub/dir/b.txt", "org/tiny/with space \u00e9.txt"]
    assert out["glob_deep"] == ["org/tiny/sub/dir/b.txt"]
    assert bytes.fromhex(out["read"]) == CONFIG
    assert out["model"] == model.sha256
    assert bytes.fromhex(out["seek"]) == model.content.read(1000, 1010)
    assert bytes.fromhex(out["seek2"]) == model.content.read(2 * MiB + 5, 2 * MiB + 305)
    assert bytes.fromhex(out["seek_cfg"]) == CONFIG[3:8]
    assert out["csv"] == CSV.decode()
    assert out["ds_ls"] == ["datasets/org/ds/data/part-0.parquet", "datasets/org/ds/data/train.csv"]
    parquet = hub.file("org/ds", "data/part-0.parquet", repo_type="dataset")
    assert bytes.fromhex(out["ds_seek"]) == parquet.content.read(100000, 100064)
    assert any(s.status == 206 and s.path == "/org/tiny/resolve/main/model.safetensors" for s in seen), seen
    assert [s for s in seen if s.status >= 300] == []
    _assert_nothing_bypassed_the_proxy(hub)


# --------------------------------------------------------------------------------------
# 10: resume
# --------------------------------------------------------------------------------------


def test_10_upstream_drop_is_resumed_by_the_proxy(hub: FakeHub, tmp_path: Path) -> None:
    drop = 1536 * KiB
    dropped = hub.fault(origin="cdn", method="GET", drop_after=drop, times=1)
    with running_proxy(tmp_path / "hoard", hub.url, chunk_size=4 * MiB) as px:
        mark = px.mark()
        out = run_client(
            px.url,
            tmp_path / "client",
            """
            from huggingface_hub import hf_hub_download
            OUT["file"] = describe(hf_hub_download("org/big", "big.bin"))
        """,
        )
        seen = px.since(mark)
    assert out["file"]["sha256"] == BIG.sha256 and out["file"]["blob"] == BIG.sha256
    assert dropped.hits == 1
    assert _resolve_gets(seen) == [Seen("GET", "/org/big/resolve/main/big.bin", 200)], seen
    cdn = hub.find(origin="cdn", method="GET")
    cut = [r for r in cdn if not r.completed]
    assert len(cut) == 1 and cut[0].bytes_sent == drop, [(r.range, r.status, r.bytes_sent) for r in cdn]
    first, _, last = (cut[0].range or "bytes=0-").removeprefix("bytes=").partition("-")
    resumed = f"bytes={int(first) + drop}-{last}"
    assert any(r.range == resumed and r.status == 206 and r.completed for r in cdn), (
        f"no resumed request {resumed!r}: {[(r.range, r.status) for r in cdn]}"
    )
    assert BIG.size <= hub.bytes_sent["cdn"] <= 1.05 * BIG.size  # resumed, not refetched
    _assert_nothing_bypassed_the_proxy(hub)


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_10_client_range_requests_get_206(hub: FakeHub, proxy: Proxy, warm: bool) -> None:
    url = f"{proxy.url}/org/big/resolve/main/big.bin"
    if warm:
        status, _, body = raw("GET", url)
        assert status == 200 and sha(body) == BIG.sha256
    n = 4 * MiB + 7
    status, headers, body = raw("GET", url, {"Range": f"bytes={n}-"})
    assert status == 206
    assert headers["Content-Range"] == f"bytes {n}-{BIG.size - 1}/{BIG.size}"
    assert int(headers["Content-Length"]) == BIG.size - n == len(body)
    assert body == BIG.read(n)
    assert headers["ETag"] == f'"{BIG.sha256}"' and headers["X-Repo-Commit"] == hub.head("org/big")
    status, headers, body = raw("GET", url, {"Range": "bytes=100-199"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 100-199/{BIG.size}", BIG.read(100, 200))
    status, headers, body = raw("GET", url, {"Range": "bytes=-10"})
    assert (status, body) == (206, BIG.read(BIG.size - 10))
    status, headers, _ = raw("GET", url, {"Range": f"bytes={BIG.size}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{BIG.size}")
    status, headers, body = raw("HEAD", url, {"Range": "bytes=10-19"})
    assert status == 206 and body == b"" and headers["Content-Range"] == f"bytes 10-19/{BIG.size}"
    assert "Content-Encoding" not in headers


# --------------------------------------------------------------------------------------
# 11: upstream ignores Range
# --------------------------------------------------------------------------------------


def test_11_upstream_ignoring_range_still_gives_clients_206(hub: FakeHub, tmp_path: Path) -> None:
    ignore = hub.fault(origin="cdn", ignore_range=True)
    model = hub.file("org/tiny", "model.safetensors")
    with running_proxy(tmp_path / "hoard", hub.url, chunk_size=1 * MiB) as px:
        url = f"{px.url}/org/tiny/resolve/main/model.safetensors"
        start = 2 * MiB + 11
        status, headers, body = raw("GET", url, {"Range": f"bytes={start}-{start + 999}"})
        assert (status, headers["Content-Range"], body) == (
            206,
            f"bytes {start}-{start + 999}/{model.size}",
            model.content.read(start, start + 1000),
        )
        mark = px.mark()
        out = run_client(
            px.url,
            tmp_path / "client",
            """
            from huggingface_hub import HfFileSystem, hf_hub_download
            fs = HfFileSystem()
            with fs.open("org/tiny/model.safetensors", "rb", block_size=4096) as f:
                f.seek(1234567)
                OUT["seek"] = f.read(100).hex()
            OUT["file"] = describe(hf_hub_download("org/tiny", "model.safetensors"))
        """,
        )
        seen = px.since(mark)
        status, headers, body = raw("GET", url, {"Range": "bytes=5-"})
        assert (status, len(body), body[:10]) == (206, model.size - 5, model.content.read(5, 15))
    assert ignore.hits >= 1
    assert any(r.range and r.status == 200 for r in hub.find(origin="cdn")), "the fault did not engage"
    assert bytes.fromhex(out["seek"]) == model.content.read(1234567, 1234667)
    assert out["file"]["sha256"] == model.sha256
    assert any(s.status == 206 for s in seen), seen
    assert [s for s in seen if s.status >= 300] == []


# --------------------------------------------------------------------------------------
# 12: Xet is never advertised to clients
# --------------------------------------------------------------------------------------


def test_12_no_xet_reaches_clients(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    assert hub.xet  # the upstream advertises Xet, like the live Hub
    head = hub.head("org/tiny")
    model = hub.file("org/tiny", "model.safetensors")
    base = proxy.url
    for method in ("HEAD", "GET"):
        for path in ("model.safetensors", "config.json"):
            for rev in ("main", head):
                status, headers, body = raw(method, f"{base}/org/tiny/resolve/{rev}/{path}")
                assert status == 200 and xet_headers(headers) == [], (method, path, dict(headers))
                entry = hub.file("org/tiny", path)
                assert headers["X-Repo-Commit"] == head
                assert int(headers["Content-Length"]) == entry.size  # the true size, also on HEAD
                assert headers["Accept-Ranges"] == "bytes"
                if entry.lfs:
                    assert headers["ETag"] == headers["X-Linked-Etag"] == f'"{model.sha256}"'
                    assert headers["X-Linked-Size"] == str(model.size)
                else:
                    assert headers["ETag"] == f'"{entry.oid}"'
                if method == "GET":
                    assert sha(body) == entry.sha256
    api = f"{base}/api/models/org/tiny"
    docs: dict[str, Any] = {}
    for name, url in {
        "info": api,
        "blobs": f"{api}?blobs=true",
        "revision": f"{api}/revision/main",
        "expand": f"{api}?expand=sha&expand=siblings&expand=xetEnabled",
        "tree": f"{api}/tree/main?recursive=true&expand=false",
        "tree_expand": f"{api}/tree/main?recursive=True&expand=True",
        "tree_sub": f"{api}/tree/main/sub%2Fdir?recursive=false",
    }.items():
        status, headers, body = raw("GET", url)
        assert status == 200 and xet_headers(headers) == [], (name, dict(headers))
        docs[name] = json.loads(body)
    for ctype, body in (
        ("application/x-www-form-urlencoded", b"paths=model.safetensors&paths=sub%2Fdir&expand=false"),
        ("application/json", json.dumps({"paths": ["model.safetensors", "sub/dir"], "expand": True}).encode()),
    ):
        status, headers, raw_body = raw("POST", f"{api}/paths-info/main", {"Content-Type": ctype}, body)
        assert status == 200 and xet_headers(headers) == []
        docs[ctype] = json.loads(raw_body)
        assert [e["path"] for e in docs[ctype]] == ["model.safetensors", "sub/dir"], docs[ctype]
        assert docs[ctype][0]["lfs"]["oid"] == model.sha256
    bad = {name: xet_keys(doc) for name, doc in docs.items() if xet_keys(doc)}
    assert bad == {}, f"Xet fields reached the client: {bad}"
    assert any(e.get("lfs") for e in docs["tree_expand"])  # the passthrough kept the rest

    mark = proxy.mark()
    out = run_client(
        proxy.url,
        tmp_path / "client",
        """
        from huggingface_hub import HfFileSystem, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
        meta = get_hf_file_metadata(hf_hub_url("org/tiny", "model.safetensors"))
        OUT["meta"] = [meta.xet_file_data is None, meta.etag, meta.size, meta.location]
        OUT["file"] = describe(hf_hub_download("org/tiny", "model.safetensors"))
        root = snapshot_download("org/ds", repo_type="dataset")
        OUT["ds"] = tree(root)
        dest = os.path.join(HOME, "got.bin")
        HfFileSystem().get_file("org/tiny/model.safetensors", dest)
        OUT["get_file"] = sha256(dest)
    """,
    )
    seen = proxy.since(mark)
    assert out["meta"] == [True, model.sha256, model.size, f"{base}/org/tiny/resolve/main/model.safetensors"]
    assert out["file"]["sha256"] == model.sha256
    assert out["get_file"] == model.sha256
    parquet = hub.file("org/ds", "data/part-0.parquet", repo_type="dataset")
    assert out["ds"]["data/part-0.parquet"] == parquet.sha256
    assert hub.count("xet-read-token") == 0 and hub.count("/cas/") == 0
    assert not any("xet" in s.path.lower() for s in seen), seen
    _assert_nothing_bypassed_the_proxy(hub)


# --------------------------------------------------------------------------------------
# 13: transformers
# --------------------------------------------------------------------------------------

MAKE_BERT = r"""
import json, os, sys
import torch
from transformers import BertConfig, BertModel, BertTokenizer
out = sys.argv[1]
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "hoard", "model", "##s", "the", "a", "."]
torch.manual_seed(1234)
tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
cfg = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=32)
model = BertModel(cfg).eval()
model.save_pretrained(out)
tok.save_pretrained(out)
with open(os.path.join(out, "vocab.txt"), "w") as f:
    f.write("\n".join(words) + "\n")
enc = tok("hello world models.", return_tensors="pt")
with torch.no_grad():
    hidden = model(**enc).last_hidden_state
print("@@BERT@@" + json.dumps({"ids": enc["input_ids"][0].tolist(), "hidden": hidden.flatten().tolist()}))
"""

LOAD_BERT = """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    cfg = AutoConfig.from_pretrained("org/bert-tiny")
    tok = AutoTokenizer.from_pretrained("org/bert-tiny")
    model = AutoModel.from_pretrained("org/bert-tiny").eval()
    enc = tok("hello world models.", return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    OUT["config"] = [cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size]
    OUT["tokenizer"] = type(tok).__name__
    OUT["ids"] = enc["input_ids"][0].tolist()
    OUT["hidden"] = hidden.flatten().tolist()
    OUT["blobs"] = sorted(os.listdir(os.path.join(repo_dir("org/bert-tiny"), "blobs")))
    no_exist = os.path.join(repo_dir("org/bert-tiny"), ".no_exist")
    OUT["no_exist"] = sorted(f for d, _, fs in os.walk(no_exist) for f in fs)
"""


@pytest.fixture(scope="module")
def bert(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny random BERT (config, WordPiece tokenizer, safetensors) pushed to the fake Hub."""
    folder = tmp_path_factory.mktemp("bert-tiny")
    proc = subprocess_run([sys.executable, "-c", MAKE_BERT, str(folder)])
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@BERT@@"))
    expected = json.loads(line[len("@@BERT@@") :])
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= set(files), sorted(files)
    hub.add_repo("org/bert-tiny", files)
    return {"expected": expected, "files": files}


def subprocess_run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_13_transformers_cold_warm_offline(hub: FakeHub, proxy: Proxy, bert: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "client"
    expected = bert["expected"]
    weights = hub.file("org/bert-tiny", "model.safetensors")

    def check(out: dict[str, Any]) -> None:
        assert out["config"][:3] == ["bert", 16, 2]
        assert out["ids"] == expected["ids"] and out["ids"][0] == 2 and 1 not in out["ids"]  # no [UNK]
        assert out["hidden"] == pytest.approx(expected["hidden"], abs=1e-6)
        assert weights.sha256 in out["blobs"]
        assert git_sha1(bert["files"]["config.json"]) in out["blobs"]

    mark = proxy.mark()
    out = run_client(proxy.url, home, LOAD_BERT)
    check(out)
    cold = proxy.since(mark)
    commit = hub.head("org/bert-tiny")
    assert Seen("GET", f"/org/bert-tiny/resolve/{commit}/model.safetensors", 200) in cold, cold
    # optional tokenizer files: 404 EntryNotFound, remembered by the client in .no_exist/<commit>/
    misses = {s.path.rsplit("/", 1)[-1] for s in cold if s.status == 404 and "/resolve/" in s.path}
    assert misses and misses <= set(out["no_exist"]), (misses, out["no_exist"])
    assert [s for s in cold if s.status not in (200, 206, 404)] == []
    _assert_nothing_bypassed_the_proxy(hub)
    _assert_no_token_on_cdn(hub)

    mark = proxy.mark()
    check(run_client(proxy.url, home, LOAD_BERT))
    warm = proxy.since(mark)
    assert _resolve_gets(warm) == [], f"warm run downloaded again: {warm}"
    assert all(s.method == "HEAD" or s.path.startswith("/api/") for s in warm), warm

    mark = proxy.mark()
    check(run_client(proxy.url, home, LOAD_BERT, offline=True))
    assert proxy.since(mark) == []


# --------------------------------------------------------------------------------------
# 14: concurrent cold downloads of one LFS file
# --------------------------------------------------------------------------------------


def test_14_parallel_cold_downloads_fetch_upstream_once(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    # throttle the CDN so the 8 downloads overlap the single fill (correctness does not depend on it)
    hub.fault(origin="cdn", slow=16 * MiB)
    mark = proxy.mark()
    out = run_client(
        proxy.url,
        tmp_path / "client",
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        from huggingface_hub import hf_hub_download
        gate = threading.Barrier(8)
        def one(i):
            gate.wait()
            p = hf_hub_download("org/big", "big.bin", cache_dir=os.path.join(HOME, f"cache{i}"))
            return describe(p)
        with ThreadPoolExecutor(8) as pool:
            OUT["files"] = list(pool.map(one, range(8)))
    """,
    )
    seen = proxy.since(mark)
    assert len(out["files"]) == 8
    assert all(f["sha256"] == BIG.sha256 and f["blob"] == BIG.sha256 for f in out["files"])
    gets = _resolve_gets(seen)
    assert [s.status for s in gets] == [200] * 8, f"{gets}\nproxy errors: {proxy.server_errors}"
    assert BIG.size <= hub.bytes_sent["cdn"] <= 1.05 * BIG.size, (
        f"CDN sent {hub.bytes_sent['cdn']} bytes for one {BIG.size}-byte file"
    )
    _assert_nothing_bypassed_the_proxy(hub)
    nchunks = -(-BIG.size // (256 * KiB))  # the proxy fixture's chunk size
    assert proxy.metrics.total("hoard_chunks_fetched_total") == nchunks  # every chunk fetched once
    published = proxy.metrics.total("hoard_blobs_published_total")
    assert published == 1, f"one file, one fill: published {published} times; proxy errors {proxy.server_errors}"


# --------------------------------------------------------------------------------------
# the last requests-based release: 0.36.2
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def old_python() -> str:
    return hub_python(OLD_HUB)


def test_old_client_036_download_lfs_snapshot(hub: FakeHub, proxy: Proxy, tmp_path: Path, old_python: str) -> None:
    home = tmp_path / "client"
    head = hub.head("org/tiny")
    # 1 (+2)
    mark = proxy.mark()
    out = run_client(proxy.url, home, DOWNLOAD_CONFIG, python=old_python)
    cold = proxy.since(mark)
    assert out["_version"] == OLD_HUB
    _check_config_download(out, home, hub)
    assert _resolve_gets(cold) == [Seen("GET", "/org/tiny/resolve/main/config.json", 200)], cold
    mark = proxy.mark()
    run_client(proxy.url, home, DOWNLOAD_CONFIG, python=old_python, args={"kw": {"revision": head}})
    assert proxy.since(mark) == []
    # 3
    hub.clear_log()
    mark = proxy.mark()
    out = run_client(proxy.url, tmp_path / "client-lfs", DOWNLOAD_LFS, python=old_python, token=GOOD)
    _check_lfs_download(out, tmp_path / "client-lfs", hub, proxy, proxy.since(mark))
    # 8
    _check_snapshots(hub, proxy, tmp_path / "client-snap", old_python)


def test_old_client_036_resumes_from_incomplete(hub: FakeHub, proxy: Proxy, tmp_path: Path, old_python: str) -> None:
    """0.36 keeps ``blobs/<etag>.incomplete`` after a failed run and resumes it with Range."""
    home = tmp_path / "client"
    blobs = home / "hub" / "models--org--big" / "blobs"
    blobs.mkdir(parents=True)
    have = 2 * MiB + 1
    (blobs / f"{BIG.sha256}.incomplete").write_bytes(BIG.read(0, have))
    mark = proxy.mark()
    out = run_client(
        proxy.url,
        home,
        """
        from huggingface_hub import hf_hub_download
        OUT["file"] = describe(hf_hub_download("org/big", "big.bin"))
        OUT["blobs"] = sorted(os.listdir(os.path.join(repo_dir("org/big"), "blobs")))
    """,
        python=old_python,
    )
    seen = proxy.since(mark)
    assert out["file"]["sha256"] == BIG.sha256 and out["blobs"] == [BIG.sha256]
    assert _resolve_gets(seen) == [Seen("GET", "/org/big/resolve/main/big.bin", 206)], seen
    served = proxy.metrics.total("hoard_client_bytes_total")
    assert served == BIG.size - have, f"proxy sent {served} body bytes for a resume from {have}"
