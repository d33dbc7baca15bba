"""The torch source end to end: weights from a fake download.pytorch.org, hub code from a fake
GitHub, through the proxy (``/v1/files``), ``hoard`` processes, a parent hoard, the
filesystem in-process and a real mount that the stock ``torch.hub`` (torch 2.13, in this
venv) uses as its ``TORCH_HOME``.

The fakes are `tests.fakes.torchhub.FakeTorchWeights` (a download origin that 302s to a CDN
origin, S3's 404/403 for missing keys, a wrong-bytes switch) and
`tests.fakes.github.FakeGitHub` with torch.hub repos (`add_hub_repo`: a ``hubconf.py`` whose
entrypoint loads its weights with ``load_state_dict_from_url(check_hash=True)``). Clients in
the mount run in their own interpreter with every socket connect failing: whatever reaches
the fakes is hoard's (its User-Agent says so). No test sleeps to synchronise: `wait_for`
polls what the product reaches in the background.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.proxy.sources._torch_names import checkpoint_of_url, hub_candidates, weights_expected
from hoard.store.errors import UsageError

from .fakes.content import Content
from .fakes.github import FakeGitHub
from .fakes.torchhub import FakeTorchWeights, add_hub_repo, tiny_state_dict
from .harness import MountProcess, ProxyThread, ServeProcess, serve_env, wait_for
from .httpcalls import Got, call

HOARD = [sys.executable, "-m", "hoard.cli.main"]
NO_HUB = "http://127.0.0.1:9"  # a Hub endpoint nothing listens on: never needed here
TOKEN = "ghp_torch_source_test_token"
CHUNK = 256 << 10
DATA = Content("torch-weights", 3 * CHUNK + 4321)  # four chunks, the last one short
HOARD_UA = "hoard/"




@pytest.fixture(scope="module")
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens={TOKEN}, rate_limit=100_000) as fake:
        yield fake


@pytest.fixture(scope="module")
def weights() -> Iterator[FakeTorchWeights]:
    with FakeTorchWeights() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(gh: FakeGitHub, weights: FakeTorchWeights) -> Iterator[None]:
    for fake in (gh, weights):
        fake.resume()
        fake.clear_log()
        fake.clear_faults()
    gh.clear_wrong_bytes()
    weights.hop, weights.missing_status = True, 404
    yield
    gh.resume()
    weights.resume()


def settings(gh: FakeGitHub, weights: FakeTorchWeights) -> dict[str, str]:
    return {"torch_url": weights.url, "github_api_url": gh.api_url, "github_url": gh.raw_url,
            "github_media_url": gh.media_url}  # fmt: skip


def flags(gh: FakeGitHub, weights: FakeTorchWeights) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in settings(gh, weights).items()]


def proxy(tmp_path: Path, gh: FakeGitHub, weights: FakeTorchWeights, name: str = "home", **config: Any) -> ProxyThread:
    return ProxyThread(tmp_path / name, NO_HUB, chunk_size=CHUNK, sources=settings(gh, weights), **config)


def get(px: ProxyThread, address: str, method: str = "GET", **headers: str) -> Got:
    return call(method, f"{px.url}/v1/files/{address}", headers=headers)


def tree(px: ProxyThread, repo: str) -> dict[str, Any]:
    got = call("GET", f"{px.url}/v1/trees/{repo}")
    assert got.status == 200, got.body
    return got.json()  # type: ignore[no-any-return]


def entry(px: ProxyThread, repo: str, path: str) -> dict[str, Any]:
    return next(f for f in tree(px, repo)["files"] if f["path"] == path)


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


def hoard_only(*fakes: Any) -> None:
    """Every request the fakes saw came from hoard (no client of its own reached them), and
    the token went to GitHub's API host alone."""
    for fake in fakes:
        for r in fake.requests:
            assert r.headers.get("user-agent", "").startswith(HOARD_UA), r
            if r.origin == "api":
                assert r.authorization in (None, f"Bearer {TOKEN}"), r
            else:
                assert r.authorization is None and TOKEN not in json.dumps(r.headers), r


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


# -- 1. weights by address ------------------------------------------------------------------------


