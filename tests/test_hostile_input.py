"""Untrusted input: crafted bundles and tars, poisoned stores, hostile Hub and parent trees, and
folders with links out of them. Every case ends in a clear hoard error with its exit code, and
nothing is read or written outside where it should be."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from hoard.store.config import StoreConfig
from hoard.store.errors import IntegrityError
from hoard.store.records import ExpectedHash, Snapshot, TreeEntry
from hoard.store.store import Store
from hoard.store.transfer import import_path

from .fakes.hub import FakeHub
from .fakes.parent_hoard import FakeParent
from .harness import ProxyThread

HOARD = [sys.executable, "-m", "hoard.cli.main"]
REV = "0123456789abcdef0123456789abcdef01234567"
UP = "../../../../../../"  # from any DEST below, lands inside tmp_path (never above it)


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HOARD, *args, "--home", str(home)], capture_output=True, text=True, timeout=120,
                          env=env)


def ok(home: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    proc = run(home, *args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def refused(proc: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def outside(tmp_path: Path) -> list[Path]:
    """Anything named like the targets of the attacks, anywhere under tmp_path."""
    return [p for p in tmp_path.rglob("*") if "outside" in p.name]


def gitsha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hf_bundle(root: Path, files: dict[str, bytes], *, refs: tuple[str, ...] = ("main",),
              mutate: Callable[[dict[str, Any]], None] = lambda doc: None) -> Path:
    """A bundle of huggingface/org/m@REV as `hoard export --format hoard` writes one:
    ``*.bin`` files as LFS (sha256), the rest as git blobs (sha1)."""
    (root / "blobs").mkdir(parents=True)
    entries = {}
    for path, data in files.items():
        b3 = blake3.blake3(data).hexdigest()
        (root / "blobs" / b3).write_bytes(data)
        if path.endswith(".bin"):
            sha = hashlib.sha256(data).hexdigest()
            meta: dict[str, Any] = {"oid": gitsha1(b"pointer " + data), "lfs": {"oid": sha, "size": len(data)}}
            identity = f"sha256:{sha}"
        else:
            meta, identity = {"oid": gitsha1(data)}, f"gitsha1:{gitsha1(data)}"
        entries[path] = {"size": len(data), "identity": identity, "meta": meta, "blake3": b3}
    doc = {"format": 1, "repo": "huggingface/org/m", "revision": REV, "refs": list(refs), "created": 1,
           "info": {}, "files": entries}
    mutate(doc)
    (root / "hoard-export.json").write_text(json.dumps(doc))
    return root


FILES = {"config.json": b'{"model_type": "gpt2"}', "w.bin": b"weights" * 1000}


def _rename(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["files"].__setitem__(new, doc["files"].pop(old))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(key, value)


def _file(path: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["files"][path].__setitem__(key, value)


@pytest.mark.parametrize(
    "mutate",
    [
        _set("revision", "/abs/path"),
        _set("revision", "main"),  # a huggingface revision is a commit id
        _set("refs", ["../../../outside"]),
        _set("refs", ["a/../../b"]),
        _set("refs", ["/abs"]),
        _set("repo", "huggingface/org/../x"),
        _set("repo", "huggingface/org/m@v1"),
        _set("repo", "huggingface/org/m/sub"),
        _rename("config.json", "../outside.json"),
        _rename("config.json", "/abs.json"),
        _file("config.json", "identity", "sha256:../../x"),
        _file("config.json", "identity", "md5:" + "0" * 32),
        _file("config.json", "blake3", "../x"),
        _file("w.bin", "meta", {"lfs": {"oid": "../../../x", "size": 7000}}),
        _file("config.json", "meta", {"oid": "../../../x"}),
        _file("config.json", "size", -1),
        _set("info", {"dirs": {"../../up": ""}}),
    ],
    ids=["rev-abs", "rev-branch", "ref-up", "ref-dotdot", "ref-abs", "repo-dotdot", "repo-rev", "repo-path",
         "path-up", "path-abs", "identity-path", "identity-md5", "blake3-path", "lfs-oid", "git-oid", "size",
         "dirs"],
)
def test_bundle_with_a_bad_name_is_refused(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> None:
    home = tmp_path / "home"
    bundle = hf_bundle(tmp_path / "bundle", FILES, mutate=mutate)
    refused(run(home, "import", str(bundle)), 5, "bundle manifest")
    assert ok(home, "ls") == [] and ok(home, "info")["blobs"] == 0
    assert ok(tmp_path / "control", "import", str(hf_bundle(tmp_path / "good", FILES)))["blobs"] == 2


def test_local_bundle_claiming_another_revision_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    home = tmp_path / "home"
    rev = ok(home, "add", str(src), "local/me/m")["revision"]
    bundle = tmp_path / "bundle"
    bundle.mkdir()  # an existing directory: the bundle's members are files in it
    ok(home, "export", "local/me/m", str(bundle), "--format", "hoard")
    doc = json.loads((bundle / "hoard-export.json").read_text())
    doc["revision"] = "f" * 40  # a local revision is the id of its content
    (bundle / "hoard-export.json").write_text(json.dumps(doc))
    refused(run(tmp_path / "other", "import", str(bundle)), 5, "not the id of its files")
    assert ok(tmp_path / "other", "ls") == []
    assert rev != "f" * 40


@pytest.mark.parametrize(
    "manifest",
    [b"{not json", b"\xff\xfe", b"[]", b'{"format": 1}', b'{"format": 1, "files": {}, "repo": "huggingface/org/m"}',
     b'{"format": 1, "files": [], "repo": "huggingface/org/m", "revision": "' + REV.encode() + b'"}'],
)
def test_malformed_manifest_is_a_clear_error(tmp_path: Path, manifest: bytes) -> None:
    bundle = hf_bundle(tmp_path / "bundle", FILES)
    (bundle / "hoard-export.json").write_bytes(manifest)
    proc = run(tmp_path / "home", "import", str(bundle))
    refused(proc, 5, "hoard-export.json" if b"format" not in manifest else "bundle manifest")


def test_import_never_replaces_a_stored_revision(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert ok(home, "import", str(hf_bundle(tmp_path / "good", FILES)))["revisions"] == [f"huggingface/org/m@{REV}"]
    before = ok(home, "ls", "huggingface/org/m")
    summary = ok(home, "info")

    poisoned = dict(FILES, **{"config.json": b'{"model_type": "evil"}'})
    proc = run(home, "import", str(hf_bundle(tmp_path / "evil", poisoned, refs=("main", "v9"))))
    refused(proc, 5, "already stored with different files")
    assert ok(home, "ls", "huggingface/org/m") == before
    assert ok(home, "info")["blobs"] == summary["blobs"]  # not even the poisoned blob was added
    assert "v9" not in ok(home, "ls")[0]["refs"]  # no ref moved
    info = ok(home, "info", "huggingface/org/m/config.json")
    assert Path(info["blob_path"]).read_bytes() == FILES["config.json"]

    again = ok(home, "import", str(hf_bundle(tmp_path / "same", FILES)))  # the same tree: a no-op
    assert again["blobs"] == 0 and again["revisions"] == []
    assert ok(home, "ls", "huggingface/org/m") == before


def test_a_tree_stored_while_a_bundle_is_imported_is_never_replaced(tmp_path: Path) -> None:
    """Another process records the same revision with other files while the bundle's blobs are
    being added: the transaction that would record the bundle's tree refuses it instead."""
    bundle = hf_bundle(tmp_path / "bundle", FILES, refs=("main", "v9"))
    data = b"another tree"
    theirs = Snapshot({"x.bin": TreeEntry.of_hash(len(data), ExpectedHash("sha256", hashlib.sha256(data).hexdigest()))}, 1)
    with Store(StoreConfig(tmp_path / "home")) as store:

        def progress(n: int) -> None:
            if store.get_snapshot("huggingface/org/m", REV) is None:
                store.put_snapshot("huggingface/org/m", REV, theirs, refs=["main"])

        with pytest.raises(IntegrityError, match="already stored with different files"):
            import_path(store, bundle, progress)
    with Store(StoreConfig(tmp_path / "home")) as store:
        assert store.get_snapshot("huggingface/org/m", REV) == theirs
        assert sorted(store.refs("huggingface/org/m")) == ["main"]  # v9 never moved


