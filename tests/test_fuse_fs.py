"""The filesystem class driven in-process (no kernel): the many small cases of the mount."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoard.fuse.bridge import CoreBridge
from hoard.fuse.fs import FsError, HoardFS, MountOptions
from hoard.proxy.fetch import FetchConfig
from hoard.proxy.sources import load_all
from hoard.proxy.service import ProxyConfig
from hoard.store.config import StoreConfig
from hoard.store.store import Store

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import TEST_HTTP, ProxyThread, wait_for

MiB = 1 << 20


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        yield h


@contextlib.contextmanager
def make_fs(home: Path, endpoint: str, *, upstream: str | None = None, refs_ttl: float = 60.0,
            fill: str = "lazy") -> Iterator[HoardFS]:
    """A filesystem over its own store and core; always torn down."""
    store = Store(StoreConfig(home, chunk_size=1 * MiB))
    config = ProxyConfig(source_settings={"hf_endpoint": endpoint}, upstream=upstream, refs_ttl=refs_ttl, http=TEST_HTTP,
                         fetch=FetchConfig(chunk_attempts=2, failure_hold=0.5))
    hoardfs = HoardFS(CoreBridge(config, store), MountOptions(fill=fill, ref_cache_seconds=0.0))
    try:
        yield hoardfs
    finally:
        hoardfs.close()
        hoardfs.bridge.close_all()
        store.close()


@pytest.fixture
def fs(hub: FakeHub, tmp_path: Path) -> Iterator[HoardFS]:
    with make_fs(tmp_path / "home", hub.url) as hoardfs:
        yield hoardfs


def read_all(fs: HoardFS, path: str, block: int = 128 << 10) -> bytes:
    fh = fs.open(path, os.O_RDONLY)
    try:
        size = fs.getattr(path).size
        return b"".join(fs.read(fh, block, off) for off in range(0, size, block))
    finally:
        fs.release(fh)


def test_tree_levels(fs: HoardFS, hub: FakeHub) -> None:
    hub.add_repo("org/a", {"x/y/z.txt": b"z", "top.json": b"{}"})
    hub.add_repo("org/ds", {"data/train.csv": b"a,b\n"}, repo_type="dataset")
    assert fs.readdir("/")[2:] == sorted(load_all())  # every registered source
    assert {"huggingface", "arweave", "local"} <= set(fs.readdir("/"))
    assert fs.readdir("/huggingface")[2:] == ["datasets", "spaces"]
    assert fs.getattr("/huggingface/org/a").is_dir
    assert fs.readdir("/huggingface/org/a")[2:] == [".gitattributes", "top.json", "x"]
    assert fs.readdir("/huggingface/org/a/x")[2:] == ["y"]
    assert fs.getattr("/huggingface/org/a/x/y/z.txt").size == 1
    assert fs.readdir("/huggingface")[2:] == ["datasets", "org", "spaces"]
    assert fs.readdir("/huggingface/org")[2:] == ["a"]
    assert read_all(fs, "/huggingface/datasets/org/ds/data/train.csv") == b"a,b\n"
    assert fs.readdir("/huggingface/datasets")[2:] == ["org"]


def test_errnos(fs: HoardFS, hub: FakeHub) -> None:
    hub.add_repo("org/a", {"d/f.txt": b"f"})
    cases = [
        (lambda: fs.getattr("/nosource"), errno.ENOENT),
        (lambda: fs.getattr("/huggingface/org/missing-repo"), errno.ENOENT),
        (lambda: fs.getattr("/huggingface/org/a/nope"), errno.ENOENT),
        (lambda: fs.getattr("/huggingface/org/a@no-such-branch"), errno.ENOENT),
        (lambda: fs.getattr("/huggingface/org/" + "n" * 256), errno.ENAMETOOLONG),
        (lambda: fs.getattr("/huggingface/org/a/.."), errno.EINVAL),
        (lambda: fs.open("/huggingface/org/a/d", os.O_RDONLY), errno.EISDIR),
        (lambda: fs.open("/huggingface/org/a/d/f.txt", os.O_WRONLY), errno.EROFS),
        (lambda: fs.open("/huggingface/org/a/d/f.txt", os.O_RDWR), errno.EROFS),
        (lambda: fs.readdir("/huggingface/org/a/d/f.txt"), errno.ENOTDIR),
        (lambda: fs.read(999, 10, 0), errno.EBADF),
        (lambda: fs.getxattr("/huggingface/org/a/d/f.txt", "user.nope"), errno.ENODATA),
    ]
    for action, code in cases:
        with pytest.raises(FsError) as exc:
            action()
        assert exc.value.errno == code, (action, exc.value)


def test_gated_repo_is_eacces(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo("org/gated", {"w.bin": b"secret"}, gated="manual")
    with make_fs(tmp_path / "home", hub.url) as fs:
        with pytest.raises(FsError) as exc:
            fs.getattr("/huggingface/org/gated/w.bin")
        assert exc.value.errno == errno.EACCES


def test_branch_moves_after_ttl_commit_never_does(hub: FakeHub, tmp_path: Path) -> None:
    first = hub.add_repo("org/m", {"v.txt": b"one"})
    with make_fs(tmp_path / "home", hub.url, refs_ttl=0.0) as fs:
        assert read_all(fs, "/huggingface/org/m/v.txt") == b"one"
        second = hub.commit("org/m", {"v.txt": b"two!"})
        assert read_all(fs, "/huggingface/org/m/v.txt") == b"two!"
        assert read_all(fs, f"/huggingface/org/m@{first}/v.txt") == b"one"
        assert fs.getxattr("/huggingface/org/m/v.txt", "user.hoard.revision").decode() == second
        hub.tag("org/m", "v1", first)
        assert read_all(fs, "/huggingface/org/m@v1/v.txt") == b"one"


def test_lazy_read_fetches_only_the_chunks_read(fs: HoardFS, hub: FakeHub) -> None:
    big = Content("lazy", 12 * MiB)
    hub.add_repo("org/big", {"model.safetensors": big})
    path = "/huggingface/org/big/model.safetensors"
    fh = fs.open(path, os.O_RDONLY)
    try:
        assert fs.read(fh, 4096, 7 * MiB + 5) == big.read(7 * MiB + 5, 7 * MiB + 5 + 4096)
        # the read returned as soon as its bytes landed; the chunk completes in the background
        wait_for(lambda: fs.getxattr(path, "user.hoard.present") == b"0.083333")
        assert hub.bytes_sent["cdn"] == 1 * MiB
        # the same range again comes from the store
        assert fs.read(fh, 4096, 7 * MiB + 5) == big.read(7 * MiB + 5, 7 * MiB + 5 + 4096)
        assert hub.bytes_sent["cdn"] == 1 * MiB
    finally:
        fs.release(fh)


def test_open_fill_completes_and_publishes(hub: FakeHub, tmp_path: Path) -> None:
    big = Content("fill", 5 * MiB)
    hub.add_repo("org/f", {"model.safetensors": big})
    with make_fs(tmp_path / "home", hub.url, fill="open") as fs:
        path = "/huggingface/org/f/model.safetensors"
        fh = fs.open(path, os.O_RDONLY)
        try:
            assert fs.read(fh, 100, 0) == big.read(0, 100)
            # opening started the fill; reading 100 bytes asked for no more than one chunk
            wait_for(lambda: "user.hoard.blake3" in fs.listxattr(path), timeout=60.0)  # published
        finally:
            fs.release(fh)
        assert fs.getxattr(path, "user.hoard.blake3").decode() == big.blake3
        assert fs.store.blob_path(big.blake3).read_bytes() == big.read()


def test_local_source(fs: HoardFS, tmp_path: Path) -> None:
    from hoard.store.address import parse_address
    from hoard.store.catalog import add_directory

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "w.bin").write_bytes(b"local bytes")
    add_directory(fs.store, src, parse_address("local/me/model@v2"))
    assert fs.readdir("/local")[2:] == ["me"]
    assert fs.readdir("/local/me")[2:] == ["model"]
    assert read_all(fs, "/local/me/model/sub/w.bin") == b"local bytes"
    assert read_all(fs, "/local/me/model@v2/sub/w.bin") == b"local bytes"


def test_child_fills_from_a_parent_hoard(hub: FakeHub, tmp_path: Path) -> None:
    data = Content("tiered", 3 * MiB)
    commit = hub.add_repo("org/t", {"model.safetensors": data, "config.json": b"{}"})
    with ProxyThread(tmp_path / "parent", hub.url) as parent:
        with make_fs(tmp_path / "child", "http://127.0.0.1:9", upstream=parent.url) as fs:
            assert fs.readdir("/huggingface/org/t")[2:] == [".gitattributes", "config.json", "model.safetensors"]
            assert read_all(fs, "/huggingface/org/t/model.safetensors") == data.read()
            assert fs.getxattr("/huggingface/org/t/model.safetensors", "user.hoard.revision").decode() == commit
            assert hub.bytes_sent["cdn"] <= 1.05 * data.size
        # a second node: the parent now serves it from its store; the origin is not asked again
        with make_fs(tmp_path / "child2", "http://127.0.0.1:9", upstream=parent.url) as fs2:
            before = hub.bytes_sent["cdn"]
            assert read_all(fs2, "/huggingface/org/t/model.safetensors") == data.read()
            assert hub.bytes_sent["cdn"] == before


def test_whole_file_read_of_corrupt_content_ends_in_eio(fs: HoardFS, hub: FakeHub) -> None:
    data = Content("corrupt-me", 3 * MiB)
    hub.add_repo("org/bad", {"model.safetensors": data})
    hub.fault(origin="cdn", corrupt=True)
    path = "/huggingface/org/bad/model.safetensors"
    fh = fs.open(path, os.O_RDONLY)
    try:
        got = b""
        with pytest.raises(FsError) as exc:
            for off in range(0, data.size, 128 << 10):
                got += fs.read(fh, 128 << 10, off)
        assert exc.value.errno == errno.EIO
        assert len(got) < data.size  # never the whole (wrong) file
    finally:
        fs.release(fh)
    assert fs.store.resolve("sha256:" + data.sha256) is None  # nothing published


def prefetch(env: dict[str, str], endpoint: str, address: str) -> subprocess.CompletedProcess[str]:
    """``hoard prefetch`` in another process, on the same home."""
    return subprocess.run(
        [sys.executable, "-m", "hoard.cli.main", "prefetch", address,
         "--hf-endpoint", endpoint, "--chunk-size", "1MiB"],
        env=env, capture_output=True, text=True, timeout=120,
    )


def test_handle_follows_content_published_from_another_partial(
    fs: HoardFS, hub: FakeHub, hoard_env: dict[str, str]
) -> None:
    data = Content("republished", 3 * MiB + 77)
    hub.add_repo("org/r", {"model.safetensors": data})
    path = "/huggingface/org/r/model.safetensors"
    identity = fs.getxattr(path, "user.hoard.identity").decode()
    fh = fs.open(path, os.O_RDONLY)  # lazy: the handle is on a new, empty partial
    try:
        assert fs.store.partial_status(identity) == (0, data.size)
        # another process fills that same partial from a corrupt CDN: the whole-file check
        # fails, so it discards the partial (its file keeps the wrong bytes under our handle)
        hub.fault(origin="cdn", corrupt=True)
        bad = prefetch(hoard_env, hub.url, "huggingface/org/r")
        assert bad.returncode != 0, bad.stdout
        assert fs.store.partial_status(identity) is None and fs.store.resolve(identity) is None
        # ... and a later one fetches it again, into a partial of its own, and publishes that
        hub.clear_faults()
        good = prefetch(hoard_env, hub.url, "huggingface/org/r")
        assert good.returncode == 0, good.stderr
        assert fs.store.resolve(identity) == data.blake3
        cdn_before = hub.bytes_sent["cdn"]
        # the handle opened before all this reads the published content, every time
        for _ in range(2):
            got = b"".join(fs.read(fh, 1 << 20, off) for off in range(0, data.size, 1 << 20))
            assert len(got) == data.size
            assert hashlib.sha256(got).hexdigest() == data.sha256, "the handle read the discarded partial's bytes"
        assert hub.bytes_sent["cdn"] == cdn_before  # from the store, not fetched again
    finally:
        fs.release(fh)
