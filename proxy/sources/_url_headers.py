"""What a plain HTTP origin says about a file in the headers of its answer, read strictly.

For the ``url`` source (:mod:`.url`). An answer to ``HEAD`` (or to a ``GET`` of ``bytes=0-0``)
tells, besides its status:

* the size: ``Content-Length`` of a 200, the total of ``Content-Range`` of a 206;
* the sha256 of the whole file, from any of
  ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530, a structured-field dictionary),
  ``Digest: SHA-256=<base64>`` (RFC 3230) and ``x-amz-checksum-sha256: <base64>`` (S3, sent
  when asked with ``x-amz-checksum-mode: ENABLED``). What is *not* the file's sha256 is
  ignored and noted: ``Content-Digest`` (RFC 9530: the digest of this message's bytes, of the
  part on a 206), S3's composite checksum ``<base64>-<parts>`` (a hash of part hashes) and
  ``x-goog-hash`` (GCS sends only ``crc32c`` and ``md5``). Two sha256 values that disagree are
  an origin fault: no bytes could match both;
* validators: ``ETag`` and ``Last-Modified`` (for conditional revalidation and ``If-Match``);
* whether it serves byte ranges: ``Accept-Ranges: bytes``. Without it (absent, or ``none``)
  the file is read as one stream (:mod:`._url_stream`): a conservative choice, always correct.

An answer in a content coding other than ``identity`` (asked for explicitly) is refused: its
length is not the file's, and its bytes cannot be addressed by range.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from hoard.store.errors import OriginError

__all__ = ["URLFacts", "read_facts", "url_identity", "IDENTITY_SHAPE", "validators_of", "conditional_headers",
           "guard_headers"]

_CONTENT_RANGE = re.compile(r"bytes (?:\d+-\d+|\*)/(\d+)")
_MAX_IDENTITY = 200
#: every identity :func:`url_identity` makes matches this (printable ASCII, no space, bounded)
IDENTITY_SHAPE = re.compile(r"url:(?:h-[0-9a-f]{40}|https?://[!-~]{1,190})")


@dataclass(frozen=True)
class URLFacts:
    """What one answer says about the file."""

    size: int
    #: the whole file's sha256 (hex), when a header the origin sent gives it
    sha256: str | None
    #: which header gave it ("repr-digest", "digest", "x-amz-checksum-sha256")
    digest_from: str | None
    etag: str | None
    last_modified: str | None
    ranges: bool
    #: digests seen that are not the whole file's sha256, for the "unverified" reason
    ignored: tuple[str, ...] = ()


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    """Every field of one header name (a multidict keeps them apart; a plain dict has one)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def _sha256_of_b64(text: str) -> str | None:
    """The hex of a base64 sha256, or None if it is not 32 bytes of valid base64."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _members(headers: Mapping[str, str], name: str) -> list[tuple[str, str]]:
    """``key=value`` members of a comma-separated header (all its fields), keys lowercased,
    parameters after ``;`` dropped."""
    out = []
    for field in _all(headers, name):
        for item in field.split(","):
            key, eq, value = item.strip().partition("=")
            if eq:
                out.append((key.strip().lower(), value.split(";")[0].strip()))
    return out


def _digests(headers: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(header, sha256 hex) the origin states for the whole file, and what was ignored."""
    found: list[tuple[str, str]] = []
    ignored: list[str] = []
    for key, value in _members(headers, "Repr-Digest"):
        if key == "sha-256" and value.startswith(":") and value.endswith(":") and len(value) > 2:
            hexd = _sha256_of_b64(value[1:-1])
            if hexd:
                found.append(("repr-digest", hexd))
    for key, value in _members(headers, "Digest"):
        if key == "sha-256":
            hexd = _sha256_of_b64(value.strip(":"))
            if hexd:
                found.append(("digest", hexd))
    for value in _all(headers, "x-amz-checksum-sha256"):
        kind = headers.get("x-amz-checksum-type", "").strip().upper()
        if "-" in value or kind == "COMPOSITE":
            ignored.append("an S3 composite checksum (a hash of part hashes)")
            continue
        hexd = _sha256_of_b64(value)
        if hexd:
            found.append(("x-amz-checksum-sha256", hexd))
    if _all(headers, "x-goog-hash"):
        kinds = sorted({k for k, _ in _members(headers, "x-goog-hash")})
        ignored.append("x-goog-hash " + "/".join(kinds or ["?"]) + " (GCS sends no sha256)")
    if _all(headers, "Content-Digest"):
        ignored.append("Content-Digest (the digest of one message's bytes, not of the file)")
    return found, ignored


