"""The distribution: a wheel maps store/, proxy/, fuse/, cli/ to hoard.* (every module of them,
subpackages included), cli/api/ to the top-level ``hoard`` (the Python API, and nothing of it
twice), and ships the ``hoard`` command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sources(dest: Path) -> Path:
    """A copy of what the build reads, with no build/ or egg-info left by earlier builds (files
    those hold, even long deleted from the tree, would otherwise ship)."""
    for name in ("store", "proxy", "fuse", "cli"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def test_wheel_layout_and_entry_point(tmp_path: Path) -> None:
    src = _sources(tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("hoard-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("store", "proxy", "fuse", "cli"):
        assert f"hoard/{pkg}/__init__.py" in names, pkg
        for module in (ROOT / pkg).rglob("*.py"):
            if "api" in module.relative_to(ROOT / pkg).parts[:1] and pkg == "cli":
                continue
            assert f"hoard/{pkg}/{module.relative_to(ROOT / pkg).as_posix()}" in names, module
    for module in (ROOT / "cli" / "api").glob("*.py"):  # the API is the top-level package
        assert f"hoard/{module.name}" in names, module
    assert "hoard/__init__.py" in names and "hoard/proxy/sources/__init__.py" in names
    assert not any(n.startswith("hoard/cli/api/") for n in names)  # not a second copy of the API
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hoard = hoard.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()

    # installed on its own (no editable checkout on the path), the package imports
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import hoard.store.address as a; print(a.__file__); "
        "import hoard, hoard.proxy.sources, hoard.cli.main; print(hoard.__file__); "
        "print(sorted(hoard.proxy.sources.load_all())); print(callable(hoard.path), hoard.onnx_hub.__name__)"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code.split("; import hoard,")[0], str(target)], check=True,
                         capture_output=True, text=True)  # fmt: skip
    assert out.stdout.startswith(str(target))  # with no site-packages at all
    # with the dependencies (site-packages), the wheel's copy first on the path
    out = subprocess.run([sys.executable, "-c", code, str(target)], check=True, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(target)) and lines[1] == str(target / "hoard" / "__init__.py")
    assert "huggingface" in lines[2] and "arweave" in lines[2]  # the source registry is shipped
    assert lines[3] == "True hoard.onnx_hub"
