"""The store commands as users run them: a real `hoard` process, text and --json output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HOARD = [sys.executable, "-m", "hoard.cli.main"]


def hoard(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*HOARD, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"hoard {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def hoard_json(env: dict[str, str], *args: str) -> object:
    return json.loads(hoard(env, *args, "--json").stdout)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"a": 1}\n')
    (d / "sub" / "weights.bin").write_bytes(os.urandom(200_000))
    (d / "copy.json").write_text('{"a": 1}\n')
    return d


def test_help_lists_every_command(hoard_env: dict[str, str]) -> None:
    out = hoard(hoard_env, "--help").stdout
    for cmd in ("serve", "mount", "umount", "prefetch", "ls", "info", "gc", "pin", "unpin", "verify",
                "export", "import", "add", "rm", "cache"):
        assert f"  {cmd} " in out or f"  {cmd}\n" in out, cmd
    assert "HOARD_HOME" in hoard(hoard_env, "gc", "--help").stdout
    for cmd in ("serve", "mount"):  # the size budget of a running proxy or mount
        assert "HOARD_MAX_SIZE" in hoard(hoard_env, cmd, "--help").stdout, cmd


#: the commands that reach origins: each takes every source's settings as flags
SOURCE_COMMANDS = ("serve", "mount", "prefetch", "ls", "push")


def _flat(text: str) -> str:
    """Help text with click's line wrapping undone (one space between words)."""
    return " ".join(text.split())


def test_help_lists_every_registered_source_and_its_flags(hoard_env: dict[str, str]) -> None:
    """``hoard --help`` lists the sources of the registry, one row each with its summary; every
    setting of every source is a flag, with its environment variable, of each command that
    reaches origins. Nothing is listed by hand: a new source module appears everywhere."""
    from hoard.proxy.sources import load_all

    registry = load_all()
    assert {"huggingface", "arweave", "github", "onnx", "torch", "url", "local"} <= set(registry)
    top = hoard(hoard_env, "--help").stdout
    assert "Sources:" in top, top
    section = top.split("Sources:", 1)[1]
    for name, spec in registry.items():
        assert spec.info.summary, name
        assert re.search(rf"^ +{re.escape(name)}(?: |$)", section, re.M), (name, section)
        assert _flat(spec.info.summary) in _flat(section), name
    settings = [(spec.name, s) for spec in registry.values() for s in spec.settings]
    assert len(settings) >= 6  # the Hub, Arweave, GitHub (3), torch, url... declare settings
    for cmd in SOURCE_COMMANDS:
        text = _flat(hoard(hoard_env, cmd, "--help").stdout)
        for source, setting in settings:
            flag = re.compile(rf"(?<![\w-]){re.escape(setting.flag)}(?![\w-])")
            assert flag.search(text), f"hoard {cmd} --help lacks {setting.flag} ({source})"
            shown = re.search(rf"env var: {re.escape(setting.envvar)}[];]", text)
            assert shown, f"hoard {cmd} --help lacks {setting.envvar} ({source})"


def test_add_ls_info_pin_gc_rm(hoard_env: dict[str, str], model_dir: Path) -> None:
    added = hoard_json(hoard_env, "add", str(model_dir), "local/me/m@v1")
    assert added["files"] == 3 and added["repo"] == "local/me/m"  # type: ignore[index]
    repos = hoard_json(hoard_env, "ls")
    assert [r["repo"] for r in repos] == ["local/me/m"]  # type: ignore[index]
    assert repos[0]["refs"] == {"main": added["revision"], "v1": added["revision"]}  # type: ignore[index]
    files = hoard_json(hoard_env, "ls", "local/me/m@v1")
    assert [f["path"] for f in files["files"]] == ["config.json", "copy.json", "sub/weights.bin"]  # type: ignore[index]
    info = hoard_json(hoard_env, "info", "local/me/m/sub/weights.bin")
    assert info["size"] == 200_000 and Path(info["blob_path"]).read_bytes() == (model_dir / "sub/weights.bin").read_bytes()  # type: ignore[index]
    summary = hoard_json(hoard_env, "info")
    assert summary["blobs"] == 2  # config.json and copy.json are one blob  # type: ignore[index]

    rev = added["revision"]  # type: ignore[index]
    assert "pinned snapshot:local/me/m@" in hoard(hoard_env, "pin", "local/me/m").stdout
    plan = hoard_json(hoard_env, "gc", "--max-size", "0", "--dry-run")
    assert plan["victims"] == []  # type: ignore[index]
    assert [k["reason"] for k in plan["kept"]] == [f"pinned revision local/me/m@{rev}"] * 2  # type: ignore[index]
    hoard(hoard_env, "unpin", "local/me/m")
    # unpinned, local content still stays: no origin could give it back, only `rm` removes it
    plan = hoard_json(hoard_env, "gc", "--max-size", "0", "--dry-run")
    assert plan["victims"] == []  # type: ignore[index]
    assert [k["reason"] for k in plan["kept"]] == [f"no origin (local/me/m@{rev})"] * 2  # type: ignore[index]
    text = hoard(hoard_env, "gc", "--max-size", "0", "--dry-run").stdout
    assert "would remove 0 item(s)" in text and "no origin (local/me/m@" in text

    removed = hoard_json(hoard_env, "rm", "local/me/m")
    assert len(removed["blobs"]) == 2  # type: ignore[index]
    assert hoard_json(hoard_env, "ls") == []


