"""Access control that outlives the cache: repos that turn private, admin endpoints."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from .fakes.hub import FakeHub
from .harness import ProxyThread


def status(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_repo_turned_private_is_not_served_from_cache_by_commit(tmp_path: Path) -> None:
    with FakeHub() as hub, ProxyThread(tmp_path / "home", hub.url, refs_ttl=0.0, access_ttl=0.0) as px:
        commit = hub.add_repo("org/m", {"model.safetensors": b"weights" * 1000, "config.json": b"{}"})
        url = f"{px.url}/org/m/resolve/{commit}/model.safetensors"
        assert status(url) == 200  # cached now
        assert status(f"{px.url}/v1/models/huggingface/org/m") == 200
        hub.set_access("org/m", private=True, allowed_tokens={"good"})
        assert status(url) in (401, 404)
        assert status(f"{px.url}/v1/files/huggingface/org/m@{commit}/model.safetensors") in (401, 403, 404)
        assert status(f"{px.url}/v1/models/huggingface/org/m") in (401, 403, 404)  # no BLAKE3s for strangers
        assert status(url, headers={"Authorization": "Bearer good"}) == 200


def test_admin_token_guards_what_changes_the_store(tmp_path: Path) -> None:
    with FakeHub() as hub, ProxyThread(tmp_path / "home", hub.url, admin_token="s3cret") as px:
        hub.add_repo("org/m", {"config.json": b"{}"})
        body = json.dumps({"address": "huggingface/org/m"}).encode()
        hdr = {"Content-Type": "application/json"}
        assert status(f"{px.url}/v1/prefetch", "POST", hdr, body) == 403
        assert status(f"{px.url}/v1/gc", "POST", hdr, b"{}") == 403
        assert status(f"{px.url}/v1/prefetch", "POST", hdr | {"X-Hoard-Admin-Token": "s3cret"}, body) == 202
        assert status(f"{px.url}/v1/cache") == 200  # reading stays open
        assert status(f"{px.url}/healthz") == 200
