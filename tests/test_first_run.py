"""A new user's first ``hoard mount``: a quiet start that names its origins, and an origin
failure explained once in the mount's output — not never, not once per request.

Mounts run at the default log level (``warning``, what ``make run`` uses): the harness's
``--log-level info`` is overridden.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoard.cli.log_once import RepeatFilter, cause_of
from hoard.store.errors import OriginUnavailable

from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import MountProcess, serve_env

pytestmark = pytest.mark.fuse

DEFAULT_LEVEL = ("--log-level", "warning")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where connections are refused (bound, never listening: no one
    else can take it while the test runs)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _errno_of(fn: object) -> int | None:
    try:
        fn()  # type: ignore[operator]
    except OSError as exc:
        return exc.errno
    return None


def _lines_naming(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def test_a_clean_start_prints_the_ready_message_and_its_origins_only(tmp_path: Path, refused_port: int) -> None:
    endpoint = f"http://127.0.0.1:{refused_port}"
    mount = MountProcess(tmp_path / "home", tmp_path / "mnt", endpoint, *DEFAULT_LEVEL, env=serve_env())
    with mount:
        assert mount.proc is not None and mount.proc.stdout is not None
        origins = mount.proc.stdout.readline()  # the ready message's second line
        assert sorted(os.listdir(mount.mountpoint))  # live (the root lists the sources)
        log = mount.unmount()
    print(f"stderr of a clean start and stop: {log!r}")
    assert log == "", log  # no "Ignoring invalid max threads value", no warning at all
    assert origins.startswith("hoard: origins: huggingface " + endpoint), origins
    assert "arweave https://arweave.net" in origins


class JsonMount(MountProcess):
    """``hoard mount --json``: its ready message is one JSON document."""

    ready: dict[str, object]

    def start(self) -> JsonMount:
        self.proc = subprocess.Popen([*self.args, "--json"], env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout is not None
        self.ready = json.loads(self.proc.stdout.readline())
        return self


def test_the_mount_says_which_origins_it_uses_in_json(tmp_path: Path) -> None:
    parents = ["http://parent-a:8090", "http://parent-b:8090"]
    with JsonMount(tmp_path / "home", tmp_path / "mnt", "http://127.0.0.1:9", "--upstream", parents[0],
                   "--upstream", parents[1], env=serve_env()) as m:  # fmt: skip
        ready = m.ready
    assert ready["origins"] == {"upstream": parents}
    assert ready["upstream"] == parents


def test_an_unreachable_hub_is_eio_and_one_line_says_why(tmp_path: Path, refused_port: int) -> None:
    host = f"127.0.0.1:{refused_port}"
    with MountProcess(tmp_path / "home", tmp_path / "mnt", f"http://{host}", *DEFAULT_LEVEL, env=serve_env()) as m:
        for repo in ("openai-community/gpt2", "openai-community/gpt2", "org/other", "org/other"):
            assert _errno_of(lambda r=repo: os.listdir(m.path(f"huggingface/{r}"))) == errno.EIO
        assert _errno_of(lambda: open(m.path("huggingface/org/third/config.json"), "rb")) == errno.EIO
        log = m.unmount()
    print(log)
    lines = _lines_naming(log, host)
    assert len(lines) == 1, log
    assert "WARNING" in lines[0] and "huggingface" in lines[0] and "unreachable" in lines[0]
    assert "Connect call failed" in lines[0] or "Cannot connect" in lines[0]
    assert "Traceback" not in log


def test_a_failing_cdn_is_explained_once_for_every_chunk_and_file(tmp_path: Path) -> None:
    """The Hub answers, its CDN does not: every chunk of every file fails; the log says so
    once (without the filter, one warning per chunk attempt and file)."""
    with FakeHub() as hub:
        hub.add_repo("org/m", {"a.safetensors": Content("cdn-a", 3 << 20), "b.safetensors": Content("cdn-b", 3 << 20)})
        hub.pause("cdn")
        cdn_host = hub.cdn_url.removeprefix("http://")
        with MountProcess(tmp_path / "home", tmp_path / "mnt", hub.url, *DEFAULT_LEVEL, "--chunk-size", "1MiB",
                          env=serve_env()) as m:  # fmt: skip
            for name in ("a.safetensors", "b.safetensors"):
                with open(m.path(f"huggingface/org/m/{name}"), "rb") as fh:
                    assert _errno_of(fh.read) == errno.EIO
            log = m.unmount()
    print(log)
    lines = _lines_naming(log, cdn_host)
    assert len(lines) == 1, log
    assert "Connect call failed" in lines[0] or "unreachable" in lines[0]


def test_the_filter_passes_other_records_and_counts_what_it_dropped() -> None:
    """The filter in isolation: one record per cause per window; the next one after the
    window says how many were dropped; records without an origin error always pass."""
    import logging

    now = [0.0]
    flt = RepeatFilter(window=300.0, clock=lambda: now[0])

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("hoard.fetch", logging.WARNING, __file__, 1, msg, args, None)

    down = OriginUnavailable("cdn.example:443 unreachable: Connect call failed for 12s")
    same = OriginUnavailable("cdn.example:443 unreachable: Connect call failed for 40s")  # digits differ only
    other = OriginUnavailable("hub.example:443 unreachable: Name or service not known")
    assert cause_of(record("plain %s", "text")) is None
    assert flt.filter(record("%s chunk %d: %s", "a", 0, down))
    assert not flt.filter(record("%s chunk %d: %s", "a", 1, same))
    assert not flt.filter(record("%s chunk %d: %s", "b", 0, down))
    assert flt.filter(record("%s: %s", "x", other))
    assert flt.filter(record("no origin error here"))
    now[0] = 301.0
    again = record("%s chunk %d: %s", "c", 0, down)
    assert flt.filter(again)
    assert "(2 more like this in the last 5 min)" in again.getMessage()
