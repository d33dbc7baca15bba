"""Moving models without a network: bundles of several revisions, compressed or not, imported
all or nothing; and Hugging Face caches that huggingface_hub reads without a warning.

* ``hoard export ADDRESS... DEST --format hoard`` writes one self-describing file (``.tar.zst``
  when DEST ends in ``.zst``: zstd, streamed; else a plain tar, whatever the name) — a directory
  only when DEST is an existing directory or ends with ``/``; ``hoard import`` verifies every
  blob (BLAKE3 and the upstream hash) before adding anything, is a no-op the second time, and
  refuses a truncated or tampered bundle, leaving the store as it was.
* ``--format hf-cache``: ``scan_cache_dir`` sees the repos with no warnings, and
  ``hf_hub_download(..., local_files_only=True)`` finds the files.
"""

from __future__ import annotations

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
import zstandard

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import serve_env

HOARD = [sys.executable, "-m", "hoard.cli.main"]
WEIGHTS = Content("bundle-weights", 600_000)
SHARED = Content("bundle-shared", 250_000)


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/one", {"config.json": b'{"one": 1}', "model.safetensors": WEIGHTS, "shared.bin": SHARED})
        fake.add_repo("org/two", {"config.json": b'{"two": 2}', "shared.bin": SHARED}, tags=["v1"])
        yield fake


