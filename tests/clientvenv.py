"""Throw-away virtualenvs holding stock third-party clients, for tests that drive the real thing.

`client_python(name, requirements)` returns the interpreter of a virtualenv in which
``pip install <requirements>`` succeeded, building it the first time and reusing it after.
It works like `tests.hfclients.runner.hub_python`, generalised to any requirement list:

* the venv lives under ``$HOARD_TEST_VENVS`` (default ``/tmp/hoard-test-venvs``) in a
  directory named after ``name`` and the interpreter version (``<name>-py311``);
* a stamp file records the exact requirement list of a finished build; a venv whose stamp
  is missing or differs (an interrupted or older build) is rebuilt from scratch;
* a lock file next to it serialises concurrent builders (several pytest workers, several
  engineers on one machine);
* any build failure is a test *failure* (``pytest.fail``), never a skip: a client we
  cannot install is a broken test setup, not an absent optional feature.

Known clients used by the Arweave tests are named by `RITUAL_ARWEAVE` and `INFERNET_ML`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["INFERNET_ML", "RITUAL_ARWEAVE", "VENV_ROOT", "client_python"]

VENV_ROOT = Path(os.environ.get("HOARD_TEST_VENVS", "/tmp/hoard-test-venvs"))

#: ritual-arweave 0.2.0: the current Arweave repo client (``gateways=[...]``); ``cryptography``
#: lets test scripts mint an RSA wallet in the client's own interpreter.
RITUAL_ARWEAVE = ("ritual-arweave-0.2.0", ["ritual-arweave==0.2.0", "cryptography"])
#: infernet-ml 2.0.0, which pins ritual-arweave 0.1.1 (``api_url=...``) and huggingface_hub 0.25.1.
INFERNET_ML = ("infernet-ml-2.0.0", ["infernet-ml==2.0.0"])

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def client_python(name: str, requirements: list[str]) -> str:
    """Path of the Python of venv ``name`` with ``requirements`` installed (built once).

    ``name`` must be a plain directory name; ``requirements`` are pip requirement strings,
    e.g. ``["ritual-arweave==0.2.0"]``. Raises ``pytest.fail`` if the build fails.
    """
    if not _NAME.match(name):
        raise ValueError(f"bad venv name {name!r}")
    if not requirements:
        raise ValueError("requirements must not be empty")
    py_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = VENV_ROOT / f"{name}-{py_tag}"
    python = target / "bin" / "python"
    stamp = target / ".hoard-ready"
    wanted = "\n".join(requirements) + "\n"
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == wanted:
            return str(python)
        shutil.rmtree(target, ignore_errors=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q"]
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [*pip, *requirements],
            [str(python), "-m", "pip", "check"],
        ]
        for cmd in steps:
            _run_step(name, target, cmd)
        stamp.write_text(wanted)
        return str(python)


def _run_step(name: str, target: Path, cmd: list[str]) -> None:
    where = f"the {name} test venv at {target}"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot build {where}: {' '.join(cmd[:6])}: {exc}")
    if proc.returncode != 0:
        pytest.fail(
            f"cannot build {where} (needs PyPI access through pip): {' '.join(cmd[:8])} exited "
            f"{proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
