"""Private bytes only to those allowed to read them, through hoard's own API.

A store holding a public, a private and a gated repo (filled by a client whose token the
fake Hub accepts for all three), then read by strangers (no token, another token), by that
client, and by the admin token holder: ``/v1/blobs`` serves a blob that only restricted files
use to the allowed client alone, and a blob no cached revision uses to the admin alone; listings and plans (models, pins, cache, gc and delete
dry-runs) never name a restricted repo or its hashes to anyone else. Plus the admin
endpoints of a proxy listening beyond loopback: off without an admin token, on with one read
from a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.fakes.content import Content
from tests.fakes.hub import FakeHub
from tests.fakes.samples import GOOD, OTHER
from tests.fixtures import fresh_hub  # noqa: F401  (fixture)
from tests.harness import ProxyThread, ServeProcess, serve_env, wait_for
from tests.httpcalls import Got, call

CHUNK = 64 << 10
SHARED = b"the same bytes in a public and a private repo\n"
PUBLIC = {"config.json": b'{"repo": "public"}', "shared.txt": SHARED}
SECRET = Content("private-weights", 3 * CHUNK + 11)  # LFS, several chunks
PRIVATE = {"config.json": b'{"repo": "private"}', "shared.txt": SHARED, "secret.safetensors": SECRET}
GATED_W = Content("gated-weights", 2 * CHUNK + 5)
GATED = {"weights.safetensors": GATED_W}
BIG_SECRET = Content("private-big", 6 * CHUNK + 1)  # left partial by a ranged read
ADMIN = "s3cret-admin"

STRANGERS = {"anonymous": {}, "other token": {"Authorization": f"Bearer {OTHER}"}}
ALLOWED = {"Authorization": f"Bearer {GOOD}"}


def b3(spec: bytes | Content) -> str:
    return Content.of(spec).blake3


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/public", PUBLIC)
        fake.add_repo("org/private", PRIVATE | {"big.safetensors": BIG_SECRET}, private=True, allowed_tokens={GOOD})
        fake.add_repo("org/gated", GATED, gated="manual", allowed_tokens={GOOD})
        yield fake


def fill(px: ProxyThread) -> None:
    """Cache every file of the three repos (as the allowed client), and a partial of one."""
    for repo, files in (("org/public", PUBLIC), ("org/private", PRIVATE), ("org/gated", GATED)):
        for path in files:
            got = call("GET", f"{px.url}/{repo}/resolve/main/{path}", headers=ALLOWED)
            assert got.status == 200, (repo, path, got.status)
    ranged = call("GET", f"{px.url}/org/private/resolve/main/big.safetensors", headers=ALLOWED | {"Range": "bytes=0-9"})
    assert ranged.status == 206


@pytest.fixture
def proxy(tmp_path: Path, hub: FakeHub) -> Iterator[ProxyThread]:
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK) as px:
        fill(px)
        yield px


@pytest.fixture
def admin_proxy(tmp_path: Path, hub: FakeHub) -> Iterator[ProxyThread]:
    with ProxyThread(tmp_path / "home", hub.url, chunk_size=CHUNK, admin_token=ADMIN) as px:
        fill(px)
        yield px


RESTRICTED_REPOS = ("huggingface/org/private", "huggingface/org/gated")
RESTRICTED_HASHES = (b3(SECRET), b3(GATED_W), b3(PRIVATE["config.json"]), SECRET.sha256, GATED_W.sha256,
                     BIG_SECRET.sha256)


def leaks(got: Got) -> list[str]:
    """Restricted repo names and hashes found anywhere in an answer."""
    text = got.body.decode("utf-8", "replace") + json.dumps(dict(got.headers))
    return [s for s in (*RESTRICTED_REPOS, "org/private", "org/gated", *RESTRICTED_HASHES) if s in text]


def not_cached(address: str) -> dict[str, str]:
    """The answer about a repo never fetched: what a hidden one must look like too."""
    repo = "/".join(address.split("/")[:3])
    return {"error": f"{repo} is not in the cache", "kind": "not_found"}


# -- /v1/blobs --------------------------------------------------------------------------------


def test_blob_used_only_by_restricted_files_goes_only_to_allowed_tokens(proxy: ProxyThread) -> None:
    for who, headers in STRANGERS.items():
        for spec in (SECRET, GATED_W, PRIVATE["config.json"]):
            for method in ("GET", "HEAD"):
                got = call(method, f"{proxy.url}/v1/blobs/{b3(spec)}", headers=headers)
                assert got.status == 404, (who, method, got.status)
        unknown = call("GET", f"{proxy.url}/v1/blobs/{'0' * 64}", headers=headers)
        hidden = call("GET", f"{proxy.url}/v1/blobs/{b3(SECRET)}", headers=headers)
        assert hidden.json()["kind"] == unknown.json()["kind"] == "not_found"  # existence does not leak
        conditional = call("GET", f"{proxy.url}/v1/blobs/{b3(SECRET)}", headers=headers | {"If-None-Match": f'"{b3(SECRET)}"'})
        assert conditional.status == 404
    for spec in (SECRET, GATED_W):
        got = call("GET", f"{proxy.url}/v1/blobs/{b3(spec)}", headers=ALLOWED)
        assert got.status == 200 and got.body == spec.read()
        assert got.headers["Cache-Control"].startswith("private"), got.headers  # no shared cache keeps it
    # a blob a public file uses too is public, for everyone and for shared caches
    shared = call("GET", f"{proxy.url}/v1/blobs/{b3(SHARED)}")
    assert shared.status == 200 and shared.body == SHARED
    assert shared.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_a_blob_no_cached_revision_uses_goes_only_to_the_admin(admin_proxy: ProxyThread) -> None:
    url, admin = admin_proxy.url, {"X-Hoard-Admin-Token": ADMIN}
    # a private file pinned, then its repo removed: the blob stays, and no revision says whose it is
    pinned = call("POST", f"{url}/v1/pins", body={"address": "huggingface/org/private/secret.safetensors"},
                  headers=admin)
    assert pinned.status == 201, pinned.body
    removed = call("DELETE", f"{url}/v1/models/huggingface/org/private", headers=admin)
    assert removed.status == 200 and removed.json()["kept_pinned"] == [b3(SECRET)], removed.body
    # and a blob imported without any tree (from a hub cache, say)
    loose, _ = admin_proxy.store.add_bytes(b"a blob of a hub cache imported without its tree\n")
    assert admin_proxy.store.blob_users(b3(SECRET)) == [] and admin_proxy.store.blob_users(loose) == []
    for name, body in ((b3(SECRET), SECRET.read()), (loose, b"a blob of a hub cache imported without its tree\n")):
        for who, headers in {**STRANGERS, "allowed token": ALLOWED, "wrong admin token": {"X-Hoard-Admin-Token": "no"}}.items():
            for method in ("GET", "HEAD"):
                got = call(method, f"{url}/v1/blobs/{name}", headers=headers)
                assert got.status == 404, (name, who, method, got.status)
            unknown = call("GET", f"{url}/v1/blobs/{'0' * 64}", headers=headers)
            hidden = call("GET", f"{url}/v1/blobs/{name}", headers=headers)
            assert hidden.json()["kind"] == unknown.json()["kind"] == "not_found"  # existence does not leak
        got = call("GET", f"{url}/v1/blobs/{name}", headers=admin)
        assert got.status == 200 and got.body == body
        assert got.headers["Cache-Control"].startswith("private"), got.headers  # no shared cache keeps it


# -- listings ---------------------------------------------------------------------------------


def test_listings_name_restricted_repos_only_to_allowed_tokens(hub: FakeHub, proxy: ProxyThread) -> None:
    pin = call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/private/secret.safetensors"},
               headers=ALLOWED)
    assert pin.status == 201, pin.body
    assert call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/gated"}, headers=ALLOWED).status == 201
    assert call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/public"}).status == 201
    for who, headers in STRANGERS.items():
        models = call("GET", f"{proxy.url}/v1/models", headers=headers)
        assert models.status == 200 and [r["repo"] for r in models.json()] == ["huggingface/org/public"], who
        pins = call("GET", f"{proxy.url}/v1/pins", headers=headers)
        assert pins.status == 200 and list(pins.json()) == [f"snapshot:huggingface/org/public@{hub.head('org/public')}"]
        cache = call("GET", f"{proxy.url}/v1/cache", headers=headers)
        assert cache.status == 200 and cache.json()["repos"] == 3  # totals count them, never name them
        for got in (models, pins, cache):
            assert leaks(got) == [], (who, got.body[:300])
        for target in ("huggingface/org/private", "huggingface/org/gated", "huggingface/org/private/secret.safetensors",
                       "huggingface/org/private/shared.txt"):
            info = call("GET", f"{proxy.url}/v1/models/{target}", headers=headers)
            assert info.status == 404, (who, target, info.status)
            assert info.json() == not_cached(target), (who, target, info.body[:300])
        public = call("GET", f"{proxy.url}/v1/models/huggingface/org/public", headers=headers)
        assert public.status == 200
    models = call("GET", f"{proxy.url}/v1/models", headers=ALLOWED).json()
    assert [r["repo"] for r in models] == ["huggingface/org/gated", "huggingface/org/private", "huggingface/org/public"]
    info = call("GET", f"{proxy.url}/v1/models/huggingface/org/private", headers=ALLOWED)
    assert info.status == 200 and b3(SECRET) in {f["blake3"] for f in info.json()["files"]}
    assert len(call("GET", f"{proxy.url}/v1/pins", headers=ALLOWED).json()) == 3


# -- plans ------------------------------------------------------------------------------------


def _gc_plan(px: ProxyThread, headers: dict[str, str]) -> Got:
    return call("POST", f"{px.url}/v1/gc", body={"max_size": 0, "dry_run": True}, headers=headers)


def planned(plan: dict[str, Any]) -> set[str]:
    """Every name a gc plan lists: what it would remove, and what it passes over (recently used
    blobs, say)."""
    return {e["name"] for key in ("victims", "kept") for e in plan.get(key, [])}


def test_plans_name_restricted_hashes_only_to_allowed_tokens(proxy: ProxyThread) -> None:
    partial = f"sha256:{BIG_SECRET.sha256}"
    # the partial becomes a victim once its read-ahead let go of it
    wait_for(lambda: partial in planned(_gc_plan(proxy, ALLOWED).json()))
    allowed = _gc_plan(proxy, ALLOWED).json()
    assert {b3(SECRET), b3(GATED_W), b3(SHARED), partial} <= planned(allowed)
    before = {k: v for k, v in call("GET", f"{proxy.url}/v1/cache").json().items() if k.startswith("blob")}
    for who, headers in STRANGERS.items():
        gc = _gc_plan(proxy, headers)
        assert gc.status == 200 and leaks(gc) == [], (who, gc.body[:300])
        assert {b3(PUBLIC["config.json"]), b3(SHARED)} <= planned(gc.json())
        hidden = gc.json().get("hidden_victims", 0) + gc.json().get("hidden_kept", 0)
        assert hidden >= 4, gc.json()
        # totals count what they never name (the partial may still be growing: at least as much)
        assert gc.json()["total_before"] >= allowed["total_before"]
        for target in ("huggingface/org/private", "huggingface/org/gated", "huggingface/org/private/secret.safetensors"):
            dry = call("DELETE", f"{proxy.url}/v1/models/{target}?dry_run=1", headers=headers)
            assert dry.status == 404 and dry.json() == not_cached(target), (who, target, dry.status, dry.body[:300])
        gone = call("DELETE", f"{proxy.url}/v1/models/huggingface/org/private", headers=headers)
        assert gone.status == 404
        pin = call("POST", f"{proxy.url}/v1/pins", body={"address": "huggingface/org/private"}, headers=headers)
        assert pin.status == 404 and pin.json() == not_cached("huggingface/org/private")
        assert call("DELETE", f"{proxy.url}/v1/pins/huggingface/org/private", headers=headers).status == 404
    after = {k: v for k, v in call("GET", f"{proxy.url}/v1/cache").json().items() if k.startswith("blob")}
    assert after == before  # refused deletes removed nothing
    dry = call("DELETE", f"{proxy.url}/v1/models/huggingface/org/private?dry_run=1", headers=ALLOWED)
    assert dry.status == 200 and b3(SECRET) in dry.json()["blobs"]
    assert b3(SHARED) not in dry.json()["blobs"]  # the public repo still uses it


def test_admin_token_holder_sees_every_listing_but_no_private_bytes(admin_proxy: ProxyThread) -> None:
    url, admin = admin_proxy.url, {"X-Hoard-Admin-Token": ADMIN}
    models = call("GET", f"{url}/v1/models", headers=admin).json()
    assert [r["repo"] for r in models] == ["huggingface/org/gated", "huggingface/org/private", "huggingface/org/public"]
    gc = call("POST", f"{url}/v1/gc", body={"max_size": 0, "dry_run": True}, headers=admin)
    assert gc.status == 200 and b3(SECRET) in planned(gc.json())
    assert call("GET", f"{url}/v1/models/huggingface/org/private", headers=admin).status == 200
    # a wrong admin token is a stranger's
    assert [r["repo"] for r in call("GET", f"{url}/v1/models", headers={"X-Hoard-Admin-Token": "nope"}).json()] == [
        "huggingface/org/public"
    ]
    assert call("GET", f"{url}/v1/blobs/{b3(SECRET)}", headers=admin).status == 404
    assert call("GET", f"{url}/v1/blobs/{b3(SECRET)}", headers=admin | ALLOWED).status == 200


# -- admin endpoints beyond loopback ------------------------------------------------------------


def _local(url: str) -> str:
    """The URL of a proxy listening on 0.0.0.0, reached over loopback."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))


