"""Seed the weave with exactly what Ritual's ``RepoManager.upload_repo`` writes.

ritual-arweave 0.2.0 (``App-Version: 0.2.0``; reference sources.md §1.4, read in its code):

* one data tx per file, tags built as the dict ``{**extra_file_tags[rel], Content-Type,
  File-Version, File-Name, File-SHA256, App-Name=Ritual, App-Version, Unix-Time, Repo-Name}``
  plus ``File-Size`` (this tx's data size); ``Content-Type`` is ``mimetypes.guess_type`` or
  ``application/octet-stream``; ``Unix-Time`` is ``str(time.time())``, one value per upload;
* a file of ``>= max_upload_size`` bytes (default 5,120,000) becomes ``N.section`` txs, each
  carrying the *whole file's* tags plus its own ``File-Size``, then a **sectioned manifest**
  (``arweave/paths`` JSON, paths in completion order — arbitrary) tagged Content-Type
  ``application/x.arweave-manifest+json``, ``Type=manifest``, App-Name, App-Version,
  ``File-Type=Sectioned``, ``File-Size=<whole>``, its *own* later ``Unix-Time`` and
  ``File-Name=<basename>`` — no ``Repo-Name``;
* last, the repo manifest ``{"manifest":"arweave/paths","version":"0.1.0","paths":{...}}``
  (``json.dumps`` default separators) tagged Content-Type, Type, App-Name, App-Version,
  Unix-Time, Repo-Name. It points at the sectioned manifest for a sectioned file.

ritual-arweave 0.1.1 (what infernet-ml 2.0.0 installs): the same with ``App-Version: 0.1.0``,
no ``File-Size`` and never sectioned. `infernet_manifest` writes the ``ritual_manifest.json``
infernet-ml's ``ModelManager.download_model`` requires in a repo.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..content import Content
from .identity import FakeWallet
from .model import Tx, Weave

__all__ = ["MANIFEST_TYPE", "MAX_UPLOAD_SIZE", "RitualFile", "RitualRepo", "infernet_manifest", "seed_repo"]

MANIFEST_TYPE = "application/x.arweave-manifest+json"
#: ritual-arweave 0.2.0 ``MAXIMUM_UPLOAD_SIZE`` (1000 * 1024 * 5).
MAX_UPLOAD_SIZE = 5_120_000


def paths_manifest(paths: Mapping[str, str]) -> bytes:
    """ar ``Manifest(paths).tobytes()``: version 0.1.0, no index."""
    body = {"manifest": "arweave/paths", "version": "0.1.0", "paths": {p: {"id": i} for p, i in paths.items()}}
    return json.dumps(body).encode()


@dataclass
class RitualFile:
    path: str  # File-Name (relative path)
    content: Content
    txid: str  # what the repo manifest points at (the sectioned manifest, if sectioned)
    sections: list[str] = field(default_factory=list)  # section txids in section order


@dataclass
class RitualRepo:
    owner: str  # uploader address
    name: str
    manifest_id: str
    unix_time: str
    app_version: str
    files: dict[str, RitualFile]
    txids: list[str]  # every tx of the upload, in upload order

    @property
    def repo_id(self) -> str:
        """``owner/name`` (ritual-arweave's ArRepoId string)."""
        return f"{self.owner}/{self.name}"


def seed_repo(
    weave: Weave,
    wallet: FakeWallet,
    name: str,
    files: Mapping[str, bytes | str | Content],
    *,
    app_version: str = "0.2.0",
    max_upload_size: int = MAX_UPLOAD_SIZE,
    unix_time: float,
    file_versions: Mapping[str, str] | None = None,
    extra_file_tags: Mapping[str, Mapping[str, str]] | None = None,
    wrong_sha256: Iterable[str] = (),
    missing_sha256: Iterable[str] = (),
    section_order: str = "by-id",
) -> RitualRepo:
    """Write one ``upload_repo`` of ``files`` (pending; the caller mines). ``wrong_sha256`` /
    ``missing_sha256`` name files whose ``File-SHA256`` tag is wrong / left out.
    ``section_order`` orders a sectioned manifest's paths: ``by-id`` (arbitrary but stable, like
    the real completion order), ``ascending`` or ``descending`` by section number."""
    sectioning = app_version not in ("0.1.0",)
    wrong, missing = set(wrong_sha256), set(missing_sha256)
    unknown = (wrong | missing) - set(files)
    if unknown:
        raise KeyError(f"not in files: {sorted(unknown)}")
    ritual_tags = {"App-Name": "Ritual", "App-Version": app_version, "Unix-Time": str(unix_time), "Repo-Name": name}
    manifest: dict[str, str] = {}
    out: dict[str, RitualFile] = {}
    txids: list[str] = []

    def send(tags: Mapping[str, str], data: Content) -> Tx:
        tx = weave.create(wallet, list(tags.items()), data)
        txids.append(tx.id)
        return tx

    for rel, spec in files.items():
        content = Content.of(spec)
        digest = content.sha256
        if rel in wrong:
            digest = hashlib.sha256(b"not " + digest.encode()).hexdigest()
        tags: dict[str, str] = {
            **(extra_file_tags or {}).get(rel, {}),
            "Content-Type": mimetypes.guess_type(rel)[0] or "application/octet-stream",
            "File-Version": (file_versions or {}).get(rel, "0.0.0"),
            "File-Name": rel,
            "File-SHA256": digest,
            **ritual_tags,
        }
        if rel in missing:
            del tags["File-SHA256"]
        if not sectioning:
            out[rel] = RitualFile(rel, content, send(tags, content).id)
        elif content.size < max_upload_size:
            out[rel] = RitualFile(rel, content, send({**tags, "File-Size": str(content.size)}, content).id)
        else:
            sections = []
            for start in range(0, content.size, max_upload_size):
                part = Content.from_bytes(content.read(start, start + max_upload_size))
                sections.append(send({**tags, "File-Size": str(part.size)}, part).id)
            named = {f"{i}.section": t for i, t in enumerate(sections)}
            order = {
                "by-id": sorted(named, key=named.__getitem__),
                "ascending": list(named),
                "descending": list(reversed(named)),
            }[section_order]
            section_tags = {
                "Content-Type": MANIFEST_TYPE,
                "Type": "manifest",
                "App-Name": "Ritual",
                "App-Version": app_version,
                "File-Type": "Sectioned",
                "File-Size": str(content.size),
                "Unix-Time": str(unix_time + 0.25),  # taken after the sections went up
                "File-Name": rel.rsplit("/", 1)[-1],  # file_path.name: the basename
            }
            body = Content.from_bytes(paths_manifest({k: named[k] for k in order}))
            out[rel] = RitualFile(rel, content, send(section_tags, body).id, sections)
        manifest[rel] = out[rel].txid
    repo_tags = {"Content-Type": MANIFEST_TYPE, "Type": "manifest", **ritual_tags}
    manifest_tx = send(repo_tags, Content.from_bytes(paths_manifest(manifest)))
    return RitualRepo(wallet.address, name, manifest_tx.id, str(unix_time), app_version, out, txids)


def infernet_manifest(owner: str, name: str, files: Mapping[str, bytes | str | Content]) -> bytes:
    """A ``ritual_manifest.json`` as infernet-ml's ``RitualArtifactManager.to_dir`` writes it for
    a ``ModelArtifact`` (``files``, ``metadata`` of `MlModelInfo` — ``cpu_cores`` must not be
    null — ``repo_id``, ``artifact_type``, ``file_hashes``)."""
    repo = f"arweave/{owner}/{name}"
    body = {
        "files": list(files),
        "metadata": {
            f: {"id": f"{repo}:{f}", "cpu_cores": 1, "memory_requirements": 1 << 20, "max_position_embeddings": None}
            for f in files
        },
        "repo_id": repo,
        "artifact_type": "ModelArtifact",
        "file_hashes": {f: Content.of(c).sha256 for f, c in files.items()},
    }
    return json.dumps(body, indent=4).encode()
