"""The GitHub source end to end: public repos on a fake GitHub (API, raw, media, objects).

Everything runs against `tests.fakes.github.FakeGitHub` — its API with GitHub's rate limit,
the raw host (files as git stores them, LFS pointers included), the media host and signed
object storage — through the real proxy in a thread (`ProxyThread`), real ``hoard``
processes, a parent hoard and a real mount. No test sleeps to synchronise: the fake's
switches (wrong bytes, dropped LFS objects, rate limits, pause/resume) drive every case, and
`wait_for` polls what the product reaches in the background.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.proxy.sources._gitattributes import LfsRules, parse_pointer

from .fakes.content import Content
from .fakes.github import Blob, FakeGitHub, lfs_pointer
from .harness import MountProcess, ProxyThread, serve_env, wait_for
from .httpcalls import Got, call, raw

HOARD = [sys.executable, "-m", "hoard.cli.main"]
NO_HUB = "http://127.0.0.1:9"  # a Hub endpoint nothing listens on: these tests never need it
TOKEN = "ghp_fake_token_for_tests"
NL = b"\n"
WEIGHTS = Content("github-lfs-weights", 700_000)
SMALL_BIN = b"tracked as LFS, committed before it was\n"
FILES: dict[str, Any] = {
    "README.md": b"# tiny\n",
    "config.json": json.dumps({"hidden": 8}).encode(),
    "sub/a b.txt": "space \u00e9\n".encode(),
    "weights/model.onnx": WEIGHTS,  # *.onnx is LFS-tracked: git holds a pointer
    "weights/small.bin": Blob(Content.from_bytes(SMALL_BIN)),  # tracked, yet a plain blob
    "notes/pointer.txt": lfs_pointer(Content("not tracked", 10)),  # pointer text, not tracked
}


@pytest.fixture(scope="module")
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens={TOKEN}, rate_limit=100_000) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(gh: FakeGitHub) -> Iterator[None]:
    gh.resume()
    gh.clear_log()
    gh.clear_faults()
    gh.clear_wrong_bytes()
    gh.reset_rate_limits()
    gh.media_redirect = False
    yield
    gh.resume()


def hosts(gh: FakeGitHub) -> dict[str, str]:
    return {"github_api_url": gh.api_url, "github_url": gh.raw_url, "github_media_url": gh.media_url}


def host_flags(gh: FakeGitHub) -> list[str]:
    return ["--github-api-url", gh.api_url, "--github-url", gh.raw_url, "--github-media-url", gh.media_url]


def proxy(tmp_path: Path, gh: FakeGitHub, name: str = "home", **config: Any) -> ProxyThread:
    return ProxyThread(tmp_path / name, NO_HUB, chunk_size=config.pop("chunk_size", 256 << 10), sources=hosts(gh),
                       **config)  # fmt: skip


def get(px: ProxyThread, address: str, method: str = "GET", **headers: str) -> Got:
    return call(method, f"{px.url}/v1/files/{address}", headers=headers)


def cli(
    home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A real ``hoard`` process on ``home``, configured by its flags (and ``env``) alone."""
    proc = subprocess.run([*HOARD, *args], env=dict(env or serve_env(), HOARD_HOME=str(home)),
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"hoard {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def no_token_beyond_the_api(gh: FakeGitHub) -> None:
    """The token went to the API host (when asked at all) and nowhere else."""
    for r in gh.requests:
        if r.origin == "api":
            assert r.authorization in (None, f"Bearer {TOKEN}"), r
        else:
            assert r.authorization is None and TOKEN not in json.dumps(r.headers), r


# -- 1. files by address --------------------------------------------------------------------------


def test_files_at_the_default_branch_a_branch_a_tag_and_a_commit(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo("org/refs", {"v.txt": b"one\n", "keep.txt": b"same\n"}, default_branch="trunk", tags=("v1",))
    first = gh.head("org/refs").sha
    second = gh.commit("org/refs", {"v.txt": b"two\n"})  # trunk moves on; v1 stays
    gh.branch("org/refs", "feature/x", first)
    with proxy(tmp_path, gh) as px:
        for address, body, commit in [
            ("github/org/refs/v.txt", b"two\n", second),  # HEAD: the default branch, trunk
            ("github/org/refs@trunk/v.txt", b"two\n", second),
            ("github/org/refs@v1/v.txt", b"one\n", first),
            ("github/org/refs@feature%2Fx/v.txt", b"one\n", first),
            (f"github/org/refs@{first}/v.txt", b"one\n", first),
            (f"github/org/refs@{second[:7]}/v.txt", b"two\n", second),
        ]:
            got = get(px, address)
            assert (got.status, got.body, got.headers["X-Hoard-Revision"]) == (200, body, commit), address
            assert got.headers["X-Hoard-Identity"] == f"gitsha1:{Content.of(body).git_sha1}"
        status, headers, body = raw("HEAD", f"{px.url}/v1/files/github/org/refs/keep.txt")
        assert (status, body, headers["Content-Length"]) == (200, b"", "5")
        for address, kind in [
            ("github/org/refs/missing.txt", "entry_not_found"),
            ("github/org/nothing/v.txt", "repo_not_found"),
            ("github/org/refs@no-such-ref/v.txt", "revision_not_found"),
            (f"github/org/refs@{'0' * 40}/v.txt", "revision_not_found"),
            ("github/org/bad%3Fname/v.txt", "repo_not_found"),  # never reaches a URL
        ]:
            miss = get(px, address)
            assert (miss.status, miss.json()["kind"]) == (404, kind), (address, miss.body)
    # one tree per commit, and the unchanged file of two commits is one blob
    assert gh.count(f"/git/trees/{first}", origin="api") == 1 and gh.count(f"/git/trees/{second}", origin="api") == 1
    assert not any(r.has("/repos/org/bad") for r in gh.requests)
    no_token_beyond_the_api(gh)


# -- 2. Git LFS ---------------------------------------------------------------------------------


def test_lfs_pointers_become_media_objects_verified_by_their_sha256(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo("org/lfs", FILES)
    head = gh.head("org/lfs")
    gh.media_redirect = True  # the media host answers with signed object-storage URLs
    with proxy(tmp_path, gh) as px:
        tree = call("GET", f"{px.url}/v1/trees/github/org/lfs").json()
        files = {f["path"]: f for f in tree["files"]}
        model = files["weights/model.onnx"]
        assert (model["size"], model["identity"]) == (WEIGHTS.size, f"sha256:{WEIGHTS.sha256}")
        assert model["meta"]["lfs"] == {"oid": WEIGHTS.sha256, "size": WEIGHTS.size,
                                        "pointerSize": len(lfs_pointer(WEIGHTS))}  # fmt: skip
        assert files["weights/small.bin"]["identity"] == f"gitsha1:{Content.from_bytes(SMALL_BIN).git_sha1}"
        pointer_text = lfs_pointer(Content("not tracked", 10))
        assert files["notes/pointer.txt"]["size"] == len(pointer_text)  # not tracked: a file like any

        got = get(px, "github/org/lfs/weights/model.onnx", Range="bytes=300000-300099")
        assert got.status == 206 and got.body == WEIGHTS.read(300000, 300100)
        assert get(px, "github/org/lfs/weights/model.onnx").body == WEIGHTS.read()
        wait_for(lambda: px.store.resolve(f"sha256:{WEIGHTS.sha256}") is not None)
        assert get(px, "github/org/lfs/weights/small.bin").body == SMALL_BIN
        assert get(px, "github/org/lfs/notes/pointer.txt").body == pointer_text
    # the pointer was read from the raw host once (for the tree), the object from storage
    model_path = f"/org/lfs/{head.sha}/weights/model.onnx"
    assert [r.status for r in gh.find(model_path, origin="raw")] == [200]
    assert gh.find(model_path, origin="media") and gh.find(WEIGHTS.sha256, origin="objects")
    # bytes the tree build already had are never fetched again
    assert gh.count("small.bin", origin="media") == gh.count("/.gitattributes", origin="media") == 0
    assert gh.count("small.bin", origin="raw") == 1
    no_token_beyond_the_api(gh)


def test_wrong_bytes_are_never_published(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo("org/wrong", {"w.onnx": WEIGHTS, "plain.txt": b"plain text\n" * 100, "gone.pth": Content("gone", 5000)})
    gh.drop_lfs_object("org/wrong", Content("gone", 5000).sha256)
    with proxy(tmp_path, gh) as px:
        # a pointer the raw host garbles: the tree cannot be built, and none is stored
        pointer = gh.wrong_bytes("org/wrong", "w.onnx", host="raw")
        broken = get(px, "github/org/wrong/plain.txt")
        assert (broken.status, broken.json()["kind"]) == (502, "integrity") and "git blob" in broken.json()["error"]
        assert px.store.get_snapshot("github/org/wrong", gh.head("org/wrong").sha) is None
        pointer.active = False
        for path, host in [("w.onnx", "media"), ("plain.txt", "raw")]:
            switch = gh.wrong_bytes("org/wrong", path, host=host)
            bad = get(px, f"github/org/wrong/{path}")
            assert switch.hits >= 1
            assert not (bad.status == 200 and bad.error is None), (path, bad.status)
            switch.active = False
        assert px.store.resolve(f"sha256:{WEIGHTS.sha256}") is None
        assert px.store.resolve(f"gitsha1:{Content.of(b'plain text' + NL * 100).git_sha1}") is None
        assert get(px, "github/org/wrong/plain.txt").body == b"plain text\n" * 100
        assert get(px, "github/org/wrong/w.onnx").body == WEIGHTS.read()
        gone = get(px, "github/org/wrong/gone.pth")
        assert (gone.status, gone.json()["kind"]) == (404, "not_found") and "no such file" in gone.json()["error"]


# -- 3. the API's rate limit ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_is_a_clear_503_and_cached_commits_still_serve(status: int, tmp_path: Path) -> None:
    with FakeGitHub(tokens={TOKEN}, rate_limit_status=status) as gh:
        gh.add_repo("org/limited", {"a.txt": b"a\n", "b.txt": b"b\n"}, tags=("v1",))
        commit = gh.head("org/limited").sha
        with proxy(tmp_path, gh, refs_ttl=3600.0) as px:
            assert get(px, f"github/org/limited@{commit}/a.txt").body == b"a\n"
            assert get(px, "github/org/limited/b.txt").body == b"b\n"
            gh.rate_limit = 0  # the hour's requests are spent
            gh.reset_rate_limits()
            gh.clear_log()
            limited = get(px, "github/org/limited@v1/a.txt")  # a ref never resolved here
            assert (limited.status, limited.json()["kind"]) == (503, "origin_unavailable")
            message = limited.json()["error"]
            assert "rate limit" in message and "GITHUB_TOKEN" in message and "UTC" in message, message
            assert [r.status for r in gh.find(origin="api")] and {r.status for r in gh.find(origin="api")} == {status}

            gh.clear_log()
            assert get(px, f"github/org/limited@{commit}/b.txt").body == b"b\n"  # cached tree, no API call
            assert get(px, "github/org/limited/a.txt").body == b"a\n"
            assert gh.count(origin="api") == 0
            # a client's own GitHub token lifts the limit (and goes to the API only); the first
            # ask may find the origin marked down and answer 503 while it is probed again
            wait_for(lambda: get(px, "github/org/limited@v1/a.txt", Authorization=f"Bearer {TOKEN}").body == b"a\n")
            assert {r.authorization for r in gh.find(origin="api")} == {f"Bearer {TOKEN}"}
        no_token_beyond_the_api(gh)


def test_refs_are_revalidated_by_conditional_requests_the_limit_does_not_count(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo("org/etag", {"a.txt": b"a\n"})
    with proxy(tmp_path, gh, refs_ttl=0.0) as px:  # every read re-resolves HEAD
        for _ in range(3):
            assert get(px, "github/org/etag/a.txt").body == b"a\n"
        limits = [r for r in gh.find(origin="api") if r.status == 200]
        new = gh.commit("org/etag", {"a.txt": b"b\n"})
        assert get(px, "github/org/etag/a.txt").body == b"b\n"
    assert [r.status for r in gh.find("/repos/org/etag/commits/main", origin="api")] == [200, 304, 304, 200]
    repo = [r.status for r in gh.find("/repos/org/etag", origin="api") if r.path == "/repos/org/etag"]
    assert repo == [200, 304, 304, 304]
    assert len(limits) == 3 and gh.count(f"/git/trees/{new}", origin="api") == 1  # repo, commit, tree: then free


# -- 4. trees GitHub truncates ----------------------------------------------------------------------


def test_a_truncated_tree_is_listed_folder_by_folder(tmp_path: Path) -> None:
    with FakeGitHub(tree_limit=4) as gh:
        files = {f"d{i}/f{j}.txt": f"{i}.{j}\n".encode() for i in range(3) for j in range(2)}
        gh.add_repo("org/wide", files, lfs=())
        gh.add_repo("org/crowded", {f"f{j}.txt": b"x" for j in range(5)}, lfs=())
        with proxy(tmp_path, gh) as px:
            tree = call("GET", f"{px.url}/v1/trees/github/org/wide").json()
            assert sorted(f["path"] for f in tree["files"]) == sorted(files)
            assert get(px, "github/org/wide/d2/f1.txt").body == b"2.1\n"
            crowded = get(px, "github/org/crowded/f0.txt")
            assert crowded.status == 502 and "cannot list" in crowded.json()["error"]


# -- 5. the commands, offline, a parent, the mount --------------------------------------------------


def test_prefetch_with_github_token_then_offline_serves_the_last_known_commit(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo("org/pre", {**FILES, "extra/big.pth": Content("big", 400_000)})
    gh.media_redirect = True
    home = tmp_path / "home"
    env = dict(serve_env(), GITHUB_TOKEN=TOKEN)
    done = json.loads(cli(home, "prefetch", "github/org/pre", *host_flags(gh), "--json", env=env).stdout)
    # .gitattributes and weights/small.bin were read (and kept) while the tree was built
    assert (done["files"], done["fetched"], done["revision"]) == (len(FILES) + 2, len(FILES), gh.head("org/pre").sha)
    api = gh.find(origin="api")
    assert api and all(r.authorization == f"Bearer {TOKEN}" for r in api)
    assert {r.origin for r in gh.requests} == {"api", "raw", "media", "objects"}
    no_token_beyond_the_api(gh)
    again = json.loads(cli(home, "prefetch", "github/org/pre", *host_flags(gh), "--json", env=env).stdout)
    assert (again["fetched"], again["cached"]) == (0, len(FILES) + 2)

    old = gh.head("org/pre").sha
    gh.commit("org/pre", {"README.md": b"# moved on\n"})
    gh.pause()  # GitHub unreachable; refs expire at once
    with proxy(tmp_path, gh, refs_ttl=0.0) as px:
        got = get(px, "github/org/pre/weights/model.onnx")
        assert (got.status, got.headers["X-Hoard-Revision"]) == (200, old) and got.body == WEIGHTS.read()
        assert get(px, "github/org/pre/README.md").body == FILES["README.md"]
        unseen = get(px, "github/org/pre@v9/README.md")
        assert (unseen.status, unseen.json()["kind"]) == (503, "origin_unavailable")
        gh.resume()
        wait_for(lambda: get(px, "github/org/pre/README.md").body == b"# moved on\n")


def test_a_node_fills_github_files_from_a_parent_and_verifies_them(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo("org/tier", {"w.onnx": WEIGHTS, "cfg.json": b"{}\n", "bad.txt": b"bad\n" * 50})
    gh.wrong_bytes("org/tier", "bad.txt", host="raw")
    with proxy(tmp_path, gh, name="parent") as parent, \
            ProxyThread(tmp_path / "node", NO_HUB, chunk_size=256 << 10, upstream=parent.url) as node:  # fmt: skip
        got = get(node, "github/org/tier/w.onnx")
        assert (got.status, got.body) == (200, WEIGHTS.read())
        assert got.headers["X-Hoard-Revision"] == gh.head("org/tier").sha
        wait_for(lambda: node.store.resolve(f"sha256:{WEIGHTS.sha256}") is not None)
        assert get(node, "github/org/tier/cfg.json").body == b"{}\n"
        bad = get(node, "github/org/tier/bad.txt")
        assert not (bad.status == 200 and bad.error is None)
        assert node.store.resolve(f"gitsha1:{Content.of((b'bad' + NL) * 50).git_sha1}") is None
        assert node.store.get_ref("github/org/tier", "HEAD") is not None  # the default ref, as the parent resolved it


@pytest.mark.fuse
def test_mount_reads_the_default_branch_and_a_commit_with_the_token_kept_to_the_api(
    gh: FakeGitHub, tmp_path: Path
) -> None:
    gh.add_repo("org/mnt", FILES)
    first = gh.head("org/mnt").sha
    gh.commit("org/mnt", {"README.md": b"# second\n"})
    gh.media_redirect = True
    env = dict(serve_env(), HOARD_CHUNK_SIZE="1MiB", GITHUB_TOKEN=TOKEN)
    with MountProcess(tmp_path / "home", tmp_path / "mnt", NO_HUB, *host_flags(gh), env=env) as m:
        root = m.path("github/org/mnt")
        assert sorted(os.listdir(root)) == [".gitattributes", "README.md", "config.json", "notes", "sub", "weights"]
        assert (root / "README.md").read_bytes() == b"# second\n"
        assert os.stat(root / "weights/model.onnx").st_size == WEIGHTS.size
        assert (root / "weights/model.onnx").read_bytes() == WEIGHTS.read()
        assert os.getxattr(root / "weights/model.onnx", "user.hoard.verified_by") == b"sha256"
        assert os.getxattr(root / "README.md", "user.hoard.verified_by") == b"gitsha1"
        pinned = m.path(f"github/org/mnt@{first}")
        assert (pinned / "README.md").read_bytes() == FILES["README.md"]
        assert (pinned / "sub/a b.txt").read_bytes() == FILES["sub/a b.txt"]
    assert gh.find(origin="objects") and gh.find(origin="api")
    no_token_beyond_the_api(gh)


# -- 6. which files are LFS pointers ----------------------------------------------------------------


def test_gitattributes_rules_follow_git() -> None:
    rules = LfsRules.parse({
        ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n/top.onnx filter=lfs\n"
                          b"models/** filter=lfs\n# *.txt filter=lfs\n**/deep/*.pt filter=lfs\n"
                          b'"with space.ckpt" filter=lfs\nkeep.bin -filter\n',
        "sub/.gitattributes": b"*.bin !filter\nlocal.dat filter=lfs\n",
    })  # fmt: skip
    lfs = ["a.bin", "x/y/a.bin", "top.onnx", "models/a/b.json", "a/deep/w.pt", "deep/w.pt", "with space.ckpt",
           "sub/local.dat"]  # fmt: skip
    plain = ["x/top.onnx", "notes.txt", "keep.bin", "x/keep.bin", "sub/a.bin", "local.dat", "a/deep/x/w.pt",
             "modelsx/a.json"]  # fmt: skip
    assert [p for p in lfs if not rules.is_lfs(p)] == [] and [p for p in plain if rules.is_lfs(p)] == []
    assert not LfsRules.parse({".gitattributes": b"*.md text\n"})

    pointer = lfs_pointer(WEIGHTS)
    assert parse_pointer(pointer) == (WEIGHTS.sha256, WEIGHTS.size)
    for bad in [pointer.rstrip(b"\n"), pointer.replace(b"sha256:", b"sha512:"), pointer.replace(b"size ", b"size x"),
                pointer + b"oid sha256:" + b"0" * 64 + b"\n", b"version https://git-lfs.github.com/spec/v1\n",
                pointer + b"x" * 1024, pointer.upper()]:  # fmt: skip
        assert parse_pointer(bad) is None, bad
