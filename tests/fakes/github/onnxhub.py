"""A fake ONNX Model Hub (the onnx/models repository as onnx ≤ 1.20.1 ``onnx.hub`` reads it)
on a `FakeGitHub`.

``onnx.hub`` fetches ``ONNX_HUB_MANIFEST.json`` from the raw host and every model and test-data
tarball from the media host (LFS objects), and checks their sha256 against the manifest
(``model_sha``, ``model_with_data_sha``); it never calls the API. `OnnxHub` builds real tiny
models with ``onnx.helper`` (Relu, Add, Identity at any opset), their ``.tar.gz`` in the model
zoo's layout (one top-level directory holding ``model.onnx`` and
``test_data_set_0/input_0.pb``/``output_0.pb``), writes the manifest in onnx 1.20.1's format
and commits it all (models and tarballs LFS-tracked) with `publish`. An entry added with
``in_tree=False`` is listed in the manifest but absent from the repository, as legacy entries
of the real manifest are: the media host answers it 404. `wrong_sha` makes the media host
serve other bytes for a model. onnx and numpy are imported only when a model is built.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

from .fake import FakeGitHub
from .hosts import WrongBytes

__all__ = ["OnnxEntry", "OnnxHub", "build_model"]

MANIFEST = "ONNX_HUB_MANIFEST.json"
_IR_FOR_OPSET = [(8, 3), (9, 4), (10, 5), (11, 6), (12, 7), (14, 7), (15, 8), (18, 8), (19, 9), (21, 10)]


def _ir_version(opset: int) -> int:
    """The IR version the onnx release that introduced ``opset`` wrote (so old readers cope)."""
    ir = 3
    for first, version in _IR_FOR_OPSET:
        if opset >= first:
            ir = version
    return ir


def build_model(op: str, opset: int, name: str) -> tuple[bytes, list[bytes], list[bytes], dict[str, Any]]:
    """``(model bytes, input .pb files, output .pb files, io_ports)`` of a one-node model."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 4]
    inputs = ["x", "y"] if op == "Add" else ["x"]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["z"])],
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in inputs],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=_ir_version(opset), producer_name="fake-hub"
    )
    rng = np.random.default_rng(opset)
    arrays = [rng.standard_normal(shape).astype(np.float32) for _ in inputs]
    result = {"Relu": lambda a: np.maximum(a[0], 0), "Add": lambda a: a[0] + a[1], "Identity": lambda a: a[0]}[op](
        arrays
    )
    ins = [numpy_helper.from_array(a, n).SerializeToString() for a, n in zip(arrays, inputs, strict=True)]
    outs = [numpy_helper.from_array(result.astype(np.float32), "z").SerializeToString()]
    port = {"shape": shape, "type": "tensor(float)"}
    io_ports = {"inputs": [{"name": n, **port} for n in inputs], "outputs": [{"name": "z", **port}]}
    return model.SerializeToString(), ins, outs, io_ports


def model_tarball(top: str, model: bytes, inputs: list[bytes], outputs: list[bytes]) -> bytes:
    """A deterministic ``.tar.gz``: ``top/model.onnx`` and ``top/test_data_set_0/*.pb``."""
    members = [(f"{top}/", None), (f"{top}/model.onnx", model), (f"{top}/test_data_set_0/", None)]
    members += [(f"{top}/test_data_set_0/input_{i}.pb", b) for i, b in enumerate(inputs)]
    members += [(f"{top}/test_data_set_0/output_{i}.pb", b) for i, b in enumerate(outputs)]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uname, info.gname = 1_600_000_000, "onnx", "onnx"
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass
class OnnxEntry:
    """One manifest entry and the files behind it."""

    model: str
    opset: int
    model_path: str
    model_bytes: bytes
    tar_path: str
    tar_bytes: bytes
    tags: list[str]
    io_ports: dict[str, Any]
    in_tree: bool = True
    onnx_version: str = "1.14"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_sha(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()

    @property
    def tar_sha(self) -> str:
        return hashlib.sha256(self.tar_bytes).hexdigest()

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_path": self.model_path,
            "onnx_version": self.onnx_version,
            "opset_version": self.opset,
            "metadata": {
                "model_sha": self.model_sha,
                "model_bytes": len(self.model_bytes),
                "tags": self.tags,
                "io_ports": self.io_ports,
                "model_with_data_path": self.tar_path,
                "model_with_data_sha": self.tar_sha,
                "model_with_data_bytes": len(self.tar_bytes),
                **self.extra,
            },
        }


class OnnxHub:
    """``hub = OnnxHub(gh); hub.add("Tiny-Relu", "Relu", 13, tags=["vision"]); hub.publish()``."""

    def __init__(self, github: FakeGitHub, repo: str = "onnx/models", ref: str = "main") -> None:
        self.github, self.repo, self.ref = github, repo, ref
        self.entries: list[OnnxEntry] = []

    def add(self, model: str, op: str, opset: int, *, tags: list[str] | None = None, in_tree: bool = True) -> OnnxEntry:
        slug = model.lower().replace(" ", "-")
        folder = f"validated/vision/fake/{slug}/model"
        data, ins, outs, ports = build_model(op, opset, slug)
        tar = model_tarball(slug, data, ins, outs)
        entry = OnnxEntry(model, opset, f"{folder}/{slug}-{opset}.onnx", data, f"{folder}/{slug}-{opset}.tar.gz",
                          tar, list(tags or [op.lower()]), ports, in_tree)  # fmt: skip
        self.entries.append(entry)
        return entry

    def manifest(self) -> bytes:
        return json.dumps([e.manifest_entry() for e in self.entries], indent=2).encode()

    def publish(self, message: str = "Update ONNX_HUB_MANIFEST.json") -> str:
        """Commit the manifest and every in-tree model/tarball to ``ref``; returns the sha."""
        files: dict[str, bytes | None] = {MANIFEST: self.manifest()}
        for e in self.entries:
            files[e.model_path] = e.model_bytes if e.in_tree else None
            files[e.tar_path] = e.tar_bytes if e.in_tree else None
        try:
            self.github.repo(self.repo)
        except KeyError:
            real = {k: v for k, v in files.items() if v is not None}
            self.github.add_repo(self.repo, real, default_branch=self.ref, message=message)
            return self.github.head(self.repo, self.ref).sha
        return self.github.commit(self.repo, files, branch=self.ref, message=message)

    def wrong_sha(self, entry: OnnxEntry, *, tarball: bool = False) -> WrongBytes:
        """The media host serves other bytes for the model (or its tarball)."""
        return self.github.wrong_bytes(self.repo, entry.tar_path if tarball else entry.model_path, host="media")

    def base_url(self, lfs: bool = False) -> str:
        """What ``onnx.hub._get_base_url(repo, lfs)`` must return to reach this fake."""
        host = self.github.media_url if lfs else self.github.raw_url
        return f"{host}/{self.repo}/{self.ref}/"

    def patch_source(self) -> str:
        """Python that points ``onnx.hub`` at the fake (for a client subprocess)."""
        raw, media = self.github.raw_url, self.github.media_url
        return (
            "import onnx.hub\n"
            f"_FAKE_RAW, _FAKE_MEDIA = {raw!r}, {media!r}\n"
            "def _fake_base_url(repo, lfs=False):\n"
            "    owner, name, ref = onnx.hub._parse_repo_info(repo)\n"
            "    return '/'.join([_FAKE_MEDIA if lfs else _FAKE_RAW, owner, name, ref, ''])\n"
            "onnx.hub._get_base_url = _fake_base_url\n"
        )
