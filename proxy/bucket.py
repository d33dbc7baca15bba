"""The object-store client: one S3-compatible bucket (S3, Ceph RGW, MinIO, SeaweedFS) as a
shared blob tier for a fleet of hoard nodes.

The library is aiobotocore, chosen on purpose (docs/SCALING.md has the measurements):

* it rides on aiohttp, which hoard already uses: bodies stream as they arrive, no thread per
  request, one event loop;
* its botocore core takes endpoint, region and credentials *the standard way*: the
  ``AWS_*`` variables, ``~/.aws/config`` and ``~/.aws/credentials`` (profiles, SSO,
  web-identity and instance roles) — nothing for hoard to re-implement or get subtly wrong;
* it speaks the whole S3 surface the tier needs: ranged ``GetObject`` with a streaming body,
  multipart uploads, and conditional writes (``If-None-Match: *`` on ``PutObject`` and
  ``CompleteMultipartUpload``, answered 412 by stores that have them and ignored by older
  ones, where a lost race only rewrites identical bytes).

Only this module imports aiobotocore, and only when a bucket is opened: the CLI and the
source registry stay light. Foreign errors are translated here, at this one boundary, into
the hoard error tree: an unreachable or failing store is :class:`OriginUnavailable`, a
missing key :class:`NotFound`, a refusal :class:`AccessDenied`, anything else
:class:`OriginError`. The tier above never lets any of them reach a client: a bucket that
fails is a miss, and the origin answers instead.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from hoard.store.errors import AccessDenied, HoardError, NotFound, OriginError, OriginUnavailable

__all__ = ["BlobStoreConfig", "Bucket", "StoreUnreachable", "parse_blob_store"]

# S3's rules: 3-63 characters, lowercase letters, digits, dots and hyphens
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MIN_PART = 5 << 20  # S3's smallest part (but the last)
_MAX_PARTS = 10_000  # S3's most parts in one upload
_READ_BLOCK = 1 << 20
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed"}


@dataclass(frozen=True)
class BlobStoreConfig:
    """Where the shared tier lives and how to talk to it (``--blob-store``, ``--s3-endpoint``,
    ``--blob-store-private``); credentials are never here: botocore finds them."""

    bucket: str
    prefix: str = ""
    #: the store's URL (``--s3-endpoint``/``AWS_ENDPOINT_URL``); None: AWS, or ~/.aws/config
    endpoint: str | None = None
    #: ``AWS_REGION``; None: botocore's own chain (``AWS_DEFAULT_REGION``, the profile)
    region: str | None = None
    #: the bucket is trusted with private and gated content (their blobs, trees and aliases)
    private: bool = False
    #: bytes per multipart part; grown for huge files to stay under S3's 10,000 parts
    part_size: int = 16 << 20
    #: bytes per ranged GET when a read is split, and how many are in flight at once
    segment: int = 2 << 20
    parallel: int = 4
    connect_timeout: float = 5.0
    #: longest silence while reading a body; a stalled store is then a miss
    read_timeout: float = 15.0

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}" + (f"/{self.prefix.rstrip('/')}" if self.prefix else "")

    def key(self, name: str) -> str:
        """The object key of ``name`` under the prefix."""
        return self.prefix + name


def parse_blob_store(url: str, **options: Any) -> BlobStoreConfig:
    """``s3://BUCKET[/PREFIX]`` as a config; ValueError with the reason otherwise."""
    text = url.strip()
    if not text.startswith("s3://"):
        raise ValueError(f"a blob store is s3://BUCKET[/PREFIX], got {url!r}")
    bucket, _, prefix = text[5:].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{bucket!r} is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    prefix = prefix.strip("/")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
        raise ValueError(f"bad prefix {prefix!r} in {url!r}")
    return BlobStoreConfig(bucket, prefix + "/" if prefix else "", **options)


def _code(exc: Any) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


class StoreUnreachable(OriginUnavailable):
    """No answer from the store at all (refused, reset, timed out), as opposed to an answer
    that says "try again" (500, 503 SlowDown)."""


