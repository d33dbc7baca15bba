"""Reading Ritual uploads from what a gateway says: GraphQL nodes and manifests, as tree entries.

Everything here is pure (no requests): :mod:`.arweave` fetches, these functions judge. What a
gateway answers is origin input, checked like a client's (shared/reference/sources.md §1.4):

* a **repo manifest** is a transaction tagged ``App-Name=Ritual``, ``Type=manifest`` and
  ``Repo-Name=<repo>``, signed by ``<owner>``; its data is an ``arweave/paths`` manifest;
* a manifest path becomes a file only if it passes the client-path rules and is not also a
  folder of another path (a file path in exports, a directory in the mount);
* a **sectioned file** (``File-Type: Sectioned``, ritual-arweave 0.2.0) is a manifest of
  ``0.section`` … ``N.section`` transactions, each tagged with the whole file's tags (its
  ``File-SHA256`` included) and its own size; its own ``File-Size`` tag is the whole size;
* a file's identity is ``sha256:<File-SHA256>`` (its tx id an extra alias ``ar:<txid>``), or,
  without that tag, ``ar:<txid>``, verified by its length only (``meta["unverified"]``). A
  sectioned file's tx holds the manifest of its sections, not its bytes: it never becomes an
  ``ar:`` name of the file (``arsections:<txid>`` when no hash names it).

``meta`` of an entry: ``tx`` (the transaction the manifest names), ``content_type``,
``file_version``, ``sections`` (``[[txid, size], ...]`` in order), ``aliases``, ``unverified``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from hoard.store.address import check_path
from hoard.store.errors import InvalidAddress, OriginError
from hoard.store.records import ExpectedHash, TreeEntry

__all__ = [
    "TXID",
    "MANIFEST_TYPE",
    "UNTAGGED",
    "tags_of",
    "unix_time",
    "height_of",
    "parse_manifest",
    "usable_paths",
    "is_repo_manifest",
    "section_order",
    "file_entry",
    "read_plan",
]

log = logging.getLogger("hoard.sources.arweave")

TXID = re.compile(r"[A-Za-z0-9_-]{43}")
MANIFEST_TYPE = "application/x.arweave-manifest+json"
#: why an untagged file is verified by its length only (its ``meta["unverified"]``)
UNTAGGED = "no File-SHA256 tag on Arweave: verified by its length only"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SECTION = re.compile(r"(0|[1-9]\d{0,8})\.section")


def tags_of(node: dict[str, Any]) -> dict[str, str]:
    """A GraphQL node's tags as a dict (the first value of a repeated name wins)."""
    out: dict[str, str] = {}
    tags = node.get("tags")
    for tag in tags if isinstance(tags, list) else ():
        if isinstance(tag, dict) and isinstance(tag.get("name"), str) and isinstance(tag.get("value"), str):
            out.setdefault(tag["name"], tag["value"])
    return out


def unix_time(node: dict[str, Any]) -> float | None:
    """The ``Unix-Time`` tag as a number (None if absent or not a finite number)."""
    try:
        value = float(tags_of(node).get("Unix-Time", ""))
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None  # no NaN, no inf


def height_of(node: dict[str, Any]) -> int:
    """The block height of a node; -1 while pending."""
    block = node.get("block")
    height = block.get("height") if isinstance(block, dict) else None
    return height if isinstance(height, int) else -1


def _data_size(node: dict[str, Any] | None) -> int | None:
    data = node.get("data") if isinstance(node, dict) else None
    try:
        size = int(data.get("size")) if isinstance(data, dict) else -1
    except (TypeError, ValueError):
        return None
    return size if size >= 0 else None


def _owner(node: dict[str, Any]) -> str | None:
    owner = node.get("owner")
    address = owner.get("address") if isinstance(owner, dict) else None
    return address if isinstance(address, str) else None