def test_env_and_flag_precedence(hoard_env: dict[str, str], model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    hoard(hoard_env, "add", str(model_dir), "local/me/m", "--home", str(other))
    assert hoard_json(hoard_env, "ls") == []
    assert len(hoard_json(hoard_env, "ls", "--home", str(other))) == 1  # type: ignore[arg-type]
    # config file is read from the home; flags and env win over it
    (other / "config.toml").write_text('max_size = "1KiB"\n')
    plan = hoard_json(hoard_env, "gc", "--dry-run", "--home", str(other))
    assert plan["max_size"] == 1024  # type: ignore[index]
    env = dict(hoard_env, HOARD_MAX_SIZE="1MiB")
    assert hoard_json(env, "gc", "--dry-run", "--home", str(other))["max_size"] == 1 << 20  # type: ignore[index]
    assert hoard_json(env, "gc", "--dry-run", "--home", str(other), "--max-size", "2KiB")["max_size"] == 2048  # type: ignore[index]


def test_verify_exits_nonzero_and_names_damaged_blob(hoard_env: dict[str, str], model_dir: Path) -> None:
    hoard(hoard_env, "add", str(model_dir), "local/me/m")
    info = hoard_json(hoard_env, "info", "local/me/m/sub/weights.bin")
    path = Path(info["blob_path"])  # type: ignore[index]
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(b"XXXX")
    dry = hoard(hoard_env, "verify", "--dry-run", check=False)
    assert dry.returncode == 5 and info["blake3"] in dry.stderr  # type: ignore[index]
    assert path.exists()  # a dry run repairs nothing
    proc = hoard(hoard_env, "verify", check=False)
    assert proc.returncode == 5
    assert info["blake3"] in proc.stderr  # type: ignore[index]
    assert hoard(hoard_env, "verify").returncode == 0  # repaired: clean now


def test_model_ids_name_files_wherever_an_address_is_taken(hoard_env: dict[str, str], model_dir: Path) -> None:
    hoard(hoard_env, "add", str(model_dir), "local/me/m")
    single = hoard_json(hoard_env, "info", "local/me/m:config.json")
    assert single == hoard_json(hoard_env, "info", "local/me/m/config.json")
    assert single["verified_by"] == "blake3" and single["expected"] == f"blake3:{single['blake3']}"  # type: ignore[index]
    assert single["unverified"] is None  # type: ignore[index]
    both = hoard_json(hoard_env, "info", "local/me/m:config.json,copy.json")
    assert [i["path"] for i in both] == ["config.json", "copy.json"]  # type: ignore[union-attr]
    text = hoard(hoard_env, "info", "local/me/m:config.json").stdout
    assert f"verified   blake3 (blake3:{single['blake3']})" in text  # type: ignore[index]
    listed = hoard_json(hoard_env, "ls", "local/me/m:copy.json")
    assert [f["path"] for f in listed["files"]] == ["copy.json"]  # type: ignore[index]
    pins = hoard_json(hoard_env, "pin", "local/me/m:config.json,copy.json")
    assert [p["pinned"] for p in pins] == [f"blob:{single['blake3']}"] * 2  # type: ignore[index]
    assert [p["new"] for p in pins] == [True, False]  # type: ignore[index]  # one content, one pin
    assert hoard_json(hoard_env, "unpin", "local/me/m:copy.json")["was_pinned"] is True  # type: ignore[index]
    missing = hoard(hoard_env, "ls", "local/me/m:nope.json", check=False)
    assert missing.returncode == 3 and "nope.json" in missing.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["info", "local/me/none"], 3, "not in the cache"),
        (["info", "local/me/m:"], 2, "names no file"),
        (["prefetch", "local/me/m:a.bin", "--include", "*.bin"], 2, "model id names its files"),
        (["info", "huggingface/org/../x"], 2, "not allowed"),
        (["ls", "bogus/"], 2, "unknown source"),
        (["gc", "--max-size", "lots"], 2, "not a size"),
        (["add", "/nonexistent-dir", "local/a/b"], 2, "does not exist"),
    ],
)
def test_errors_are_one_line_with_exit_codes(hoard_env: dict[str, str], args: list[str], code: int, message: str) -> None:
    proc = hoard(hoard_env, *args, check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
