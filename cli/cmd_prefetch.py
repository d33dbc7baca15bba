"""``hoard prefetch ADDRESS... [-f FILE]...``: fetch repos, folders or files ahead of use.

Each ADDRESS is expanded by :func:`_expand`, the one place that knows the address forms:

* ``<source>/<owner>/<repo>[@rev][/<path>]``, or a bare Hub id ``org/name``;
* an infernet-ml model id, ``arweave/<owner>/<repo>:a.onnx,b.onnx``: then only the files it
  names are fetched (each must exist in the repo), matched by name exactly — no glob
  characters are interpreted in them;
* ``torchvision/<model>`` (``resnet18``, or a weights enum member
  ``ResNet50_Weights.IMAGENET1K_V2``) is the checkpoint file of its default weights,
  ``torch/hub/checkpoints/<file>``, named by torchvision's registry (torchvision must be
  installed; a HF repo of an org called torchvision is ``huggingface/torchvision/<name>``).

``-f FILE`` (repeatable) adds what a list of addresses, a Clarifai ``config.yaml`` or a
``ritual_manifest.json`` names (prefetch_inputs.py). Files are fetched ``--jobs`` at a time,
each by parallel chunks; a failure is reported and the rest still fetched; the exit code is
the error table's for the failures (1 when they differ). Running it again after an
interruption resumes from the chunks already stored.

With an upstream (``--upstream URL``, ``HOARD_UPSTREAM``) the prefetch warms that ``hoard
serve`` (``POST /v1/prefetch``, one job per address) and follows its progress instead of
filling the local store; ``--local`` fills this store through it instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from hoard.proxy.origin import Credentials
from hoard.proxy.prefetch import PrefetchRun, PrefetchTarget, prefetch_all
from hoard.proxy.prefetch_remote import RemotePrefetch
from hoard.proxy.service import open_services
from hoard.proxy.sources._torch_names import torchvision_checkpoint
from hoard.store.address import Address
from hoard.store.errors import InvalidAddress, UsageError
from hoard.store.pins import advance_follows

from .common import App, common_options, emit
from .config import format_size
from .model_ids import read_target
from .prefetch_inputs import Wanted, read_inputs
from .progress import PrefetchDisplay
from .runtime import proxy_config

__all__ = ["prefetch"]

_REFRESH = 0.2  # seconds between progress redraws


@click.command("prefetch")
@click.argument("addresses", nargs=-1, metavar="ADDRESS...")
@click.option("-f", "--file", "files", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also fetch what FILE names (repeatable): a list of addresses (one a line, # comments), "
                   "a Clarifai config.yaml (checkpoints:) or a ritual_manifest.json.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable), e.g. '*.safetensors'.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--jobs", default=4, show_default=True, help="Files fetched at once (each by parallel chunks).")
@click.option("--local", "into_local", is_flag=True,
              help="With an upstream: fill this store through it, instead of warming the upstream.")
@click.option("--admin-token", envvar="HOARD_ADMIN_TOKEN", show_envvar=True, default=None, metavar="TOKEN",
              help="With an upstream: its admin token (X-Hoard-Admin-Token).")
@common_options("upstream", "blob_store", "s3_endpoint", "blob_store_private", "sources", "chunk_size", "origin_connections")
def prefetch(app: App, addresses: tuple[str, ...], files: tuple[Path, ...], include: tuple[str, ...],
             exclude: tuple[str, ...], jobs: int, into_local: bool, admin_token: str | None) -> None:
    """Fetch each ADDRESS completely: a repo (<source>/<owner>/<repo>[@rev]), a folder or a
    file of it, a bare Hugging Face id (org/name), an infernet-ml model id
    (arweave/<owner>/<repo>:file1,file2: only the files it names) or torchvision/<model>.
    Every file is verified against its upstream hash and published; an interrupted prefetch
    resumes where it stopped. With --upstream URL, that hoard serve is warmed instead of the
    local store (--local: fill the local store through it)."""
    wanted = [Wanted(a, "argument") for a in addresses] + [w for f in files for w in read_inputs(f)]
    if not wanted:
        raise UsageError("nothing to prefetch: give an ADDRESS or -f FILE")
    targets = [t for w in wanted for t in _targets(app, w, include, exclude)]
    remote = app.settings.upstream if not into_local else ()
    if remote:
        doc = asyncio.run(_remote(app, remote, admin_token, targets, max(1, jobs)))
    else:
        doc = asyncio.run(_local(app, targets, max(1, jobs)))
    _report(app, doc)


def _torchvision(app: App, address: str) -> str:
    """``torchvision/<model>`` as the checkpoints address of its weights; any other unchanged."""
    head, _, model = address.partition("/")
    if head != "torchvision" or not model or "/" in model:
        return address
    return torchvision_checkpoint(model, str(app.settings.sources.get("torch_url") or ""))


def _expand(app: App, text: str) -> tuple[list[Address], bool]:
    """The addresses one ADDRESS (or list line) names, and whether they are exact files (a
    model id's) rather than folders. Every address form is handled here."""
    target = read_target(_torchvision(app, text), default_source="huggingface")
    return target.addresses, target.is_model_id


def _targets(app: App, wanted: Wanted, include: tuple[str, ...], exclude: tuple[str, ...]) -> list[PrefetchTarget]:
    """The prefetch targets of one input, with the globs and credentials that apply to it."""
    if wanted.addresses:
        addresses, exact = list(wanted.addresses), wanted.exact
    else:
        try:
            addresses, exact = _expand(app, wanted.text)
        except InvalidAddress as exc:
            if wanted.origin == "argument":
                raise
            raise InvalidAddress(f"{wanted.origin}: {wanted.text[:200]!r}: {exc}") from None
    if exact and (include or exclude):
        raise UsageError(f"{wanted.text}: a model id names its files: use it without --include/--exclude")
    creds = wanted.creds if wanted.creds is not None else Credentials.of(app.settings.tokens)
    globs = (include + wanted.include, exclude + wanted.exclude) if not exact else ((), ())
    return [PrefetchTarget(a, wanted.text, creds, *globs, exact=exact) for a in addresses]


async def _local(app: App, targets: list[PrefetchTarget], jobs: int) -> dict[str, Any]:
    """Fill the local store; a followed pin moves once its new revision is complete."""
    config = dataclasses.replace(proxy_config(app.settings, local_user=True), follow_pins=False)
    svc = await open_services(config, app.store)
    run = PrefetchRun()
    try:
        with PrefetchDisplay("prefetch", enabled=not app.json) as display:
            work = asyncio.ensure_future(prefetch_all(svc, targets, jobs=jobs, run=run))
            while not work.done():
                await asyncio.wait([work], timeout=_REFRESH)
                run.refresh()
                display.update(run.as_dict())
            await work
        await asyncio.get_running_loop().run_in_executor(None, advance_follows, app.store)
    finally:
        await svc.aclose()
    return run.as_dict() | {"exit_code": run.exit_code, "upstream": []}


async def _remote(app: App, upstream: tuple[str, ...], admin_token: str | None, targets: list[PrefetchTarget],
                  jobs: int) -> dict[str, Any]:
    """Warm the upstream hoard serve: a job per target, followed until all are done."""
    with PrefetchDisplay(f"prefetch on {upstream[0]}", enabled=not app.json) as display:
        return await RemotePrefetch(upstream, admin_token, jobs=min(jobs, 32)).run(targets, on_update=display.update)


def _report(app: App, doc: dict[str, Any]) -> None:
    """The summary (stdout), every failure (stderr, one line each), and the exit code."""
    where = f" on {doc['upstream'][0]}" if doc.get("upstream") else ""
    what = f"{doc['repo']}@{doc['revision'][:12]}" if doc.get("repo") and doc.get("revision") else \
        f"{len(doc['targets'])} address(es)"
    emit(app, doc,
         f"{what}{where}: {doc['files']} file(s), {format_size(doc['bytes'])}; fetched {doc['fetched']} "
         f"({format_size(doc['fetched_bytes'])}), {doc['cached']} already present"
         + (f", {doc['failed']} failed" if doc["failed"] else ""))
    for t in doc["targets"]:
        if t.get("error"):
            click.echo(f"hoard: {t['address']}: {t['error']}", err=True)
    for f in doc["files_detail"]:
        if f.get("error"):
            click.echo(f"hoard: {f['repo']}@{str(f['revision'])[:12]}/{f['path']}: {f['error']}", err=True)
    if doc["exit_code"]:
        sys.exit(doc["exit_code"])
