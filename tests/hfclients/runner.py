"""Stock Hugging Face clients run as scripts in a subprocess, for tests that need the real thing.

``HF_ENDPOINT`` is read when ``huggingface_hub`` is imported, so every client call runs in
an interpreter of its own. `client_env` gives it a private ``HF_HOME``, telemetry and
progress bars off, and none of this process's HF, transformers or virtualenv settings;
Xet is left as it is (the caller may disable it). `run_script` runs a script after a
prelude (`PRELUDE` or an extension of it) and returns the ``OUT`` dict the script filled.
`hub_python` builds, once, a virtualenv with another ``huggingface_hub`` release.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PRELUDE", "VENV_ROOT", "client_env", "hub_python", "run_script"]

#: What every client script starts with: ``ARGS`` (from the caller), ``OUT`` (returned to
#: it), ``attempt`` (record a call's result or its exception class, MRO and status) and
#: ``sha256`` of a file.
PRELUDE = r"""
import hashlib, json, os, sys
ARGS = json.loads(os.environ["CLIENT_ARGS"])
OUT = {}

def attempt(name, fn):
    try:
        OUT[name] = {"ok": fn()}
    except Exception as exc:
        resp = getattr(exc, "response", None)
        OUT[name] = {"error": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                     "status": getattr(resp, "status_code", None), "message": str(exc)[:600]}

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
"""
_MARK = "@@OUT@@"


def client_env(
    endpoint: str,
    home: Path,
    *,
    token: str | None = None,
    offline: bool = False,
    args: dict[str, Any] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    drop = ("HF_", "HUGGING", "TRANSFORMERS_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        CLIENT_ARGS=json.dumps(args or {}),
        TOKENIZERS_PARALLELISM="false",
    )
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra or {})
    return env


def run_script(
    endpoint: str,
    home: Path,
    script: str,
    *,
    prelude: str = PRELUDE,
    python: str = sys.executable,
    token: str | None = None,
    offline: bool = False,
    args: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180,
) -> dict[str, Any]:
    """Run ``script`` (after ``prelude``) with a stock client; return its ``OUT`` dict."""
    env = client_env(endpoint, home, token=token, offline=offline, args=args, extra=extra_env)
    code = prelude + textwrap.dedent(script) + f"\nprint({_MARK!r} + json.dumps(OUT))\n"
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=timeout, cwd=home.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    assert proc.returncode == 0 and lines, f"client failed (rc={proc.returncode}):\n{proc.stderr[-6000:]}"
    out: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
    return out


VENV_ROOT = Path(os.environ.get("HOARD_TEST_VENVS", "/tmp/hoard-test-venvs"))


def hub_python(version: str) -> str:
    """Python of a virtualenv with ``huggingface_hub==version`` (built once, then reused).

    Keyed by client version and interpreter version; a stamp file marks a finished build,
    a lock file serialises concurrent builders. Any failure is a test failure, never a skip.
    """
    py_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = VENV_ROOT / f"huggingface_hub-{version}-{py_tag}"
    python = target / "bin" / "python"
    stamp = target / ".hoard-ready"
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and python.exists():
            return str(python)
        shutil.rmtree(target, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
             f"huggingface_hub=={version}"],
            [str(python), "-c", "import huggingface_hub, sys; "
             f"assert huggingface_hub.__version__ == {version!r}, huggingface_hub.__version__"],
        ]
        for cmd in steps:
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.fail(f"cannot build the huggingface_hub=={version} test venv at {target}: {cmd[:4]}: {exc}")
            if proc.returncode != 0:
                pytest.fail(
                    f"cannot build the huggingface_hub=={version} test venv at {target} "
                    f"(needs PyPI access through pip): {' '.join(cmd[:6])} exited {proc.returncode}:\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
                )
        stamp.write_text(version)
        return str(python)
