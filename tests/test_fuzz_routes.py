"""Fuzzing both faces of the proxy with malformed requests: never a 500, never a hang.

Hypothesis builds requests from the route templates of the Hugging Face face and of hoard's
``/v1`` API, filling every placeholder (namespace, name, revision, path segments, source,
BLAKE3, job id) with awkward segments — ``..`` and ``.`` plain and percent-encoded, NUL,
CR/LF, bytes that are no UTF-8, very long ones, empty ones, a quoted ``/`` — and adds random
methods, queries, ``Range`` values (5000-digit bounds among them), tokens, admin tokens and
bodies. Each request goes over a raw socket (so malformed input really reaches the server,
nothing normalised by a client library) to the real proxy in-process, in front of the fake
Hub holding a public, a private and a gated repo, some of it already cached.

Every answer must arrive complete within the socket timeout, with a status below 500 or one
of the 5xx that name a legitimate origin or store state (502 the origin answered wrongly,
503 it is unreachable or busy, 507 the store is full); a 500 is always a bug. The proxy
must log no unhandled exception, and still answer ``/healthz`` afterwards.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.fakes.samples import GOOD, OTHER
from tests.harness import ProxyThread
from tests.httpcalls import call

CHUNK = 64 << 10
CONFIG = b'{"model_type": "bert"}'
WEIGHTS = Content("fuzz-weights", 2 * CHUNK + 7)
SECRET = Content("fuzz-secret", CHUNK + 3)
TIMEOUT = 30.0  # seconds one read may wait: a liveness bound, not a timing assertion
#: 5xx answers that describe the origin or the store, not a bug in the proxy
LEGITIMATE_5XX = {502, 503, 507}
EXAMPLES = int(os.environ.get("HOARD_FUZZ_EXAMPLES", "500"))
#: every logger the proxy writes to (a filter on a logger sees only its own records)
_SERVER_LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio", "hoard", "hoard.access", "hoard.catalog",
                   "hoard.fetch", "hoard.gc", "hoard.hf", "hoard.http", "hoard.serve", "hoard.sources",
                   "hoard.store", "hoard.v1")


class _Errors(logging.Filter):
    """Records the errors the proxy logs from its thread, and strips the traceback from every
    record (CPython 3.11 formats tracebacks with a parser that is not thread-safe, gh-106905,
    and pytest would format them in the proxy's thread).

    aiohttp's own parser refusing a malformed request (answered 400) is not counted: that is
    the server doing its job on garbage that never reaches hoard."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno >= logging.ERROR and not isinstance(exc, HttpProcessingError):
            self.seen.append(f"{record.name}: {record.getMessage()}" + (f": {type(exc).__name__}: {exc}" if exc else ""))
        record.exc_info, record.exc_text = None, None
        return True


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(page_size=50) as fake:
        fake.add_repo("org/model", {"config.json": CONFIG, "model.safetensors": WEIGHTS, "sub/a.txt": b"a\n"},
                      tags=("v1.0",))
        fake.add_pr("org/model", {"config.json": b'{"pr": 1}'})
        fake.add_repo("org/private", {"config.json": b'{"p": 1}', "secret.safetensors": SECRET}, private=True,
                      allowed_tokens={GOOD})
        fake.add_repo("org/gated", {"config.json": b"{}"}, gated="manual", allowed_tokens={GOOD})
        fake.add_repo("org/ds", {"data.csv": b"a,b\n1,2\n"}, repo_type="dataset")
        yield fake


@pytest.fixture(scope="module")
def proxy(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyThread, _Errors]]:
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in _SERVER_LOGGERS]
    for logger in loggers:
        logger.addFilter(errors)
    home: Path = tmp_path_factory.mktemp("fuzz") / "home"
    try:
        with ProxyThread(home, hub.url, chunk_size=CHUNK) as px:
            for target, token in (("/org/model/resolve/main/config.json", None),
                                  ("/org/model/resolve/main/model.safetensors", None),
                                  ("/org/private/resolve/main/secret.safetensors", GOOD)):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                assert call("GET", px.url + target, headers=headers).status == 200
            yield px, errors
    finally:
        for logger in loggers:
            logger.removeFilter(errors)


# -- strategies -------------------------------------------------------------------------------

