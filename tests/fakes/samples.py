"""Sample repository contents loaded into the fake Hub by more than one test module, and
what a client should receive for a file spec (`data_of`, `sha`, `git_sha1`).

`TINY` is a small model repo that still exercises the awkward cases: nested folders, a
space and non-ASCII characters in a name, JSON the Hub serves gzip-encoded, and one LFS
file of a few MiB. `GOOD` and `OTHER` are the tokens a gated or private repo does and does
not grant.
"""

from __future__ import annotations

import hashlib
import json

from .content import Content

__all__ = ["CONFIG", "GOOD", "OTHER", "TINY", "data_of", "git_sha1", "sha"]

MiB = 1 << 20
GOOD, OTHER = "hf_good_token", "hf_other_token"
CONFIG = json.dumps({"model_type": "bert", "hidden_size": 32, "vocab": ["tok"] * 300}).encode()
TINY: dict[str, bytes | Content] = {
    "config.json": CONFIG,
    "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "WordPiece"}}).encode(),
    "sub/c.txt": b"c\n",
    "sub/dir/b.txt": b"nested\n",
    "with space \u00e9.txt": "unicode \u2713\n".encode(),
    "model.safetensors": Content("tiny-model", 3 * MiB + 17),
}


def data_of(spec: bytes | Content) -> bytes:
    return spec.read() if isinstance(spec, Content) else spec


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
