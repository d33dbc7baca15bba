"""``hoard info [ADDRESS]``: what the store holds for a repo or a file (or the whole store).

A file's information says how its bytes are checked (``verified_by``): against a whole-file
hash (``sha256``, ``gitsha1``, ``blake3``, with ``expected`` naming it), or by their length
only, with the reason its source gave (``unverified``: an Arweave file without a
``File-SHA256`` tag, say). An infernet-ml model id (``arweave/<owner>/<repo>:a,b``) shows each
file it names; with several, ``--json`` prints a list.
"""

from __future__ import annotations

from typing import Any

import click

from .common import App, common_options, emit
from .config import format_size
from .listing import info_data, verification

__all__ = ["info", "verification"]

#: keys of a file's information not printed as "key value" lines
_NOT_LINES = ("meta", "expected", "unverified", "verified_by")


@click.command("info")
@click.argument("address", required=False)
@common_options()
def info(app: App, address: str | None) -> None:
    """Show a repo's refs, revisions and cached bytes, a file's hashes, presence and how it
    is verified, or (with no ADDRESS) a summary of the store. ADDRESS may be an infernet-ml
    model id (arweave/<owner>/<repo>:file1,file2)."""
    data = info_data(app.store, address, max_size=app.settings.max_size)
    if not address:
        emit(app, data, _store_lines(data))
    elif isinstance(data, list) or "path" in data:
        docs = data if isinstance(data, list) else [data]
        emit(app, data, "\n\n".join(_file_lines(d) for d in docs))
    else:
        emit(app, data, _repo_lines(data))


def _repo_lines(data: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"repo       {data['repo']}",
            f"revision   {data['revision']}",
            "refs       " + ", ".join(f"{k} -> {v[:12]}" for k, v in data["refs"].items()),
            f"files      {data['files']}",
            f"size       {format_size(data['size'])} ({format_size(data['cached_bytes'])} cached)",
            f"pinned     {'yes' if data['pinned'] else 'no'}",
        ]
    )


def _file_lines(data: dict[str, Any]) -> str:
    lines = [f"{k:<10} {v}" for k, v in data.items() if k not in _NOT_LINES and k != "onnx"]
    how = f"{data['verified_by']} ({data['expected']})" if data["expected"] else f"{data['verified_by']}: {data['unverified']}"
    lines.insert(2, f"{'verified':<10} {how}")
    model = data.get("onnx")
    if model:
        lines.append(f"{'model':<10} {model['model']} (opset {model['opset']}, onnx {model['onnx_version']})")
        lines.append(f"{'tags':<10} {', '.join(model['tags']) or '-'}")
        ports = model.get("io_ports") or {}
        for kind in ("inputs", "outputs"):
            for port in ports.get(kind) or []:
                lines.append(f"{kind[:-1]:<10} {port.get('name')}: {port.get('elem_type')} {port.get('shape')}")
        if model.get("model_with_data_path"):
            lines.append(f"{'test data':<10} {model['model_with_data_path']} ({model.get('model_with_data_bytes')} bytes)")
    return "\n".join(lines)


def _store_lines(data: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"home       {data['home']}",
            f"blobs      {data['blobs']} ({format_size(data['blob_bytes'])})",
            f"partials   {data['partials']} ({format_size(data['partial_bytes'])} present)",
            f"repos      {data['repos']}",
            f"pins       {data['pins']}",
            f"disk free  {format_size(data['disk_free'])}",
        ]
    )
