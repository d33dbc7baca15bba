"""Real hoard components for tests: the proxy on 127.0.0.1 in a thread, or as a process
(`serve_env`: an environment that leaves it configured by its flags alone); and `wait_for`,
the bounded poll for what the product reaches asynchronously."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from hoard.proxy.app import Server
from hoard.proxy.fetch import FetchConfig
from hoard.proxy.http import HttpConfig
from hoard.proxy.service import ProxyConfig
from hoard.store.config import StoreConfig
from hoard.store.store import Store

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent

#: fast failure in tests: few retries, short backoff
TEST_HTTP = HttpConfig(connect_timeout=5.0, read_timeout=10.0, retries=2, backoff=0.05, max_backoff=0.2)


def wait_for(cond: Callable[[], object], timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll a condition the product reaches asynchronously (a background fill, say)."""
    pause = threading.Event()
    for _ in range(int(timeout / interval)):
        if cond():
            return
        pause.wait(interval)
    raise AssertionError("condition not reached in time")


def serve_env() -> dict[str, str]:
    """This environment without HOARD_*, HF_* and HUGGING* variables: a `ServeProcess`
    configured by its flags alone."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("HOARD_", "HF_", "HUGGING"))}


class ProxyThread:
    """``hoard serve`` in-process: the real app on its own loop in a background thread."""

    def __init__(
        self, home: Path, hf_endpoint: str, *, chunk_size: int = 1 << 20, gc_grace: float = 600.0, **config: Any
    ) -> None:
        self.store = Store(StoreConfig(home, chunk_size=chunk_size, gc_grace=gc_grace))
        fetch = config.pop("fetch", FetchConfig(chunk_attempts=4))
        sources = {"hf_endpoint": hf_endpoint, **config.pop("sources", {})}
        self.config = ProxyConfig(host="127.0.0.1", port=0, source_settings=sources, http=TEST_HTTP, fetch=fetch, **config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="hoard-proxy")
        self.server: Server | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> ProxyThread:
        self.thread.start()
        self.server = self.call(Server.start(self.config, self.store))
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def metrics(self) -> Any:
        assert self.server is not None
        return self.server.svc.metrics

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
            self.server = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.store.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServeProcess:
    """``hoard serve`` as a separate process (for kill/restart tests)."""

    def __init__(self, home: Path, hf_endpoint: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.args = [sys.executable, "-m", "hoard.cli.main", "serve", "--listen", "127.0.0.1:0",
                     "--home", str(home), "--hf-endpoint", hf_endpoint, *extra]
        self.env = dict(env or os.environ)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> ServeProcess:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once the socket listens
        match = re.search(r"(http://\S+)", line)
        if not match:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"hoard serve did not start: {line!r} {err}")
        self.url = match.group(1)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> str:
        """SIGTERM, wait, and return stderr (the request log)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        return err

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class MountProcess:
    """``hoard mount`` as a process; leaving the context always unmounts (lazily if stuck)."""

    def __init__(self, home: Path, mountpoint: Path, hf_endpoint: str, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.mountpoint = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.args = [sys.executable, "-m", "hoard.cli.main", "mount", str(mountpoint), "--home", str(home),
                     "--hf-endpoint", hf_endpoint, "--log-level", "info", *extra]
        self.env = dict(env or os.environ)
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> MountProcess:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed from FUSE init: the mount is live
        if "mounted" not in line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait(10)
            raise RuntimeError(f"hoard mount did not start: {line!r} {err}")
        return self

    def path(self, rel: str) -> Path:
        return self.mountpoint / rel

    def unmount(self) -> str:
        """Unmount and return the mount's log (stderr)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            done = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        return err

    def __enter__(self) -> MountProcess:
        return self.start()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.proc is not None:
            log = self.unmount()
            if exc_type is not None:
                sys.stderr.write(f"--- hoard mount log ---\n{log[-20000:]}\n")


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal and stdout on a file (a user at a shell keeping
    the output: ``hoard push ... > out``); returns (exit code, what was drawn, stdout)."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, env=dict(env, COLUMNS="160", TERM="xterm"), stdout=out, stderr=slave,
                                stdin=subprocess.DEVNULL)  # fmt: skip
        os.close(slave)
        drawn = b""
        while True:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal's last writer is gone
                    break
                if not chunk:
                    break
                drawn += chunk
            elif proc.poll() is not None:
                break
        proc.wait(60)
        os.close(master)
        out.seek(0)
        return proc.returncode, drawn.decode(errors="replace"), out.read().decode()