def run(home: Path, *args: str, hub: FakeHub | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(serve_env(), HOARD_HOME=str(home))
    if hub is not None:
        env["HOARD_HF_ENDPOINT"] = hub.url
    proc = subprocess.run([*HOARD, *args], env=env, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ok(home: Path, *args: str, hub: FakeHub | None = None) -> Any:
    proc = run(home, *args, "--json", hub=hub)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def source(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding both Hub repos and a local one."""
    home = tmp_path_factory.mktemp("source") / "home"
    ok(home, "prefetch", "org/one", "org/two", "huggingface/org/two@v1", hub=hub)
    local = home.parent / "local"
    local.mkdir()
    (local / "notes.txt").write_text("only here\n")
    (local / "shared.bin").write_bytes(SHARED.read())
    ok(home, "add", str(local), "local/me/notes@v1")
    return home


ADDRESSES = ("huggingface/org/one", "huggingface/org/two", "local/me/notes")


def state(home: Path) -> tuple[Any, int, list[str]]:
    """What a store holds: its repos, its blob count, and anything left in tmp/."""
    tmp = home / "tmp"
    return ok(home, "ls"), ok(home, "info")["blobs"], sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def members(path: Path) -> list[tarfile.TarInfo]:
    with open(path, "rb") as raw:
        stream: Any = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) \
            if path.name.endswith(".zst") else raw
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            return list(tar)


@pytest.mark.parametrize("name", ["fleet.tar.zst", "fleet.tar"])
def test_several_revisions_in_one_bundle_file_round_trip(source: Path, tmp_path: Path, name: str) -> None:
    bundle = tmp_path / name
    summary = ok(source, "export", *ADDRESSES, str(bundle), "--format", "hoard")
    assert summary["written"] == ("tar.zst" if name.endswith(".zst") else "tar") and len(summary["revisions"]) == 3
    assert bundle.is_file() and not list(tmp_path.glob(".*partial"))  # one file, written whole
    if name.endswith(".zst"):
        assert bundle.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    got = members(bundle)
    assert got[0].name == "hoard-export.json" and got[-1].name == "hoard-end.json"
    blobs = [m.name for m in got if m.name.startswith("blobs/")]
    assert len(blobs) == len(set(blobs))  # SHARED is in all three revisions: once in the bundle

    other = tmp_path / "other"
    report = ok(other, "import", str(bundle))
    assert sorted(report["revisions"]) == sorted(f"{r['repo']}@{r['revision']}" for r in summary["revisions"])
    assert report["blobs"] == len(blobs)
    for addr in ADDRESSES:
        files = ok(other, "ls", addr)["files"]
        assert files and all(f["blake3"] for f in files), addr
    info = ok(other, "info", "huggingface/org/one/model.safetensors")
    assert info["blake3"] == WEIGHTS.blake3 and Path(info["blob_path"]).read_bytes() == WEIGHTS.read()
    assert ok(other, "info", "huggingface/org/two")["refs"].keys() == {"main", "v1"}

    before = state(other)
    again = ok(other, "import", str(bundle))  # a no-op the second time
    assert (again["blobs"], again["revisions"], len(again["skipped"])) == (0, [], 3)
    assert state(other) == before


def test_a_dest_without_suffix_is_one_plain_tar_file(source: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "fleet"
    summary = ok(source, "export", *ADDRESSES, str(bundle), "--format", "hoard")
    assert summary["written"] == "tar"
    assert bundle.is_file() and not bundle.is_symlink()
    assert [p.name for p in tmp_path.iterdir()] == ["fleet"]  # one file, no partial left
    assert tarfile.is_tarfile(bundle)
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == "hoard-export.json" and names[-1] == "hoard-end.json"

    other = tmp_path / "other"
    report = ok(other, "import", str(bundle))
    assert sorted(report["revisions"]) == sorted(f"{r['repo']}@{r['revision']}" for r in summary["revisions"])
    assert report["blobs"] == len([n for n in names if n.startswith("blobs/")])
    before = state(other)
    again = ok(other, "import", str(bundle))  # a no-op the second time
    assert (again["blobs"], again["revisions"], len(again["skipped"])) == (0, [], 3)
    assert state(other) == before


def test_where_a_bundle_goes_and_what_it_never_writes_through(source: Path, tmp_path: Path) -> None:
    """An existing directory, or a DEST ending with ``/``, gets the directory form (older
    hoards' layout); a file or a link at DEST is replaced whole, never written through."""
    addr = "huggingface/org/two"
    existing = tmp_path / "existing"
    existing.mkdir()
    fresh = tmp_path / "fresh"
    for dest in (str(existing), str(fresh) + os.sep):
        assert ok(source, "export", addr, dest, "--format", "hoard")["written"] == "dir"
    for folder in (existing, fresh):
        assert (folder / "hoard-export.json").is_file() and (folder / "hoard-end.json").is_file()
        assert ok(tmp_path / f"home-{folder.name}", "import", str(folder))["revisions"]

    target = tmp_path / "outside-target"
    target.write_bytes(b"not yours")
    link = tmp_path / "link.tar.zst"
    link.symlink_to(target)
    plain = tmp_path / "old-bundle"
    plain.write_bytes(b"an older file")
    for dest, form in ((link, "tar.zst"), (plain, "tar")):
        assert ok(source, "export", addr, str(dest), "--format", "hoard")["written"] == form
        assert dest.is_file() and not dest.is_symlink()
        assert ok(tmp_path / f"home-{dest.name}", "import", str(dest))["revisions"]
    assert target.read_bytes() == b"not yours"
    assert not list(tmp_path.glob(".*partial"))


def _refused(home: Path, bundle: Path, message: str) -> None:
    proc = run(home, "import", str(bundle))
    assert proc.returncode == 5, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["fleet.tar.zst", "fleet.tar"])
def test_a_truncated_bundle_is_refused_and_changes_nothing(source: Path, tmp_path: Path, name: str) -> None:
    bundle = tmp_path / name
    ok(source, "export", *ADDRESSES, str(bundle), "--format", "hoard")
    data = bundle.read_bytes()
    home = tmp_path / "home"
    ok(home, "import", str(_bundle_of(tmp_path, source, "huggingface/org/two")))  # something there already
    before = state(home)
    cuts = [len(data) // 10, len(data) // 2, len(data) - 40_000, len(data) - 5_000, len(data) - 1]
    if name.endswith(".tar"):
        cuts[-1] = len(data) - 1 - 10_240  # inside the end member: a tar's trailing padding is not content
    for cut in cuts:
        truncated = tmp_path / f"cut-{cut}-{name}"
        truncated.write_bytes(data[:cut])
        _refused(home, truncated, "nothing was imported")
        assert state(home) == before, cut
    ok(home, "import", str(bundle))  # the whole one is fine


def _bundle_of(tmp_path: Path, home: Path, addr: str) -> Path:
    dest = tmp_path / f"{addr.replace('/', '_')}.tar"
    ok(home, "export", addr, str(dest), "--format", "hoard")
    return dest


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_a_tampered_bundle_is_refused_and_changes_nothing(source: Path, tmp_path: Path) -> None:
    plain = tmp_path / "one.tar"
    ok(source, "export", "huggingface/org/one", "huggingface/org/two", str(plain), "--format", "hoard")
    data = plain.read_bytes()
    home = tmp_path / "home"
    before = state(home)
    # a byte of a blob: its BLAKE3 (and sha256) no longer match
    with tarfile.open(plain) as tar:
        weights = next(m for m in tar.getmembers() if m.name == f"blobs/{WEIGHTS.blake3}")
    flipped = tmp_path / "flipped.tar"
    flipped.write_bytes(_flip(data, weights.offset_data + 1000))
    _refused(home, flipped, "mismatch")
    assert state(home) == before
    # a manifest that names other bytes for a file: the upstream hash refuses them
    with tarfile.open(plain) as tar:
        doc = json.loads(tar.extractfile("hoard-export.json").read())  # type: ignore[union-attr]
    target = next(r for r in doc["revisions"] if r["repo"] == "huggingface/org/two")
    target["files"]["config.json"]["blake3"] = doc["revisions"][0]["files"]["config.json"]["blake3"]
    doc["blobs"] = doc["blobs"] | {}
    lying = tmp_path / "lying.tar"
    with tarfile.open(plain) as tar, tarfile.open(lying, "w") as out:
        for m in tar.getmembers():
            if m.name == "hoard-export.json":
                raw = json.dumps(doc).encode()
                m.size = len(raw)
                out.addfile(m, io.BytesIO(raw))
            else:
                out.addfile(m, tar.extractfile(m))
    _refused(home, lying, "mismatch")
    assert state(home) == before
    # a byte of the compressed stream
    packed = tmp_path / "one.tar.zst"
    ok(source, "export", "huggingface/org/one", str(packed), "--format", "hoard")
    zdata = packed.read_bytes()
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(_flip(zdata, len(zdata) // 2))
    proc = run(home, "import", str(bad))
    assert proc.returncode == 5 and proc.stderr.count("\n") == 1, proc.stderr
    assert state(home) == before


def test_export_refuses_what_is_not_complete_and_writes_nothing(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(home, "prefetch", "org/one", "--include", "config.json", hub=hub)
    dest = tmp_path / "out.tar.zst"
    proc = run(home, "export", "huggingface/org/one", str(dest), "--format", "hoard")
    assert proc.returncode == 3 and "not fully cached" in proc.stderr
    assert not dest.exists() and list(tmp_path.glob(".out*")) == []
    many = run(home, "export", "huggingface/org/one", "huggingface/org/two", str(tmp_path / "d"), "--format", "dir")
    assert many.returncode == 2 and "one revision" in many.stderr


def test_hf_cache_export_is_what_huggingface_hub_expects(source: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    ok(source, "export", "huggingface/org/one", "huggingface/org/two", str(cache), "--format", "hf-cache")
    code = (
        "import json, os, sys\n"
        "from huggingface_hub import scan_cache_dir, hf_hub_download\n"
        "info = scan_cache_dir(sys.argv[1])\n"
        "out = {'warnings': [str(w) for w in info.warnings],\n"
        "       'repos': sorted((r.repo_id, r.nb_files, sorted(ref for rev in r.revisions for ref in rev.refs))\n"
        "                       for r in info.repos),\n"
        "       'file': open(hf_hub_download('org/one', 'model.safetensors', local_files_only=True), 'rb').read().hex()[:64],\n"
        "       'tagged': open(hf_hub_download('org/two', 'config.json', revision='v1', local_files_only=True)).read()}\n"
        "print(json.dumps(out))\n"
    )
    env = dict(serve_env(), HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    proc = subprocess.run([sys.executable, "-c", code, str(cache)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["warnings"] == []
    assert out["repos"] == [["org/one", 4, ["main"]], ["org/two", 3, ["main", "v1"]]]
    assert out["file"] == WEIGHTS.read()[:32].hex() and out["tagged"] == '{"two": 2}'
    assert "warn" not in proc.stderr.lower(), proc.stderr
    # the cache carries each revision's listing: importing it restores the revisions too
    report = ok(tmp_path / "fresh", "import", str(cache))
    assert sorted(r.split("@")[0] for r in report["revisions"]) == ["huggingface/org/one", "huggingface/org/two"]
    assert os.path.isdir(cache / "models--org--one" / "trees")
