"""Real mounts: `hoard mount` in a process, read by real programs, always unmounted."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import MountProcess, ServeProcess, wait_for

# real mounts: skipped only where /dev/fuse is absent; with it, a missing fusermount3 is an
# error (tests/conftest.py)
pytestmark = pytest.mark.fuse

MiB = 1 << 20
#: liveness bound for one read of a mounted file: "never a hang", not a timing assertion
READ_DEADLINE = 120.0

# reads a file to its end in another process (so a stuck read can be killed): prints
# "ok <bytes> <sha256>", or "<errno name> <bytes read before the error>"
READER = r"""
import errno, hashlib, sys
digest, n = hashlib.sha256(), 0
try:
    with open(sys.argv[1], "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            n += len(block)
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc.errno)), n)
else:
    print("ok", n, digest.hexdigest())
"""


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        yield h


@pytest.fixture
def mount_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOARD_CHUNK_SIZE"] = "1MiB"
    env.pop("HF_TOKEN", None)
    return env


def cdn_bytes(hub: FakeHub) -> int:
    return hub.bytes_sent["cdn"]


def start_reader(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", READER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def reader_result(proc: subprocess.Popen[str], what: str) -> list[str]:
    """What a `start_reader` process printed, split; fails (and kills it) if the read hangs."""
    try:
        out, err = proc.communicate(timeout=READ_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        pytest.fail(f"reading {what} hung for {READ_DEADLINE:.0f}s")
    assert proc.returncode == 0, err
    return out.split()


def test_list_stat_read_and_xattrs(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    weights = Content("weights", 5 * MiB + 3)
    commit = hub.add_repo("org/tiny", {"config.json": b'{"a": 1}\n', "model.safetensors": weights,
                                       "sub/dir/notes.txt": b"hello"})
    with MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, env=mount_env) as m:
        repo = m.path("huggingface/org/tiny")
        assert sorted(os.listdir(repo)) == [".gitattributes", "config.json", "model.safetensors", "sub"]
        assert os.listdir(repo / "sub/dir") == ["notes.txt"]
        st = os.stat(repo / "model.safetensors")
        assert st.st_size == weights.size  # before any byte was fetched
        assert cdn_bytes(hub) == 0
        assert (st.st_mode & 0o777) == 0o444
        assert (repo / "config.json").read_text() == '{"a": 1}\n'
        assert (repo / "model.safetensors").read_bytes() == weights.read()
        assert os.getxattr(repo / "model.safetensors", "user.hoard.sha256").decode() == weights.sha256
        assert os.getxattr(repo / "model.safetensors", "user.hoard.address").decode() == \
            f"huggingface/org/tiny@{commit}/model.safetensors"
        assert 0 < float(os.getxattr(repo / "model.safetensors", "user.hoard.present")) <= 1
        # pinned revision directory, resolved on lookup
        assert (m.path(f"huggingface/org/tiny@{commit}/sub/dir/notes.txt")).read_bytes() == b"hello"
        assert "tiny" in os.listdir(m.path("huggingface/org"))
        # opening started a fill: once verified and published, BLAKE3 is known and all is present
        wait_for(
            lambda: "user.hoard.blake3" in os.listxattr(repo / "model.safetensors"), timeout=60.0, interval=0.05
        )
        assert os.getxattr(repo / "model.safetensors", "user.hoard.blake3").decode() == weights.blake3
        assert os.getxattr(repo / "model.safetensors", "user.hoard.present") == b"1"


def test_errors_map_to_errno(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}"})
    with MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, env=mount_env) as m:
        repo = m.path("huggingface/org/tiny")
        with pytest.raises(FileNotFoundError):
            os.stat(m.path("huggingface/org/no-such-repo"))
        with pytest.raises(FileNotFoundError):
            os.stat(repo / "missing.bin")
        with pytest.raises(OSError) as exc:
            os.stat(m.path("huggingface/org/" + "x" * 300))
        assert exc.value.errno in (errno.ENAMETOOLONG, errno.EINVAL)
        for action in (
            lambda: open(repo / "new.txt", "w"),
            lambda: open(repo / "config.json", "r+b"),
            lambda: os.mkdir(repo / "d"),
            lambda: os.unlink(repo / "config.json"),
            lambda: os.rename(repo / "config.json", repo / "c2"),
        ):
            with pytest.raises(OSError) as exc:
                action()
            assert exc.value.errno == errno.EROFS
        with pytest.raises(OSError) as exc:
            os.getxattr(repo / "config.json", "user.other")
        assert exc.value.errno == errno.ENODATA


def test_safetensors_torch_mmap_and_onnx(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save as st_save

    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    arrays = {"w": np.arange(300_000, dtype=np.float32).reshape(600, 500), "b": np.ones(7, dtype=np.float16)}
    buf = io.BytesIO()
    state = {"layer.weight": torch.arange(12.0).reshape(3, 4), "layer.bias": torch.zeros(3)}
    torch.save(state, buf)
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph)
    hub.add_repo("org/models", {"model.safetensors": st_save(arrays), "model.pt": buf.getvalue(),
                                "model.onnx": model.SerializeToString()})
    (tmp_path / "expected.pt").write_bytes(buf.getvalue())
    np.save(tmp_path / "w.npy", arrays["w"])
    # the frameworks read the mount from another process: some hold the GIL across open() and
    # page faults, and the fake origin lives in this process
    code = f"""
