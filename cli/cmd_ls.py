"""``hoard ls [PREFIX]``: cached repos under a prefix, or the files of one repo.

PREFIX may name a repo by an infernet-ml model id (``arweave/<owner>/<repo>:a.onnx,b.onnx``):
then only the files it names are listed.
"""

from __future__ import annotations

from typing import Any

import click

from hoard.store.catalog import default_ref
from hoard.store.sources import source_names

from .common import App, common_options, emit, table
from .config import format_size
from .listing import ls_data
from .online import resolve_online

__all__ = ["ls"]


@click.command("ls")
@click.argument("prefix", required=False, default="")
@click.option("--pinned", is_flag=True, help="Only pinned repos.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="ONNX hub: models with any of these tags.")
@click.option("--model", metavar="NAME", help="ONNX hub: models of this name (case-insensitive).")
@click.option("--opset", type=int, metavar="N", help="ONNX hub: models of this opset.")
@common_options("upstream", "sources")
def ls(app: App, prefix: str, pinned: bool, tags: tuple[str, ...], model: str | None, opset: int | None) -> None:
    """List cached repos (under PREFIX, e.g. huggingface/ or huggingface/org), or the files
    of a repo (PREFIX = <source>/<owner>/<repo>[@rev]; a repo never cached is looked up at
    its origin). For an ONNX hub repo (onnx/onnx/models) it lists the manifest's models,
    filtered like onnx.hub.list_models with --model, --tag and --opset."""
    data = ls_data(app.store, prefix, online=lambda addr: _online(app, addr), pinned=pinned, tags=tags,
                   model=model, opset=opset)  # fmt: skip
    if isinstance(data, list):
        emit(app, data, lambda: _repos(data, prefix))
    elif "models" in data:
        emit(app, data, lambda: _models(data))
    else:
        emit(app, data, lambda: _files(data))


def _online(app: App, addr: Any) -> tuple[str, Any]:
    resolved = resolve_online(app, addr)
    return resolved.revision, resolved.snapshot


def _repos(data: list[dict[str, Any]], prefix: str) -> None:
    if not data:
        where = f" under {prefix}" if prefix else ""
        click.echo(f"nothing cached{where} (sources: {', '.join(source_names())})")
        return
    rows = []
    for r in data:
        source = r["repo"].split("/", 1)[0]
        main = r["refs"].get(default_ref(source)) or (r["revisions"][-1] if r["revisions"] else "-")
        pct = f"{100 * r['cached_bytes'] / r['size']:.0f}%" if r["size"] else "-"
        rows.append([r["repo"], main[:12], str(r["files"]), format_size(r["size"]), pct, "pinned" if r["pinned"] else ""])
    click.echo(table(rows, ["REPO", "REVISION", "FILES", "SIZE", "CACHED", ""]))


def _models(data: dict[str, Any]) -> None:
    rows = [[d["model"], str(d["opset"]), ",".join(d["tags"]), format_size(d["size"]), d["path"],
             "yes" if d["cached"] else ""] for d in data["models"]]  # fmt: skip
    click.echo(f"{data['repo']}@{data['revision'][:12]}: {len(rows)} model(s)")
    click.echo(table(rows, ["MODEL", "OPSET", "TAGS", "SIZE", "PATH", "CACHED"]))


def _files(data: dict[str, Any]) -> None:
    rows = []
    for f in data["files"]:
        complete = f["blake3"] is not None
        pct = "100%" if complete else (f"{100 * f['present'] / f['size']:.0f}%" if f["size"] else "0%")
        rows.append([f["path"], format_size(f["size"]), pct])
    click.echo(f"{data['repo']}@{data['revision']}")
    click.echo(table(rows, ["PATH", "SIZE", "CACHED"]))
