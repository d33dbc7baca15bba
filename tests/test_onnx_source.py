"""The ONNX Model Hub source, and ``hoard``'s replacement for ``onnx.hub``, end to end.

A fake model zoo (`tests.fakes.github.onnxhub.OnnxHub`: real tiny models built with
``onnx.helper``, test-data tarballs, ``ONNX_HUB_MANIFEST.json`` in onnx 1.20.1's format, one
entry the repository does not hold) on a fake GitHub serves the raw and media hosts — all
``onnx.hub`` ever used. It is read through the proxy in a thread (``/v1/files``), a parent
hoard, ``hoard prefetch``, a real mount (``onnx.load`` on mounted files), and
``hoard.proxy.onnx_hub``, whose answers are compared with onnx 1.20.1's own ``onnx.hub``
pointed at the fake directly (in its venv, `tests.clientvenv`). No test sleeps to synchronise.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.proxy.sources.onnx import MANIFEST, describe, filter_models

from .clientvenv import client_python
from .fakes.github import FakeGitHub
from .fakes.github.onnxhub import OnnxHub
from .harness import MountProcess, ProxyThread, serve_env, wait_for
from .hfclients.runner import run_script
from .httpcalls import Got, call

NO_HUB = "http://127.0.0.1:9"  # a Hub endpoint (and GitHub API) nothing listens on: never needed
ONNX_VENV = ("onnx-1.20.1", ["onnx==1.20.1"])
HOARD = [sys.executable, "-m", "hoard.cli.main"]
REPO = "onnx/onnx/models"


class Zoo:
    """The fake zoo of this module: onnx/models at main."""

    def __init__(self, gh: FakeGitHub) -> None:
        self.gh = gh
        self.hub = OnnxHub(gh)
        self.relu13 = self.hub.add("Tiny-Relu", "Relu", 13, tags=["vision", "relu"])
        self.relu7 = self.hub.add("Tiny-Relu", "Relu", 7)
        self.add18 = self.hub.add("Tiny-Add", "Add", 18, tags=["add"])
        self.ghost = self.hub.add("Ghost", "Identity", 13, in_tree=False)  # named, not in the repo
        self.hub.publish()
        self.manifest = self.hub.manifest()
        self.revision = hashlib.sha256(self.manifest).hexdigest()


@pytest.fixture(scope="module")
def gh() -> Iterator[FakeGitHub]:
    pytest.importorskip("onnx")
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def zoo(gh: FakeGitHub) -> Zoo:
    return Zoo(gh)


@pytest.fixture(autouse=True)
def _fresh(gh: FakeGitHub) -> Iterator[None]:
    gh.resume()
    gh.clear_log()
    gh.clear_faults()
    gh.clear_wrong_bytes()
    gh.media_redirect = False
    yield
    gh.resume()


def hosts(gh: FakeGitHub) -> dict[str, str]:
    """The GitHub hosts the ONNX source reads; the API points nowhere: it is never asked."""
    return {"github_api_url": NO_HUB, "github_url": gh.raw_url, "github_media_url": gh.media_url}


def proxy(tmp_path: Path, gh: FakeGitHub, name: str = "home", **config: Any) -> ProxyThread:
    return ProxyThread(tmp_path / name, NO_HUB, chunk_size=256 << 10, sources=hosts(gh), **config)


def get(px: ProxyThread, address: str) -> Got:
    return call("GET", f"{px.url}/v1/files/{address}")


def hoard_env(gh: FakeGitHub, home: Path) -> dict[str, str]:
    """What configures ``hoard.onnx_hub``: the variables of the CLI."""
    return {"HOARD_HOME": str(home), "HOARD_GITHUB_URL": gh.raw_url, "HOARD_GITHUB_MEDIA_URL": gh.media_url,
            "HOARD_GITHUB_API_URL": NO_HUB}  # fmt: skip


def only_raw_and_media(gh: FakeGitHub) -> None:
    assert gh.requests and {r.origin for r in gh.requests} <= {"raw", "media", "objects"}
    assert all(r.authorization is None for r in gh.requests)


# -- 1. files by address --------------------------------------------------------------------------


def test_models_tarballs_and_the_manifest_by_address(zoo: Zoo, gh: FakeGitHub, tmp_path: Path) -> None:
    with proxy(tmp_path, gh) as px:
        tree = call("GET", f"{px.url}/v1/trees/{REPO}").json()
        assert tree["revision"] == zoo.revision  # the manifest's sha256
        files = {f["path"]: f for f in tree["files"]}
        entries = [zoo.relu13, zoo.relu7, zoo.add18, zoo.ghost]
        assert set(files) == {MANIFEST} | {e.model_path for e in entries} | {e.tar_path for e in entries}
        for e in entries:
            assert (files[e.model_path]["size"], files[e.model_path]["identity"]) == (len(e.model_bytes),
                                                                                     f"sha256:{e.model_sha}")
            assert files[e.tar_path]["identity"] == f"sha256:{e.tar_sha}"

        got = get(px, f"{REPO}/{zoo.relu13.model_path}")
        assert (got.status, got.body) == (200, zoo.relu13.model_bytes)
        assert got.headers["X-Hoard-Identity"] == f"sha256:{zoo.relu13.model_sha}"
        assert got.headers["X-Hoard-Revision"] == zoo.revision
        assert get(px, f"{REPO}@main/{zoo.add18.tar_path}").body == zoo.add18.tar_bytes
        assert get(px, f"{REPO}/{MANIFEST}").body == zoo.manifest
        assert gh.count(MANIFEST, origin="raw") == 1  # kept when read, never fetched again

        ghost = get(px, f"{REPO}/{zoo.ghost.model_path}")  # listed by the manifest only
        assert (ghost.status, ghost.json()["kind"]) == (404, "not_found")
        assert "does not hold it" in ghost.json()["error"]
        missing = get(px, f"{REPO}@no-such-ref/{zoo.relu13.model_path}")
        assert (missing.status, missing.json()["kind"]) == (404, "revision_not_found")

        switch = zoo.hub.wrong_sha(zoo.relu7)
        wrong = get(px, f"{REPO}/{zoo.relu7.model_path}")
        assert switch.hits >= 1 and not (wrong.status == 200 and wrong.error is None)
        assert px.store.resolve(f"sha256:{zoo.relu7.model_sha}") is None
        switch.active = False
        assert get(px, f"{REPO}/{zoo.relu7.model_path}").body == zoo.relu7.model_bytes
        snapshot = px.store.get_snapshot(REPO, zoo.revision)
    only_raw_and_media(gh)

    assert snapshot is not None
    assert [(m.model, m.opset) for m in filter_models(snapshot)] == [("Tiny-Relu", 13), ("Tiny-Relu", 7),
                                                                     ("Tiny-Add", 18), ("Ghost", 13)]  # fmt: skip
    assert [m.path for m in filter_models(snapshot, model="tiny-relu", opset=7)] == [zoo.relu7.model_path]
    assert [m.model for m in filter_models(snapshot, tags=["ADD", "nothing"])] == ["Tiny-Add"]
    shown = describe(snapshot.files[zoo.add18.model_path])
    assert shown is not None and (shown["opset"], shown["tags"], shown["io_ports"]) == (18, ["add"], zoo.add18.io_ports)
    sizes = (shown["model_bytes"], shown["model_with_data_bytes"])
    assert sizes == (len(zoo.add18.model_bytes), len(zoo.add18.tar_bytes))
    assert describe(snapshot.files[zoo.add18.tar_path]) is None


def test_one_blob_whether_read_from_the_hub_or_from_github(zoo: Zoo, gh: FakeGitHub, tmp_path: Path) -> None:
    sources = {**hosts(gh), "github_api_url": gh.api_url}
    with ProxyThread(tmp_path / "home", NO_HUB, chunk_size=256 << 10, sources=sources) as px:
        assert get(px, f"{REPO}/{zoo.add18.model_path}").body == zoo.add18.model_bytes
        wait_for(lambda: px.store.resolve(f"sha256:{zoo.add18.model_sha}") is not None)
        gh.clear_log()
        got = get(px, f"github/onnx/models/{zoo.add18.model_path}")  # the LFS file of the same repo
        assert (got.status, got.body) == (200, zoo.add18.model_bytes)
        assert got.headers["X-Hoard-Identity"] == f"sha256:{zoo.add18.model_sha}"
        assert gh.count(zoo.add18.model_path, origin="media") == 0  # already in the store
        assert px.store.usage()["blobs"] == 3  # the manifest, the model and GitHub's .gitattributes


def test_a_changed_manifest_is_a_new_revision(gh: FakeGitHub, tmp_path: Path) -> None:
    hub = OnnxHub(gh, repo="zoo/models")
    first = hub.add("First", "Relu", 12)
    hub.publish()
    old = hashlib.sha256(hub.manifest()).hexdigest()
    repo = "onnx/zoo/models"
    with proxy(tmp_path, gh, refs_ttl=0.0) as px:
        assert get(px, f"{repo}/{first.model_path}").headers["X-Hoard-Revision"] == old
        second = hub.add("Second", "Identity", 14)
        hub.publish()
        new = hashlib.sha256(hub.manifest()).hexdigest()
        got = get(px, f"{repo}/{second.model_path}")
        assert (got.status, got.body, got.headers["X-Hoard-Revision"]) == (200, second.model_bytes, new)
        assert get(px, f"{repo}@{old}/{first.model_path}").body == first.model_bytes  # pinned, cached
    with proxy(tmp_path, gh, name="fresh") as px:  # pinned ids a new store has never seen
        assert get(px, f"{repo}@{new}/{first.model_path}").body == first.model_bytes  # what main serves
        gone = get(px, f"{repo}@{old}/{first.model_path}")  # main has moved on: nothing serves it
        assert (gone.status, gone.json()["kind"]) == (404, "revision_not_found")
    only_raw_and_media(gh)


# -- 2. the commands and a parent hoard -------------------------------------------------------------


def test_prefetch_ls_and_a_node_filling_from_a_parent(zoo: Zoo, gh: FakeGitHub, tmp_path: Path) -> None:
    home = tmp_path / "cli"
    flags = ["--github-url", gh.raw_url, "--github-media-url", gh.media_url, "--github-api-url", NO_HUB]
    env = dict(serve_env(), HOARD_HOME=str(home))
    run = subprocess.run([*HOARD, "prefetch", f"{REPO}/{zoo.add18.tar_path}", *flags, "--json"], env=env,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (json.loads(run.stdout)["fetched"], json.loads(run.stdout)["revision"]) == (1, zoo.revision)
    listing = json.loads(subprocess.run([*HOARD, "ls", REPO, "--json"], env=env, capture_output=True, text=True,
                                        timeout=60).stdout)  # fmt: skip
    assert listing["revision"] == zoo.revision  # the models of the manifest: none fetched yet
    assert sorted((m["model"], m["opset"], m["cached"]) for m in listing["models"]) == [
        ("Ghost", 13, False), ("Tiny-Add", 18, False), ("Tiny-Relu", 7, False), ("Tiny-Relu", 13, False)]

    with proxy(tmp_path, gh, name="parent") as parent, \
            ProxyThread(tmp_path / "node", NO_HUB, chunk_size=256 << 10, upstream=parent.url) as node:  # fmt: skip
        got = get(node, f"{REPO}/{zoo.relu13.model_path}")
        assert (got.status, got.body, got.headers["X-Hoard-Revision"]) == (200, zoo.relu13.model_bytes, zoo.revision)
        wait_for(lambda: node.store.resolve(f"sha256:{zoo.relu13.model_sha}") is not None)
        zoo.hub.wrong_sha(zoo.relu7)
        wrong = get(node, f"{REPO}/{zoo.relu7.model_path}")
        assert not (wrong.status == 200 and wrong.error is None)
        assert node.store.resolve(f"sha256:{zoo.relu7.model_sha}") is None
    only_raw_and_media(gh)


# -- 3. the mount -----------------------------------------------------------------------------------


@pytest.mark.fuse
def test_mounted_models_load_with_onnx(zoo: Zoo, gh: FakeGitHub, tmp_path: Path) -> None:
    gh.media_redirect = True  # LFS objects from signed storage URLs, as the real host may
    flags = ("--github-url", gh.raw_url, "--github-media-url", gh.media_url, "--github-api-url", NO_HUB)
    with MountProcess(tmp_path / "home", tmp_path / "mnt", NO_HUB, *flags, env=serve_env()) as m:
        model = m.path(f"{REPO}/{zoo.relu13.model_path}")
        code = "import onnx, sys; m = onnx.load(sys.argv[1]); print(m.graph.node[0].op_type, m.opset_import[0].version)"
        out = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.split() == ["Relu", "13"], out.stderr
        assert sorted(os.listdir(model.parent)) == sorted(os.path.basename(p) for p in (
            zoo.relu13.model_path, zoo.relu13.tar_path, zoo.relu7.model_path, zoo.relu7.tar_path))  # fmt: skip
        assert m.path(f"{REPO}/{MANIFEST}").read_bytes() == zoo.manifest
        assert os.getxattr(model, "user.hoard.sha256").decode() == zoo.relu13.model_sha
        pinned = m.path(f"{REPO}@{zoo.revision}/{zoo.add18.model_path}")
        assert pinned.read_bytes() == zoo.add18.model_bytes
        ghost = m.path(f"{REPO}/{zoo.ghost.model_path}")
        assert ghost.stat().st_size == len(zoo.ghost.model_bytes)
        with pytest.raises(OSError):
            ghost.read_bytes()
    only_raw_and_media(gh)


# -- 4. hoard's onnx.hub ----------------------------------------------------------------------------

CALLS = r"""
import os, hashlib