import sys, numpy as np, torch, onnx
from safetensors import safe_open
repo = sys.argv[1]
with safe_open(repo + "/model.safetensors", framework="np") as f:
    assert sorted(f.keys()) == ["b", "w"], f.keys()
    assert (f.get_tensor("w") == np.load({str(tmp_path / "w.npy")!r})).all()
loaded = torch.load(repo + "/model.pt", mmap=True, weights_only=True)
want = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
assert all(torch.equal(loaded[k], want[k]) for k in want)
assert onnx.load(repo + "/model.onnx").graph.node[0].op_type == "Relu"
print("ok")
"""
    with MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, env=mount_env) as m:
        out = subprocess.run([sys.executable, "-c", code, str(m.path("huggingface/org/models"))],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_parallel_readers_of_a_cold_file_fetch_it_once(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    big = Content("parallel", 24 * MiB)
    hub.add_repo("org/big", {"model.safetensors": big})
    with MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, "--fill", "lazy", env=mount_env) as m:
        path = m.path("huggingface/org/big/model.safetensors")
        results: list[bool] = []

        def reader() -> None:
            results.append(path.read_bytes() == big.read())

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(READ_DEADLINE)
        assert not any(t.is_alive() for t in threads), "a reader hung"
        assert results == [True] * 4
        assert cdn_bytes(hub) <= 1.05 * big.size


def test_small_read_deep_in_cold_file_fetches_little(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    big = Content("deep", 64 * MiB)
    hub.add_repo("org/big", {"model.safetensors": big})
    with MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, "--fill", "lazy", env=mount_env) as m:
        with open(m.path("huggingface/org/big/model.safetensors"), "rb") as fh:
            fh.seek(40 * MiB + 123)
            assert fh.read(4096) == big.read(40 * MiB + 123, 40 * MiB + 123 + 4096)
        assert 0 < cdn_bytes(hub) <= 4 * MiB


def test_origin_dying_mid_read_gives_eio_not_a_hang(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    big = Content("dying", 16 * MiB)
    cached = Content("dying-cached", 3 * MiB + 5)
    hub.add_repo("org/big", {"model.safetensors": big, "cached.bin": cached})
    with MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, "--fill", "lazy", env=mount_env) as m:
        repo = m.path("huggingface/org/big")
        # one file read completely (and so verified and published) while the origin is up
        assert reader_result(start_reader(repo / "cached.bin"), "a file") == ["ok", str(cached.size), cached.sha256]
        wait_for(lambda: "user.hoard.blake3" in os.listxattr(repo / "cached.bin"), timeout=60.0)
        hub.clear_log()
        hub.fault(origin="cdn", slow=1 * MiB)  # slow, so the read is still running when the origin dies

        reader = start_reader(repo / "model.safetensors")
        wait_for(lambda: cdn_bytes(hub) >= 1 * MiB or reader.poll() is not None, timeout=60.0)
        assert reader.poll() is None, f"the read ended before the origin died: {reader.communicate()}"
        hub.pause()  # the origin dies mid-read: listeners and open connections closed
        outcome = reader_result(reader, "a file whose origin died")
        assert outcome[0] == "EIO", f"the reader got {outcome} instead of EIO"
        assert int(outcome[1]) < big.size

        # the mount survived, and still serves what it has while the origin is down
        assert m.proc is not None and m.proc.poll() is None, "the mount process died"
        assert reader_result(start_reader(repo / "cached.bin"), "a cached file") == \
            ["ok", str(cached.size), cached.sha256]
        # nothing is left busy: a plain (not lazy) unmount succeeds and the process exits 0
        done = subprocess.run(["fusermount3", "-u", str(m.mountpoint)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert m.proc.wait(30) == 0
        assert not os.path.ismount(m.mountpoint)
        log = m.unmount()
        assert "Traceback" not in log, f"the origin's death was an unexpected error in the mount:\n{log[-5000:]}"


def test_dead_origin_leaves_cached_files_readable(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    data = Content("cached", 3 * MiB)
    hub.add_repo("org/c", {"model.safetensors": data, "config.json": b"{}"})
    home = tmp_path / "home"
    with MountProcess(home, tmp_path / "mnt", hub.url, env=mount_env) as m:
        assert m.path("huggingface/org/c/model.safetensors").read_bytes() == data.read()
    hub.pause()
    with MountProcess(home, tmp_path / "mnt", hub.url, env=mount_env) as m:
        assert m.path("huggingface/org/c/model.safetensors").read_bytes() == data.read()
        with pytest.raises(OSError) as exc:
            os.stat(m.path("huggingface/org/never-seen"))
        assert exc.value.errno == errno.EIO  # unknown, and the origin cannot be asked


def test_mount_and_serve_share_one_store(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    data = Content("shared", 12 * MiB)
    hub.add_repo("org/s", {"model.safetensors": data})
    home = tmp_path / "home"
    with MountProcess(home, tmp_path / "mnt", hub.url, "--fill", "lazy", env=mount_env) as m, \
            ServeProcess(home, hub.url, env=mount_env) as srv:
        got: dict[str, bytes] = {}

        def via_http() -> None:
            with urllib.request.urlopen(f"{srv.url}/org/s/resolve/main/model.safetensors", timeout=60) as r:
                got["http"] = r.read()

        t = threading.Thread(target=via_http, daemon=True)
        t.start()
        got["mount"] = m.path("huggingface/org/s/model.safetensors").read_bytes()
        t.join(READ_DEADLINE)
        assert not t.is_alive(), "the HTTP download hung"
        assert got["http"] == data.read() and got["mount"] == data.read()
        assert cdn_bytes(hub) <= 1.05 * data.size  # no chunk fetched by both processes


def test_umount_command_stops_the_mount(hub: FakeHub, tmp_path: Path, mount_env: dict[str, str]) -> None:
    hub.add_repo("org/u", {"config.json": b"{}"})
    m = MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, env=mount_env).start()
    try:
        assert (m.path("huggingface/org/u/config.json")).read_bytes() == b"{}"
        out = subprocess.run([sys.executable, "-m", "hoard.cli.main", "umount", str(m.mountpoint)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert m.proc is not None and m.proc.wait(30) == 0
        assert not os.path.ismount(m.mountpoint)
    finally:
        m.unmount()