AWKWARD = [
    "org", "model", "private", "gated", "ds", "main", "v1.0", "refs%2Fpr%2F1", "refs", "pr", "1",
    "config.json", "model.safetensors", "sub", "a.txt", "datasets", "spaces",
    "..", "%2e%2e", "%2E%2e", ".", "%2e", "", "%00", "a%00b", "%0d%0aX-Injected:%201", "%0a", "%01", "%7f",
    "%ff", "%c3%28", "%e2%9c%93", "%F0%9F%98%80", "%2F", "%2f..%2f", "..%2F..%2Fetc", "%25", "%252e%252e",
    "@", "model@main", "model@%2e%2e", "model@refs%2Fpr%2F1", "model@", "a" * 300, "%41" * 200, "%3F", "%23",
    ";", "'", "~", "x y", "%20", "0" * 40, "f" * 40, "0" * 64, WEIGHTS.blake3, Content.of(CONFIG).blake3,
    SECRET.blake3,
]
segment = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(max_size=12).map(lambda t: quote(t, safe="")),
    st.binary(max_size=8).map(lambda b: quote(b, safe="")),
)
path = st.lists(segment, min_size=1, max_size=3).map("/".join)


#: values that name something real, per placeholder: a request starts from these, and then
#: a few of its placeholders are spoiled, so requests get past the first checks (to the store,
#: the fetch core, the Range code) as often as they fail one
GOOD_FIELDS = {
    "ns": ["org"],
    "name": ["model", "model", "model", "private", "gated", "ds"],
    "rev": ["main", "v1.0", "refs%2Fpr%2F1", "refs/pr/1", "0" * 40],
    "path": ["config.json", "model.safetensors", "sub/a.txt", "secret.safetensors", "data.csv"],
    "kind": ["models", "datasets", "spaces"],
    "source": ["huggingface", "huggingface/datasets"],
    "at": ["", "@main", "@refs%2Fpr%2F1"],
    "b3": [WEIGHTS.blake3, Content.of(CONFIG).blake3, SECRET.blake3],
    "id": ["0123456789ab"],
}
BAD_FIELDS = {"path": path, "source": st.one_of(st.sampled_from(["local", "nosuch", "huggingface/spaces"]), segment),
              "at": segment.map(lambda seg: "@" + seg)}

#: the routes that serve bytes come twice: they parse the most (Range, tokens, revisions)
TEMPLATES = [
    "/{ns}/{name}/resolve/{rev}/{path}",
    "/{ns}/{name}/resolve/{rev}/{path}",
    "/datasets/{ns}/{name}/resolve/{rev}/{path}",
    "/spaces/{ns}/{name}/resolve/{rev}/{path}",
    "/{name}/resolve/{rev}/{path}",
    "/api/{kind}/{ns}/{name}",
    "/api/{kind}/{ns}/{name}/revision/{rev}",
    "/api/{kind}/{ns}/{name}/tree/{rev}",
    "/api/{kind}/{ns}/{name}/tree/{rev}/{path}",
    "/api/{kind}/{ns}/{name}/paths-info/{rev}",
    "/api/{kind}/{ns}/{name}/refs",
    "/api/{kind}/{ns}/{name}/commits/{rev}",
    "/api/whoami-v2",
    "/api/{path}",
    "/v1/files/{source}/{ns}/{name}{at}/{path}",
    "/v1/files/{source}/{ns}/{name}{at}/{path}",
    "/v1/blobs/{b3}",
    "/v1/blobs/{b3}",
    "/v1/trees/{source}/{ns}/{name}{at}",
    "/v1/trees/{source}/{ns}/{name}{at}/{path}",
    "/v1/models",
    "/v1/models/{source}/{ns}/{name}{at}",
    "/v1/models/{source}/{ns}/{name}{at}/{path}",
    "/v1/pins",
    "/v1/pins/{source}/{ns}/{name}{at}",
    "/v1/prefetch",
    "/v1/prefetch/{id}",
    "/v1/gc",
    "/v1/cache",
    "/healthz",
    "/metrics",
    "/{path}",
]

QUERIES = st.one_of(
    st.just(""),
    st.sampled_from(["?recursive=true", "?expand=true", "?recursive=1&expand=1", "?blobs=true", "?dry_run=1",
                     "?force=1&dry_run=true", "?limit=0", "?limit=-5", "?limit=" + "9" * 30, "?cursor=MTAwMA",
                     "?cursor=%ff%fe", "?cursor=" + "A" * 100, "?expand=sha&expand=siblings", "?prefix=huggingface",
                     "?prefix=%2e%2e", "?address=huggingface/org/model", "?%00=%00", "?&&=&"]),
    st.text(max_size=20).map(lambda t: "?" + quote(t, safe="=&")),
)