def cut(m):
    return [m.model, m.opset, m.model_path, m.model_sha, sorted(m.tags), m.metadata == m.raw_model_info["metadata"]]

def load():
    m = hub.load("tiny-relu", REPO, silent=True)
    return [m.graph.node[0].op_type, m.opset_import[0].version, m.ir_version,
            hashlib.sha256(m.SerializeToString()).hexdigest()]

def with_data():
    d = hub.download_model_with_test_data("Tiny-Add", REPO, silent=True)
    files = sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
    model = onnx.load(os.path.join(d, "model.onnx"))
    t = onnx.TensorProto(); t.ParseFromString(open(os.path.join(d, "test_data_set_0", "input_1.pb"), "rb").read())
    return [os.path.relpath(d, hub.get_dir()), files, model.graph.node[0].op_type, t.name]

attempt("list", lambda: [cut(m) for m in hub.list_models(REPO)])
attempt("list_tag", lambda: [cut(m) for m in hub.list_models(REPO, tags=["ADD", "nothing"])])
attempt("list_name", lambda: [cut(m) for m in hub.list_models(REPO, model="TINY-RELU")])
attempt("info", lambda: [cut(hub.get_model_info("Tiny-Relu", REPO)),
                         cut(hub.get_model_info("Tiny-Relu", REPO, opset=7))])
