"""The distribution: a wheel maps store/, proxy/, fuse/, cli/ to hoard.* and ships `hoard`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_layout_and_entry_point(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("hoard-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("store", "proxy", "fuse", "cli"):
        assert f"hoard/{pkg}/__init__.py" in names, pkg
    assert "hoard/store/partial.py" in names
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
        "import hoard.store.address as a; print(a.__file__)"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code, str(target)], check=True, capture_output=True, text=True)
    assert out.stdout.startswith(str(target))