def _tar_with(bundle: Path, dest: Path, bad: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(dest, "w") as tar:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(bundle).as_posix())
        tar.addfile(bad, io.BytesIO(data) if bad.isreg() else None)
    return dest


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("../outside.txt", size=4), "points outside the bundle"),
        (_member("/tmp/outside-abs.txt", size=4), "points outside the bundle"),
        (_member("blobs/../../outside.txt", size=4), "points outside the bundle"),
        (_member("blobs/link", tarfile.SYMTYPE, "../hoard-export.json"), "symbolic link"),
        (_member("blobs/outside-link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_member("blobs/hard", tarfile.LNKTYPE, "hoard-export.json"), "hard link"),
        (_member("blobs/fifo", tarfile.FIFOTYPE), "FIFO"),
        (_member("blobs/dev", tarfile.CHRTYPE), "device"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink", "symlink-out", "hardlink", "fifo", "device"],
)
def test_tar_with_links_devices_or_traversal_is_refused(tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    work = tmp_path / "a" / "b"
    tar = _tar_with(hf_bundle(work / "bundle", FILES), work / "bundle.tar", member, b"evil")
    home = work / "home"
    refused(run(home, "import", str(tar)), 5, message)
    assert outside(tmp_path) == [] and not Path("/tmp/outside-abs.txt").exists()
    assert ok(home, "ls") == [] and ok(home, "info")["blobs"] == 0


def _poisoned_store(home: Path, path: str = "config.json", revision: str = REV, ref: str = "main",
                    lfs_oid: str | None = None) -> None:
    """What an older hoard could have stored: a complete revision with a hostile name in it."""
    data = b"poison" * 100
    sha = hashlib.sha256(data).hexdigest()
    meta: dict[str, Any] = {"oid": gitsha1(b"pointer"), "lfs": {"oid": lfs_oid or sha, "size": len(data)}}
    with Store(StoreConfig(home)) as store:
        store.add_bytes(data, expected=ExpectedHash("sha256", sha), aliases=[f"sha256:{sha}"])
        snap = Snapshot({path: TreeEntry.of_hash(len(data), ExpectedHash("sha256", sha), meta)}, 1, {})
        store.put_snapshot("huggingface/org/m", revision, snap, refs=sorted({"main", ref}))


@pytest.mark.parametrize("fmt", ["dir", "hf-cache", "hoard"])
@pytest.mark.parametrize(
    "poison",
    [
        {"path": UP + "outside/x"},
        {"revision": UP + "outside-rev"},
        {"ref": UP + "outside-ref"},
        {"lfs_oid": UP + "outside-blob"},
    ],
    ids=["path", "revision", "ref", "lfs-oid"],
)
def test_export_of_a_poisoned_store_writes_nothing_outside_dest(tmp_path: Path, fmt: str, poison: dict[str, str]) -> None:
    home = tmp_path / "home"
    _poisoned_store(home, **poison)
    dest = tmp_path / "a" / "b" / "c" / "d" / "e" / "f" / "dest"
    if fmt == "hoard":
        dest.mkdir(parents=True)  # the directory form: the one that writes names under DEST
    refused(run(home, "export", "huggingface/org/m", str(dest), "--format", fmt), 5, "the store holds a name")
    assert outside(tmp_path) == []
    assert not dest.exists() or list(dest.rglob("*")) == []  # refused before writing anything


def test_export_never_writes_through_a_link_already_in_dest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "w.bin").write_bytes(b"w" * 100)
    ok(home, "add", str(src), "local/me/m")
    elsewhere = tmp_path / "outside-dir"
    elsewhere.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(elsewhere)
    refused(run(home, "export", "local/me/m", str(dest)), 5, "resolves outside")
    assert list(elsewhere.iterdir()) == []


def test_add_refuses_links_out_of_the_folder_and_skips_fifos(tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("not for the store")
    (tmp_path / "outside-dir").mkdir()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "leak").symlink_to(secret)
    (src / "dirleak").symlink_to(tmp_path / "outside-dir")
    (src / "inside").symlink_to("config.json")
    os.mkfifo(src / "pipe")
    home = tmp_path / "home"

    proc = run(home, "add", str(src), "local/me/m")
    refused(proc, 2, "lead out of the folder")
    assert "sub/leak" in proc.stderr and "dirleak" in proc.stderr
    assert ok(home, "ls") == [] and ok(home, "info")["blobs"] == 0

    (src / "sub" / "leak").unlink()
    (src / "dirleak").unlink()
    proc = run(home, "add", str(src), "local/me/m", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "pipe" in proc.stderr  # skipped, and said so
    files = {f["path"] for f in ok(home, "ls", "local/me/m")["files"]}
    assert files == {"config.json", "inside"}


def test_hf_cache_import_refuses_blob_links_out_of_the_cache(tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret"
    secret.write_bytes(b"the password file")
    good = b"a real blob"
    blobs = tmp_path / "cache" / "models--org--m" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / hashlib.sha256(good).hexdigest()).write_bytes(good)
    (blobs / hashlib.sha256(secret.read_bytes()).hexdigest()).symlink_to(secret)  # named right, even
    os.mkfifo(blobs / ("f" * 64))
    home = tmp_path / "home"

    proc = run(home, "import", str(tmp_path / "cache"))
    refused(proc, 2, "lead out of the cache")
    assert hashlib.sha256(secret.read_bytes()).hexdigest() in proc.stderr
    assert ok(home, "info")["blobs"] == 0

    (blobs / hashlib.sha256(secret.read_bytes()).hexdigest()).unlink()
    report = ok(home, "import", str(tmp_path / "cache"))
    assert report["blobs"] == 1
    assert any("f" * 64 in note and "fifo" in note for note in report["skipped"])


def test_hub_tree_entries_with_bad_paths_are_dropped(tmp_path: Path) -> None:
    with FakeHub() as hub:
        hub.add_repo("org/bad", {"config.json": b"{}", UP + "outside/x": b"evil", "ok/../../outside-y": b"evil"})
        home = tmp_path / "home"
        with ProxyThread(home, hub.url) as px:
            with urllib.request.urlopen(f"{px.url}/api/models/org/bad/tree/main?recursive=true") as r:
                listed = {e["path"] for e in json.load(r)}
            assert {".gitattributes", "config.json"} <= listed
            assert not [p for p in listed if ".." in p.split("/")]
            with urllib.request.urlopen(f"{px.url}/v1/trees/huggingface/org/bad") as r:
                assert {f["path"] for f in json.load(r)["files"]} == {".gitattributes", "config.json"}

        env = dict(os.environ, HOARD_HF_ENDPOINT=hub.url)
        assert ok(home, "prefetch", "org/bad", env=env)["files"] == 2
        assert hub.find("outside") == []  # never asked the Hub for it
        for fmt in ("dir", "hf-cache"):
            dest = tmp_path / "a" / "b" / "c" / "d" / "e" / "f" / fmt
            ok(home, "export", "huggingface/org/bad", str(dest), "--format", fmt)
        assert outside(tmp_path) == []
        assert (tmp_path / "a/b/c/d/e/f/dir/config.json").read_bytes() == b"{}"


def _parent_tree(**entry: Any) -> dict[str, Any]:
    data = b'{"a": 1}'
    files = [{"path": "config.json", "size": len(data), "identity": f"gitsha1:{gitsha1(data)}",
              "blake3": UP + "outside-hint", "meta": {}}]
    if entry:
        files.append({"size": 4, "identity": f"gitsha1:{gitsha1(b'evil')}", "blake3": None, "meta": {}} | entry)
    return {"repo": "huggingface/org/p", "revision": REV, "stale": False, "files": files, "info": {}}


def test_parent_tree_entries_with_bad_paths_or_hints_are_never_fetched(tmp_path: Path) -> None:
    tree = _parent_tree(path=UP + "outside/x")
    with FakeParent(tree, {"config.json": b'{"a": 1}', UP + "outside/x": b"evil"}) as parent:
        home = tmp_path / "home"
        got = ok(home, "prefetch", "huggingface/org/p", "--upstream", parent.url, "--local")
        assert got["files"] == 1
        assert parent.paths and not any("outside" in p for p in parent.paths)
    assert [f["path"] for f in ok(home, "ls", "huggingface/org/p")["files"]] == ["config.json"]


def test_parent_tree_with_an_unverifiable_identity_is_refused(tmp_path: Path) -> None:
    tree = _parent_tree(path="weights.bin", identity="md5:" + "0" * 32)
    with FakeParent(tree, {"config.json": b'{"a": 1}', "weights.bin": b"evil"}) as parent:
        home = tmp_path / "home"
        proc = run(home, "prefetch", "huggingface/org/p", "--upstream", parent.url, "--local")
        refused(proc, 6, "not one hoard can verify")
        assert not any("weights.bin" in p for p in parent.paths)
    assert ok(home, "ls") == []


def test_hf_cache_tree_listings_with_bad_names_are_skipped(tmp_path: Path) -> None:
    data = b'{"a": 1}'
    repo = tmp_path / "cache" / "models--org--m"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / gitsha1(data)).write_bytes(data)
    (repo / "trees").mkdir()
    good = {"format_version": 1, "files": {"config.json": {"blob_id": gitsha1(data), "size": len(data)}}}
    bad = {"format_version": 1, "files": {UP + "outside.json": {"blob_id": gitsha1(data), "size": len(data)}}}
    (repo / "trees" / f"{REV}.json").write_text(json.dumps(good))
    (repo / "trees" / f"{'e' * 40}.json").write_text(json.dumps(bad))
    (repo / "trees" / "main.json").write_text(json.dumps(good))  # a tree is named by its commit
    home = tmp_path / "home"
    report = ok(home, "import", str(tmp_path / "cache"))
    assert report["revisions"] == [f"huggingface/org/m@{REV}"]
    assert len(report["skipped"]) == 2 and all("trees" in note for note in report["skipped"])
    repos = ok(home, "ls")
    assert [r["revisions"] for r in repos] == [[REV]]
