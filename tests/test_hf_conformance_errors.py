"""Errors through hoard's Hugging Face face, with the REAL client (hf_protocol.md §5, §10.10-12,
§11 item 6), plus wire-level error answers and connection handling.

Same set-up as ``test_hf_conformance``: stock ``huggingface_hub`` 2.x in subprocesses,
``HF_ENDPOINT`` = the in-process proxy, the fake Hub + CDN behind it.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.hub import FakeHub
from tests.fakes.samples import CONFIG, GOOD, OTHER, TINY, data_of, sha
from tests.fixtures import fresh_hub  # noqa: F401  (fixture)
from tests.hfclients.common import (  # noqa: F401  (fixtures)
    GATED_W,
    Proxy,
    Seen,
    hub,
    proxy,
    raw,
    run_client,
    running_proxy,
)

#: makes the client's back-off instant in one subprocess (it would sleep 1+2+4+8+8 s, or
#: Retry-After + 1 per try, before giving up) and records what it would have slept
NO_BACKOFF = """
import time as _time
import huggingface_hub.utils._http as _http_mod
SLEPT = []
class _Clock:
    def __getattr__(self, name):
        return getattr(_time, name)
    def sleep(self, seconds):
        SLEPT.append(seconds)
_http_mod.time = _Clock()
"""


def _err(out: dict[str, Any], name: str) -> dict[str, Any]:
    got = out[name]
    assert "error" in got, f"{name}: expected an error, got {got}"
    return got


# --------------------------------------------------------------------------------------
# 6: error classes the client raises
# --------------------------------------------------------------------------------------


def test_06_error_classes(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    head = hub.head("org/tiny")
    out = run_client(
        proxy.url,
        tmp_path / "client",
        """
        from huggingface_hub import HfApi, hf_hub_download as dl, snapshot_download
        api = HfApi()
        other_cache = os.path.join(HOME, "other-cache")
        attempt("missing_file", lambda: dl("org/tiny", "nope.txt"))
        OUT["no_exist"] = os.path.exists(os.path.join(repo_dir("org/tiny"), ".no_exist", ARGS["head"], "nope.txt"))
        OUT["ref"] = read(os.path.join(repo_dir("org/tiny"), "refs", "main"))
        attempt("missing_in_folder", lambda: dl("org/tiny", "sub/nope.bin"))
        attempt("bad_rev", lambda: dl("org/tiny", "config.json", revision="no-such-branch"))
        attempt("bad_rev_api", lambda: api.model_info("org/tiny", revision="no-such-branch"))
        attempt("bad_rev_snapshot", lambda: snapshot_download("org/tiny", revision="no-such-branch"))
        attempt("unknown_anon_dl", lambda: dl("org/unknown", "config.json", token=False))
        attempt("unknown_anon_api", lambda: api.model_info("org/unknown", token=False))
        attempt("unknown_anon_snapshot", lambda: snapshot_download("org/unknown", token=False))
        attempt("unknown_token_dl", lambda: dl("org/unknown", "config.json", token=ARGS["other"]))
        attempt("unknown_token_api", lambda: api.model_info("org/unknown", token=ARGS["other"]))
        attempt("unknown_dataset", lambda: dl("org/unknown", "x.csv", repo_type="dataset", token=False))
        # private: only GOOD may read it; after GOOD filled the proxy's store, others still may not
        attempt("private_anon", lambda: dl("org/private", "config.json", token=False))
        attempt("private_other", lambda: dl("org/private", "config.json", token=ARGS["other"]))
        attempt("private_good", lambda: sha256(dl("org/private", "config.json", token=ARGS["good"])))
        attempt("private_anon_after", lambda: dl("org/private", "config.json", token=False, cache_dir=other_cache))
        attempt("private_other_after", lambda: api.model_info("org/private", token=ARGS["other"]))
        # gated: metadata public, files only for GOOD, also once cached by the proxy
        attempt("gated_good", lambda: sha256(dl("org/gated", "w.bin", token=ARGS["good"])))
        attempt("gated_anon", lambda: dl("org/gated", "w.bin", token=False, cache_dir=other_cache))
        attempt("gated_other", lambda: dl("org/gated", "w.bin", token=ARGS["other"], cache_dir=other_cache))
        attempt("gated_other_cfg", lambda: dl("org/gated", "config.json", token=ARGS["other"], cache_dir=other_cache))
        attempt("gated_info_anon", lambda: api.model_info("org/gated", token=False).gated)
        attempt("repo_exists", lambda: [api.repo_exists("org/unknown", token=False), api.repo_exists("org/gated", token=False),
                                        api.repo_exists("org/private", token=ARGS["other"])])
    """,
        args={"head": head, "good": GOOD, "other": OTHER},
    )
    missing = _err(out, "missing_file")
    assert missing["error"] == "RemoteEntryNotFoundError" and missing["status"] == 404, missing
    assert out["no_exist"], ".no_exist/<commit>/nope.txt was not written (needs X-Repo-Commit on the 404)"
    assert out["ref"] == head
    assert _err(out, "missing_in_folder")["error"] == "RemoteEntryNotFoundError"
    for name in ("bad_rev", "bad_rev_api", "bad_rev_snapshot"):
        assert _err(out, name)["error"] == "RevisionNotFoundError", (name, out[name])
    for name, status in (
        ("unknown_anon_dl", 401),
        ("unknown_anon_api", 401),
        ("unknown_anon_snapshot", 401),
        ("unknown_token_dl", 404),
        ("unknown_token_api", 404),
        ("unknown_dataset", 401),
        ("private_anon", 401),
        ("private_other", 404),
        ("private_anon_after", 401),
        ("private_other_after", 404),
    ):
        got = _err(out, name)
        assert (got["error"], got["status"]) == ("RepositoryNotFoundError", status), (name, got)
    assert out["private_good"] == {"ok": sha(b'{"private": true}')}
    assert out["gated_good"] == {"ok": GATED_W.sha256}
    for name, status in (("gated_anon", 401), ("gated_other", 403), ("gated_other_cfg", 403)):
        got = _err(out, name)
        assert (got["error"], got["status"]) == ("GatedRepoError", status), (name, got)
    assert out["repo_exists"] == {"ok": [False, True, False]}
    cdn_auth = [r.authorization for r in hub.find(origin="cdn") if r.authorization]
    assert cdn_auth == []
    # like the Hub: a gated repo's metadata stays public, only its files are gated
    assert out["gated_info_anon"] == {"ok": "manual"}


def _snapshot_home(hub: FakeHub, proxy_url: str, home: Path) -> dict[str, Any]:
    return run_client(
        proxy_url,
        home,
        """
        from huggingface_hub import hf_hub_download as dl
        OUT["cfg"] = describe(dl("org/tiny", "config.json"))
        OUT["model"] = describe(dl("org/tiny", "model.safetensors"))
    """,
    )


def test_06_upstream_down_with_cached_file(hub: FakeHub, tmp_path: Path) -> None:
    """The Hub is unreachable: a file cached by the client, or by the proxy, is still served."""
    model = hub.file("org/tiny", "model.safetensors")
    warm_client = tmp_path / "warm-client"
    with running_proxy(tmp_path / "hoard-1", hub.url, refs_ttl=0.0) as px:
        first = _snapshot_home(hub, px.url, warm_client)
        hub.pause()
        # the proxy has it: it serves its last known revision (refs_ttl=0: it did try the Hub)
        mark = px.mark()
        out = _snapshot_home(hub, px.url, tmp_path / "cold-client")
        seen = px.since(mark)
        assert out["cfg"]["sha256"] == sha(CONFIG) and out["model"]["sha256"] == model.sha256
        assert [s for s in seen if s.status >= 300] == []
    # a fresh proxy with nothing cached: the client falls back to its own cache
    with running_proxy(tmp_path / "hoard-2", hub.url) as px:
        mark = px.mark()
        out = _snapshot_home(hub, px.url, warm_client)
        seen = px.since(mark)
    assert out == first
    assert seen and all(s.status in (502, 503, 504) for s in seen), seen  # retryable, never 401/404


def test_06_upstream_down_without_cache(hub: FakeHub, proxy: Proxy, tmp_path: Path) -> None:
    """Nothing cached anywhere and the Hub unreachable: a retryable 5xx, so the client says
    "cannot reach / not cached" (LocalEntryNotFoundError), never "repository not found"."""
    hub.pause()
    for method, path in (
        ("HEAD", "/org/tiny/resolve/main/config.json"),
        ("GET", "/org/tiny/resolve/main/config.json"),
        ("GET", "/api/models/org/tiny"),
        ("GET", "/api/models/org/tiny/revision/main"),
        ("GET", "/api/models/org/tiny/tree/main?recursive=true"),
        ("GET", "/api/datasets/org/ds/tree/main"),
    ):
        status, headers, body = raw(method, proxy.url + path)
        assert status in (502, 503, 504), (method, path, status, dict(headers))
        assert "X-Error-Code" not in headers or headers["X-Error-Code"] not in (
            "RepoNotFound",
            "RevisionNotFound",
            "EntryNotFound",
            "GatedRepo",
        ), dict(headers)
        assert headers.get("X-Error-Message"), dict(headers)
        if method == "GET":
            assert "error" in json.loads(body)
    mark = proxy.mark()
    out = run_client(
        proxy.url,
        tmp_path / "client",
        NO_BACKOFF
        + """
