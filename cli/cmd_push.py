"""``hoard push DIR ADDRESS``: publish a model directory to Arweave or to a Hugging Face Hub.

* ``arweave/<owner>/<repo>`` with ``--wallet`` (or ``ARWEAVE_WALLET_FILE_PATH``, read here:
  the CLI is the only layer that reads the environment): a Ritual-compatible upload
  (:mod:`hoard.proxy.publish_arweave`); the owner of the result is the wallet's address;
* ``huggingface/<org>/<repo>`` with ``HF_TOKEN``: one commit (:mod:`hoard.proxy.publish_hf`).

Either way the files enter the store at once and read back through the mount and the proxy
with no download.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from hoard.proxy.publish import PushResult, parse_metadata
from hoard.store.address import Address, parse_address
from hoard.store.errors import UsageError

from .common import App, common_options, emit, progress_bar
from .config import format_size

__all__ = ["push"]

WALLET_ENV = "ARWEAVE_WALLET_FILE_PATH"


@click.command("push")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("address")
@click.option(
    "--wallet",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=WALLET_ENV,
    show_envvar=True,
    help="Arweave wallet (JWK file) that signs and pays for an Arweave push.",
)
@click.option(
    "--metadata",
    multiple=True,
    metavar="KEY=VALUE",
    help="Added to every file's entry in ritual_manifest.json (repeatable), e.g. cpu_cores=4.",
)
@click.option("--revision", metavar="BRANCH", help="Hub branch to commit to (created from main if missing).")
@click.option("--private", is_flag=True, help="Create the Hub repo private (when it does not exist yet).")
@click.option(
    "--ritual", is_flag=True, help="Also write ritual_manifest.json into a Hub push (Arweave pushes always do)."
)
@click.option(
    "--gateway", metavar="URL", help="Arweave gateway to upload through (default: the first --arweave-gateway)."
)
@common_options("sources")
def push(
    app: App,
    directory: Path,
    address: str,
    wallet: Path | None,
    metadata: tuple[str, ...],
    revision: str | None,
    private: bool,
    ritual: bool,
    gateway: str | None,
) -> None:
    """Publish DIRECTORY as ADDRESS and add its files to the store.

    \b
    arweave/<owner>/<repo> --wallet W.json   one transaction per file, the repo manifest and
                                             ritual_manifest.json, as ritual-arweave 0.2.0
                                             uploads them; the wallet's address is the owner.
                                             An interrupted push, run again, sends only what
                                             the gateway lacks.
    huggingface/<org>/<repo>  (HF_TOKEN)     one commit to --revision (default main).
    """
    addr = parse_address(address)
    if addr.path:
        raise UsageError(f"{address}: push to a repo (<source>/<owner>/<repo>), not a file")
    common = parse_metadata(metadata)
    if addr.source == "arweave":
        result = _arweave(app, directory, addr, wallet, common, gateway, revision or private or ritual)
    elif addr.source == "huggingface":
        result = _hub(app, directory, addr, common, revision, private, ritual)
    else:
        raise UsageError(f"hoard push publishes to arweave or huggingface, not {addr.source}")
    for note in result.notes:
        click.echo(f"hoard: note: {note}", err=True)
    emit(app, result.as_dict(), lambda: _human(result))


def _arweave(
    app: App,
    directory: Path,
    addr: Address,
    wallet: Path | None,
    common: dict[str, Any],
    gateway: str | None,
    hub_flags: Any,
) -> PushResult:
    from hoard.proxy.publish_arweave import ArweaveJob, push_arweave

    if addr.revision:
        raise UsageError("an Arweave push makes a new revision (its manifest id): drop the @revision")
    if hub_flags:
        raise UsageError("--revision, --private and --ritual are for Hub pushes")
    if wallet is None:
        raise UsageError(f"an Arweave push needs --wallet WALLET.json (or {WALLET_ENV})")
    gateways = app.settings.sources.get("arweave_gateway") or ()
    target = (gateway or (gateways[0] if gateways else "")).rstrip("/")
    if not target.startswith(("http://", "https://")):
        raise UsageError(f"--gateway wants an http(s) URL, got {target!r}")
    job = ArweaveJob(directory, addr.repo, wallet, target, common=common, owner_given=addr.owner)
    return asyncio.run(push_arweave(app.store, job, progress=lambda d, t: progress_bar(app, d, t)))


def _hub(
    app: App, directory: Path, addr: Address, common: dict[str, Any], revision: str | None, private: bool, ritual: bool
) -> PushResult:
    from hoard.proxy.publish_hf import HfJob, push_hf

    if addr.revision and revision and addr.revision != revision:
        raise UsageError(f"two branches given: @{addr.revision} and --revision {revision}")
    if common and not ritual:
        raise UsageError("--metadata goes into ritual_manifest.json: add --ritual")
    job = HfJob(
        directory,
        addr.owner,
        addr.repo,
        app.settings.sources["hf_endpoint"],
        app.settings.tokens.get("huggingface"),
        revision or addr.revision,
        private,
        ritual,
        addr.kind,
        common=common,
    )
    return push_hf(app.store, job, progress=lambda d, t: progress_bar(app, d, t))


def _human(result: PushResult) -> None:
    click.echo(f"pushed {result.files} files ({format_size(result.size)}) as {result.address}")
    d = result.details
    if result.source == "arweave":
        click.echo(
            f"  {d['sent']} of {d['transactions']} transactions sent to {d['gateway']} "
            f"({d['skipped']} already there); Ritual's clients read it once the gateway serves it"
        )
    else:
        click.echo(f"  commit {d['commit']} on {d['branch']} at {d['endpoint']}")
    click.echo(f"  in the store now (no download): hoard ls {result.repo_key}")