def _size(status: int, headers: Mapping[str, str], what: str) -> int:
    if status == 206:
        m = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        if m:
            return int(m.group(1))
    elif status == 416:  # bytes=0-0 of an empty file ("bytes */0")
        return 0
    else:
        length = headers.get("Content-Length", "").strip()
        if length.isdigit():
            return int(length)
    raise OriginError(f"{what}: the origin does not say the file's size (no Content-Length or Content-Range)")


def read_facts(status: int, headers: Mapping[str, str], what: str) -> URLFacts:
    """The facts of a 200, 206 (or 416 for an empty file) answer; OriginError when the size is
    unknown, the body is encoded, or two digests contradict each other."""
    coding = headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise OriginError(f"{what}: the origin sends the file encoded ({coding}) although asked not to")
    size = _size(status, headers, what)
    found, ignored = _digests(headers)
    values = {hexd for _, hexd in found}
    if len(values) > 1:
        names = ", ".join(sorted({h for h, _ in found}))
        raise OriginError(f"{what}: the origin's digests contradict each other ({names}): refused")
    accept = headers.get("Accept-Ranges", "").strip().lower()
    return URLFacts(
        size=size,
        sha256=found[0][1] if found else None,
        digest_from=found[0][0] if found else None,
        etag=headers.get("ETag") or None,
        last_modified=headers.get("Last-Modified") or None,
        ranges=status == 206 or "bytes" in accept.split(","),
        ignored=tuple(ignored),
    )


def _epoch(date: str) -> int | None:
    try:
        return int(parsedate_to_datetime(date).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def url_identity(url: str, facts: URLFacts) -> str:
    """``url:<url>@<validator>`` for a file no digest names: the validator is the ETag
    (``etag=``, ``wetag=`` for a weak one, quotes dropped), else Last-Modified (``lm=<epoch>``),
    else the size (``size=N``). Longer than 200 characters, or not printable ASCII: ``url:h-``
    and 40 hex of its sha256 (index keys are bounded)."""
    if facts.etag:
        tag = facts.etag.strip()
        weak = tag.startswith("W/")
        validator = ("wetag=" if weak else "etag=") + tag.removeprefix("W/").strip('"')
    elif facts.last_modified and _epoch(facts.last_modified) is not None:
        validator = f"lm={_epoch(facts.last_modified)}"
    else:
        validator = f"size={facts.size}"
    text = f"url:{url}@{validator}"
    if IDENTITY_SHAPE.fullmatch(text) and len(text) <= _MAX_IDENTITY:
        return text
    return "url:h-" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def validators_of(facts: URLFacts) -> dict[str, Any]:
    """What revalidates the entry (its ``meta["revalidate"]``): the validators, else the size
    (never empty: an entry of a URL is always revalidated, the catalog keys on it)."""
    out: dict[str, Any] = {}
    if facts.etag:
        out["etag"] = facts.etag
    if facts.last_modified:
        out["last_modified"] = facts.last_modified
    return out or {"size": facts.size}


def conditional_headers(revalidate: object) -> dict[str, str]:
    """``If-None-Match`` (else ``If-Modified-Since``) from an entry's ``meta["revalidate"]``."""
    if not isinstance(revalidate, dict):
        return {}
    if isinstance(revalidate.get("etag"), str):
        return {"If-None-Match": revalidate["etag"]}
    if isinstance(revalidate.get("last_modified"), str):
        return {"If-Modified-Since": revalidate["last_modified"]}
    return {}


def guard_headers(revalidate: object) -> dict[str, str]:
    """Headers that make a conforming origin refuse (412) to send bytes of another version
    than the one looked up: ``If-Match`` with a strong ETag, else ``If-Unmodified-Since``. A
    file that changes while its chunks are fetched is then never stitched together."""
    if not isinstance(revalidate, dict):
        return {}
    etag = revalidate.get("etag")
    if isinstance(etag, str) and etag.startswith('"'):
        return {"If-Match": etag}
    if isinstance(revalidate.get("last_modified"), str):
        return {"If-Unmodified-Since": revalidate["last_modified"]}
    return {}