from huggingface_hub import hf_hub_download as dl
attempt("download", lambda: dl("org/tiny", "config.json"))
attempt("lfs", lambda: dl("org/big", "big.bin"))
OUT["slept"] = SLEPT
""",
    )
    seen = proxy.since(mark)
    for name in ("download", "lfs"):
        got = _err(out, name)
        assert got["error"] == "LocalEntryNotFoundError", got
        assert "RepositoryNotFoundError" not in got["mro"] and "GatedRepoError" not in got["mro"], got
    assert out["slept"], "the client did not retry: the proxy's answer was not retryable"
    heads = [s for s in seen if s.method == "HEAD"]
    assert len(heads) >= 4 and all(s.status in (502, 503, 504) for s in heads), seen


# --------------------------------------------------------------------------------------
# §10.10/11: error answers on the wire
# --------------------------------------------------------------------------------------


def _check_error(answer: tuple[int, Any, bytes], status: int, code: str | None, *, method: str = "GET") -> Any:
    got_status, headers, body = answer
    assert got_status == status, (got_status, dict(headers), body[:300])
    assert headers.get("X-Error-Code") == code, dict(headers)
    assert headers.get("X-Error-Message"), dict(headers)
    if method == "GET":
        doc = json.loads(body)
        assert isinstance(doc, dict) and doc.get("error"), doc
    return headers


def test_10_error_answers_on_the_wire(hub: FakeHub, proxy: Proxy) -> None:
    base = proxy.url
    head = hub.head("org/tiny")
    tok = {"Authorization": f"Bearer {OTHER}"}
    # the Hub's bare anti-enumeration 401 gains a code
    _check_error(raw("GET", f"{base}/api/models/org/unknown"), 401, "RepoNotFound")
    _check_error(raw("GET", f"{base}/api/models/org/unknown", tok), 404, "RepoNotFound")
    _check_error(raw("HEAD", f"{base}/org/unknown/resolve/main/config.json"), 401, "RepoNotFound", method="HEAD")
    _check_error(raw("GET", f"{base}/datasets/org/unknown/resolve/main/a.csv", tok), 404, "RepoNotFound")
    for method in ("HEAD", "GET"):
        headers = _check_error(
            raw(method, f"{base}/org/tiny/resolve/main/nope.txt"), 404, "EntryNotFound", method=method
        )
        assert headers["X-Repo-Commit"] == head
        _check_error(
            raw(method, f"{base}/org/tiny/resolve/no-such-branch/config.json"), 404, "RevisionNotFound", method=method
        )
        _check_error(raw(method, f"{base}/org/gated/resolve/main/w.bin"), 401, "GatedRepo", method=method)
        _check_error(raw(method, f"{base}/org/gated/resolve/main/w.bin", tok), 403, "GatedRepo", method=method)
    _check_error(raw("GET", f"{base}/api/models/org/tiny/revision/no-such-branch"), 404, "RevisionNotFound")
    _check_error(raw("GET", f"{base}/api/models/org/tiny/tree/no-such-branch"), 404, "RevisionNotFound")
    _check_error(raw("GET", f"{base}/api/models/org/tiny/tree/main/ghost"), 404, "EntryNotFound")
    # §10.11: unknown API routes answer a fast 404
    for path in ("/api/agent-harnesses", "/api/whatever/else", "/api/models/org/tiny/xet-read-token/" + head):
        status, headers, _ = raw("GET", base + path)
        assert status == 404, (path, status)
    assert hub.count("xet-read-token") == 0 and hub.count("agent-harnesses") == 0
    # the token went to the Hub only
    assert [r.target for r in hub.find(origin="cdn") if r.authorization] == []
    # gated metadata stays public, like on the Hub (only files are gated)
    gated = {
        path: raw("GET", f"{base}/api/models/org/gated{path}")
        for path in ("", "/revision/main", "/tree/main?recursive=true")
    }
    assert {p: a[0] for p, a in gated.items()} == {p: 200 for p in gated}, {
        p: (a[0], a[1].get("X-Error-Code")) for p, a in gated.items()
    }
    assert json.loads(gated[""][2])["gated"] == "manual"


# --------------------------------------------------------------------------------------
# HTTP hygiene: a served file must not break the client's keep-alive connection
# --------------------------------------------------------------------------------------


def test_keepalive_connection_survives_cached_files(hub: FakeHub, proxy: Proxy) -> None:
    """Clients pool connections (httpx, requests). Four GETs of the same file on one
    connection — the first fills the store, the rest are served from the stored blob —
    must all succeed, and the proxy must log no unhandled exception."""
    parts = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    results: list[Any] = []
    try:
        for path in ["config.json"] * 3 + ["model.safetensors"] * 2 + ["config.json"]:
            try:
                conn.request("GET", f"/org/tiny/resolve/main/{path}")
                resp = conn.getresponse()
                body = resp.read()
                results.append((path, resp.status, sha(body) == sha(data_of(TINY[path]))))
            except (ConnectionError, http.client.HTTPException) as exc:
                results.append((path, type(exc).__name__, str(exc)))
                conn.close()
    finally:
        conn.close()
    errors = proxy.server_errors
    expected = [(p, 200, True) for p in ["config.json"] * 3 + ["model.safetensors"] * 2 + ["config.json"]]
    assert (results, errors) == (expected, []), f"results: {results}\nproxy errors: {errors}"
    assert Seen("GET", "/org/tiny/resolve/main/config.json", 200) in proxy.seen


# --------------------------------------------------------------------------------------
# what goes into headers: client input echoed in X-Error-Message
# --------------------------------------------------------------------------------------

#: requests whose error message names what the client sent: control characters, NUL,
#: non-ASCII; one 5000-digit Range
ECHOING = [
    ("/gpt%0d%0a2/resolve/main/config.json", {}),
    ("/gpt%012/resolve/main/config.json", {}),
    ("/api/models/org/tiny/commits/main%00", {}),
    ("/org/tiny/resolve/main/nope%e2%9c%93%01.txt", {}),
    ("/api/models/org/tiny/tree/main/ghost%e2%9c%93", {}),
    ("/api/models/org/unknown%e2%9c%93", {}),
    ("/api/models/org/unknown%7f", {}),
    ("/org/tiny/resolve/main/config.json", {"Range": "bytes=0-" + "9" * 5000}),
]


def test_error_headers_never_carry_raw_client_input(hub: FakeHub, proxy: Proxy) -> None:
    """Each answer is a clean 4xx whose header values are printable ASCII, and the
    keep-alive connection it came on still serves the next request."""
    parts = urlsplit(proxy.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    results = []
    try:
        for target, headers in ECHOING:
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
                resp.read()
                bad = {k: v for k, v in resp.getheaders() if not all(" " <= c <= "~" for c in v)}
                results.append((target, 400 <= resp.status < 500, bool(resp.getheader("X-Error-Message")), bad))
                conn.request("GET", "/api/models/org/tiny")
                follow = conn.getresponse()
                follow.read()
                assert follow.status == 200
            except (ConnectionError, http.client.HTTPException) as exc:
                results.append((target, type(exc).__name__, str(exc), {}))
                conn.close()
    finally:
        conn.close()
    assert results == [(t, True, True, {}) for t, _ in ECHOING], results
    assert proxy.server_errors == []
