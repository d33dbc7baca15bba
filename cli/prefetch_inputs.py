"""What ``hoard prefetch -f FILE`` reads: a list of addresses, a Clarifai ``config.yaml``, or a
Ritual ``ritual_manifest.json``, told apart by content (and name):

* **a list**: one address a line (any form ``hoard prefetch`` takes as an argument); blank
  lines and ``#`` comments (whole lines, or after `` #``) are skipped;
* **a Clarifai model's config.yaml**: its ``checkpoints`` section names the model::

      checkpoints:
        type: huggingface            # the only loader Clarifai has
        repo_id: meta-llama/Meta-Llama-3-8B-Instruct
        hf_token: hf_...             # optional; for this repo only
        when: runtime                # optional: upload | build | runtime (all mean "fetch it")
        allowed_file_patterns: ["*.safetensors", "*.json"]   # optional (Clarifai's), as --include
        ignore_file_patterns: ["original/*"]                 # optional, as --exclude

  ``hf_token`` becomes the credential of that one repo (``Credentials.for_source``): it is
  sent to the Hub for it alone, and never stored, printed or logged;
* **a ritual_manifest.json** (what ``hoard push`` and infernet-ml write): ``files`` and, for
  each, ``metadata.<file>.id``, the model id ``<storage>/<owner>/<repo>:<file>``
  (``repo_id`` and the file name where an id is missing). Exactly those files are fetched.

Anything else is refused with a message saying what each kind would need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoard.proxy.origin import Credentials
from hoard.store.address import Address, check_path, parse_address
from hoard.store.errors import InvalidAddress, UsageError

__all__ = ["Wanted", "read_inputs"]

_KINDS = "a list of addresses (one a line), a Clarifai config.yaml (checkpoints:) or a ritual_manifest.json"
_WHEN = ("upload", "build", "runtime")


@dataclass(frozen=True)
class Wanted:
    """One thing to prefetch as an input names it: ``text`` is expanded like an ADDRESS
    argument unless ``addresses`` already holds what it names (``exact``: files, not folders)."""

    text: str
    origin: str
    addresses: tuple[Address, ...] = ()
    exact: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: credentials for this entry alone (a Clarifai hf_token); None: the user's own
    creds: Credentials | None = field(default=None, repr=False)


def read_inputs(path: Path) -> list[Wanted]:
    """Everything ``path`` names; UsageError when it is none of the three kinds."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"-f {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise UsageError(f"-f {path}: not text; expected {_KINDS}")
    stripped = text.lstrip()
    if path.suffix == ".json" or stripped.startswith(("{", "[")):
        return _ritual(path, text)
    doc = _yaml(path, text)
    if isinstance(doc, dict):
        return _clarifai(path, doc)
    return _list(path, text)


def _yaml(path: Path, text: str) -> Any:
    import yaml  # PyYAML, which huggingface_hub depends on too

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if path.suffix in (".yaml", ".yml"):
            raise UsageError(f"-f {path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        return None  # a list of addresses need not be YAML


def _list(path: Path, text: str) -> list[Wanted]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if entry and not entry.startswith("#"):
            out.append(Wanted(entry, f"{path}:{number}"))
    if not out:
        raise UsageError(f"-f {path}: names no address (expected {_KINDS})")
    return out


def _clarifai(path: Path, doc: dict[str, Any]) -> list[Wanted]:
    section = doc.get("checkpoints")
    if not isinstance(section, dict):
        raise UsageError(f"-f {path}: a YAML file without a checkpoints: section; expected {_KINDS}")
    kind = section.get("type")
    if kind != "huggingface":
        raise UsageError(f"-f {path}: checkpoints type {kind!r}: only type: huggingface names a model")
    repo_id = section.get("repo_id")
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise UsageError(f"-f {path}: checkpoints repo_id must be <org>/<name>, got {repo_id!r}")
    when = section.get("when", "runtime")
    if when not in _WHEN:
        raise UsageError(f"-f {path}: checkpoints when must be one of {', '.join(_WHEN)}, got {when!r}")
    token = section.get("hf_token")
    if token is not None and not isinstance(token, str):
        raise UsageError(f"-f {path}: checkpoints hf_token must be a string")
    creds = Credentials.for_source("huggingface", token.strip()) if token and token.strip() else None
    return [Wanted(f"huggingface/{repo_id}", str(path), include=_patterns(path, section, "allowed_file_patterns"),
                   exclude=_patterns(path, section, "ignore_file_patterns"), creds=creds)]


def _patterns(path: Path, section: dict[str, Any], key: str) -> tuple[str, ...]:
    value = section.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"-f {path}: checkpoints {key} must be a pattern or a list of patterns")
    return tuple(value)


def _ritual(path: Path, text: str) -> list[Wanted]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"-f {path}: not valid JSON ({exc}); expected {_KINDS}") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise UsageError(f"-f {path}: JSON without a list of files: not a ritual_manifest.json")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    out = []
    for name in files:
        model_id = (meta.get(name) or {}).get("id") if isinstance(meta.get(name), dict) else None
        try:
            addr = _model_file(model_id or f"{doc.get('repo_id')}:{name}")
        except InvalidAddress as exc:
            raise UsageError(f"-f {path}: file {name!r}: {exc}") from None
        out.append(Wanted(f"{addr.repo_key}:{addr.path}", str(path), (addr,), exact=True))
    return out


def _model_file(model_id: str) -> Address:
    """``<storage>/<owner>/<repo>[/<version>]:<file>`` as the file's address (infernet-ml's
    version segment names only a local directory, so it is dropped, as hoard push does)."""
    repo, colon, name = str(model_id).partition(":")
    parts = repo.strip("/").split("/")
    if not colon or len(parts) not in (3, 4) or parts[0] not in ("arweave", "huggingface"):
        raise InvalidAddress(f"model id {model_id!r} is not <storage>/<owner>/<repo>:<file>")
    return parse_address("/".join(parts[:3])).with_path(check_path(name))
