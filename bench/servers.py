"""The servers a benchmark talks to, each in its own process on 127.0.0.1 and a context manager.

* :class:`Nginx` — Debian's nginx serving a directory (sendfile on, one worker): the anchor
  for serving a file that is already on disk.
* :class:`HoardServe` — ``hoard serve`` exactly as a user starts it.
* :class:`HoardMount` — ``hoard mount`` exactly as a user starts it; leaving it always unmounts.
* :class:`FakeHubProcess` — the test suite's fake Hugging Face Hub + CDN
  (``tests/fakes/hub.py``) run by :mod:`bench.fakehub` in its own process, so the origin
  does not share a GIL with the client under measurement. It answers ``bytes`` / ``clear`` /
  ``quit`` lines on stdin (payload bytes sent per origin).

Every process is started with a readiness check and stopped (TERM, then KILL) on exit.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from hoard.fuse.mount import mount_device

from .common import ROOT, BenchError

__all__ = ["free_port", "wait_port", "Nginx", "HoardServe", "HoardMount", "FakeHubProcess", "clean_env", "summarize_errors",
           "fuse_device", "have_fuse"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def clean_env() -> dict[str, str]:
    """The environment without HOARD_*/HF_* settings that would change what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("HOARD_", "HF_"))}


def _stop(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _readline(stream: IO[str], timeout: float, proc: subprocess.Popen[Any], what: str, log: Path | None) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    line = stream.readline() if ready else ""
    if not line:
        tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
        _stop(proc)
        raise BenchError(f"{what} did not start within {timeout}s: {tail.strip()}")
    return line


# -- nginx ------------------------------------------------------------------------------------

_NGINX_CONF = """\
daemon off;
worker_processes 1;
{user}
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def find_nginx() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if path is None:
        raise BenchError("nginx is not installed; install it with: apt-get install -y nginx-light")
    return path


class Nginx:
    """nginx serving ``root`` on a loopback port; ``url(rel)`` names a file under it."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        binary = find_nginx()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # as root, workers would drop to 'nobody' and could not read a 0700 scratch dir
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.tmp / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(user=user, tmp=self.tmp, port=self.port, root=self.root))
        self.proc = subprocess.Popen([binary, "-p", str(self.tmp), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, proc=self.proc)
        except BenchError as exc:
            log = self.tmp / "error.log"
            raise BenchError(f"nginx: {exc}: {log.read_text()[-500:] if log.exists() else ''}") from None
        return self

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{rel.lstrip('/')}"

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


# -- hoard serve ------------------------------------------------------------------------------


class HoardServe:
    """``hoard serve --listen 127.0.0.1:0`` in its own process; ``url`` once it listens."""

    def __init__(self, home: Path, hf_endpoint: str, *extra: str, log: Path | None = None) -> None:
        self.home = home
        self.args = [sys.executable, "-m", "hoard.cli.main", "serve", "--listen", "127.0.0.1:0",
                     "--home", str(home), "--hf-endpoint", hf_endpoint, "--log-level", "warning", *extra]
        self.log = log or home.parent / f"{home.name}.serve.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> HoardServe:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(self.args, env=clean_env(), stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout, 30, self.proc, "hoard serve", self.log)
        match = re.search(r"(http://\S+)", line)
        if not match:
            _stop(self.proc)
            raise BenchError(f"hoard serve printed {line!r}, not its URL")
        self.url = match.group(1)
        return self

    def log_errors(self) -> list[str]:
        """One line per error record in the server's log: its header and exception line."""
        if not self.log.exists():
            return []
        out: list[str] = []
        head = ""
        for line in self.log.read_text(errors="replace").splitlines():
            if " ERROR " in line:
                if head:
                    out.append(head)
                head = line.split(" ERROR ", 1)[1]
            elif head and line and not line.startswith((" ", "Traceback", "The above", "During")):
                out.append(f"{head}: {line}")  # the exception line ends the traceback
                head = ""
        if head:
            out.append(head)
        return out

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


def summarize_errors(errors: list[str]) -> str:
    """``3 x hoard.hf: internal error: OSError: [Errno 9] Bad file descriptor; ...``"""
    from collections import Counter

    return "; ".join(f"{n} x {e}" for e, n in Counter(errors).most_common(4))


# -- hoard mount ------------------------------------------------------------------------------


def have_fuse() -> bool:
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


def fuse_device(mountpoint: Path) -> str | None:
    """major:minor of the FUSE filesystem mounted at ``mountpoint`` (/proc/self/mountinfo)."""
    return mount_device(str(mountpoint))


def _fusermount(mountpoint: Path, lazy: bool) -> bool:
    cmd = ["fusermount3", "-uz" if lazy else "-u", str(mountpoint)]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except TimeoutError:  # the watchdog (an OSError): do not swallow it
        raise
    except (OSError, subprocess.TimeoutExpired):
        return False


class HoardMount:
    """``hoard mount MOUNTPOINT --home HOME --hf-endpoint URL [extra]`` in its own process.

    Entering waits for the "mounted" line and for the mount's raised kernel read-ahead
    (``read_ahead_kb``, read back from sysfs); leaving always unmounts (``fusermount3 -u``,
    then ``-uz`` if busy) and stops the process (TERM, then KILL). :meth:`kill_all` is the
    backstop for a reader stuck in the kernel on a hung mount (the watchdog's SIGALRM cannot
    interrupt that): killing the daemon aborts the FUSE connection, so the read fails.
    """

    live: set[HoardMount] = set()

    def __init__(self, home: Path, mountpoint: Path, hf_endpoint: str, *extra: str, log: Path | None = None) -> None:
        self.home = home
        self.mountpoint = mountpoint
        self.args = [sys.executable, "-m", "hoard.cli.main", "mount", str(mountpoint), "--home", str(home),
                     "--hf-endpoint", hf_endpoint, "--log-level", "info", *extra]
        self.log = log or home.parent / f"{mountpoint.name}.mount.log"
        self.proc: subprocess.Popen[str] | None = None
        self.device: str | None = None
        self.read_ahead_kb: int | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def path(self, rel: str) -> Path:
        return self.mountpoint / rel

    def bdi(self, name: str) -> Path | None:
        return Path(f"/sys/class/bdi/{self.device}/{name}") if self.device else None

    def __enter__(self) -> HoardMount:
        if not have_fuse():
            raise BenchError("needs /dev/fuse and fusermount3 (apt-get install -y fuse3)")
        self.home.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if fuse_device(self.mountpoint):  # a leftover of a killed run
            _fusermount(self.mountpoint, lazy=True)
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(self.args, env=clean_env(), stdout=subprocess.PIPE, stderr=err, text=True)
        HoardMount.live.add(self)
        try:
            assert self.proc.stdout is not None
            line = _readline(self.proc.stdout, 60, self.proc, "hoard mount", self.log)
            if "mounted" not in line:
                raise BenchError(f"hoard mount printed {line!r}, not 'mounted'")
            # the read-ahead is raised from a thread after FUSE init: wait until it shows
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                self.device = self.device or fuse_device(self.mountpoint)
                ra = self.bdi("read_ahead_kb")
                if ra is not None and ra.exists():
                    self.read_ahead_kb = int(ra.read_text())
                    if "read-ahead of" in self.log.read_text(errors="replace"):
                        break
                time.sleep(0.05)
        except BaseException:
            self.__exit__()
            raise
        return self

    @classmethod
    def kill_all(cls) -> None:
        for m in list(cls.live):
            if m.proc is not None and m.proc.poll() is None:
                m.proc.kill()

    def __exit__(self, *exc: object) -> None:
        HoardMount.live.discard(self)
        if self.proc is None:
            return
        if self.proc.poll() is None and fuse_device(self.mountpoint):
            if not _fusermount(self.mountpoint, lazy=False):
                _fusermount(self.mountpoint, lazy=True)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            _stop(self.proc)
        if fuse_device(self.mountpoint):  # the process died without unmounting
            _fusermount(self.mountpoint, lazy=True)


# -- the fake Hub -----------------------------------------------------------------------------


class FakeHubProcess:
    """The fake Hub + CDN with one repo holding generated files, in a child process.

    ``files`` maps a repo path to ``(size, seed)``. After start: ``url``, ``cdn_url``,
    ``repo``, ``commit`` and per file ``sha256`` / ``blake3`` (``info["files"][path]``).
    ``per_connection_rate`` (bytes/s) paces every answer's body, as a CDN capping each
    connection does.
    """

    def __init__(self, repo: str, files: dict[str, tuple[int, str]], *, block_size: int = 1 << 20,
                 xet: bool = True, log: Path | None = None, per_connection_rate: float | None = None) -> None:
        self.repo = repo
        self.per_connection_rate = per_connection_rate
        spec = [f"{path}:{size}:{seed}" for path, (size, seed) in files.items()]
        self.args = [sys.executable, "-m", "bench.fakehub", "--repo", repo, "--block-size", str(block_size),
                     *(["--no-xet"] if not xet else []),
                     *(["--per-connection-rate", str(per_connection_rate)] if per_connection_rate else []), *spec]
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> FakeHubProcess:
        err = open(self.log, "w") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=clean_env(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        finally:
            if self.log:
                err.close()  # type: ignore[union-attr]
        assert self.proc.stdout is not None
        # the hub hashes its files (sha256 for LFS pointers) before it answers: ~1 s per 512 MiB
        self.info = json.loads(_readline(self.proc.stdout, 120, self.proc, "fake hub", self.log))
        return self

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def cdn_url(self) -> str:
        return str(self.info["cdn_url"])

    @property
    def commit(self) -> str:
        return str(self.info["commit"])

    def file(self, path: str) -> dict[str, Any]:
        return dict(self.info["files"][path])

    def _ask(self, command: str) -> Any:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(_readline(self.proc.stdout, 30, self.proc, "fake hub", self.log))

    def bytes_sent(self) -> dict[str, int]:
        """Payload bytes per origin (``hub``, ``cdn``) since the last :meth:`clear`."""
        return dict(self._ask("bytes"))

    def requests(self) -> int:
        return int(self._ask("requests"))

    def clear(self) -> None:
        self._ask("clear")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _stop(self.proc)