DIGITS = st.integers(min_value=0, max_value=10**30).map(str)
RANGES = st.one_of(
    st.sampled_from(["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-0", "bytes=5-1", "bytes=0-1,5-6", "bytes=abc",
                     "bytes=", "bytes=--1", "items=0-1", "bytes=0-" + "9" * 5000, "bytes=" + "9" * 5000 + "-",
                     "bytes=-" + "9" * 25, "bytes= 1 - 2 ", "bytes=1-2-3", "bytes=0-18446744073709551616"]),
    st.tuples(DIGITS, DIGITS).map(lambda ab: f"bytes={ab[0]}-{ab[1]}"),
    st.text(max_size=30),
)
#: header values: mostly printable ASCII (aiohttp refuses most control characters before hoard
#: sees them), else anything but CR and LF (which would end the header on the wire)
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
VALUE = st.one_of(PRINTABLE, PRINTABLE, PRINTABLE, st.text(st.characters(blacklist_characters="\r\n"), max_size=40))
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Range": RANGES,
        "Authorization": st.one_of(st.sampled_from([f"Bearer {GOOD}", f"Bearer {OTHER}", "Bearer ", "Basic x"]),
                                   VALUE.map(lambda v: "Bearer " + v)),
        "If-None-Match": st.one_of(st.just(f'"{WEIGHTS.blake3}"'), VALUE),
        "Content-Type": st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "%00"]),
        "X-Hoard-Admin-Token": VALUE,
        "Accept-Encoding": st.sampled_from(["gzip", "identity", "br, *;q=0"]),
        "X-Random": VALUE,
    },
)
BODIES = st.one_of(
    st.just(b""),
    st.sampled_from([b"{}", b"[]", b"null", b"not json", b'{"address": 5}', b'{"max_size": "lots"}',
                     b'{"max_size": 0, "dry_run": true}', b'{"paths": ["config.json", 5]}', b"paths=config.json&paths=sub",
                     b"\xff\xfe\x00"]),
    st.builds(lambda s: json.dumps({"address": s, "dry_run": True}).encode(), path),
    st.binary(max_size=64),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """(method, target, headers, body): a route template filled with real names, up to three
    of them spoiled, plus a random query, headers and (for POST and DELETE) a body."""
    template = draw(st.sampled_from(TEMPLATES))
    fields = {name: draw(st.sampled_from(good)) for name, good in GOOD_FIELDS.items()}
    spoiled = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    for name in draw(st.sets(st.sampled_from(sorted(GOOD_FIELDS)), min_size=spoiled, max_size=spoiled)):
        fields[name] = draw(BAD_FIELDS.get(name, segment))
    target = template.format(**fields) + draw(QUERIES)
    method = draw(st.sampled_from(["GET", "GET", "GET", "GET", "HEAD", "POST", "DELETE"]))
    return method, target, draw(HEADERS), draw(BODIES) if method in ("POST", "DELETE") else b""


# -- the wire ---------------------------------------------------------------------------------


def send(base: str, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """One request written byte for byte on a fresh socket; the complete answer's status and
    body (raises if the answer is cut, malformed, or does not come within ``TIMEOUT``)."""
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    head = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items()),
            f"Content-Length: {len(body)}", "Connection: close", "", ""]
    wire = "\r\n".join(head).encode("utf-8", "surrogatepass") + body
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(wire)
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
            return resp.status, resp.read()
        finally:
            resp.close()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests())
def test_fuzzed_requests_never_500_never_hang(proxy: tuple[ProxyThread, _Errors], req: tuple[str, str, dict[str, str], bytes]) -> None:
    px, errors = proxy
    method, target, headers, body = req
    logged = len(errors.seen)
    try:
        status, answer = send(px.url, method, target, headers, body)
    except (OSError, http.client.HTTPException) as exc:
        pytest.fail(f"{method} {target!r} {headers!r}: no complete answer: {type(exc).__name__}: {exc}")
    assert status < 500 or status in LEGITIMATE_5XX, (method, target, headers, status, answer[:300])
    assert errors.seen[logged:] == [], errors.seen[logged:]


def test_proxy_is_healthy_after_fuzzing(proxy: tuple[ProxyThread, _Errors]) -> None:
    px, errors = proxy
    assert call("GET", f"{px.url}/healthz").status == 200
    assert px.metrics.get("hoard_http_requests_total", face="hf", status="500") == 0
    assert px.metrics.get("hoard_http_requests_total", face="v1", status="500") == 0
    assert errors.seen == []