def parse_manifest(raw: bytes, what: str) -> dict[str, str]:
    """``arweave/paths`` manifest → {path: txid}; anything else is an origin error."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise OriginError(f"{what}: the manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("manifest") != "arweave/paths" or not isinstance(doc.get("paths"), dict):
        raise OriginError(f"{what}: not an arweave/paths manifest")
    out: dict[str, str] = {}
    for path, ref in doc["paths"].items():
        txid = ref.get("id") if isinstance(ref, dict) else None
        if isinstance(txid, str) and TXID.fullmatch(txid):
            out[path] = txid
        else:
            log.warning("%s: manifest entry %r ignored (no valid tx id)", what, str(path)[:100])
    return out


def usable_paths(paths: dict[str, str], what: str) -> dict[str, str]:
    """The manifest's paths that can be files: a name that breaks the client-path rules (it
    would become a URL and a file path in exports), or that is also a folder of another
    path, is dropped with a warning."""
    folders = {p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1)}
    out: dict[str, str] = {}
    for path, txid in sorted(paths.items()):
        try:
            check_path(path)
        except (InvalidAddress, TypeError, AttributeError) as exc:
            log.warning("%s: dropped %r from the manifest: %s", what, str(path)[:100], exc)
            continue
        if path in folders:
            log.warning("%s: dropped %r from the manifest: it is also a folder of other files", what, path[:100])
            continue
        out[path] = txid
    return out


def is_repo_manifest(node: dict[str, Any], owner: str, repo: str) -> bool:
    """A Ritual repo-manifest transaction of this owner and repo (GraphQL filters on the same
    tags, but its answer is checked like any origin input)."""
    tags = tags_of(node)
    return (
        isinstance(node.get("id"), str) and TXID.fullmatch(node["id"]) is not None
        and _owner(node) == owner and tags.get("App-Name") == "Ritual"
        and tags.get("Type") == "manifest" and tags.get("Repo-Name") == repo
    )


def section_order(named: dict[str, str], what: str) -> list[str] | None:
    """The section tx ids of a sectioned file's manifest, in order; None (and a warning)
    unless its paths are exactly ``0.section`` … ``N.section`` (listed in any order)."""
    numbered = sorted((int(m.group(1)), t) for n, t in named.items() if (m := _SECTION.fullmatch(n)))
    if not numbered or len(numbered) != len(named) or [n for n, _ in numbered] != list(range(len(numbered))):
        log.warning("%s: a sectioned file does not list 0.section..N.section; left out", what)
        return None
    return [t for _, t in numbered]


def _sectioned(node: dict[str, Any], sections: list[dict[str, Any]], meta: dict[str, Any], what: str) -> tuple[int, str] | None:
    """(size, claimed sha256) of a sectioned file, its sections recorded in ``meta``; None
    when the sections disagree with each other or with the manifest's ``File-Size``."""
    sizes = [_data_size(s) for s in sections]
    claims = {tags_of(s).get("File-SHA256", "").strip().lower() for s in sections}
    size = sum(n or 0 for n in sizes)
    if None in sizes or len(claims) != 1 or tags_of(node).get("File-Size", str(size)) != str(size):
        log.warning("%s: the sections of %s disagree on the file's size or hash; left out", what, node["id"])
        return None
    meta["sections"] = [[s["id"], n] for s, n in zip(sections, sizes, strict=True)]
    return size, claims.pop()


def file_entry(node: dict[str, Any], sections: list[dict[str, Any]] | None, what: str) -> TreeEntry | None:
    """The tree entry of one file transaction (``sections``: the section nodes, in order, of
    a sectioned one); None (and a warning) when it does not describe a usable file."""
    tags = tags_of(node)
    txid: str = node["id"]
    sectioned = tags.get("File-Type") == "Sectioned"
    if sectioned and not sections:
        return None
    # a sectioned file's own tags (type, version) are on its sections, not on its manifest
    file_tags = tags_of(sections[0]) if sectioned and sections else tags
    meta: dict[str, Any] = {"tx": txid}
    for tag, key in (("Content-Type", "content_type"), ("File-Version", "file_version")):
        if file_tags.get(tag):
            meta[key] = file_tags[tag]
    if sectioned and sections:
        found = _sectioned(node, sections, meta, what)
    elif tags.get("Content-Type") == MANIFEST_TYPE:
        log.warning("%s: %s is a nested manifest, not a file; left out", what, txid)
        return None
    else:
        size = _data_size(node)
        found = None if size is None else (size, tags.get("File-SHA256", "").strip().lower())
        if found is None:
            log.warning("%s: the gateway gives no size for %s; left out", what, txid)
    if found is None:
        return None
    size, sha = found
    if _SHA256.fullmatch(sha):
        if not sectioned:  # a sectioned file's tx holds its manifest, not its bytes: no ar: name
            meta["aliases"] = [f"ar:{txid}"]
        return TreeEntry.of_hash(size, ExpectedHash("sha256", sha), meta)
    meta["unverified"] = UNTAGGED
    return TreeEntry(size, f"{'arsections' if sectioned else 'ar'}:{txid}", meta, None)


def read_plan(meta: dict[str, Any], identity: str, size: int, what: str) -> list[tuple[str, int]]:
    """The transactions holding a file's bytes, in order, with their sizes: its ``sections``,
    or its one ``tx``. A stored tree may come from a bundle, so this is checked again here:
    every id is a tx id (it becomes a URL) and the sizes add up to the file's."""
    sections = meta.get("sections")
    if sections and isinstance(sections, list):
        plan = [tuple(s) for s in sections if isinstance(s, (list, tuple)) and len(s) == 2]
    else:
        plan = [] if sections else [(meta.get("tx") or identity.removeprefix("ar:"), size)]
    ok = plan and len(plan) == len(sections or [None]) and all(
        isinstance(t, str) and TXID.fullmatch(t) and isinstance(n, int) and not isinstance(n, bool) and n >= 0
        for t, n in plan
    )
    if not ok or sum(n for _, n in plan) != size:  # type: ignore[misc]
        raise OriginError(f"{what}: its stored transaction list is malformed; remove the repo and fetch it again")
    return plan  # type: ignore[return-value]