def translate(exc: BaseException, what: str) -> HoardError:
    """A foreign exception from botocore or aiohttp as a hoard error (see module docstring)."""
    from botocore import exceptions as bx

    if isinstance(exc, HoardError):
        return exc
    if isinstance(exc, bx.ClientError):
        code, status = _code(exc)
        text = f"{what}: the blob store answered {status} {code}".rstrip()
        if code == "NoSuchBucket":
            return OriginError(f"{what}: the bucket does not exist", 404)
        if status == 404 or code in ("NoSuchKey", "NotFound", "NoSuchUpload"):
            return NotFound(text)
        if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return AccessDenied(f"{text} (check the credentials: AWS_ACCESS_KEY_ID, ~/.aws/credentials)", 403)
        if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
            return OriginUnavailable(text)
        return OriginError(text, status or 502)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return AccessDenied(f"{what}: no credentials for the blob store (AWS_ACCESS_KEY_ID, ~/.aws/credentials)", 403)
    if isinstance(exc, (bx.BotoCoreError, OSError, asyncio.TimeoutError)):
        return StoreUnreachable(f"{what}: blob store unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    import aiohttp

    if isinstance(exc, aiohttp.ClientError):
        return StoreUnreachable(f"{what}: blob store unreachable: {type(exc).__name__}")
    return OriginError(f"{what}: blob store: {type(exc).__name__}: {exc}")


def _foreign() -> tuple[type[BaseException], ...]:
    """The exception types :func:`translate` handles (imported late: aiobotocore is heavy)."""
    import aiohttp
    from botocore import exceptions as bx

    return (bx.BotoCoreError, bx.ClientError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


class Bucket:
    """One bucket. Create inside the running loop; :meth:`close` when done."""

    def __init__(self, config: BlobStoreConfig) -> None:
        self.config = config
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        """The client, made on first use (a store that is down does not stop hoard starting)."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    from aiobotocore.config import AioConfig
                    from aiobotocore.session import get_session
                except ImportError:
                    raise OriginError(f"{self.config.url}: the blob store needs aiobotocore "
                                      "(pip install 'hoard[s3]')") from None

                cfg = AioConfig(
                    connect_timeout=self.config.connect_timeout,
                    read_timeout=self.config.read_timeout,
                    retries={"max_attempts": 2, "mode": "standard"},  # the tier falls back, not waits
                    max_pool_connections=64,
                    # CRC checksums only where S3 requires them: S3-compatible stores differ
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": "path"} if self.config.endpoint else None,
                )
                stack = AsyncExitStack()
                try:
                    client = await stack.enter_async_context(
                        get_session().create_client(
                            "s3", endpoint_url=self.config.endpoint, region_name=self.config.region, config=cfg
                        )
                    )
                except (*_foreign(), ValueError) as exc:
                    raise translate(exc, self.config.url) from None
                self._stack, self._client = stack, client
        return self._client

    async def connect(self) -> None:
        """Make the client now (at start-up, off the first request's path: botocore loads its
        service model and finds credentials once, which takes a moment); failures are left
        for the first real call to report."""
        try:
            await self._s3()
        except HoardError:
            pass

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    def _what(self, name: str) -> str:
        return f"{self.config.url}/{name}"

    async def _call(self, op: str, name: str, **params: Any) -> Any:
        """One API call on key ``name``, its failure translated."""
        s3 = await self._s3()
        try:
            return await getattr(s3, op)(Bucket=self.config.bucket, Key=self.config.key(name), **params)
        except _foreign() as exc:
            raise translate(exc, self._what(name)) from None

    async def head(self, name: str) -> int | None:
        """The object's size, or None when there is no such object."""
        try:
            reply = await self._call("head_object", name)
        except NotFound:
            return None
        return int(reply["ContentLength"])

    async def get(self, name: str, *, limit: int = 16 << 20) -> bytes | None:
        """A small object's bytes (at most ``limit``), or None when there is none."""
        try:
            reply = await self._call("get_object", name)
        except NotFound:
            return None
        body = reply["Body"]
        try:
            if int(reply.get("ContentLength") or 0) > limit:
                raise OriginError(f"{self._what(name)}: {reply['ContentLength']} bytes, expected at most {limit}")
            return bytes(await body.read())
        except _foreign() as exc:
            raise translate(exc, self._what(name)) from None
        finally:
            body.close()

    async def get_json(self, name: str, *, limit: int = 16 << 20) -> dict[str, Any]:
        """A small JSON object (lease, digests, alias, tree records), or {} when there is none
        or it is not one: records in a shared bucket are read as untrusted input."""
        data = await self.get(name, limit=limit)
        if not data:
            return {}
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return {}
        return doc if isinstance(doc, dict) else {}

    async def put(self, name: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write a small object; with ``if_absent``, False if one exists already (a store
        without conditional writes overwrites it)."""
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            await self._call("put_object", name, Body=data, **extra)
        except OriginError as exc:
            if if_absent and exc.status == 412:
                return False
            raise
        return True

    async def delete(self, name: str) -> None:
        try:
            await self._call("delete_object", name)
        except NotFound:
            pass

    async def read(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of an object with one ranged GET. Raises NotFound for a
        missing key and OriginUnavailable for a body that ends early (a truncated object, a
        store that died mid-read)."""
        if end <= start:
            return
        reply = await self._call("get_object", name, Range=f"bytes={start}-{end - 1}")
        body = reply["Body"]
        got = 0
        try:
            got_range = str(reply.get("ContentRange") or "")
            if got_range and not got_range.startswith(f"bytes {start}-"):
                raise OriginError(f"{self._what(name)}: answered range {got_range!r} for {start}-{end - 1}")
            async for block in body.iter_chunks(_READ_BLOCK):
                block = block[: end - start - got]
                got += len(block)
                yield block
                if got >= end - start:
                    return
        except _foreign() as exc:
            raise translate(exc, self._what(name)) from None
        finally:
            body.close()
        if got < end - start:
            raise OriginUnavailable(f"{self._what(name)}: the object ended {end - start - got} bytes early")

    def part_size(self, size: int) -> int:
        """The part size for an object of ``size`` bytes (under S3's 10,000 parts)."""
        part = max(self.config.part_size, _MIN_PART)
        return max(part, -(-size // (_MAX_PARTS - 1)))

    async def upload(self, name: str, parts: AsyncIterator[bytes], *, if_absent: bool = False) -> bool:
        """Write an object from a stream of parts (each of :meth:`part_size`, the last may be
        shorter): one PUT for a single part, else a multipart upload with two parts in flight.
        With ``if_absent``, False if the object exists already (the upload is abandoned)."""
        first = await anext(parts, b"")
        second = await anext(parts, None)
        if second is None:
            return await self.put(name, first, if_absent=if_absent)
        started = await self._call("create_multipart_upload", name)
        upload_id = started["UploadId"]
        done: dict[int, str] = {}
        try:
            await self._upload_parts(name, upload_id, first, second, parts, done)
            extra = {"IfNoneMatch": "*"} if if_absent else {}
            listing = {"Parts": [{"ETag": done[n], "PartNumber": n} for n in sorted(done)]}
            await self._call("complete_multipart_upload", name, UploadId=upload_id, MultipartUpload=listing, **extra)
        except OriginError as exc:
            await self._abort(name, upload_id)
            if if_absent and exc.status == 412:
                return False
            raise
        except BaseException:
            await asyncio.shield(self._abort(name, upload_id))
            raise
        return True

    async def _upload_parts(
        self, name: str, upload_id: str, first: bytes, second: bytes, rest: AsyncIterator[bytes], done: dict[int, str]
    ) -> None:
        """Send the parts, two at a time: one on the wire while the next is read."""
        slots = asyncio.Semaphore(2)
        tasks: list[asyncio.Task[None]] = []

        async def send(number: int, data: bytes) -> None:
            try:
                reply = await self._call("upload_part", name, UploadId=upload_id, PartNumber=number, Body=data)
                done[number] = reply["ETag"]
            finally:
                slots.release()

        async def pieces() -> AsyncIterator[bytes]:
            yield first
            yield second
            async for data in rest:
                yield data

        try:
            number = 0
            async for data in pieces():
                number += 1
                await slots.acquire()
                failed = [t for t in tasks if t.done() and t.exception() is not None]
                if failed:
                    slots.release()
                    raise failed[0].exception()  # type: ignore[misc]
                tasks.append(asyncio.get_running_loop().create_task(send(number, data)))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _abort(self, name: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", name, UploadId=upload_id)
        except HoardError:
            pass  # a lifecycle rule for incomplete uploads cleans up what is left
