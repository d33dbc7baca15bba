"""``hoard push DIR arweave/<owner>/<repo> --wallet W``: a Ritual-compatible upload to Arweave.

The upload is what ritual-arweave 0.2.0 writes (:mod:`.publish_arweave_plan`): one data
transaction per file (``N.section`` transactions and a sectioned manifest for files of
5,120,000 bytes or more), then the repo manifest, plus a ``ritual_manifest.json`` as
infernet-ml writes it (:func:`.publish.ritual_manifest`), so ritual-arweave and infernet-ml
read it back. Transactions are signed with arweave-python-client's wallet
(:mod:`.publish_arweave_tx`) and sent with hoard's HTTP client (timeouts, retries of
transient faults only) to one gateway, which must front the node routes
(``/tx_anchor``, ``/price/{n}``, ``/wallet/{a}/balance``, ``/tx/{id}/status``, ``POST /tx``,
``POST /chunk``), as arweave.net does.

Order of a push:

1. the wallet is loaded (a bad one: :class:`UsageError`, exit 2, nothing sent), the files
   are hashed and the push's record opened (:mod:`.publish_record`);
2. every transaction an earlier run of the same push recorded is checked with
   ``GET /tx/{id}/status``: held ones are not sent again (their chunks resume where the
   gateway stopped acknowledging them), lost ones are sent again, dropped ones re-signed;
3. the funds: ``GET /wallet/{address}/balance`` against the sum of ``GET /price/{size}`` of
   every transaction still to send. Too little is refused before anything is sent, as
   :class:`AccessDenied` with status 402 (exit 4, "refused"): the network would take nothing
   from this wallet until it is funded, so retrying cannot help (unlike exit 6);
4. the transactions go out in order (``POST /tx`` with the data inline up to 256 KiB, else
   the header then ``POST /chunk`` per 256 KiB chunk), recorded as they are signed, taken
   and acknowledged;
5. the revision enters the store at once: the snapshot the Arweave source would build
   (identity ``sha256:<File-SHA256>``; a one-transaction file also named ``ar:<tx>``) under
   ``arweave/<wallet address>/<repo>@<repo manifest id>``, ref ``latest`` pointing at it,
   its blobs copied from the local files (no download back). The record is removed.

A gateway that cannot be reached is :class:`OriginUnavailable` (exit 6, run the push again);
a transaction it refuses is :class:`OriginError` (exit 6) quoting its answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoard.store.errors import AccessDenied, IntegrityError, OriginError
from hoard.store.store import Store

from .http import HttpClient
from .httpbase import HttpConfig
from .publish import ProgressFactory, PushResult, no_progress, ritual_manifest, scan_dir
from .publish_arweave_node import Gateway
from .publish_arweave_plan import (
    Hashed,
    Unit,
    build_snapshot,
    check_repo_name,
    hash_files,
    plan_units,
    unit_data,
    unit_tags,
)
from .publish_arweave_tx import CHUNK, ArWallet, SignedTx, load_wallet, restore_tx, sign_tx
from .publish_record import PushRecord, record_key

__all__ = ["ArweaveJob", "push_arweave"]


@dataclass(frozen=True)
class ArweaveJob:
    """One push: DIR, the repo name, the wallet file, the gateway, ``ritual_manifest.json``
    metadata (per file, and for every file), and the owner the user wrote (ignored: the
    wallet's address owns the upload)."""

    directory: Path
    repo: str
    wallet: Path
    gateway: str
    per_file: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    common: Mapping[str, Any] = field(default_factory=dict)
    owner_given: str | None = None


class Upload:
    """Sending one push's units through a gateway, keeping its record (steps 2-4)."""

    def __init__(self, gw: Gateway, wallet: ArWallet, record: PushRecord, repo: str, files: Sequence[Hashed]) -> None:
        self.gw, self.wallet, self.record, self.repo, self.files = gw, wallet, record, repo, files
        self.prices: dict[int, int] = {}
        self._anchor: str | None = None
        self.sent = 0

    async def reconcile(self, units: Sequence[Unit]) -> None:
        """Ask the gateway about every transaction an earlier run recorded."""
        for unit in units:
            rec = self.record.unit(unit.key)
            if rec is None:
                continue
            state = await self.gw.status(rec["header"]["id"])
            if state == "dropped":
                self.record.forget(unit.key)
            elif (state == "held") != bool(rec["taken"]):
                self.record.taken(unit.key, state == "held")

    async def check_funds(self, units: Sequence[Unit]) -> int:
        """Refuse (402) before anything is sent when the wallet cannot pay for the rest."""
        need = 0
        for unit in units:
            rec = self.record.unit(unit.key)
            if rec is not None and rec["taken"]:
                continue
            if rec is not None:
                need += int(rec["header"]["reward"])
                continue
            if unit.size not in self.prices:
                self.prices[unit.size] = await self.gw.number(f"/price/{unit.size}", f"price for {unit.size} bytes")
            need += self.prices[unit.size]
        balance = await self.gw.number(f"/wallet/{self.wallet.address}/balance", "wallet balance")
        if balance < need:
            raise AccessDenied(
                f"wallet {self.wallet.address} holds {_ar(balance)} AR ({balance} winston) at {self.gw.host}; this "
                f"push needs {_ar(need)} AR ({need} winston): nothing was sent",
                status=402,
            )
        return need

    def remaining(self, units: Sequence[Unit]) -> int:
        """Bytes still to send (the progress bar's total)."""
        total = 0
        for unit in units:
            rec = self.record.unit(unit.key)
            if rec is None or not rec["taken"]:
                total += unit.size
            elif rec["chunks"]:
                total += max(0, unit.size - rec["acked"] * CHUNK)
        return total

    async def anchor(self, fresh: bool = False) -> str:
        if self._anchor is None or fresh:
            self._anchor = await self.gw.anchor()
        return self._anchor

    async def _signed(self, unit: Unit, data: bytes, unix_time: str, fresh_anchor: bool = False) -> SignedTx:
        if unit.size not in self.prices:
            self.prices[unit.size] = await self.gw.number(f"/price/{unit.size}", f"price for {unit.size} bytes")
        tags = unit_tags(unit, self.repo, unix_time)
        tx = sign_tx(self.wallet, tags, data, anchor=await self.anchor(fresh_anchor), reward=self.prices[unit.size])
        self.record.signed(unit.key, tx.header, tx.nchunks)
        return tx

    async def _restored(self, unit: Unit, data: bytes, unix_time: str) -> SignedTx:
        rec = self.record.unit(unit.key)
        assert rec is not None
        try:
            return restore_tx(rec["header"], data, unit.what)
        except IntegrityError:
            if unit.kind not in ("sections", "repo"):
                raise
            self.record.forget(unit.key)  # a manifest of a section signed again: sign it again too
            return await self._signed(unit, data, unix_time)

    async def send(self, unit: Unit, ids: dict[str, str], unix_time: str, advance: Callable[[int], None]) -> None:
        """Send what the gateway lacks of one unit; its id goes into ``ids``."""
        if self.record.complete(unit.key):
            ids[unit.key] = self.record.unit(unit.key)["header"]["id"]  # type: ignore[index]
            return
        data = unit_data(unit, ids, self.files)
        if self.record.unit(unit.key) is None:
            tx = await self._signed(unit, data, unix_time)
        else:
            tx = await self._restored(unit, data, unix_time)
        rec = self.record.unit(unit.key)
        assert rec is not None
        if not rec["taken"]:
            if not await self.gw.post_tx(tx, unit.what):
                tx = await self._signed(unit, data, unix_time, fresh_anchor=True)
                if not await self.gw.post_tx(tx, unit.what):
                    raise OriginError(f"{self.gw.host} refused the anchor of {unit.what} twice")
            self.record.taken(unit.key)
            self.sent += 1
            advance(len(data) if tx.inline else 0)
        rec = self.record.unit(unit.key)
        assert rec is not None
        for i in range(rec["acked"], tx.nchunks):
            body, n = tx.chunk(i)
            await self.gw.post_chunk(body, unit.what)
            self.record.acked(unit.key, i + 1)
            advance(n)
        ids[unit.key] = tx.id


def _ar(winston: int) -> str:
    return f"{winston / 10**12:.12f}".rstrip("0").rstrip(".")


def _inputs(job: ArweaveJob, wallet: ArWallet, files: Sequence[Hashed]) -> dict[str, Any]:
    return {
        "owner": wallet.address,
        "repo": job.repo,
        "gateway": job.gateway.rstrip("/"),
        "files": [[h.rel, h.file.size, h.sha256] for h in files],
    }


async def push_arweave(
    store: Store, job: ArweaveJob, *, http: HttpConfig | None = None, progress: ProgressFactory = no_progress
) -> PushResult:
    """Publish ``job.directory`` (see the module docstring); returns where it went."""
    wallet, files = await _prepare(job, progress)
    record = PushRecord.open(store.home, record_key(_inputs(job, wallet, files)))
    record.begin(str(time.time()))
    unix_time = str(record.unix_time)
    units = plan_units(files)
    ids: dict[str, str] = {}
    client = HttpClient(http or HttpConfig())
    try:
        upload = Upload(Gateway(client, job.gateway), wallet, record, job.repo, files)
        await upload.reconcile(units)
        cost = await upload.check_funds(units)
        with progress(f"pushing {job.repo}", upload.remaining(units)) as advance:
            for unit in units:
                await upload.send(unit, ids, unix_time, advance)
    finally:
        record.save(force=True)
        await client.close()
    snap = build_snapshot(files, units, ids, unix_time)
    await asyncio.to_thread(_into_store, store, f"arweave/{wallet.address}/{job.repo}", ids["repo"], snap, files)
    record.remove()
    details = {
        "owner": wallet.address,
        "manifest": ids["repo"],
        "unix_time": unix_time,
        "gateway": job.gateway,
        "transactions": len(units),
        "sent": upload.sent,
        "skipped": len(units) - upload.sent,
        "winston": cost,
    }
    return PushResult(
        "arweave", wallet.address, job.repo, ids["repo"], len(files), snap.size, details, _notes(job, wallet, files)
    )


async def _prepare(job: ArweaveJob, progress: ProgressFactory) -> tuple[ArWallet, list[Hashed]]:
    """Step 1 before the record: the wallet (a bad one fails before any request), the files
    hashed, and ``ritual_manifest.json`` made for them (replacing one DIR holds)."""
    check_repo_name(job.repo)
    wallet = load_wallet(job.wallet)
    local = scan_dir(job.directory)
    with progress("hashing", sum(f.size for f in local)) as advance:
        hashed = await asyncio.to_thread(hash_files, local, advance)
    unique = f"arweave/{wallet.address}/{job.repo}"
    manifest = ritual_manifest(unique, local, {h.rel: h.sha256 for h in hashed}, job.per_file, job.common)
    made = hash_files([manifest], lambda n: None)
    return wallet, sorted([h for h in hashed if h.rel != manifest.rel] + made, key=lambda h: h.rel)


def _notes(job: ArweaveJob, wallet: ArWallet, files: Sequence[Hashed]) -> tuple[str, ...]:
    notes = []
    if job.owner_given not in (None, wallet.address):
        notes.append(
            f"the owner of an Arweave upload is the wallet's address {wallet.address}, not {job.owner_given!r}"
        )
    if any("/" in h.rel for h in files):
        notes.append(
            "ritual-arweave's download_repo does not create subfolders: its users need the folders made "
            "first (hoard, the mount and the proxy read them as they are)"
        )
    return tuple(notes)


def _into_store(store: Store, repo_key: str, revision: str, snap: Any, files: Sequence[Hashed]) -> None:
    """(In a thread.) The pushed files as blobs (from the local bytes, verified against their
    sha256, named by their tx ids too), then the snapshot with ``latest`` pointing at it."""
    for h in files:
        entry = snap.files[h.rel]
        aliases = list(entry.meta.get("aliases") or ())
        if h.file.data is not None:
            store.add_bytes(h.file.data, expected=entry.expected, aliases=aliases)
        else:
            assert h.file.path is not None
            store.add_file(h.file.path, expected=entry.expected, aliases=aliases)
    store.put_snapshot(repo_key, revision, snap, refs=["latest"])