def test_admin_endpoints_beyond_loopback_need_an_admin_token(hub: FakeHub, tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "home", hub.url, "--listen", "0.0.0.0:0", env=serve_env()) as srv:
        url = _local(srv.url)
        for method, target, body in (("POST", "/v1/gc", {"dry_run": True}),
                                     ("POST", "/v1/prefetch", {"address": "huggingface/org/public"}),
                                     ("POST", "/v1/pins", {"address": "huggingface/org/public"}),
                                     ("DELETE", "/v1/models/huggingface/org/public?dry_run=1", None),
                                     ("DELETE", "/v1/pins/huggingface/org/public", None)):
            got = call(method, url + target, body=body)
            assert got.status == 403, (target, got.status, got.body)
            assert got.json()["kind"] == "access_denied" and "--admin-token-file" in got.json()["error"]
        assert call("GET", f"{url}/v1/cache").status == 200  # reading stays open
        assert call("GET", f"{url}/org/public/resolve/main/config.json").status == 200
        log = srv.stop()
    assert "admin endpoints (prefetch, delete, gc, pins) are off" in log, log[-2000:]
    # with a token read from a file (so it is not in the process list), they are on
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN + "\n")
    with ServeProcess(tmp_path / "home", hub.url, "--listen", "0.0.0.0:0", "--admin-token-file", str(token_file),
                      env=serve_env()) as srv:
        assert srv.proc is not None and ADMIN not in " ".join(srv.proc.args)
        url = _local(srv.url)
        assert call("POST", f"{url}/v1/gc", body={"dry_run": True}).status == 403
        assert call("POST", f"{url}/v1/gc", body={"dry_run": True}, headers={"X-Hoard-Admin-Token": ADMIN}).status == 200
        log = srv.stop()
    assert ADMIN not in log and "admin endpoints need the X-Hoard-Admin-Token header" in log, log[-2000:]
