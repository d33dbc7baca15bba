"""Faithfulness tests for the fakes of hoard's coming sources: GitHub (API, raw, media, web,
codeload, LFS storage), the ONNX Model Hub on it, download.pytorch.org weights, a torch.hub
repository, and any plain URL origin.

Where a stock client exists it is driven at the fake and the exact requests it made are
asserted from the fake's log (hoard will have to serve exactly those): onnx 1.20.1's
``onnx.hub`` in a venv of its own (`tests.clientvenv`), and torch 2.13's ``torch.hub`` in this
interpreter. Wire details no client shows (rate-limit headers, ranges, pointers, digests,
conditionals, redirects) are checked with ``http.client``, which follows no redirects and
decodes nothing. Git object ids are checked against the ``git`` binary. No test sleeps to
synchronise or asserts on timing.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clientvenv import client_python
from tests.fakes.content import Content
from tests.fakes.github import FakeGitHub, lfs_pointer, parse_pointer
from tests.fakes.github.onnxhub import OnnxHub
from tests.fakes.torchhub import FakeTorchWeights, add_hub_repo, patch_torch_hub, tiny_state_dict
from tests.fakes.urlorigin import FakeURLOrigin, crc32c
from tests.httpcalls import raw

GOOD, OTHER = "ghp_good_token", "ghp_unknown_token"
BIG = Content("lfs-weights", 300_000)
CONFIG = json.dumps({"hidden": 8, "layers": ["a"] * 50}).encode()
FILES: dict[str, bytes | Content] = {
    "README.md": b"# tiny\n",
    "config.json": CONFIG,
    "sub/dir/notes.txt": b"nested\n",
    "sub/a b.txt": "space \u00e9\n".encode(),
    "sub-x.txt": b"git sorts me before sub/\n",
    "weights/model.onnx": BIG,
}
ONNX_VENV = ("onnx-1.20.1", ["onnx==1.20.1"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    status, hdrs, body = raw("GET", url, headers)
    return status, hdrs, json.loads(body) if body else None


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens={GOOD}, rate_limit=10_000) as fake:
        fake.add_repo("org/tiny", FILES, tags=("v1.0",), branches=("feature/x",))
        yield fake


@pytest.fixture(autouse=True)
def _fresh(gh: FakeGitHub) -> Iterator[None]:
    gh.clear_log()
    gh.clear_faults()
    gh.clear_wrong_bytes()
    gh.reset_rate_limits()
    gh.media_redirect = gh.ambiguous_300 = gh.raw_cache = False
    gh.purge_raw_cache()
    yield


@pytest.fixture(scope="module")
def weights() -> Iterator[FakeTorchWeights]:
    with FakeTorchWeights() as fake:
        yield fake


# --------------------------------------------------------------------------------------
# git object ids
# --------------------------------------------------------------------------------------


def test_git_ids_match_the_git_binary(tmp_path: Path) -> None:
    git = shutil.which("git")
    assert git is not None, "git is needed to check the fake's object ids"
    gh = FakeGitHub()  # seeding needs no running servers
    repo = gh.add_repo("o/r", {**FILES, "bin/run.sh": b"#!/bin/sh\n"})
    commit = gh.head("o/r")
    work = tmp_path / "w"
    for path, blob in commit.files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(blob.stored.read())
    env = {**os.environ, "GIT_DIR": str(tmp_path / "g.git"), "GIT_WORK_TREE": str(work)}
    who = {"NAME": commit.author[0], "EMAIL": commit.author[1], "DATE": f"{commit.timestamp} +0000"}
    env.update({f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()})

    def run(*args: str) -> str:
        return subprocess.run([git, *args], env=env, check=True, capture_output=True, text=True).stdout.strip()

    run("init", "-q")
    run("add", "-A")
    assert run("write-tree") == commit.tree
    assert run("commit-tree", commit.tree, "-m", commit.message) == commit.sha
    for path, blob in commit.files.items():
        assert run("hash-object", str(work / path)) == blob.sha, path
    assert repo.lfs_objects[BIG.sha256] == BIG
    assert commit.files["weights/model.onnx"].stored.read() == lfs_pointer(BIG)
    assert parse_pointer(lfs_pointer(BIG)) == (BIG.sha256, BIG.size)


# --------------------------------------------------------------------------------------
# the API host
# --------------------------------------------------------------------------------------


def test_api_repo_commits_and_trees(gh: FakeGitHub) -> None:
    head = gh.head("org/tiny")
    api = f"{gh.api_url}/repos/org/tiny"
    status, _, body = get_json(api)
    assert (status, body["default_branch"], body["full_name"]) == (200, "main", "org/tiny")
    for ref in ("main", "v1.0", "feature/x", head.sha, head.sha[:7], "refs/heads/main"):
        status, _, body = get_json(f"{api}/commits/{ref}")
        assert (status, body["sha"], body["commit"]["tree"]["sha"]) == (200, head.sha, head.tree), ref
    status, _, body = get_json(f"{api}/commits/no-such-ref")
    assert status == 422 and body["message"] == "No commit found for SHA: no-such-ref"
    status, _, body = get_json(f"{gh.api_url}/repos/org/missing/commits/main")
    assert status == 404 and body["message"] == "Not Found"
    status, hdrs, text = raw("GET", f"{api}/commits/main", {"Accept": "application/vnd.github.sha"})
    assert (status, text.decode()) == (200, head.sha) and hdrs["ETag"] == f'"{head.sha}"'

    status, _, tree = get_json(f"{api}/git/trees/{head.tree}?recursive=1")
    assert status == 200 and tree["sha"] == head.tree and tree["truncated"] is False
    listed = {e["path"]: e for e in tree["tree"]}
    assert [e["path"] for e in tree["tree"]] == [
        ".gitattributes", "README.md", "config.json", "sub-x.txt", "sub", "sub/a b.txt", "sub/dir", "sub/dir/notes.txt",
        "weights", "weights/model.onnx",
    ]  # fmt: skip
    lfs = listed["weights/model.onnx"]
    assert lfs["type"] == "blob" and lfs["mode"] == "100644" and lfs["size"] == len(lfs_pointer(BIG))
    assert lfs["sha"] == head.files["weights/model.onnx"].sha
    assert listed["sub"]["type"] == "tree" and "size" not in listed["sub"]
    # the presence of `recursive` recurses, whatever its value; without it, one level
    assert len(get_json(f"{api}/git/trees/main?recursive=0")[2]["tree"]) == len(tree["tree"])
    assert [e["path"] for e in get_json(f"{api}/git/trees/{head.tree}")[2]["tree"]] == [
        ".gitattributes", "README.md", "config.json", "sub-x.txt", "sub", "weights",
    ]  # fmt: skip
    status, _, blob = get_json(lfs["url"])
    assert status == 200 and base64.b64decode(blob["content"]) == lfs_pointer(BIG)
    assert get_json(f"{api}/git/trees/{'0' * 40}")[0] == 404
    gh.tree_limit = 4  # GitHub cuts at 100,000 entries (or 7 MB) and says so
    try:
        status, _, cut = get_json(f"{api}/git/trees/main?recursive=1")
        assert status == 200 and cut["truncated"] is True and len(cut["tree"]) == 4
    finally:
        gh.tree_limit = 100_000


def test_api_branches_and_tags_pages(gh: FakeGitHub) -> None:
    api = f"{gh.api_url}/repos/org/tiny"
    status, hdrs, page1 = get_json(f"{api}/branches?per_page=1&page=1")
    assert status == 200 and [b["name"] for b in page1] == ["feature/x"]
    assert 'rel="next"' in hdrs["Link"] and "page=2" in hdrs["Link"]
    assert [b["name"] for b in get_json(f"{api}/branches?per_page=1&page=2")[2]] == ["main"]
    assert get_json(f"{api}/branches?per_page=100&page=2")[2] == []
    _, _, tags = get_json(f"{api}/tags?per_page=100&page=1")
    assert [(t["name"], t["commit"]["sha"]) for t in tags] == [("v1.0", gh.head("org/tiny").sha)]
    status, _, one = get_json(f"{api}/branches/feature/x")
    assert status == 200 and one["commit"]["sha"] == gh.head("org/tiny").sha


def test_api_rate_limit_anonymous_then_token() -> None:
    with FakeGitHub(tokens={GOOD}) as fake:  # the real defaults: 60 anonymous, 5000 with a token
        fake.add_repo("o/r", {"a.txt": b"a"})
        url = f"{fake.api_url}/repos/o/r"
        for i in range(60):
            status, hdrs, _ = raw("GET", url)
            assert status == 200
            assert (hdrs["X-RateLimit-Limit"], hdrs["X-RateLimit-Remaining"], hdrs["X-RateLimit-Used"]) == (
                "60",
                str(59 - i),
                str(i + 1),
            )
            assert int(hdrs["X-RateLimit-Reset"]) > 0 and hdrs["X-RateLimit-Resource"] == "core"
        status, hdrs, body = raw("GET", url)
        assert status == 403 and hdrs["X-RateLimit-Remaining"] == "0"
        assert json.loads(body)["message"].startswith("API rate limit exceeded for 127.0.0.1.")
        # /rate_limit is free and agrees
        status, _, body = raw("GET", f"{fake.api_url}/rate_limit")
        assert status == 200 and json.loads(body)["resources"]["core"]["remaining"] == 0
        # a token lifts the limit; "Bearer" works too; an unknown token is refused
        for auth in (f"token {GOOD}", f"Bearer {GOOD}"):
            status, hdrs, _ = raw("GET", url, {"Authorization": auth})
            assert status == 200 and hdrs["X-RateLimit-Limit"] == "5000"
        assert hdrs["X-RateLimit-Remaining"] == "4998"
        status, _, body = raw("GET", url, {"Authorization": f"token {OTHER}"})
        assert status == 401 and json.loads(body)["message"] == "Bad credentials"
        # a conditional request answered 304 costs nothing
        status, hdrs, _ = raw("GET", url, {"Authorization": f"token {GOOD}"})
        etag, left = hdrs["ETag"], hdrs["X-RateLimit-Remaining"]
        status, hdrs, _ = raw("GET", url, {"Authorization": f"token {GOOD}", "If-None-Match": etag})
        assert status == 304 and hdrs["X-RateLimit-Remaining"] == left
        # the 429 variant, and a new hour
        fake.rate_limit_status = 429
        assert raw("GET", url)[0] == 429
        fake.reset_rate_limits()
        assert raw("GET", url)[0] == 200
        assert {r.authorization for r in fake.requests} == {None, f"token {GOOD}", f"Bearer {GOOD}", f"token {OTHER}"}


# --------------------------------------------------------------------------------------
# raw and media hosts
# --------------------------------------------------------------------------------------


def test_raw_host_serves_git_contents(gh: FakeGitHub) -> None:
    head = gh.head("org/tiny")
    pointer = lfs_pointer(BIG)
    for ref in ("main", "v1.0", head.sha, "refs/heads/main", "feature/x"):
        status, hdrs, body = raw("GET", gh.raw_file_url("org/tiny", ref, "weights/model.onnx"))
        assert (status, body) == (200, pointer), ref
        assert hdrs["Content-Type"] == "text/plain; charset=utf-8" and hdrs["Accept-Ranges"] == "bytes"
    assert raw("GET", gh.raw_file_url("org/tiny", "main", "sub/a b.txt"))[2] == FILES["sub/a b.txt"]
    status, hdrs, body = raw("HEAD", gh.raw_file_url("org/tiny", "main", "config.json"))
    assert (status, body, hdrs["Content-Length"]) == (200, b"", str(len(CONFIG)))
    status, hdrs, body = raw("GET", gh.raw_file_url("org/tiny", "main", "config.json"))
    etag = hdrs["ETag"]
    assert status == 200 and body == CONFIG and hdrs["Cache-Control"] == "max-age=300"
    assert raw("GET", gh.raw_file_url("org/tiny", "main", "config.json"), {"If-None-Match": etag})[0] == 304
    status, hdrs, body = raw("GET", gh.raw_file_url("org/tiny", "main", "config.json"), {"Range": "bytes=2-9"})
    assert (status, body) == (206, CONFIG[2:10])
    assert hdrs["Content-Range"] == f"bytes 2-9/{len(CONFIG)}"
    status, hdrs, _ = raw("GET", gh.raw_file_url("org/tiny", "main", "README.md"), {"Range": "bytes=999-"})
    assert status == 416 and hdrs["Content-Range"] == f"bytes */{len(FILES['README.md'])}"
    # gzip for a client that accepts it (Fastly does), never on ranges
    status, hdrs, body = raw("GET", gh.raw_file_url("org/tiny", "main", "config.json"), {"Accept-Encoding": "gzip"})
    assert hdrs["Content-Encoding"] == "gzip" and gzip.decompress(body) == CONFIG
    assert hdrs["ETag"] == "W/" + etag
    for missing in ("nope.txt", "sub", "sub/dir"):
        assert raw("GET", gh.raw_file_url("org/tiny", "main", missing))[:3:2] == (404, b"404: Not Found")
    assert raw("GET", gh.raw_file_url("org/tiny", "no-ref", "README.md"))[0] == 404


def test_media_host_serves_lfs_objects(gh: FakeGitHub) -> None:
    url = gh.media_file_url("org/tiny", "main", "weights/model.onnx")
    status, hdrs, body = raw("GET", url)
    assert status == 200 and sha256(body) == BIG.sha256 and hdrs["Content-Type"] == "application/octet-stream"
    assert hdrs["ETag"].strip('"') != BIG.sha256  # an opaque (md5) tag, not the oid
    status, hdrs, body = raw("GET", url, {"Range": "bytes=-100"})
    assert (status, body, hdrs["Content-Range"]) == (
        206,
        BIG.read(BIG.size - 100),
        f"bytes {BIG.size - 100}-{BIG.size - 1}/{BIG.size}",
    )
    status, _, body = raw("GET", gh.media_file_url("org/tiny", "v1.0", "README.md"))
    assert (status, body) == (200, FILES["README.md"])  # not LFS: the plain bytes
    assert raw("GET", gh.media_file_url("org/tiny", "main", "nope.bin"))[0] == 404


def test_media_redirect_to_signed_object_url(gh: FakeGitHub) -> None:
    gh.media_redirect = True
    url = gh.media_file_url("org/tiny", "main", "weights/model.onnx")
    status, hdrs, _ = raw("GET", url, {"Authorization": f"token {GOOD}"})
    location = hdrs["Location"]
    assert status == 302 and location.startswith(gh.origin_url("objects") + "/github-production-media/" + BIG.sha256)
    status, _, body = raw("GET", location)
    assert status == 200 and body == BIG.read()
    with urllib.request.urlopen(url) as resp:  # a stock client follows the cross-origin hop
        assert sha256(resp.read()) == BIG.sha256
    assert raw("GET", location.replace("X-Amz-Signature=", "X-Amz-Signature=0"))[0] == 403
    gh.expire_signed_urls()
    status, _, body = raw("GET", location)
    assert status == 403 and b"Request has expired" in body
    status, hdrs, _ = raw("GET", url)
    assert raw("GET", hdrs["Location"])[0] == 200  # a fresh URL works
    assert gh.find(origin="objects")[0].authorization is None


def test_wrong_bytes_and_missing_lfs_object(gh: FakeGitHub) -> None:
    head = gh.head("org/tiny")
    switch = gh.wrong_bytes("org/tiny", "weights/model.onnx")
    body = raw("GET", gh.media_file_url("org/tiny", "main", "weights/model.onnx"))[2]
    assert len(body) == BIG.size and sha256(body) != BIG.sha256
    pointer = raw("GET", gh.raw_file_url("org/tiny", "main", "weights/model.onnx"))[2]
    assert hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest() != head.files["weights/model.onnx"].sha
    gh.media_redirect = True
    location = raw("GET", gh.media_file_url("org/tiny", "main", "weights/model.onnx"))[1]["Location"]
    assert sha256(raw("GET", location)[2]) != BIG.sha256
    assert switch.hits == 3
    switch.active = False
    assert sha256(raw("GET", location)[2]) == BIG.sha256
    # a pointer whose object never reached the LFS store
    gh.media_redirect = False
    lonely = Content("never-pushed", 1000)
    gh.add_repo("org/lonely", {"w.onnx": lonely})
    gh.drop_lfs_object("org/lonely", lonely.sha256)
    assert raw("GET", gh.raw_file_url("org/lonely", "main", "w.onnx"))[2] == lfs_pointer(lonely)
    assert raw("GET", gh.media_file_url("org/lonely", "main", "w.onnx"))[0] == 404


def test_branch_moves_commits_stay(gh: FakeGitHub) -> None:
    gh.add_repo("org/moving", {"a.txt": b"one\n", "w.pth": Content("w1", 5000)})
    old = gh.head("org/moving")
    new_sha = gh.commit("org/moving", {"a.txt": b"two\n", "w.pth": None, "b/c.txt": b"c\n"}, message="second")
    new = gh.head("org/moving")
    assert new.sha == new_sha and new.parents == (old.sha,)
    assert raw("GET", gh.raw_file_url("org/moving", "main", "a.txt"))[2] == b"two\n"
    assert raw("GET", gh.raw_file_url("org/moving", old.sha, "a.txt"))[2] == b"one\n"
    assert raw("GET", gh.raw_file_url("org/moving", "main", "w.pth"))[0] == 404
    assert raw("GET", gh.media_file_url("org/moving", old.sha, "w.pth"))[2] == Content("w1", 5000).read()
    _, _, body = get_json(f"{gh.api_url}/repos/org/moving/commits/main")
    assert body["sha"] == new.sha and body["parents"][0]["sha"] == old.sha
    assert {f["filename"]: f["status"] for f in body["files"]} == {
        "a.txt": "modified",
        "w.pth": "removed",
        "b/c.txt": "added",
    }
    # a caching edge: a branch URL keeps its first answer, a commit URL is always right
    gh.raw_cache = True
    try:
        url = gh.raw_file_url("org/moving", "main", "a.txt")
        assert raw("GET", url)[2] == b"two\n"
        gh.commit("org/moving", {"a.txt": b"three\n"})
        status, hdrs, body = raw("GET", url)
        assert (status, body, hdrs["X-Cache"]) == (200, b"two\n", "HIT")
        assert raw("GET", gh.raw_file_url("org/moving", gh.head("org/moving").sha, "a.txt"))[2] == b"three\n"
        gh.purge_raw_cache()
        assert raw("GET", url)[2] == b"three\n"
    finally:
        gh.raw_cache = False


# --------------------------------------------------------------------------------------
# web host and codeload
# --------------------------------------------------------------------------------------


def test_zipball_redirects_to_codeload(gh: FakeGitHub) -> None:
    head = gh.head("org/tiny")
    status, hdrs, _ = raw("GET", f"{gh.web_url}/org/tiny/zipball/main")
    assert status == 302 and hdrs["Location"] == f"{gh.codeload_url}/org/tiny/legacy.zip/refs/heads/main"
    assert raw("GET", f"{gh.web_url}/org/tiny/zipball/v1.0")[1]["Location"].endswith("/legacy.zip/refs/tags/v1.0")
    assert raw("GET", f"{gh.web_url}/org/tiny/zipball/{head.sha[:7]}")[1]["Location"].endswith(
        f"/legacy.zip/{head.sha}"
    )
    assert raw("GET", f"{gh.web_url}/org/tiny/zipball/nope")[0] == 404
    status, hdrs, body = raw("GET", f"{gh.codeload_url}/org/tiny/legacy.zip/refs/heads/main")
    assert status == 200 and hdrs["Content-Type"] == "application/zip" and "Content-Length" not in hdrs
    assert hdrs["Content-Disposition"] == f"attachment; filename=org-tiny-{head.sha[:7]}.zip"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        root = f"org-tiny-{head.sha[:7]}/"
        assert names[0] == root and all(n.startswith(root) for n in names)
        assert zf.comment.decode() == head.sha
        assert zf.read(root + "weights/model.onnx") == lfs_pointer(BIG)  # archives hold pointers
        assert zf.read(root + "sub/dir/notes.txt") == FILES["sub/dir/notes.txt"]
        assert names.index(root + "sub/dir/") < names.index(root + "sub/dir/notes.txt")
    assert raw("GET", f"{gh.web_url}/org/tiny/tree/main/")[0] == 200
    assert raw("GET", f"{gh.web_url}/org/tiny/tree/master/")[0] == 404
    status, hdrs, _ = raw("GET", f"{gh.web_url}/org/tiny/raw/main/weights/model.onnx")
    assert status == 302 and hdrs["Location"] == gh.media_file_url("org/tiny", "main", "weights/model.onnx")
    gh.branch("org/tiny", "v1.0")  # now both a branch and a tag
    try:
        gh.ambiguous_300 = True
        assert raw("GET", f"{gh.web_url}/org/tiny/zipball/v1.0")[0] == 300
        assert raw("GET", f"{gh.web_url}/org/tiny/zipball/refs/heads/v1.0")[0] == 302
    finally:
        del gh.repo("org/tiny").branches["v1.0"]


# --------------------------------------------------------------------------------------
# onnx.hub (onnx 1.20.1, the last release with it) against the fake
# --------------------------------------------------------------------------------------

ONNX_SCRIPT = r"""
import hashlib, json, os, sys, urllib.error
import onnx
ARGS = json.loads(os.environ["CLIENT_ARGS"])
OUT = {}
exec(ARGS["patch"])
import onnx.hub as hub
hub.set_dir(ARGS["hub_dir"])
REPO = "onnx/models:main"

