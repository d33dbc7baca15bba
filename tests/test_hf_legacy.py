"""Old single-segment repo ids (``gpt2``) are redirected to their canonical ``ns/name``."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from .fakes.hub import FakeHub
from .harness import ProxyThread


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_legacy_id_redirects_and_downloads(tmp_path: Path) -> None:
    with FakeHub() as hub, ProxyThread(tmp_path / "home", hub.url) as px:
        hub.add_repo("openai-community/gpt2", {"config.json": b'{"n_layer": 2}'})
        hub.alias("gpt2", "openai-community/gpt2")
        opener = urllib.request.build_opener(NoRedirect)
        for method in ("HEAD", "GET"):
            req = urllib.request.Request(f"{px.url}/gpt2/resolve/main/config.json", method=method)
            try:
                opener.open(req)
                raise AssertionError("expected a redirect")
            except urllib.error.HTTPError as exc:
                assert exc.code == 307
                assert exc.headers["Location"] == "/openai-community/gpt2/resolve/main/config.json"
        env = dict(os.environ, HF_ENDPOINT=px.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
        code = "from huggingface_hub import hf_hub_download; print(open(hf_hub_download('gpt2', 'config.json')).read())"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == '{"n_layer": 2}'
