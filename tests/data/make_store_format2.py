"""Regenerate ``tests/data/store-format2.tar.gz``: a store written by hoard at index format 2.

Format 2 is what hoard wrote from commit ``e66a5bc`` up to and including ``9bd693f`` (the last
commit of main whose ``store/index.py`` says ``FORMAT_VERSION = 2``; the next one, ``66047b4``,
moved the expected hash into tree entries and bumped it to 3). The store must be written by
that old code, not by today's, so this script runs in two halves:

* ``make_store_format2.py OLD_TREE OUT.tar.gz`` (today's interpreter, no hoard import) maps
  ``OLD_TREE``'s folders to a ``hoard`` package the way its ``pyproject.toml`` package-dir
  does (symlinks in a temp dir), runs the second half with ``PYTHONPATH`` pointing at that
  package and at ``OLD_TREE`` (for its ``tests.fakes`` and ``tests.harness``), and tars the
  store deterministically (sorted names, fixed mtime/owner, gzip without a timestamp;
  ``index/lock.mdb`` left out, as in the format-1 fixture);
* ``make_store_format2.py --write HOME`` (the old code) fills the store the way a user of
  that hoard would have: the old ``FakeHub`` serves ``org/tiny`` (see :data:`HF_FILES`), the old
  in-process proxy (``tests.harness.ProxyThread``, 64 KiB chunks) is asked for ``config.json``
  through the tag ``v1`` and for ``config.json`` and ``model.safetensors`` through ``main``
  (refs ``main`` and ``v1``, one commit), and for the first two chunks of ``big.bin`` only
  (a partial of 2 of its 5 chunks); then the old CLI runs ``hoard add DIR local/me/m@v1``
  (:data:`LOCAL_FILES`, whose ``config.json`` is the Hub's bytes: one blob, two users) and
  ``hoard pin huggingface/org/tiny@<commit>`` and ``hoard pin local/me/m@v1/weights.bin``.

Commands used (from /work/main)::

    git worktree add /tmp/hoard-fmt2 9bd693f
    .venv/bin/python tests/data/make_store_format2.py /tmp/hoard-fmt2 tests/data/store-format2.tar.gz
    git worktree remove --force /tmp/hoard-fmt2

The contents are functions of nothing but the constants below, so ``tests/test_migration.py``
imports them to know what every file must read back as; the commit and the local revision
come out the same on every run too. What differs between runs: the index's timestamps, the
partial's random file tag and LMDB's page layout (so the tarball's bytes, not its meaning).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = [
    "CHUNK",
    "HF_REPO",
    "HF_FILES",
    "PARTIAL_FILE",
    "PARTIAL_CHUNKS",
    "LOCAL_ADDRESS",
    "LOCAL_FILES",
    "PINNED_FILE",
    "pattern",
]

#: chunk size of the store the old proxy wrote (the partial's record keeps it too)
CHUNK = 64 << 10


def pattern(n: int, seed: int) -> bytes:
    """``n`` bytes of a period-251 sequence: no two nearby offsets alike (a shifted read shows),
    yet a gzip window holds many periods (the fixture stays small)."""
    return bytes((i * 7 + seed) % 251 for i in range(n))


HF_REPO = "org/tiny"
#: the Hub repo: ``config.json`` is a git blob (< LFS threshold, no LFS pattern); the others
#: match ``*.safetensors`` / ``*.bin`` and go over LFS
HF_FILES: dict[str, bytes] = {
    "config.json": b'{"architectures": ["TinyModel"], "hidden_size": 8}\n',
    "model.safetensors": pattern(150_000, 3),
    "big.bin": pattern(5 * CHUNK - 1000, 11),
}
#: the file left half-filled: only its first PARTIAL_CHUNKS chunks were fetched
PARTIAL_FILE = "big.bin"
PARTIAL_CHUNKS = 2

LOCAL_ADDRESS = "local/me/m@v1"
LOCAL_FILES: dict[str, bytes] = {
    "config.json": HF_FILES["config.json"],
    "weights.bin": pattern(20_000, 29),
    "sub/notes.txt": b"trained on nothing\n",
}
#: the local file pinned by itself (a ``blob:`` pin; the Hub revision gets a ``snapshot:`` pin)
PINNED_FILE = "weights.bin"

_PACKAGES = ("store", "proxy", "fuse", "cli")  # OLD_TREE/pyproject.toml [tool.setuptools.package-dir]


def _write(home: Path) -> None:
    """Run under the old code: fill ``home`` as described in the module docstring."""
    import urllib.request

    from hoard.store.index import FORMAT_VERSION
    from tests.fakes.hub import FakeHub
    from tests.harness import ProxyThread, wait_for

    assert FORMAT_VERSION == 2, f"this is hoard at format {FORMAT_VERSION}, not 2"

    def get(url: str, headers: dict[str, str] | None = None) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as resp:
            return resp.read()

    with FakeHub() as hub:
        commit = hub.add_repo(HF_REPO, HF_FILES, tags=["v1"])
        with ProxyThread(home, hub.url, chunk_size=CHUNK) as proxy:
            base = f"{proxy.url}/{HF_REPO}/resolve"
            assert get(f"{base}/v1/config.json") == HF_FILES["config.json"]
            for name in ("config.json", "model.safetensors"):
                assert get(f"{base}/main/{name}") == HF_FILES[name]
            head = PARTIAL_CHUNKS * CHUNK
            got = get(f"{base}/main/{PARTIAL_FILE}", {"Range": f"bytes=0-{head - 1}"})
            assert got == HF_FILES[PARTIAL_FILE][:head]
            # the response streams as bytes land: wait until both chunks are committed
            alias = "sha256:" + hashlib.sha256(HF_FILES[PARTIAL_FILE]).hexdigest()
            size = len(HF_FILES[PARTIAL_FILE])
            wait_for(lambda: proxy.store.partial_status(alias) == (head, size))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        for rel, data in LOCAL_FILES.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
        _cli(home, "add", str(src), LOCAL_ADDRESS)
    _cli(home, "pin", f"huggingface/{HF_REPO}@{commit}")
    _cli(home, "pin", f"{LOCAL_ADDRESS}/{PINNED_FILE}")
    print(commit)


def _cli(home: Path, *args: str) -> None:
    env = dict(os.environ, HOARD_HOME=str(home))
    subprocess.run([sys.executable, "-m", "hoard.cli.main", *args], env=env, check=True)


def _tar(home: Path, out: Path) -> None:
    """``home`` as ``home/...`` entries, byte-for-byte the same for the same files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = [home, *sorted(home.rglob("*"))]
        for path in paths:
            rel = Path("home") / path.relative_to(home)
            if rel.name == "lock.mdb":
                continue  # LMDB's reader table: rebuilt on open, never part of the data
            info = tar.gettarinfo(str(path), str(rel))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    out.write_bytes(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))


def _main(argv: list[str]) -> None:
    if argv[:1] == ["--write"]:
        _write(Path(argv[1]))
        return
    old_tree, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp, "path", "hoard")
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")  # a regular package: nothing else can add to it
        for name in _PACKAGES:
            (pkg / name).symlink_to(old_tree / name)
        home = Path(tmp, "home")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOARD_", "HF_", "HUGGING"))}
        env["PYTHONPATH"] = f"{pkg.parent}{os.pathsep}{old_tree}"
        subprocess.run([sys.executable, __file__, "--write", str(home)], env=env, cwd=old_tree, check=True)
        _tar(home, out)
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    _main(sys.argv[1:])
