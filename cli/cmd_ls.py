"""``hoard ls [PREFIX]``: cached repos under a prefix, or the files of one repo.

PREFIX may name a repo by an infernet-ml model id (``arweave/<owner>/<repo>:a.onnx,b.onnx``):
then only the files it names are listed.
"""

from __future__ import annotations

import click

from hoard.store.address import parse_prefix
from hoard.store.catalog import default_ref, file_state, list_repos, resolve_cached
from hoard.proxy.sources.onnx import filter_models
from hoard.store.address import Address
from hoard.store.errors import NotFound, UsageError
from hoard.store.records import Snapshot
from hoard.store.sources import source_info, source_names

from .common import App, common_options, emit, table
from .config import format_size
from .model_ids import read_target
from .online import resolve_online

__all__ = ["ls"]


def _is_repo_address(prefix: str) -> bool:
    parts = parse_prefix(prefix)
    info = source_info(parts[0]) if parts else None
    need = 4 if info is not None and len(parts) > 1 and parts[1] in info.kinds else 3
    return len(parts) >= need


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
    onnx_filters = bool(tags or model or opset is not None)
    if prefix and _is_repo_address(prefix):
        if onnx_filters or prefix.startswith("onnx/"):
            _ls_onnx(app, prefix, tags, model, opset)
        else:
            _ls_files(app, prefix)
        return
    if onnx_filters:
        raise UsageError("--tag, --model and --opset list the models of an ONNX hub repo: hoard ls onnx/<owner>/<repo>")
    parts = parse_prefix(prefix)
    key = "/".join(parts) + ("/" if parts else "")
    repos = [r for r in list_repos(app.store, key) if r.pinned or not pinned]
    data = [r.as_dict() for r in repos]

    def human() -> None:
        if not repos:
            where = f" under {prefix}" if prefix else ""
            click.echo(f"nothing cached{where} (sources: {', '.join(source_names())})")
            return
        rows = []
        for r in repos:
            source = r.repo.split("/", 1)[0]
            main = r.refs.get(default_ref(source)) or (r.revisions[-1] if r.revisions else "-")
            pct = f"{100 * r.cached / r.size:.0f}%" if r.size else "-"
            rows.append([r.repo, main[:12], str(r.files), format_size(r.size), pct, "pinned" if r.pinned else ""])
        click.echo(table(rows, ["REPO", "REVISION", "FILES", "SIZE", "CACHED", ""]))

    emit(app, data, human)


def _revision(app: App, addr: Address) -> tuple[str, Snapshot]:
    """The revision an address means: from the store, else asked at its origin."""
    try:
        return resolve_cached(app.store, addr)
    except NotFound:
        resolved = resolve_online(app, addr.with_path(""))
        return resolved.revision, resolved.snapshot


def _ls_onnx(app: App, text: str, tags: tuple[str, ...], model: str | None, opset: int | None) -> None:
    addr = read_target(text).addr
    if addr.source != "onnx":
        raise UsageError("--tag, --model and --opset list the models of an ONNX hub repo (onnx/<owner>/<repo>)")
    rev, snap = _revision(app, addr)
    models = filter_models(snap, model=model, tags=list(tags) or None, opset=opset)
    rows_data = []
    for m in models:
        entry = snap.files[m.path]
        rows_data.append({"model": m.model, "opset": m.opset, "tags": list(m.tags), "path": m.path,
                          "size": entry.size, "cached": app.store.resolve(entry.identity) is not None})
    data = {"repo": addr.repo_key, "revision": rev, "models": rows_data}

    def human() -> None:
        rows = [[d["model"], str(d["opset"]), ",".join(d["tags"]), format_size(d["size"]), d["path"],
                 "yes" if d["cached"] else ""] for d in rows_data]
        click.echo(f"{addr.repo_key}@{rev[:12]}: {len(rows)} model(s)")
        click.echo(table(rows, ["MODEL", "OPSET", "TAGS", "SIZE", "PATH", "CACHED"]))

    emit(app, data, human)


def _ls_files(app: App, text: str) -> None:
    target = read_target(text)
    addr = target.addr
    rev, snap = _revision(app, addr)
    missing = [f for f in target.files if f not in snap.files]
    if missing:
        raise NotFound(f"{addr.repo_key}@{rev}: no file {', '.join(map(repr, missing))}")

    def listed(path: str) -> bool:
        if target.files:
            return path in target.files
        return not addr.path or path == addr.path or path.startswith(addr.path + "/")

    states = [file_state(app.store, path, entry) for path, entry in sorted(snap.files.items()) if listed(path)]
    data = {"repo": addr.repo_key, "revision": rev, "files": [s.as_dict() for s in states]}

    def human() -> None:
        rows = []
        for s in states:
            pct = "100%" if s.complete else (f"{100 * s.present / s.entry.size:.0f}%" if s.entry.size else "0%")
            rows.append([s.path, format_size(s.entry.size), pct])
        click.echo(f"{addr.repo_key}@{rev}")
        click.echo(table(rows, ["PATH", "SIZE", "CACHED"]))

    emit(app, data, human)