attempt("info_bad_opset", lambda: hub.get_model_info("Tiny-Relu", REPO, opset=99))
attempt("info_no_model", lambda: hub.get_model_info("Nope", REPO))
attempt("load", load)
attempt("with_data", with_data)
attempt("ghost", lambda: hub.load("Ghost", REPO, silent=True))
attempt("wrong_ref", lambda: hub.list_models("onnx/models:nope"))
"""

ONNX_HUB = "import onnx, onnx.hub as hub\nexec(ARGS['patch'])\nhub.set_dir(ARGS['dir'])\nREPO = 'onnx/models:main'\n"
HOARD_HUB = "import onnx\nfrom hoard.proxy import onnx_hub as hub\nREPO = 'onnx/models:main'\n"


def same_answers(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for name in ("list", "list_tag", "list_name", "info", "load", "with_data"):
        assert "ok" in ours[name] and ours[name] == theirs[name], name
    for name in ("info_bad_opset", "info_no_model", "wrong_ref"):
        assert ours[name]["error"] == theirs[name]["error"] == "AssertionError", name
    assert ours["info_bad_opset"]["message"] == theirs["info_bad_opset"]["message"]
    assert ours["info_no_model"]["message"] == theirs["info_no_model"]["message"]
    assert "Could not find manifest at" in ours["wrong_ref"]["message"]
    assert theirs["ghost"]["status"] is None and theirs["ghost"]["error"] == "HTTPError"  # a 404 from urllib
    assert ours["ghost"]["error"] == "NotFound" and "does not hold it" in ours["ghost"]["message"]


def test_hoard_onnx_hub_answers_as_onnx_hub(zoo: Zoo, gh: FakeGitHub, tmp_path: Path) -> None:
    theirs = run_script(NO_HUB, tmp_path / "onnx-client", ONNX_HUB + CALLS, python=client_python(*ONNX_VENV),
                        args={"patch": zoo.hub.patch_source(), "dir": str(tmp_path / "onnx-hub")})  # fmt: skip
    assert [row[:2] for row in theirs["list"]["ok"]] == [["Tiny-Relu", 13], ["Tiny-Relu", 7], ["Tiny-Add", 18],
                                                         ["Ghost", 13]]  # fmt: skip
    assert theirs["load"]["ok"][:2] == ["Relu", 13]
    env = hoard_env(gh, tmp_path / "store")

    def ours() -> dict[str, Any]:
        return run_script(NO_HUB, tmp_path / "hoard-client", HOARD_HUB + CALLS, extra_env=env)

    gh.clear_log()
    same_answers(ours(), theirs)
    assert gh.count(zoo.relu13.model_path, origin="media") == 1 and gh.count(zoo.add18.tar_path, origin="media") == 1
    only_raw_and_media(gh)
    extracted = tmp_path / "store" / "onnx_hub" / theirs["with_data"]["ok"][0]
    assert (extracted / "model.onnx").read_bytes() == zoo.add18.model_bytes

    gh.clear_log()
    same_answers(ours(), theirs)  # from the store: no download
    assert gh.count(origin="media") == gh.count(zoo.ghost.model_path) == 1  # only the file no one has

    gh.pause()  # GitHub unreachable: the last manifest and the stored files still answer
    offline = ours()
    for name in ("list", "list_tag", "list_name", "info", "load", "with_data"):
        assert offline[name] == theirs[name], name
    assert offline["ghost"]["error"] == "OriginUnavailable"


def test_test_data_never_lands_outside_its_folder(gh: FakeGitHub, tmp_path: Path) -> None:
    hub = OnnxHub(gh, repo="evil/models")
    absolute = tmp_path / "absolute.txt"
    for name, member in [("Escape", "../escape.txt"), ("Absolute", str(absolute)), ("Linked", None)]:
        entry = hub.add(name, "Relu", 13)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:
            link = tarfile.TarInfo(f"{name.lower()}/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
            for path, data in [(f"{name.lower()}/model.onnx", entry.model_bytes), (member, b"outside")]:
                if path is not None:
                    info = tarfile.TarInfo(path)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        entry.tar_bytes = raw.getvalue()
    hub.publish()
    env = hoard_env(gh, tmp_path / "store")
    script = HOARD_HUB + (
        "hub.set_dir(ARGS['dir'])\n"
        "for name in ('Escape', 'Absolute', 'Linked'):\n"
        "    attempt(name, lambda: hub.download_model_with_test_data(name, 'evil/models', silent=True))\n"
    )
    out = run_script(NO_HUB, tmp_path / "client", script, extra_env=env, args={"dir": str(tmp_path / "x" / "hub")})
    for name in ("Escape", "Absolute"):
        assert out[name]["error"] == "InvalidAddress" and "unsafe name" in out[name]["message"], out[name]
    assert not (tmp_path / "x" / "escape.txt").exists() and not absolute.exists()
    linked = Path(out["Linked"]["ok"])
    assert sorted(os.listdir(linked)) == ["model.onnx"]  # the link was skipped
    files = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "x") for f in fs]
    assert files == [str(linked / "model.onnx")], files


def test_a_wrong_model_is_refused_and_never_kept(zoo: Zoo, gh: FakeGitHub, tmp_path: Path) -> None:
    zoo.hub.wrong_sha(zoo.relu7)
    env = hoard_env(gh, tmp_path / "store")
    script = HOARD_HUB + 'attempt("wrong", lambda: hub.load("Tiny-Relu", REPO, opset=7, silent=True))\n' * 2
    out = run_script(NO_HUB, tmp_path / "client", script, extra_env=env)
    assert out["wrong"]["error"] == "IntegrityError" and zoo.relu7.model_sha in out["wrong"]["message"]
    assert gh.count(zoo.relu7.model_path, origin="media") == 2  # nothing wrong was kept: asked again
    gh.clear_wrong_bytes()
    script = HOARD_HUB + 'attempt("right", lambda: hub.load("Tiny-Relu", REPO, opset=7).opset_import[0].version)\n'
    assert run_script(NO_HUB, tmp_path / "client", script, extra_env=env)["right"] == {"ok": 7}



def test_ls_filters_models_like_onnx_hub_and_info_describes_one(zoo: Zoo, gh: FakeGitHub, tmp_path: Path) -> None:
    """``hoard ls onnx/onnx/models --tag/--model/--opset`` with an empty store asks the raw host
    for the manifest; ``hoard info`` of a model shows its opset, tags and ports."""
    env = dict(serve_env(), HOARD_HOME=str(tmp_path / "home"))
    flags = ["--github-url", gh.raw_url, "--github-media-url", gh.media_url, "--github-api-url", NO_HUB]

    def ls(*args: str) -> list[tuple[str, int]]:
        run = subprocess.run([*HOARD, "ls", REPO, *args, *flags, "--json"], env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert run.returncode == 0, run.stderr
        return sorted((m["model"], m["opset"]) for m in json.loads(run.stdout)["models"])

    assert ls("--tag", "VISION", "--tag", "add") == [("Tiny-Add", 18), ("Tiny-Relu", 13)]  # any-of, any case
    assert ls("--model", "tiny-relu") == [("Tiny-Relu", 7), ("Tiny-Relu", 13)]
    assert ls("--model", "tiny-relu", "--opset", "7") == [("Tiny-Relu", 7)]
    bad = subprocess.run([*HOARD, "ls", "huggingface/org/x", "--tag", "a"], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "ONNX hub" in bad.stderr
    info = subprocess.run([*HOARD, "info", f"{REPO}/{zoo.relu13.model_path}", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert info.returncode == 0, info.stderr
    model = json.loads(info.stdout)["onnx"]
    assert (model["model"], model["opset"], model["tags"]) == ("Tiny-Relu", 13, ["vision", "relu"])
    assert model["io_ports"]["inputs"] and model["model_bytes"] == len(zoo.relu13.model_bytes)
    text = subprocess.run([*HOARD, "info", f"{REPO}/{zoo.relu13.model_path}"], env=env, capture_output=True,
                          text=True, timeout=60).stdout  # fmt: skip
    assert "opset 13" in text and "vision, relu" in text
    only_raw_and_media(gh)
