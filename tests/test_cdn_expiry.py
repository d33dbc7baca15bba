"""A signed CDN URL that expires while a file is being fetched, through the real proxy.

The Hub answers an LFS file with a 302 to a signed, expiring CDN URL; the proxy reuses that
URL for later chunks of the same file (so they skip the Hub) and, when the CDN refuses it
(401/403/404), asks the Hub for a fresh one. The fake Hub signs its CDN URLs like the real
one and `FakeHub.expire_signed_urls` expires every URL issued so far at a moment the test
chooses: no wall-clock TTL, no sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub, RequestRecord
from tests.harness import ProxyThread
from tests.httpcalls import call

CHUNK = 256 << 10
MODEL = Content("cdn-expiry", 5 * CHUNK + 777)  # 6 chunks, the last one short
TOKEN = "hf_EXPIRYtoken_4c2e9a7b1d0f"
REPO = "org/expiring"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        # private: the Hub needs the token, so "it never reaches the CDN" means something
        fake.add_repo(REPO, {"model.safetensors": MODEL}, private=True, allowed_tokens={TOKEN})
        yield fake


def _range_length(record: RequestRecord) -> int:
    assert record.range is not None and record.range.startswith("bytes=")
    first, _, last = record.range[6:].partition("-")
    return int(last) + 1 - int(first)


def test_signed_url_expiring_between_chunks_is_refreshed_from_the_hub(hub: FakeHub, home: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ProxyThread(home, hub.url, chunk_size=CHUNK) as proxy:
        url = f"{proxy.url}/{REPO}/resolve/main/model.safetensors"
        # the first chunk: the proxy follows the Hub's redirect and keeps the signed URL
        head = call("GET", url, headers=auth | {"Range": f"bytes=0-{CHUNK - 1}"})
        assert (head.error, head.status) == (None, 206)
        assert head.body == MODEL.read(0, CHUNK)
        (signed,) = hub.find(origin="cdn", method="GET")
        assert signed.status == 206 and "Signature=" in signed.query

        hub.expire_signed_urls()
        mark = len(hub.requests)

        # the rest of the same file: the kept URL is refused now
        whole = call("GET", url, headers=auth)
        assert (whole.error, whole.status) == (None, 200)
        assert len(whole.body) == MODEL.size and whole.body == MODEL.read()
        assert proxy.store.resolve(f"sha256:{MODEL.sha256}") == MODEL.blake3  # verified, published

    after = hub.requests[mark:]
    cdn = [(i, r) for i, r in enumerate(after) if r.origin == "cdn" and r.method == "GET"]
    refused = [(i, r) for i, r in cdn if r.status == 403]
    assert refused, "the proxy did not reuse its signed URL for the next chunks (nothing to refresh)"
    assert all(r.target == signed.target for _, r in refused), "only the expired URL may be refused"
    first_refusal = refused[0][0]
    asked_again = [r for r in after[first_refusal:] if r.origin == "hub" and r.method == "GET" and r.has("/resolve/")]
    assert asked_again, "after the CDN refused the expired URL the Hub was not asked for a fresh one"
    served = [r for _, r in cdn if r.status == 206]
    assert served, "no chunk was fetched with a fresh URL"
    assert all(r.target != signed.target for r in served)
    # every byte past the first chunk came once, through fresh URLs; the refusals cost none
    assert sum(_range_length(r) for r in served) == MODEL.size - CHUNK
    # the Hub got the token (the repo is private), the CDN never did
    assert all(r.authorization is None for r in hub.find(origin="cdn"))
    hub_resolves = hub.find("/resolve/", origin="hub")
    assert hub_resolves and all(r.authorization == f"Bearer {TOKEN}" for r in hub_resolves)