def attempt(name, fn):
    try:
        OUT[name] = {"ok": fn()}
    except Exception as exc:
        OUT[name] = {"error": type(exc).__name__, "message": str(exc)[:400], "code": getattr(exc, "code", None)}

attempt("list", lambda: [(m.model, m.opset) for m in hub.list_models(REPO)])
attempt("list_tag", lambda: [(m.model, m.opset) for m in hub.list_models(REPO, tags=["ADD"])])
attempt("list_name", lambda: [(m.model, m.opset) for m in hub.list_models(REPO, model="tiny-relu")])
attempt("info", lambda: [hub.get_model_info("Tiny-Relu", REPO).opset,
                         hub.get_model_info("Tiny-Relu", REPO, opset=7).model_sha])
attempt("info_bad_opset", lambda: hub.get_model_info("Tiny-Relu", REPO, opset=99))

def load():
    m = hub.load("Tiny-Relu", REPO, silent=True)
    return [m.graph.node[0].op_type, m.opset_import[0].version]
attempt("load", load)
attempt("load_cached", load)

def with_data():
    d = hub.download_model_with_test_data("Tiny-Add", REPO, silent=True)
    files = sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
    model = onnx.load(os.path.join(d, "model.onnx"))
    t = onnx.TensorProto(); t.ParseFromString(open(os.path.join(d, "test_data_set_0", "input_1.pb"), "rb").read())
    return [os.path.basename(d), files, model.graph.node[0].op_type, t.name]
