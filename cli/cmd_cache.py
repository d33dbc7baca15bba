"""``hoard cache [PREFIX]``: what the cache holds, by repo and by source (``scan-cache`` for hoard).

From the local store by default (read from the index: nothing is hashed or walked on disk),
also on a node whose parent is set (``HOARD_UPSTREAM`` is not read here); with ``--upstream
URL``, from that ``hoard serve`` (``GET /v1/cache``), which adds its hit
ratio and the bytes it took from origins and sent to clients since it started. ``--json``
prints the document ``GET /v1/cache`` answers (``by_repo`` holding each repo).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import click

from hoard.store.cache_report import cache_report
from hoard.store.errors import OriginUnavailable, UsageError

from .common import App, common_options, emit, table
from .config import format_size

__all__ = ["cache"]


@click.command("cache")
@click.argument("prefix", required=False, default="")
@click.option("--upstream", "remote", default=None, metavar="URL",
              help="Show this running hoard serve's cache (GET URL/v1/cache) instead of the local store's.")
@click.option("--admin-token", envvar="HOARD_ADMIN_TOKEN", show_envvar=True, default=None, metavar="TOKEN",
              help="With --upstream: list the private and gated repos too.")
@common_options()
def cache(app: App, prefix: str, remote: str | None, admin_token: str | None) -> None:
    """Show cached repos (under PREFIX, e.g. huggingface/org) with their revisions, files,
    bytes cached and last use, then totals by source, blobs, partials, pins and the bytes
    that deduplication saves. With --upstream URL: a running `hoard serve`'s cache, with its
    hit ratio and origin bytes since it started."""
    doc = _remote(remote.rstrip("/"), admin_token) if remote else _local(app)
    if prefix:
        key = prefix.rstrip("/")
        doc["by_repo"] = [r for r in doc["by_repo"] if r["repo"] == key or r["repo"].startswith(key + "/")]
    emit(app, doc, lambda: _show(app, doc))


def _local(app: App) -> dict[str, Any]:
    store = app.store
    report = cache_report(store)
    config = store.config
    return report.as_dict() | {"home": str(store.home), "disk_free": store.disk_free(), "max_size": config.max_size,
                               "gc_high_water": config.gc_high_water, "gc_low_water": config.gc_low_water}


def _remote(url: str, admin_token: str | None) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/v1/cache", headers={"X-Hoard-Admin-Token": admin_token} if admin_token else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as exc:
        raise UsageError(f"{url}/v1/cache answered {exc.code}: {exc.read()[:300].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OriginUnavailable(f"cannot ask {url} for its cache: {getattr(exc, 'reason', exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("by_repo"), list):
        raise OriginUnavailable(f"{url}/v1/cache did not answer a hoard cache summary")
    return doc


def _ago(stamp: int | float | None) -> str:
    if not stamp:
        return "-"
    seconds = max(0, time.time() - stamp)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def _show(app: App, doc: dict[str, Any]) -> None:
    rows = [[r["repo"], str(len(r["revisions"])), f"{r['cached_files']}/{r['files']}", format_size(r["cached_bytes"]),
             format_size(r["size"]), _ago(r["last_used"]), ", ".join(sorted(r["refs"])) or "-",
             "pinned" if r["pinned"] else ""] for r in doc["by_repo"]]
    if rows:
        app.echo(table(rows, ["REPO", "REVISIONS", "FILES", "CACHED", "OF", "LAST USED", "REFS", ""]))
    else:
        app.echo("nothing cached")
    app.echo()
    for line in _summary(doc):
        app.echo(line)


def _summary(doc: dict[str, Any]) -> list[str]:
    lines = []
    for source, row in sorted(doc["sources"].items()):
        lines.append(f"{source}: {row['repos']} repo(s), {format_size(row['cached_bytes'])} cached of "
                     f"{format_size(row['size'])}" + (f", {format_size(row['partial_bytes'])} in partials"
                                                      if row["partial_bytes"] else ""))
    cap = doc.get("max_size")
    of_cap = f" of max_size {format_size(cap)} ({100 * doc['total_bytes'] / cap:.0f}%)" if cap else ""
    lines.append(f"store {doc.get('home', '')}: {format_size(doc['total_bytes'])}{of_cap}; "
                 f"{doc['blobs']} blob(s), {format_size(doc['blob_bytes'])} "
                 f"({doc['unreferenced_blobs']} named by no cached revision, {format_size(doc['unreferenced_bytes'])}); "
                 f"{doc['partials']} partial(s), {format_size(doc['partial_bytes'])} present; "
                 f"disk free {format_size(doc['disk_free'])}")
    pins = doc["pins"]
    lines.append(f"pins: {pins['revisions']} revision(s), {pins['blobs']} file(s), {pins['follows']} followed branch(es)")
    lines.append(f"deduplicated: {format_size(doc['deduplicated_bytes'])} (files of several repos or revisions "
                 f"stored once; {format_size(doc['logical_bytes'])} as separate copies)")
    if doc.get("hidden_repos"):
        lines.append(f"{doc['hidden_repos']} private or gated repo(s) not listed (counted in the totals)")
    if "hit_ratio" in doc:
        ratio = "-" if doc["hit_ratio"] is None else f"{100 * doc['hit_ratio']:.0f}%"
        lines.append(f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(doc['since']))}: hit ratio {ratio} "
                     f"({doc['hits']} hit(s), {doc['misses']} miss(es)); {format_size(doc['origin_bytes'])} from "
                     f"origins, {format_size(doc['client_bytes'])} to clients")
    return lines
