"""hoard export / hoard import: plain dirs, HF hub caches, and portable bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import ProxyThread

HOARD = [sys.executable, "-m", "hoard.cli.main"]


def hoard(home: Path, *args: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run([*HOARD, *args, "--home", str(home), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def local_repo(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "w.bin").write_bytes(os.urandom(100_000))
    home = tmp_path / "home"
    hoard(home, "add", str(src), "local/me/m@v1")
    return home, src


def test_export_dir_and_bundle_roundtrip(local_repo: tuple[Path, Path], tmp_path: Path) -> None:
    home, src = local_repo
    out = tmp_path / "plain"
    hoard(home, "export", "local/me/m", str(out))
    assert (out / "sub" / "w.bin").read_bytes() == (src / "sub" / "w.bin").read_bytes()
    # one file whatever the name (.tar or none), or a directory when DEST ends with a separator
    for name, form in (("bundle", "tar"), ("bundle.tar", "tar"), ("bundle-dir" + os.sep, "dir")):
        dest = tmp_path / name
        summary = hoard(home, "export", "local/me/m@v1", str(tmp_path) + os.sep + name, "--format", "hoard")
        assert summary["written"] == form and (dest.is_dir() if form == "dir" else dest.is_file())
        other = tmp_path / f"other-{dest.name}"
        report = hoard(other, "import", str(dest))
        assert report["blobs"] == 2 and report["revisions"] == [f"local/me/m@{summary['revision']}"]
        files = hoard(other, "ls", "local/me/m@v1")["files"]
        assert {f["path"] for f in files} == {"config.json", "sub/w.bin"}
        assert all(f["blake3"] for f in files)


def test_import_rejects_tampered_bundle(local_repo: tuple[Path, Path], tmp_path: Path) -> None:
    home, _ = local_repo
    dest = tmp_path / "bundle"
    dest.mkdir()  # an existing directory: the bundle is written as files in it
    hoard(home, "export", "local/me/m", str(dest), "--format", "hoard")
    blob = max((dest / "blobs").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[10] ^= 1
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    proc = subprocess.run([*HOARD, "import", str(dest), "--home", str(tmp_path / "other")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5 and "mismatch" in proc.stderr


def test_hf_cache_export_works_offline_and_import_seeds_store(tmp_path: Path) -> None:
    weights = Content("hfc", 2 << 20)
    with FakeHub() as hub:
        commit = hub.add_repo("org/tiny", {"config.json": b'{"a": 1}', "model.safetensors": weights})
        home = tmp_path / "home"
        env = dict(os.environ, HOARD_HF_ENDPOINT=hub.url)
        subprocess.run([*HOARD, "prefetch", "org/tiny", "--home", str(home)], env=env, check=True,
                       capture_output=True, timeout=120)
        cache = tmp_path / "hfcache"
        hoard(home, "export", "huggingface/org/tiny", str(cache), "--format", "hf-cache")
        code = (
            "from huggingface_hub import snapshot_download; import os, sys; "
            "p = snapshot_download('org/tiny'); print(sorted(os.listdir(p)))"
        )
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_TELEMETRY="1")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "model.safetensors" in out.stdout
        assert (cache / "models--org--tiny" / "refs" / "main").read_text() == commit
        assert (cache / "models--org--tiny" / "blobs" / weights.sha256).read_bytes() == weights.read()

        # import that cache into a fresh store: the blobs are there, found by their upstream hash
        fresh = tmp_path / "fresh"
        report = hoard(fresh, "import", str(cache))
        assert report["blobs"] == 3  # .gitattributes, config.json, model.safetensors
        with ProxyThread(fresh, hub.url) as px:
            before = hub.bytes_sent["cdn"]
            with urllib.request.urlopen(f"{px.url}/org/tiny/resolve/main/model.safetensors") as r:
                assert r.read() == weights.read()
            assert hub.bytes_sent["cdn"] == before  # served from the imported blob