def test_weights_follow_the_cdn_hop_are_verified_and_learn_their_full_sha256(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    name = name_of(weights.add_weights("resnet-tiny", DATA))
    addr = f"torch/hub/checkpoints/{name}"
    with proxy(tmp_path, gh, weights, refs_ttl=0.0) as px:
        got = get(px, addr, Authorization=f"Bearer {TOKEN}")  # a client's token: never sent to this origin
        assert (got.status, got.error, got.body == DATA.read()) == (200, None, True)
        assert (got.headers["X-Hoard-Identity"], got.headers["X-Hoard-Revision"]) == (f"torch:{name}", "latest")
        assert weights.trace()[:2] == [f"download HEAD /models/{name} -> 302", f"cdn HEAD /models/{name} -> 200"]
        assert {r.origin for r in weights.requests if r.method == "GET" and r.status == 206} == {"cdn"}
        assert weights.bytes_sent["cdn"] == DATA.size and weights.bytes_sent["download"] == 0
        first = entry(px, "torch/hub/checkpoints", name)
        assert first["expected"] == f"sha256:{DATA.sha256[:8]}*"
        # published: the store recorded the whole sha256, which the entry takes at its next
        # lookup (refs_ttl 0: at once), without asking the origin
        wait_for(lambda: px.store.resolve(f"sha256:{DATA.sha256}") == DATA.blake3)
        asked = len(weights.requests)
        assert get(px, addr).body == DATA.read()
        learnt = entry(px, "torch/hub/checkpoints", name)
        assert (learnt["identity"], learnt["expected"]) == (f"sha256:{DATA.sha256}",) * 2
        assert "revalidate" not in learnt["meta"] and len(weights.requests) == asked
        # the same bytes under another name are the same blob
        other = name_of(weights.add_weights("resnet-copy", DATA, prefix_len=10))
        assert get(px, f"torch/hub/checkpoints/{other}").body == DATA.read()
        wait_for(lambda: px.store.resolve(f"torch:{other}") == DATA.blake3)
        assert px.store.usage()["blobs"] == 1
    hoard_only(weights)


def test_wrong_bytes_are_refused_and_nothing_is_published(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    data = Content("torch-wrong", 2 * CHUNK + 17)
    name = name_of(weights.add_weights("wrongnet", data))
    weights.wrong_bytes(name)
    with proxy(tmp_path, gh, weights) as px:
        bad = get(px, f"torch/hub/checkpoints/{name}")
        assert not (bad.status == 200 and bad.error is None and bad.body == data.read()), bad.status
        assert bad.body != data.read()
        assert px.store.resolve(f"torch:{name}") is None and px.store.usage()["blobs"] == 0
        weights.wrong_bytes(name, on=False)
        wait_for(lambda: get(px, f"torch/hub/checkpoints/{name}").body == data.read())
        assert px.store.resolve(f"sha256:{data.sha256}") == data.blake3


def test_unknown_names_are_not_found_and_the_miss_is_remembered(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    with proxy(tmp_path, gh, weights) as px:
        for status in (404, 403):  # S3 answers 403 AccessDenied for a missing key it may not list
            weights.missing_status = status
            name = f"missing{status}-01234567.pth"
            for _ in range(2):
                miss = get(px, f"torch/hub/checkpoints/{name}")
                assert (miss.status, miss.json()["kind"]) == (404, "entry_not_found"), miss.body
            assert weights.count(name, method="HEAD") == 1  # remembered: asked once
        weights.clear_log()
        for address, kind in [
            ("torch/hub/checkpoints/sub/w-01234567.pth", "entry_not_found"),  # checkpoints has no folders
            ("torch/hub/checkpoints/w%25-01234567.pth", "entry_not_found"),  # no URL-escape games
            ("torch/hub/nounderscore/x", "repo_not_found"),
            ("torch/elsewhere/checkpoints/w.pth", "repo_not_found"),
            ("torch/hub/checkpoints@v2/w-01234567.pth", "revision_not_found"),
        ]:
            miss = get(px, address)
            assert (miss.status, miss.json()["kind"]) == (404, kind), (address, miss.body)
        too_long = get(px, f"torch/hub/checkpoints/w-{'a' * 65}.pth")
        assert (too_long.status, too_long.json()["kind"]) == (400, "invalid_address")
        assert weights.requests == [] and gh.requests == []


def test_names_without_a_prefix_and_with_a_whole_sha256(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    plain = Content("torch-plain", 5000)
    whole = Content("torch-whole", 6000)
    weights.add("plainnet.pth", plain)
    weights.add(f"wholenet-{whole.sha256}.pt", whole)
    with proxy(tmp_path, gh, weights) as px:
        assert get(px, "torch/hub/checkpoints/plainnet.pth").body == plain.read()
        assert get(px, f"torch/hub/checkpoints/wholenet-{whole.sha256}.pt").body == whole.read()
        unverified = entry(px, "torch/hub/checkpoints", "plainnet.pth")
        assert unverified["expected"] is None and "length only" in unverified["meta"]["unverified"]
        hashed = entry(px, "torch/hub/checkpoints", f"wholenet-{whole.sha256}.pt")
        assert hashed["identity"] == hashed["expected"] == f"sha256:{whole.sha256}"
    found = weights_expected("efficientnet_b0_rwightman-7f5810bc.pth")
    assert found is not None and found.text == "sha256:7f5810bc*"
    assert weights_expected("model-v2.pth") is None  # torch's rule: '-<hex>.' or nothing


# -- 2. hub repos ---------------------------------------------------------------------------------


def test_hub_repos_are_github_trees_at_the_ref_their_name_holds(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    url = weights.add_weights("hubnet", DATA)
    add_hub_repo(gh, "fakeorg/tiny_hub", url, tags=("v0.1",))
    first = gh.head("fakeorg/tiny_hub").sha
    second = gh.commit("fakeorg/tiny_hub", {"README.md": b"moved on\n"})
    with proxy(tmp_path, gh, weights) as px:
        for address, body_start, commit in [
            ("torch/hub/fakeorg_tiny_hub_main/README.md", b"moved on", second),
            ("torch/hub/fakeorg_tiny_hub_v0.1/README.md", b"# fakeorg/tiny_hub", first),
            (f"torch/hub/fakeorg_tiny_hub_{first[:10]}/README.md", b"# fakeorg/tiny_hub", first),
            (f"torch/hub/fakeorg_tiny_hub_main@{first}/README.md", b"# fakeorg/tiny_hub", first),
        ]:
            got = get(px, address, Authorization=f"Bearer {TOKEN}")
            assert (got.status, got.body.startswith(body_start), got.headers["X-Hoard-Revision"]) == (200, True, commit)
        hubconf = get(px, "torch/hub/fakeorg_tiny_hub_main/hubconf.py")
        assert url.encode() in hubconf.body and hubconf.headers["X-Hoard-Identity"].startswith("gitsha1:")
        listing = tree(px, "torch/hub/fakeorg_tiny_hub_main")
        assert listing["info"]["github"] == "fakeorg/tiny_hub" and listing["info"]["complete"] is True
        assert sorted(f["path"] for f in listing["files"]) == ["README.md", "hubconf.py", "tinynet/__init__.py",
                                                               "tinynet/model.py"]  # fmt: skip
        # the client's token reached the API host, and nothing else
        assert any(r.authorization == f"Bearer {TOKEN}" for r in gh.find(origin="api"))
        hoard_only(gh, weights)
        gh.clear_log()
        for address, kind in [
            ("torch/hub/fakeorg_tiny_hub_main/nothing.py", "entry_not_found"),  # a complete tree: not asked
            ("torch/hub/fakeorg_tiny_hub_main@latest/README.md", "revision_not_found"),
            ("torch/hub/fakeorg_tiny_hub_main@v0.1/README.md", "revision_not_found"),  # the ref is in the name
        ]:
            miss = get(px, address)
            assert (miss.status, miss.json()["kind"]) == (404, kind), (address, miss.body)
        assert gh.requests == []
        for address, kind in [
            ("torch/hub/fakeorg_no_such_main/README.md", "repo_not_found"),
            ("torch/hub/fakeorg_tiny_hub_nobranch/README.md", "revision_not_found"),
        ]:
            miss = get(px, address)
            assert (miss.status, miss.json()["kind"]) == (404, kind), (address, miss.body)


def test_names_that_split_several_ways_and_refs_with_a_slash_are_settled_by_github(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    gh.add_repo("splitorg/amb", {"which.txt": b"amb at x_main\n"}, branches=("x_main",))
    gh.add_repo("splitorg/amb_x", {"which.txt": b"amb_x at main\n"})
    gh.add_repo("splitorg/only", {"which.txt": b"only at x_y\n"}, branches=("x_y",))
    gh.add_repo("splitorg/slashed", {"which.txt": b"slashed\n"}, branches=("feature/deep/x",))
    assert [(h.repo, h.ref) for h in hub_candidates("splitorg_amb_x_main")] == [("amb_x", "main"), ("amb", "x_main")]
    with proxy(tmp_path, gh, weights) as px:
        for repo, body in [
            ("splitorg_amb_x_main", b"amb_x at main\n"),  # both exist: the longest repo name wins
            ("splitorg_only_x_y", b"only at x_y\n"),  # only_x does not exist: GitHub says so
            ("splitorg_slashed_feature_deep_x", b"slashed\n"),  # torch wrote feature/deep/x so
        ]:
            got = get(px, f"torch/hub/{repo}/which.txt")
            assert (got.status, got.body) == (200, body), (repo, got.body)
        assert tree(px, "torch/hub/splitorg_slashed_feature_deep_x")["info"]["ref"] == "feature/deep/x"
    assert gh.count("/repos/splitorg/only_x/commits/y", origin="api") == 1


# -- 3. the commands, dedup, offline --------------------------------------------------------------


def test_hoard_serve_configured_by_its_flags_and_environment(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    name = name_of(weights.add_weights("servenet", DATA))
    add_hub_repo(gh, "fakeorg/servehub", weights.file_url(name))
    gh_flags = [f for f in flags(gh, weights) if not f.startswith("--torch-url")]
    env = dict(serve_env(), HOARD_TORCH_URL=weights.url)
    with ServeProcess(tmp_path / "home", NO_HUB, *gh_flags, env=env) as serve:
        for address, body in [(f"torch/hub/checkpoints/{name}", DATA.read()),
                              ("torch/hub/fakeorg_servehub_main/README.md", b"# fakeorg/servehub\n")]:  # fmt: skip
            got = call("GET", f"{serve.url}/v1/files/{address}")
            assert (got.status, got.error, got.body == body) == (200, None, True), address
        log = serve.stop()
    assert "Traceback" not in log
    hoard_only(gh, weights)


def test_prefetch_both_shapes_then_everything_serves_offline(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    url = weights.add_weights("prenet", DATA)
    add_hub_repo(gh, "fakeorg/prehub", url)
    gh.commit("fakeorg/prehub", {"tinynet/__init__.py": b"# tinynet\n"})  # (empty files: see the next test)
    gh.add_repo("fakeorg/twin", {"README.md": b"# fakeorg/prehub\n", "data.txt": Content("twin", 4000)})
    home = tmp_path / "home"
    env = dict(serve_env(), GITHUB_TOKEN=TOKEN)
    out = json.loads(cli(home, "prefetch", f"torch/hub/checkpoints/{name_of(url)}", *flags(gh, weights), "--json",
                         env=env).stdout)  # fmt: skip
    assert (out["files"], out["fetched"], out["fetched_bytes"]) == (1, 1, DATA.size)
    out = json.loads(cli(home, "prefetch", "torch/hub/fakeorg_prehub_main", *flags(gh, weights), "--json",
                         env=env).stdout)  # fmt: skip
    assert (out["files"], out["revision"]) == (4, gh.head("fakeorg/prehub").sha)
    assert [r.authorization for r in gh.find(origin="api")] == [f"Bearer {TOKEN}"] * len(gh.find(origin="api"))
    hoard_only(gh, weights)
    # the GitHub source's copy of a file the hub repo also holds is the same blob
    before = json.loads(cli(home, "info", "--json").stdout)["blobs"]
    cli(home, "prefetch", "github/fakeorg/twin", *flags(gh, weights), env=env)
    assert json.loads(cli(home, "info", "--json").stdout)["blobs"] == before + 1  # data.txt; README.md is shared

    gh.pause()
    weights.pause()
    with proxy(tmp_path, gh, weights, refs_ttl=0.0) as px:
        got = get(px, f"torch/hub/checkpoints/{name_of(url)}")
        assert (got.status, got.body == DATA.read()) == (200, True)
        got = get(px, "torch/hub/fakeorg_prehub_main/tinynet/model.py")
        assert got.status == 200 and b"torch.nn.Linear" in got.body
        unseen = get(px, "torch/hub/checkpoints/unseen-01234567.pth")
        assert (unseen.status, unseen.json()["kind"]) == (503, "origin_unavailable")


def test_prefetch_a_folder_of_a_hub_repo(gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path) -> None:
    add_hub_repo(gh, "fakeorg/folderhub", weights.add_weights("foldernet", DATA))
    gh.commit("fakeorg/folderhub", {"tinynet/__init__.py": b"# tinynet\n"})
    out = json.loads(cli(tmp_path / "home", "prefetch", "torch/hub/fakeorg_folderhub_main/tinynet",
                         *flags(gh, weights), "--json").stdout)  # fmt: skip
    assert (out["files"], out["fetched"]) == (2, 2)


def test_prefetch_of_a_hub_repo_with_an_empty_init(gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path) -> None:
    add_hub_repo(gh, "fakeorg/emptyinit", weights.add_weights("emptynet", DATA))  # tinynet/__init__.py is empty
    out = json.loads(cli(tmp_path / "home", "prefetch", "torch/hub/fakeorg_emptyinit_main", *flags(gh, weights),
                         "--json").stdout)  # fmt: skip
    assert out["files"] == 4


def test_prefetch_torchvision_names(gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path) -> None:
    """torchvision does not import beside this torch (see pyproject): the form is refused
    clearly; the URL rule it relies on is checked on torchvision's URL pattern."""
    proc = cli(tmp_path / "home", "prefetch", "torchvision/resnet18", *flags(gh, weights), check=False)
    assert proc.returncode == 2 and "torchvision is not installed" in proc.stderr, proc.stderr
    base = "https://download.pytorch.org"
    name = "resnet18-f37072fd.pth"
    assert checkpoint_of_url(f"{base}/models/{name}", base) == f"torch/hub/checkpoints/{name}"
    for elsewhere in (f"{base}/models/quantized/resnet18_fbgemm_16fa66dd.pth", "https://example.com/models/a-0123.pth"):
        with pytest.raises(UsageError, match="url/"):
            checkpoint_of_url(elsewhere, base)


# -- 4. a parent hoard ----------------------------------------------------------------------------


def test_a_node_fills_hub_code_from_a_parent(gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path) -> None:
    add_hub_repo(gh, "fakeorg/tierhub", weights.add_weights("tiernet", DATA))
    with proxy(tmp_path, gh, weights, "parent") as parent, \
            ProxyThread(tmp_path / "node", NO_HUB, chunk_size=CHUNK, upstream=parent.url) as node:  # fmt: skip
        got = get(node, "torch/hub/fakeorg_tierhub_main/hubconf.py")
        assert got.status == 200 and got.headers["X-Hoard-Revision"] == gh.head("fakeorg/tierhub").sha
        assert tree(node, "torch/hub/fakeorg_tierhub_main")["info"]["complete"] is True
        wait_for(lambda: node.store.resolve(got.headers["X-Hoard-Identity"]) is not None)


def test_a_node_fills_weights_from_a_parent(gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path) -> None:
    name = name_of(weights.add_weights("tierweights", DATA))
    with proxy(tmp_path, gh, weights, "parent") as parent, \
            ProxyThread(tmp_path / "node", NO_HUB, chunk_size=CHUNK, upstream=parent.url) as node:  # fmt: skip
        got = get(node, f"torch/hub/checkpoints/{name}")
        assert (got.status, got.error, got.body == DATA.read()) == (200, None, True)
        wait_for(lambda: node.store.resolve(f"sha256:{DATA.sha256}") == DATA.blake3)


# -- 5. the filesystem, in process ----------------------------------------------------------------


@pytest.fixture
def hoardfs(gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path) -> Iterator[Any]:
    from hoard.fuse.bridge import CoreBridge
    from hoard.fuse.fs import HoardFS, MountOptions
    from hoard.proxy.service import ProxyConfig
    from hoard.store.config import StoreConfig
    from hoard.store.store import Store

    from .harness import TEST_HTTP

    store = Store(StoreConfig(tmp_path / "fshome", chunk_size=CHUNK))
    config = ProxyConfig(source_settings={"hf_endpoint": NO_HUB, **settings(gh, weights)}, http=TEST_HTTP)
    fs = HoardFS(CoreBridge(config, store), MountOptions(fill="lazy", ref_cache_seconds=0.0))
    try:
        yield fs
    finally:
        fs.close()
        fs.bridge.close_all()
        store.close()


def _errno(fn: Any) -> int:
    with pytest.raises(OSError) as info:
        fn()
    return info.value.errno  # type: ignore[return-value]


def test_trusted_list_takes_appends_of_owner_repo_lines_and_nothing_else(hoardfs: Any, gh: FakeGitHub) -> None:
    fs, path = hoardfs, "/torch/hub/trusted_list"
    assert "hub" in fs.readdir("/torch")
    assert {"checkpoints", "trusted_list"} <= set(fs.readdir("/torch/hub"))
    assert fs.getattr(path).size == 0 and not fs.getattr(path).is_dir
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND | os.O_TRUNC, os.O_RDONLY | os.O_TRUNC):
        assert _errno(lambda: fs.open(path, flags)) == errno.EROFS  # noqa: B023 (no truncation, no offset writes)
    fs.release(fs.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT))
    fh = fs.open(path, os.O_WRONLY | os.O_APPEND)
    for bad in (b"no-newline", b"bad line\n", b"owner/repo\n", b"a_b\n../x\n", b"\xff_x\n", b"o_r\n" * 2000):
        assert _errno(lambda: fs.write(fh, bad, 0)) == errno.EINVAL  # noqa: B023
    assert fs.trust.list.read() == b""  # a refused write records nothing
    assert fs.write(fh, b"fakeorg_tiny_hub\n", 0) == 17
    assert fs.write(fh, b"fakeorg_tiny_hub\nother-org_x.y\n", 123) == 31  # repeats dropped; offsets ignored
    fs.release(fh)
    reader = fs.open(path, os.O_RDONLY)
    assert fs.read(reader, 4096, 0) == b"fakeorg_tiny_hub\nother-org_x.y\n" and fs.direct_io(reader)
    assert _errno(lambda: fs.write(reader, b"x_y\n", 0)) == errno.EBADF
    fs.release(reader)
    assert fs.getattr(path).size == 31
    assert (Path(fs.store.home) / "torch" / "trusted_list").read_bytes() == b"fakeorg_tiny_hub\nother-org_x.y\n"
    assert _errno(lambda: fs.getattr(path + "/x")) == errno.ENOTDIR
    assert _errno(lambda: fs.open("/torch/hub/checkpoints/x-0123.pth", os.O_WRONLY | os.O_APPEND)) == errno.EROFS
    assert gh.requests == []


def test_unknown_weights_are_no_folders_and_hub_trees_are_complete(
    hoardfs: Any, gh: FakeGitHub, weights: FakeTorchWeights
) -> None:
    fs = hoardfs
    name = name_of(weights.add_weights("fsnet", DATA))
    add_hub_repo(gh, "fakeorg/fshub", weights.file_url(name))
    assert fs.getattr(f"/torch/hub/checkpoints/{name}").size == DATA.size
    assert _errno(lambda: fs.getattr("/torch/hub/checkpoints/absent-01234567.pth")) == errno.ENOENT
    assert _errno(lambda: fs.open("/torch/hub/checkpoints/absent-01234567.pth", os.O_RDONLY)) == errno.ENOENT
    assert fs.getattr("/torch/hub/fakeorg_fshub_main/tinynet").is_dir
    gh.clear_log()
    assert _errno(lambda: fs.getattr("/torch/hub/fakeorg_fshub_main/tinynet/absent.py")) == errno.ENOENT
    assert gh.requests == []  # the tree is complete: nothing asked
    assert {"checkpoints", "fakeorg_fshub_main", "trusted_list"} <= set(fs.readdir("/torch/hub"))


# -- 6. torch itself in the mount -----------------------------------------------------------------

#: a client run with TORCH_HOME in the mount: every socket connect of its own fails
CLIENT = r"""
import json, os, socket, sys
def no_network(*a, **k):
    raise OSError("torch tried the network")
socket.socket.connect = no_network
socket.create_connection = no_network
import torch
args = json.loads(sys.argv[1])
out = {"hub_dir": torch.hub.get_dir()}
for repo in args.get("hub", []):
    model = torch.hub.load(repo, "tiny_linear", trust_repo=True)
    out.setdefault("loaded", []).append({k: v.tolist() for k, v in model.state_dict().items()})
for url in args.get("weights", []):
    state = torch.hub.load_state_dict_from_url(url, check_hash=True, progress=False)
    out.setdefault("weights", []).append({k: v.tolist() for k, v in state.items()})
hub = torch.hub.get_dir()
out["listing"] = sorted(os.listdir(hub))
out["trusted"] = open(os.path.join(hub, "trusted_list")).read()
print("@@" + json.dumps(out))
"""


def torch_client(mount: MountProcess, **args: Any) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOARD_", "TORCH_"))}
    env["TORCH_HOME"] = str(mount.path("torch"))
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(args)], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@"))
    return json.loads(line[2:])  # type: ignore[no-any-return]


def as_lists(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.tolist() for k, v in state.items()}


def mount_env(home: Path, **extra: str) -> dict[str, str]:
    (home / "config.toml").parent.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("refs_ttl = 0.0\n")  # every name asked again: offline shows
    return dict(serve_env(), HOARD_CHUNK_SIZE="256KiB", **extra)


@pytest.mark.fuse
@pytest.mark.torch
def test_torch_hub_and_torchvision_style_weights_load_from_the_mount_offline(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    hub_state, vision_state = tiny_state_dict(11), tiny_state_dict(12)
    hub_url = weights.add_state_dict("hublinear", hub_state)
    vision_name = name_of(weights.add_state_dict("resnet_tiny", vision_state))
    vision_url = f"https://download.pytorch.org/models/{vision_name}"  # torchvision's pattern; never fetched by torch
    add_hub_repo(gh, "pytorch/tinyvision", hub_url)  # pytorch/*: a repo torch.hub always trusts
    home = tmp_path / "home"
    env = mount_env(home, GITHUB_TOKEN=TOKEN, HOARD_TORCH_URL=weights.url)
    gh_flags = [f for f in flags(gh, weights) if not f.startswith("--torch-url")]
    with MountProcess(home, tmp_path / "mnt", NO_HUB, *gh_flags, env=env) as m:
        out = torch_client(m, hub=["pytorch/tinyvision:main"], weights=[vision_url])
        assert out["hub_dir"] == str(m.path("torch/hub"))
        assert out["loaded"] == [as_lists(hub_state)] and out["weights"] == [as_lists(vision_state)]
        assert {"checkpoints", "trusted_list", "pytorch_tinyvision_main"} <= set(out["listing"])
        assert out["trusted"] == ""  # pytorch/* needs no trust line: nothing was written
        ckpt = m.path(f"torch/hub/checkpoints/{vision_name}")
        assert os.getxattr(ckpt, "user.hoard.verified_by") in (b"sha256 prefix", b"sha256")  # the latter once learnt
        assert not m.path("torch/hub/checkpoints/absent-01234567.pth").exists()  # absent, not a folder
        hoard_only(gh, weights)
        assert gh.find(origin="api") and all(r.authorization == f"Bearer {TOKEN}" for r in gh.find(origin="api"))
        wait_for(lambda: all(os.getxattr(m.path(f"torch/hub/checkpoints/{n}"), "user.hoard.present") == b"1"
                             for n in (vision_name, name_of(hub_url))))  # fmt: skip

        gh.pause()
        weights.pause()  # both origins gone: what was used once still loads
        again = torch_client(m, hub=["pytorch/tinyvision:main"], weights=[vision_url])
        assert again["loaded"] == out["loaded"] and again["weights"] == out["weights"]


@pytest.mark.fuse
@pytest.mark.torch
def test_torch_hub_trusts_a_repo_never_looked_up_through_the_mounts_one_write(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    state = tiny_state_dict(13)
    add_hub_repo(gh, "fakeorg/newhub", weights.add_state_dict("newlinear", state))
    home = tmp_path / "home"
    with MountProcess(home, tmp_path / "mnt", NO_HUB, *flags(gh, weights), env=mount_env(home)) as m:
        out = torch_client(m, hub=["fakeorg/newhub:main"])
        assert out["loaded"] == [as_lists(state)] and out["trusted"] == "fakeorg_newhub\n"
        assert (home / "torch" / "trusted_list").read_text() == "fakeorg_newhub\n"
        hoard_only(gh, weights)
        repo = m.path("torch/hub/fakeorg_newhub_main")
        for action in (lambda: open(repo / "new.py", "w"), lambda: open(repo / "hubconf.py", "a"),
                       lambda: open(m.path("torch/hub/trusted_list"), "w")):  # fmt: skip
            with pytest.raises(OSError) as info:
                action()
            assert info.value.errno == errno.EROFS
    with MountProcess(home, tmp_path / "mnt", NO_HUB, *flags(gh, weights), env=mount_env(home)) as m:
        again = torch_client(m, hub=["fakeorg/newhub:main"])  # trusted already: nothing appended
        assert again["loaded"] == out["loaded"] and again["trusted"] == "fakeorg_newhub\n"


# -- torchvision/<model>: the default weights from torchvision's registry ---------------------------

#: where torchvision's registry points, whatever --torch-url says
TORCHVISION_HOST = "https://download.pytorch.org"

_TV_INIT = '''"""A stand-in for torchvision in tests: its weights registry only (torchvision does not
import beside this torch). Same public shape as torchvision.models: get_model_weights,
get_weight, list_models, Weights, WeightsEnum."""
from . import models

__version__ = "0.0.0+hoard-test-stub"
'''

_TV_MODELS = '''from ._api import Weights, WeightsEnum, get_model_weights, get_weight, list_models, register_model
from .resnet import ResNet18_Weights, ResNet50_Weights, resnet18, resnet50
'''

_TV_API = '''"""torchvision.models._api as hoard uses it: builders registered by name, each declaring its
weights enum in its ``weights`` annotation; enum members wrap Weights(url, transforms, meta)."""
import enum
from dataclasses import dataclass, fields
from inspect import signature
from typing import Any, Callable, Dict

BUILTIN_MODELS: Dict[str, Callable[..., Any]] = {}


@dataclass
class Weights:
    url: str
    transforms: Callable[..., Any]
    meta: Dict[str, Any]


class WeightsEnum(enum.Enum):
    @classmethod
    def from_str(cls, value):
        if value in cls.__members__:
            return cls.__members__[value]
        raise ValueError(f"Invalid value for {cls.__name__}: {value}")

    def __getattr__(self, name):  # the Weights fields, on the member (weights.url)
        if name in {f.name for f in fields(Weights)}:
            return object.__getattribute__(self.value, name)
        raise AttributeError(name)


def register_model(fn):
    BUILTIN_MODELS[fn.__name__] = fn
    return fn


def list_models():
    return sorted(BUILTIN_MODELS)


def get_model_weights(model):
    if isinstance(model, str):
        if model.lower() not in BUILTIN_MODELS:
            raise ValueError(f"Unknown model {model.lower()}")
        model = BUILTIN_MODELS[model.lower()]
    annotation = signature(model).parameters["weights"].annotation
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, WeightsEnum):
            return candidate
    raise ValueError("The WeightsEnum class for the specific method couldn't be retrieved.")


def get_weight(name):
    try:
        enum_name, value_name = name.split(".")
    except ValueError:
        raise ValueError(f"Invalid weight name provided: '{name}'.") from None
    from torchvision import models

    found = getattr(models, enum_name, None)
    if not (isinstance(found, type) and issubclass(found, WeightsEnum)):
        raise ValueError(f"The weight enum '{enum_name}' for the specific method couldn't be retrieved.")
    return found.from_str(value_name)
'''

_TV_RESNET = '''from typing import Any, Optional

from ._api import Weights, WeightsEnum, register_model


class ResNet18_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(url={r18!r}, transforms=None, meta={{"num_params": 11689512}})
    DEFAULT = IMAGENET1K_V1


class ResNet50_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(url={r50v1!r}, transforms=None, meta={{"num_params": 25557032}})
    IMAGENET1K_V2 = Weights(url={r50v2!r}, transforms=None, meta={{"num_params": 25557032}})
    DEFAULT = IMAGENET1K_V2


@register_model
def resnet18(*, weights: Optional[ResNet18_Weights] = None, progress: bool = True, **kwargs: Any):
    raise NotImplementedError("a registry stand-in: no model here")


@register_model
def resnet50(*, weights: Optional[ResNet50_Weights] = None, progress: bool = True, **kwargs: Any):
    raise NotImplementedError("a registry stand-in: no model here")
'''


def torchvision_stub(root: Path, urls: dict[str, str]) -> Path:
    """A ``torchvision`` package under ``root`` (put ``root`` on PYTHONPATH) whose registry
    names ``urls`` (keys ``r18``, ``r50v1``, ``r50v2``) as the resnet weights' URLs."""
    models = root / "torchvision" / "models"
    models.mkdir(parents=True)
    (root / "torchvision" / "__init__.py").write_text(_TV_INIT)
    (models / "__init__.py").write_text(_TV_MODELS)
    (models / "_api.py").write_text(_TV_API)
    (models / "resnet.py").write_text(_TV_RESNET.format(**urls))
    return root


def test_prefetch_torchvision_model_takes_its_weights_from_torchvisions_registry(
    gh: FakeGitHub, weights: FakeTorchWeights, tmp_path: Path
) -> None:
    """With torchvision importable (a stand-in with its registry API), ``torchvision/resnet18``
    is its default weights' file and ``torchvision/ResNet50_Weights.IMAGENET1K_V1`` that
    member's; the registry's URLs name download.pytorch.org, which --torch-url stands for."""
    contents = {"r18": Content("tv-resnet18", CHUNK + 1), "r50v1": Content("tv-resnet50-v1", CHUNK + 2),
                "r50v2": Content("tv-resnet50-v2", CHUNK + 3)}  # fmt: skip
    names = {key: weights.add_weights(key.replace("r", "resnet", 1), c).rsplit("/", 1)[1]
             for key, c in contents.items()}  # fmt: skip
    stub = torchvision_stub(tmp_path / "stub", {k: f"{TORCHVISION_HOST}/models/{n}" for k, n in names.items()})
    env = dict(serve_env(), PYTHONPATH=os.pathsep.join(p for p in (str(stub), os.environ.get("PYTHONPATH")) if p))
    home = tmp_path / "home"

    def prefetch(model: str) -> dict[str, Any]:
        doc = json.loads(cli(home, "prefetch", model, *flags(gh, weights), "--json", env=env).stdout)
        return {f"{f['repo']}/{f['path']}": f["state"] for f in doc["files_detail"]}

    assert prefetch("torchvision/resnet18") == {f"torch/hub/checkpoints/{names['r18']}": "fetched"}
    assert prefetch("torchvision/ResNet50_Weights.IMAGENET1K_V1") == {
        f"torch/hub/checkpoints/{names['r50v1']}": "fetched"}  # that member, not the default (V2)
    asked = {r.path.rsplit("/", 1)[1] for r in weights.requests if r.path.startswith("/models/")}
    assert asked == {names["r18"], names["r50v1"]}
    for key in ("r18", "r50v1"):
        info = json.loads(cli(home, "info", f"torch/hub/checkpoints/{names[key]}", "--json", env=env).stdout)
        assert (info["blake3"], info["size"]) == (contents[key].blake3, contents[key].size), key
    for bad in ("torchvision/resnet999", "torchvision/ResNet50_Weights.IMAGENET1K_V9", "torchvision/Nope.X"):
        proc = cli(home, "prefetch", bad, *flags(gh, weights), env=env, check=False)
        assert proc.returncode == 2 and "torchvision knows no such model" in proc.stderr, (bad, proc.stderr)