attempt("with_data", with_data)
attempt("ghost", lambda: hub.load("Ghost", REPO, silent=True))
attempt("wrong_ref", lambda: hub.list_models("onnx/models:nope"))
if ARGS.get("wrong"):
    attempt("wrong_sha", lambda: hub.load("Tiny-Relu", REPO, opset=7, silent=True))
    attempt("wrong_sha_again", lambda: hub.load("Tiny-Relu", REPO, opset=7, silent=True))
    attempt("wrong_sha_reload", lambda: hub.load("Tiny-Relu", REPO, opset=7, silent=True, force_reload=True))
print("@@OUT@@" + json.dumps(OUT))
"""


def run_client(python: str, script: str, args: dict[str, Any], home: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONNX_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(CLIENT_ARGS=json.dumps(args), HOME=str(home))
    proc = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True, timeout=300, cwd=home)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@OUT@@")]
    assert proc.returncode == 0 and lines, f"client failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}"
    out: dict[str, Any] = json.loads(lines[-1][len("@@OUT@@") :])
    return out


def test_onnx_hub_client(gh: FakeGitHub, tmp_path: Path) -> None:
    python = client_python(*ONNX_VENV)
    hub = OnnxHub(gh)
    relu13 = hub.add("Tiny-Relu", "Relu", 13, tags=["vision", "relu"])
    relu7 = hub.add("Tiny-Relu", "Relu", 7)
    add18 = hub.add("Tiny-Add", "Add", 18, tags=["add"])
    ghost = hub.add("Ghost", "Identity", 13, in_tree=False)
    hub.publish()
    assert hub.base_url(lfs=True) == f"{gh.media_url}/onnx/models/main/"
    gh.clear_log()
    args = {"patch": hub.patch_source(), "hub_dir": str(tmp_path / "hub")}
    out = run_client(python, ONNX_SCRIPT, args, tmp_path)

    assert out["list"]["ok"] == [["Tiny-Relu", 13], ["Tiny-Relu", 7], ["Tiny-Add", 18], ["Ghost", 13]]
    assert out["list_tag"]["ok"] == [["Tiny-Add", 18]]  # tags are matched case-insensitively
    assert out["list_name"]["ok"] == [["Tiny-Relu", 13], ["Tiny-Relu", 7]]
    assert out["info"]["ok"] == [13, relu7.model_sha]
    assert (
        out["info_bad_opset"]["error"] == "AssertionError"
        and "Valid opsets: [13, 7]" in out["info_bad_opset"]["message"]
    )
    assert out["load"]["ok"] == out["load_cached"]["ok"] == ["Relu", 13]
    base, files, op, input_name = out["with_data"]["ok"]
    assert (base, op, input_name) == ("tiny-add", "Add", "y")
    assert files == [
        "model.onnx",
        "test_data_set_0/input_0.pb",
        "test_data_set_0/input_1.pb",
        "test_data_set_0/output_0.pb",
    ]
    assert (out["ghost"]["error"], out["ghost"]["code"]) == ("HTTPError", 404)
    assert out["wrong_ref"]["error"] == "AssertionError" and "Could not find manifest" in out["wrong_ref"]["message"]
    cached = (
        tmp_path
        / "hub"
        / os.path.dirname(relu13.model_path)
        / f"{relu13.model_sha}_{os.path.basename(relu13.model_path)}"
    )
    assert cached.read_bytes() == relu13.model_bytes

    manifest = "GET /onnx/models/main/ONNX_HUB_MANIFEST.json -> 200"
    media = "GET /media/onnx/models/main/"
    assert gh.trace() == [
        f"raw {manifest}",  # list_models
        f"raw {manifest}",  # list_models(tags=...)
        f"raw {manifest}",  # list_models(model=...)
        f"raw {manifest}",  # get_model_info
        f"raw {manifest}",  # get_model_info(opset=7)
        f"raw {manifest}",  # get_model_info(opset=99)
        f"raw {manifest}",  # load: the manifest, then the model
        f"media {media}{relu13.model_path} -> 200",
        f"raw {manifest}",  # load again: a cache hit still fetches the manifest
        f"raw {manifest}",  # download_model_with_test_data
        f"media {media}{add18.tar_path} -> 200",
        f"raw {manifest}",
        f"media {media}{ghost.model_path} -> 404",
        "raw GET /onnx/models/nope/ONNX_HUB_MANIFEST.json -> 404",
    ]
    for r in gh.requests:
        assert r.headers["user-agent"].startswith("Python-urllib/3.") and r.authorization is None and r.range is None

    # the media host serves bytes that do not match model_sha
    gh.clear_log()
    hub.wrong_sha(relu7)
    out = run_client(python, ONNX_SCRIPT, {**args, "hub_dir": str(tmp_path / "hub2"), "wrong": True}, tmp_path)
    assert out["wrong_sha"]["error"] == "AssertionError"
    assert f"while checksum should be {relu7.model_sha}" in out["wrong_sha"]["message"]
    # the bad file stays in onnx's cache: no new download, the same failure
    assert out["wrong_sha_again"]["error"] == "AssertionError"
    assert out["wrong_sha_reload"]["error"] == "AssertionError"
    wrong_gets = gh.find(relu7.model_path, origin="media")
    assert len(wrong_gets) == 2  # first load and force_reload; the cached retry made none


# --------------------------------------------------------------------------------------
# torch weights and torch.hub (torch in this interpreter)
# --------------------------------------------------------------------------------------


def _state_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.torch
def test_torch_load_state_dict_from_url(weights: FakeTorchWeights, tmp_path: Path) -> None:
    import torch.hub

    weights.clear_log()
    state = tiny_state_dict(1)
    url = weights.add_state_dict("tinylinear", state)
    name = url.rsplit("/", 1)[1]
    body = raw("GET", weights.origin_url("cdn") + "/models/" + name)[2]
    assert name == f"tinylinear-{sha256(body)[:8]}.pth"
    weights.clear_log()
    loaded = torch.hub.load_state_dict_from_url(url, model_dir=str(tmp_path / "ckpt"), check_hash=True, progress=False)
    assert _state_equal(loaded, state)
    assert weights.trace() == [f"download GET /models/{name} -> 302", f"cdn GET /models/{name} -> 200"]
    assert all(r.headers["user-agent"] == "torch.hub" for r in weights.requests)
    # a cache hit: no request at all
    torch.hub.load_state_dict_from_url(url, model_dir=str(tmp_path / "ckpt"), check_hash=True, progress=False)
    assert len(weights.requests) == 2

    weights.wrong_bytes(name)
    with pytest.raises(RuntimeError, match=rf'invalid hash value \(expected "{name[-12:-4]}", got'):
        torch.hub.load_state_dict_from_url(url, model_dir=str(tmp_path / "bad"), check_hash=True, progress=False)
    assert not (tmp_path / "bad" / name).exists() and os.listdir(tmp_path / "bad") == []
    weights.wrong_bytes(name, on=False)
    with pytest.raises(urllib.error.HTTPError) as info:
        torch.hub.load_state_dict_from_url(weights.file_url("nope-01234567.pth"), model_dir=str(tmp_path / "x"))
    assert info.value.code == 404


def _hub_load(gh: FakeGitHub, repo: str, hub_dir: Path, **kw: Any) -> Any:
    import torch.hub

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub_dir))
    try:
        with patch_torch_hub(gh, probe=kw.pop("probe", False)):
            return torch.hub.load(  # type: ignore[no-untyped-call]
                repo, "tiny_linear", trust_repo=True, skip_validation=False, **kw
            )
    finally:
        torch.hub.set_dir(old)


@pytest.mark.torch
def test_torch_hub_load(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    state = tiny_state_dict(2)
    url = weights.add_state_dict("hublinear", state)
    add_hub_repo(gh, "fakeorg/tinyhub", url, tags=("v0.1",))
    head = gh.head("fakeorg/tinyhub")
    gh.clear_log()
    weights.clear_log()
    model = _hub_load(gh, "fakeorg/tinyhub:main", tmp_path / "hub")
    assert _state_equal(model.state_dict(), state)
    name = url.rsplit("/", 1)[1]
    assert gh.trace() == [
        "api GET /repos/fakeorg/tinyhub/branches?per_page=100&page=1 -> 200",  # the fork check
        "web GET /fakeorg/tinyhub/zipball/main -> 302",
        "codeload GET /fakeorg/tinyhub/legacy.zip/refs/heads/main -> 200",
    ]
    assert weights.trace() == [f"download GET /models/{name} -> 302", f"cdn GET /models/{name} -> 200"]
    assert gh.requests[0].headers["accept"] == "application/vnd.github.v3+json"
    agents = [r.headers["user-agent"] for r in gh.requests + weights.requests]
    assert agents[0].startswith("Python-urllib/3.") and set(agents[1:]) == {"torch.hub"}
    assert all(r.authorization is None and r.range is None for r in gh.requests + weights.requests)
    assert (tmp_path / "hub" / "fakeorg_tinyhub_main" / "tinynet" / "model.py").exists()
    assert (tmp_path / "hub" / "checkpoints" / name).exists()
    assert "fakeorg_tinyhub" in (tmp_path / "hub" / "trusted_list").read_text().split()

    # a second load uses the extracted cache: no request anywhere, no revalidation
    gh.clear_log()
    weights.clear_log()
    _hub_load(gh, "fakeorg/tinyhub:main", tmp_path / "hub")
    assert gh.requests == [] and weights.requests == []

    # by a sha only a tag still names (main moved on): the fork check pages the branches to
    # the empty page, then the tags, matching sha prefixes
    gh.commit("fakeorg/tinyhub", {"README.md": b"moved on\n"})
    gh.clear_log()
    _hub_load(gh, f"fakeorg/tinyhub:{head.sha[:10]}", tmp_path / "hub")
    assert gh.trace() == [
        "api GET /repos/fakeorg/tinyhub/branches?per_page=100&page=1 -> 200",
        "api GET /repos/fakeorg/tinyhub/branches?per_page=100&page=2 -> 200",
        "api GET /repos/fakeorg/tinyhub/tags?per_page=100&page=1 -> 200",
        f"web GET /fakeorg/tinyhub/zipball/{head.sha[:10]} -> 302",
        f"codeload GET /fakeorg/tinyhub/legacy.zip/{head.sha} -> 200",
    ]
    assert (tmp_path / "hub" / f"fakeorg_tinyhub_{head.sha[:10]}" / "hubconf.py").exists()

    # a ref from nowhere fails the fork check after paging everything
    gh.clear_log()
    with pytest.raises(ValueError, match="Cannot find deadbeef"):
        _hub_load(gh, "fakeorg/tinyhub:deadbeef", tmp_path / "hub")
    assert [r.path for r in gh.requests] == ["/repos/fakeorg/tinyhub/branches"] * 2 + [
        "/repos/fakeorg/tinyhub/tags"
    ] * 2


@pytest.mark.torch
def test_torch_hub_token_probe_and_ambiguity(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = weights.add_state_dict("hublinear2", tiny_state_dict(3))
    add_hub_repo(gh, "fakeorg/mainhub", url)
    add_hub_repo(gh, "fakeorg/oldhub", url, default_branch="master")
    # GITHUB_TOKEN goes to the API host only, never to github.com or codeload
    monkeypatch.setenv("GITHUB_TOKEN", GOOD)
    gh.clear_log()
    _hub_load(gh, "fakeorg/mainhub", tmp_path / "h1", probe=True)
    assert gh.trace() == [
        "web GET /fakeorg/mainhub/tree/main/ -> 200",  # no ref: probe main
        "api GET /repos/fakeorg/mainhub/branches?per_page=100&page=1 -> 200",
        "web GET /fakeorg/mainhub/zipball/main -> 302",
        "codeload GET /fakeorg/mainhub/legacy.zip/refs/heads/main -> 200",
    ]
    assert [r.origin for r in gh.requests if r.authorization] == ["api"]
    assert gh.requests[1].authorization == f"token {GOOD}"
    # no main branch: the probe's 404 selects master
    gh.clear_log()
    _hub_load(gh, "fakeorg/oldhub", tmp_path / "h2", probe=True)
    assert gh.trace()[0] == "web GET /fakeorg/oldhub/tree/main/ -> 404"
    assert gh.trace()[2] == "web GET /fakeorg/oldhub/zipball/master -> 302"
    # an unknown token: 401, then torch retries the same page without it
    monkeypatch.setenv("GITHUB_TOKEN", OTHER)
    gh.clear_log()
    _hub_load(gh, "fakeorg/mainhub:main", tmp_path / "h3")
    assert [(r.status, r.authorization) for r in gh.requests[:2]] == [(401, f"token {OTHER}"), (200, None)]
    # a name that is both a branch and a tag: 300, then refs/heads/<name>
    monkeypatch.delenv("GITHUB_TOKEN")
    gh.tag("fakeorg/mainhub", "main")
    gh.ambiguous_300 = True
    gh.clear_log()
    with pytest.warns(UserWarning, match="ambiguous"):
        _hub_load(gh, "fakeorg/mainhub:main", tmp_path / "h4")
    assert gh.trace()[1:] == [
        "web GET /fakeorg/mainhub/zipball/main -> 300",
        "web GET /fakeorg/mainhub/zipball/refs/heads/main -> 302",
        "codeload GET /fakeorg/mainhub/legacy.zip/refs/heads/main -> 200",
    ]


@pytest.mark.torch
def test_torch_hub_fork_check_when_rate_limited(
    weights: FakeTorchWeights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anonymous and rate limited, torch.hub's fork check dies on its own retry logic: it
    deletes an ``Authorization`` header it never set (KeyError), so a proxy must not let the
    API's 403 reach it."""
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with FakeGitHub(rate_limit=0) as fake:
        add_hub_repo(fake, "fakeorg/limited", weights.add_state_dict("limited", tiny_state_dict(4)))
        with pytest.raises(KeyError, match="Authorization"):
            _hub_load(fake, "fakeorg/limited:main", tmp_path / "hub")
        assert fake.trace() == ["api GET /repos/fakeorg/limited/branches?per_page=100&page=1 -> 403"]


# --------------------------------------------------------------------------------------
# the generic URL origin
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin() -> Iterator[FakeURLOrigin]:
    with FakeURLOrigin() as fake:
        yield fake


DATA = Content("url-file", 100_000)


def b64(raw_bytes: bytes) -> str:
    return base64.b64encode(raw_bytes).decode()


def test_url_origin_digest_headers(origin: FakeURLOrigin) -> None:
    data = DATA.read()
    sha = b64(hashlib.sha256(data).digest())
    url = origin.put("/d/all.bin", DATA, digests=("repr-digest", "content-digest", "digest"))
    status, hdrs, body = raw("GET", url)
    assert (status, body) == (200, data)
    assert hdrs["Repr-Digest"] == hdrs["Content-Digest"] == f"sha-256=:{sha}:" and hdrs["Digest"] == f"SHA-256={sha}"
    status, hdrs, body = raw("GET", url, {"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20]
    assert hdrs["Repr-Digest"] == f"sha-256=:{sha}:" and hdrs["Digest"] == f"SHA-256={sha}"  # the whole file's
    assert hdrs["Content-Digest"] == f"sha-256=:{b64(hashlib.sha256(data[10:20]).digest())}:"  # this part's
    assert "Repr-Digest" not in raw("GET", origin.put("/d/none.bin", DATA))[1]

    url = origin.put("/d/s3.bin", DATA, digests=("amz",))
    assert "x-amz-checksum-sha256" not in raw("GET", url)[1]  # S3 sends it only when asked
    hdrs = raw("GET", url, {"x-amz-checksum-mode": "ENABLED"})[1]
    assert hdrs["x-amz-checksum-sha256"] == sha and hdrs["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert "x-amz-checksum-sha256" not in raw("GET", url, {"x-amz-checksum-mode": "ENABLED", "Range": "bytes=0-9"})[1]
    url = origin.put("/d/s3mp.bin", DATA, digests=("amz",), amz_parts=4)
    value = raw("GET", url, {"x-amz-checksum-mode": "ENABLED"})[1]["x-amz-checksum-sha256"]
    parts = b"".join(hashlib.sha256(data[i : i + 25_000]).digest() for i in range(0, 100_000, 25_000))
    assert value == f"{b64(hashlib.sha256(parts).digest())}-4" and not value.startswith(sha)

    hdrs = raw("GET", origin.put("/d/gcs.bin", DATA, digests=("goog",)))[1]
    goog = hdrs.get_all("x-goog-hash") or []
    assert sorted(goog) == [
        f"crc32c={b64(crc32c(data).to_bytes(4, 'big'))}", f"md5={b64(hashlib.md5(data).digest())}"
    ]  # fmt: skip
    assert not any("sha" in h for h in goog)
    hdrs = raw("GET", origin.put("/d/gcs-c.bin", DATA, digests=("goog-composite",)))[1]
    assert [h.split("=")[0] for h in hdrs.get_all("x-goog-hash") or []] == ["crc32c"]

    hdrs = raw("GET", origin.put("/d/lie.bin", DATA, digests=("repr-digest",), lying_digest=True))[1]
    assert hdrs["Repr-Digest"] != f"sha-256=:{sha}:"


def test_url_origin_conditionals_change_and_ranges_off(origin: FakeURLOrigin) -> None:
    url = origin.put("/c/file.bin", DATA)
    status, hdrs, _ = raw("GET", url)
    etag, modified = hdrs["ETag"], hdrs["Last-Modified"]
    assert raw("GET", url, {"If-None-Match": etag})[0] == 304
    assert raw("GET", url, {"If-None-Match": f'"other", W/{etag}'})[0] == 304  # weak comparison, lists
    assert raw("GET", url, {"If-Modified-Since": modified})[0] == 304
    status, _, body = raw("GET", url, {"Range": "bytes=0-9", "If-Range": etag})
    assert (status, body) == (206, DATA.read(0, 10))
    new = origin.change("/c/file.bin")
    status, hdrs, body = raw("GET", url, {"If-None-Match": etag})
    assert status == 200 and body == new.read() and hdrs["ETag"] != etag and hdrs["Last-Modified"] != modified
    assert raw("GET", url, {"If-Modified-Since": modified})[0] == 200
    status, _, body = raw("GET", url, {"Range": "bytes=0-9", "If-Range": etag})  # stale validator: all of it
    assert (status, body) == (200, new.read())

    url = origin.put("/c/noranges.bin", DATA, ranges=False, etag=False, last_modified=False)
    status, hdrs, body = raw("GET", url, {"Range": "bytes=0-9"})
    assert (status, body) == (200, DATA.read()) and "Accept-Ranges" not in hdrs
    assert "ETag" not in hdrs and "Last-Modified" not in hdrs
    assert raw("HEAD", url)[1]["Content-Length"] == str(DATA.size)
    assert raw("GET", origin.url + "/c/missing.bin")[0] == 404


def test_url_origin_redirects_and_429(origin: FakeURLOrigin) -> None:
    final = origin.put("/r/final.bin", DATA, origin="other")
    start = origin.redirect_chain("/r/start.bin", final, statuses=(301, 302, 307))
    origin.clear_log()
    with urllib.request.urlopen(start) as resp:
        assert resp.read() == DATA.read() and resp.url == final
    assert origin.trace() == [
        "origin GET /r/start.bin -> 301",
        "other GET /hop1/r/start.bin -> 302",
        "origin GET /hop2/r/start.bin -> 307",
        "other GET /r/final.bin -> 200",
    ]
    origin.put("/r/here.bin", b"here")
    origin.redirect("/r/rel.bin", "/r/here.bin", 308)
    assert raw("GET", origin.url + "/r/rel.bin")[1]["Location"] == "/r/here.bin"

    fault = origin.throttle("/r/here.bin", times=2, retry_after=7)
    for _ in range(2):
        status, hdrs, _ = raw("GET", origin.url + "/r/here.bin")
        assert (status, hdrs["Retry-After"]) == (429, "7")
    assert raw("GET", origin.url + "/r/here.bin")[:3:2] == (200, b"here") and fault.hits == 2


def test_faults_apply_to_the_new_fakes(gh: FakeGitHub) -> None:
    url = gh.media_file_url("org/tiny", "main", "weights/model.onnx")
    gh.fault(origin="media", times=1, status=503, retry_after=3)
    status, hdrs, _ = raw("GET", url)
    assert (status, hdrs["Retry-After"]) == (503, "3")
    gh.fault(origin="media", times=1, drop_after=1000)
    before = gh.bytes_sent["media"]
    with pytest.raises(http.client.IncompleteRead):
        raw("GET", url)
    assert gh.requests[-1].aborted and gh.requests[-1].bytes_sent == 1000
    assert raw("GET", url)[0] == 200 and gh.bytes_sent["media"] == before + 1000 + BIG.size
