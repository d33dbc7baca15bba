"""``hoard push``: publishing a model directory to Arweave (Ritual-compatible) and to the Hub.

Arweave pushes go to `tests.fakes.arweave.FakeGateway` (anchors, prices, balances,
``POST /tx`` + ``POST /chunk``, pending until mined) with a real RSA-4096 wallet, and are read
back through hoard (the mount, the proxy, a fresh store that only knows the gateway), through
ritual-arweave 0.2.0's ``download_repo`` and infernet-ml 2.0.0's ``download_model`` in their
own virtualenvs; an upload made by ritual-arweave itself is read with hoard. Hub pushes go to
`tests.fakes.hub.FakeHub` with its write routes (`tests.fakes.upload_routes`). Interrupted
pushes are killed or faulted by the fake's switches, never timed; `wait_for` polls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoard.proxy.origin import Credentials
from hoard.proxy.publish import PushSettings, upload_model
from hoard.proxy.service import ProxyConfig, open_services
from hoard.store.address import parse_address
from hoard.store.config import StoreConfig
from hoard.store.store import Store

from .clientvenv import INFERNET_ML, RITUAL_ARWEAVE, client_python
from .fakes.arweave import FakeGateway
from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import MountProcess, ProxyThread, run_on_a_terminal, serve_env, wait_for
from .hfclients.runner import run_script
from .httpcalls import call

HOARD = [sys.executable, "-m", "hoard.cli.main"]
NO_HUB = "http://127.0.0.1:9"  # nothing listens there: the Arweave tests never need a Hub
SECTION = 5_120_000


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _b64(i: int) -> str:
    return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def wallet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An RSA-4096 JWK (as tests/test_fake_arweave.py makes one) and its Arweave address."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    nums = key.private_numbers()
    jwk = {
        "kty": "RSA",
        "n": _b64(nums.public_numbers.n),
        "e": _b64(nums.public_numbers.e),
        "d": _b64(nums.d),
        "p": _b64(nums.p),
        "q": _b64(nums.q),
        "dp": _b64(nums.dmp1),
        "dq": _b64(nums.dmq1),
        "qi": _b64(nums.iqmp),
    }
    path = tmp_path_factory.mktemp("wallet") / "wallet.json"
    path.write_text(json.dumps(jwk))
    address = base64.urlsafe_b64encode(hashlib.sha256(base64.urlsafe_b64decode(jwk["n"] + "==")).digest())
    return path, address.rstrip(b"=").decode()


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    with FakeGateway() as fake:
        yield fake


def model_dir(path: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


def hoard(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HOARD, *args], env=env or serve_env(), capture_output=True, text=True, timeout=240, **popen)


def push_ar(
    src: Path, repo: str, wallet: Path, gw: FakeGateway, home: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return hoard(
        "push",
        str(src),
        f"arweave/me/{repo}",
        "--wallet",
        str(wallet),
        "--gateway",
        gw.url,
        "--home",
        str(home),
        "--json",
        *extra,
    )


def pushed(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def tag_list(gw: FakeGateway, txid: str) -> list[tuple[str, str]]:
    tx = gw.tx(txid)
    assert tx is not None
    return tx.str_tags


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client(python: str, gw: FakeGateway, tmp_path: Path, script: str, **args: Any) -> dict[str, Any]:
    return run_script(
        gw.url, tmp_path / "client-home", script, python=python, args={"url": gw.url, **args}, timeout=240
    )


def snapshot_from_gateway(home: Path, gw: FakeGateway, repo_key: str) -> Any:
    """What a store that never saw the push builds from the gateway (the Arweave source)."""

    async def resolve() -> Any:
        with Store(StoreConfig(home)) as store:
            svc = await open_services(ProxyConfig(source_settings={"arweave_gateway": (gw.url,)}), store)
            try:
                return (await svc.catalog.resolve(parse_address(repo_key), Credentials(), access="none")).snapshot
            finally:
                await svc.aclose()

    return asyncio.run(resolve())


DOWNLOAD_020 = """
from ritual_arweave.repo_manager import RepoManager
rm = RepoManager(gateways=[ARGS["url"]], show_progress_bar=False)
attempt("download", lambda: {os.path.relpath(p, ARGS["dest"]): sha256(p)
                             for p in rm.download_repo(ARGS["repo"], base_path=ARGS["dest"])})
"""


# --------------------------------------------------------------------------------------
# Arweave: push, then read back with hoard and with Ritual's own clients
# --------------------------------------------------------------------------------------


@pytest.mark.fuse
def test_push_is_what_ritual_arweave_writes_and_reads_back_everywhere(
    wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    wallet_path, address = wallet
    files = {
        "config.json": b'{"hidden_size": 8}',
        "model.onnx": Content("onnx", 700_000).read(),  # > 256 KiB: header, then chunks
        "weights/big.bin": Content("big", SECTION + 80_000).read(),  # sectioned: 2 sections
    }
    src = model_dir(tmp_path / "src", files)
    home = tmp_path / "home"
    out = pushed(push_ar(src, "iris", wallet_path, gw, home, "--metadata", "cpu_cores=2"))
    manifest_id = out["manifest"]
    assert out["address"] == f"arweave/{address}/iris@{manifest_id}" and out["owner"] == address
    assert (
        out["sent"] == out["transactions"] == 1 + 1 + 2 + 1 + 1 + 1
    )  # config, onnx, 2 sections, their manifest, ritual, repo
    assert all(r.status == 200 for r in gw.find(route="post_tx") + gw.find(route="post_chunk"))

    # exactly ritual-arweave 0.2.0's tags, order and manifests (the fake seeds what it writes)
    manifest_tx = gw.tx(manifest_id)
    assert manifest_tx is not None and manifest_tx.pending and manifest_tx.data is not None
    paths = {p: e["id"] for p, e in json.loads(manifest_tx.data.read())["paths"].items()}
    ritual_raw = gw.tx(paths["ritual_manifest.json"]).data.read()  # type: ignore[union-attr]
    ritual_json = json.loads(ritual_raw)
    all_files = {**files, "ritual_manifest.json": ritual_raw}
    assert sorted(paths) == sorted(all_files)
    unix_time = float(dict(tag_list(gw, manifest_id))["Unix-Time"])
    twin = FakeGateway()  # not started: its weave holds what ritual-arweave would have sent
    seeded = twin.seed_ritual_repo(twin.wallet("twin"), "iris", all_files, unix_time=unix_time)
    assert tag_list(gw, manifest_id) == tag_list(twin, seeded.manifest_id)
    for path, txid in paths.items():
        if path == "weights/big.bin":
            mine, theirs = tag_list(gw, txid), tag_list(twin, seeded.files[path].txid)
            assert [kv for kv in mine if kv[0] != "Unix-Time"] == [kv for kv in theirs if kv[0] != "Unix-Time"]
            sections = json.loads(gw.tx(txid).data.read())["paths"]  # type: ignore[union-attr]
            assert list(sections) == ["0.section", "1.section"]
            for i, sid in enumerate(seeded.files[path].sections):
                assert tag_list(gw, sections[f"{i}.section"]["id"]) == tag_list(twin, sid)
                assert gw.tx(sections[f"{i}.section"]["id"]).data_root == twin.tx(sid).data_root  # type: ignore[union-attr]
        else:
            assert tag_list(gw, txid) == tag_list(twin, seeded.files[path].txid)
            assert gw.tx(txid).data_root == twin.tx(seeded.files[path].txid).data_root  # type: ignore[union-attr]
    assert ritual_json["files"] == sorted(files) and ritual_json["repo_id"] == f"arweave/{address}/iris"
    assert ritual_json["file_hashes"] == {p: sha(d) for p, d in files.items()}
    assert ritual_json["metadata"]["model.onnx"] == {
        "id": f"arweave/{address}/iris:model.onnx", "cpu_cores": 2, "memory_requirements": 700_000,
        "max_position_embeddings": None, "quantization_type": None, "inference_engine": None,
        "inference_engine_hash": None, "cuda_capability": None, "cuda_version": None,
    }  # fmt: skip

    # in the store at once: through the mount with no gateway traffic at all
    gw.clear_log()
    with MountProcess(home, tmp_path / "mnt", NO_HUB, "--arweave-gateway", gw.url, env=serve_env()) as m:
        for rel, data in all_files.items():
            assert m.path(f"arweave/{address}/iris/{rel}").read_bytes() == data
    assert gw.requests == []

    # what the Arweave source builds from the gateway, once mined, is the pushed snapshot
    gw.mine()
    stored = Store(StoreConfig(home))
    try:
        mine_snap = stored.get_snapshot(f"arweave/{address}/iris", manifest_id)
    finally:
        stored.close()
    theirs_snap = snapshot_from_gateway(tmp_path / "fresh", gw, f"arweave/{address}/iris")
    assert mine_snap is not None and theirs_snap.files == mine_snap.files and theirs_snap.info == mine_snap.info

    # ritual-arweave 0.2.0 downloads it (sections included) byte for byte; it writes files in
    # subfolders but never creates the folders (sources.md §1.6), so the test makes it
    (tmp_path / "down" / "weights").mkdir(parents=True)
    got = client(
        client_python(*RITUAL_ARWEAVE), gw, tmp_path, DOWNLOAD_020, repo=f"{address}/iris", dest=str(tmp_path / "down")
    )
    assert got["download"] == {"ok": {p: sha(d) for p, d in all_files.items()}}


def test_infernet_ml_downloads_a_model_pushed_with_the_python_api(
    wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    """infernet-ml 2.0.0 pins ritual-arweave 0.1.1, which reads no sections: files under 5,120,000."""
    wallet_path, address = wallet
    files = {"model.onnx": Content("iris-onnx", 400_000).read(), "scaler.json": b'{"mean": [0.5]}'}
    src = model_dir(tmp_path / "src", files)
    with Store(StoreConfig(tmp_path / "home")) as store:
        result = upload_model(
            src,
            "arweave/anyone/iris-model",
            {"model.onnx": {"cpu_cores": 4, "memory_requirements": 1 << 30}},
            wallet_path=wallet_path,
            store=store,
            settings=PushSettings(arweave_gateway=gw.url),
        )
    assert result.owner == address and "not 'anyone'" in result.notes[0]  # the owner given is not the wallet's
    gw.mine()
    script = """
from infernet_ml.utils.model_manager import ModelManager
m = ModelManager(cache_dir=ARGS["cache"])
def run():
    art = m.download_model(ARGS["model"], repomanager_kwargs={"api_url": ARGS["url"]})
    info = art.metadata["model.onnx"]
    return {"files": {p.name: sha256(p) for p in art.files}, "model": art.get_file(ARGS["model"]).name,
            "cpu_cores": info.cpu_cores, "memory": info.memory_requirements, "id": info.id}
attempt("model", run)
"""
    model_id = f"arweave/{address}/iris-model:model.onnx"
    out = client(client_python(*INFERNET_ML), gw, tmp_path, script, model=model_id, cache=str(tmp_path / "c"))
    assert out["model"] == {
        "ok": {
            "files": {p: sha(d) for p, d in files.items()},
            "model": "model.onnx",
            "cpu_cores": 4,
            "memory": 1 << 30,
            "id": model_id,
        }
    }


UPLOAD_020 = """
from ritual_arweave.repo_manager import RepoManager
rm = RepoManager(gateways=[ARGS["url"]], wallet_path=ARGS["wallet"], show_progress_bar=False)
res = rm.upload_repo(ARGS["name"], ARGS["dir"])
OUT["manifest"] = res.transaction_id
"""


def test_hoard_reads_an_upload_made_by_ritual_arweave(
    wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    wallet_path, address = wallet
    files = {"model.onnx": Content("by-ritual", 300_000).read(), "big.bin": Content("r-big", SECTION + 1).read()}
    src = model_dir(tmp_path / "src", files)
    out = client(
        client_python(*RITUAL_ARWEAVE), gw, tmp_path, UPLOAD_020, wallet=str(wallet_path), name="theirs", dir=str(src)
    )
    gw.mine()
    with ProxyThread(tmp_path / "home", NO_HUB, sources={"arweave_gateway": (gw.url,)}) as px:
        for rel, data in files.items():
            got = call("GET", f"{px.url}/v1/files/arweave/{address}/theirs/{rel}")
            assert got.status == 200 and got.body == data, rel
    tree = snapshot_from_gateway(tmp_path / "home", gw, f"arweave/{address}/theirs@{out['manifest']}")
    assert {p: e.identity for p, e in tree.files.items()} == {p: f"sha256:{sha(d)}" for p, d in files.items()}


# --------------------------------------------------------------------------------------
# Arweave: resuming, and the refusals
# --------------------------------------------------------------------------------------


def test_an_interrupted_push_resumes_and_sends_no_transaction_twice(
    wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    wallet_path, address = wallet
    files = {
        "b.onnx": Content("resume-b", 900_000).read(),
        "c.bin": Content("resume-c", 600_000).read(),
    }  # 4 + 3 chunks
    src = model_dir(tmp_path / "src", files)
    home = tmp_path / "home"

    def mine() -> list[Any]:
        return [t for t in gw.weave.txs.values() if t.owner_address == address and t.tag("Repo-Name") == "resumed"]

    # 1. killed outright after the gateway took b.onnx's header but before its answer arrived
    hold = gw.fault(route="post_tx", stall=120, stall_at=0, times=1)
    proc = subprocess.Popen(
        [
            *HOARD,
            "push",
            str(src),
            "arweave/me/resumed",
            "--wallet",
            str(wallet_path),
            "--gateway",
            gw.url,
            "--home",
            str(home),
            "--json",
        ],
        env=serve_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(mine()) == 1, timeout=120)
    finally:
        proc.kill()
        proc.wait(30)
    gw.clear_faults()
    assert hold.hits == 1 and gw.count(route="post_chunk") == 0

    # 2. the gateway goes down while it holds b.onnx's third chunk (each chunk's answer is
    #    slow, so the pusher waits on it): the run finds b's header held and sends only chunks
    hold = gw.fault(route="post_chunk", latency=2.0)
    proc = subprocess.Popen(
        [
            *HOARD,
            "push",
            str(src),
            "arweave/me/resumed",
            "--wallet",
            str(wallet_path),
            "--gateway",
            gw.url,
            "--home",
            str(home),
        ],
        env=serve_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: gw.count(route="post_chunk") >= 3, timeout=120)
        gw.pause()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    gw.resume()
    gw.clear_faults()
    assert proc.returncode == 6 and "unreachable" in err, err
    acked = gw.count(route="post_chunk", status=200)
    assert 2 <= acked < 4 and gw.count(route="post_tx") == 1  # b's header was not sent again
    gw.clear_log()

    # 3. completes, sending only what the gateway lacks
    out = pushed(push_ar(src, "resumed", wallet_path, gw, home))
    assert (out["transactions"], out["skipped"]) == (4, 1)  # b, c, ritual_manifest.json, the repo manifest
    assert gw.count(route="post_tx") == gw.count(route="post_tx", status=200) == 3  # c and the two manifests
    assert gw.count(route="post_chunk") == gw.count(route="post_chunk", status=200) == (4 - acked) + 3
    assert len(mine()) == 4 and all(t.data is not None for t in mine())
    assert not list((home / "pushes").glob("*.json"))  # the record is gone once complete
    gw.mine()
    got = snapshot_from_gateway(tmp_path / "fresh", gw, f"arweave/{address}/resumed")
    assert {p: e.identity for p, e in got.files.items() if p != "ritual_manifest.json"} == {
        p: f"sha256:{sha(d)}" for p, d in files.items()
    }


def test_too_little_balance_is_refused_before_anything_is_sent(
    wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    wallet_path, address = wallet
    src = model_dir(tmp_path / "src", {"model.onnx": Content("poor", 300_000).read()})
    gw.set_balance(address, 1000)
    proc = push_ar(src, "poor", wallet_path, gw, tmp_path / "home")
    assert proc.returncode == 4, proc.stderr
    assert "needs" in proc.stderr and "nothing was sent" in proc.stderr and proc.stdout == ""
    assert gw.count(route="post_tx") == gw.count(route="post_chunk") == 0
    assert gw.count(route="wallet") == 1 and gw.count(route="price") >= 1


@pytest.mark.parametrize("kind", ["missing", "not-json", "public-only"])
def test_a_bad_wallet_is_a_usage_error_before_any_request(
    kind: str, wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    if kind == "not-json":
        bad.write_text("not a wallet")
    elif kind == "public-only":
        jwk = json.loads(wallet[0].read_text())
        bad.write_text(json.dumps({k: jwk[k] for k in ("kty", "n", "e")}))
    src = model_dir(tmp_path / "src", {"x.bin": b"x"})
    proc = push_ar(src, "bad", bad, gw, tmp_path / "home")
    assert proc.returncode == 2 and proc.stderr.startswith(f"hoard: wallet {bad}"), proc.stderr
    assert "Traceback" not in proc.stderr and gw.requests == []


def test_wallet_from_the_environment_and_gateway_errors(
    wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    src = model_dir(tmp_path / "src", {"x.bin": b"x" * 10})
    env = {**serve_env(), "ARWEAVE_WALLET_FILE_PATH": str(wallet[0])}
    base = ["push", str(src), "arweave/me/env", "--gateway", gw.url, "--home", str(tmp_path / "home")]
    gw.fault(route="post_tx", status=400, times=1)  # the node's answer to a transaction it rejects
    rejected = hoard(*base, env=env)
    assert rejected.returncode == 6 and "refused the transaction of" in rejected.stderr, rejected.stderr
    gw.pause()
    down = hoard(*base, env=env)
    assert down.returncode == 6 and "unreachable" in down.stderr and "Traceback" not in down.stderr, down.stderr
    gw.resume()
    ok = hoard(*base, env=env)
    assert ok.returncode == 0 and f"as arweave/{wallet[1]}/env@" in ok.stdout, ok.stderr
    missing = hoard("push", str(src), "arweave/me/env", "--home", str(tmp_path / "home"))
    assert missing.returncode == 2 and "ARWEAVE_WALLET_FILE_PATH" in missing.stderr


def test_without_the_arweave_extra_the_push_names_it(wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src", {"x.bin": b"x"})
    code = "import sys; sys.modules['arweave'] = None; from hoard.cli.main import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "push", str(src), "arweave/me/x", "--wallet", str(wallet[0]), "--gateway", gw.url,
         "--home", str(tmp_path / "home")], env=serve_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "pip install 'hoard[arweave]'" in proc.stderr, proc.stderr
    assert gw.requests == []


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: one redraw of a bar of cli/common.py ``progress_bar``: description, bar, rich's
#: DownloadColumn ("done/total unit"), TransferSpeedColumn and TimeRemainingColumn
_BAR = re.compile(r"^(?P<what>\S.*?) [━╸╺]+ (?P<done>[\d.,]+)/(?P<total>[\d.,]+) (?P<unit>bytes|kB|MB|GB) "
                  r"(?P<rate>\?|[\d.,]+ (?:bytes|kB|MB|GB)/s) (?P<eta>-:--:--|\d+:\d\d:\d\d)$")


def _bars(drawn: str) -> list[re.Match[str]]:
    """Every redraw of a bar, colours and cursor movements taken out."""
    lines = _ANSI.sub("", drawn).replace("\r", "\n").splitlines()
    return [m for m in (_BAR.match(line.strip()) for line in lines) if m]


def test_push_on_a_terminal_draws_a_progress_bar_on_stderr(
    wallet: tuple[Path, str], gw: FakeGateway, tmp_path: Path
) -> None:
    """On a terminal, ``hoard push`` draws its progress where ``hoard prefetch`` draws its
    own, on stderr (stdout keeps the summary for whoever reads it): the files being hashed,
    then the push — bytes sent of the bytes to send, a rate and the time remaining. The
    gateway answers each 256 KiB chunk 0.4 s late, so the bar is redrawn as they go."""
    wallet_path, address = wallet
    files = {"config.json": b'{"hidden_size": 8}', "model.onnx": Content("push-bar", 900_000).read()}  # 4 chunks
    src = model_dir(tmp_path / "src", files)
    gw.fault(route="post_chunk", latency=0.4)
    code, drawn, out = run_on_a_terminal([*HOARD, "push", str(src), "arweave/me/bar", "--wallet", str(wallet_path),
                                          "--gateway", gw.url, "--home", str(tmp_path / "home")], serve_env())  # fmt: skip
    assert code == 0, drawn
    assert f"as arweave/{address}/bar@" in out and "\x1b" not in out and "━" not in out, out  # the summary only
    bars = _bars(drawn)
    hashing = [m for m in bars if m["what"] == "hashing"]
    pushing = [m for m in bars if m["what"] == "pushing bar"]
    assert hashing and pushing, drawn

    # the totals: the directory's bytes, then the data of every transaction (the files,
    # ritual_manifest.json, the repo manifest)
    sent = [t for t in gw.weave.txs.values() if t.owner_address == address and t.tag("Repo-Name") == "bar"]
    assert len(sent) == 4
    for bars_of, size in ((hashing, sum(len(d) for d in files.values())), (pushing, sum(t.data.size for t in sent))):
        for m in bars_of:  # rich's decimal units
            assert (m["total"], m["unit"]) == (f"{size / 1e3:.1f}", "kB"), m.group(0)
    during = [m for m in pushing if float(m["done"]) < float(m["total"])]
    assert any(re.fullmatch(r"\d+:\d\d:\d\d", m["eta"]) and m["rate"] != "?" for m in during), drawn
    last = pushing[-1]
    assert (last["done"], last["eta"]) == (last["total"], "0:00:00"), last.group(0)
    print("push's bar, last redraws:", *[m.group(0) for m in pushing[-3:]], sep="\n  ")


# --------------------------------------------------------------------------------------
# the Hub
# --------------------------------------------------------------------------------------


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        yield fake


def push_hub(src: Path, address: str, hub: FakeHub, home: Path, *extra: str, token: str | None = "hf_writer") -> Any:
    env = {**serve_env(), **({"HF_TOKEN": token} if token else {})}
    return hoard("push", str(src), address, "--hf-endpoint", hub.url, "--home", str(home), "--json", *extra, env=env)


def test_hub_push_is_one_commit_with_lfs_and_reads_back_with_no_origin_bytes(hub: FakeHub, tmp_path: Path) -> None:
    files = {
        "config.json": b'{"hidden_size": 8}',
        "model.safetensors": Content("hub-weights", 3_000_000).read(),  # LFS by the Hub's patterns
        "tokenizer/vocab.txt": b"a\nb\n",
    }
    src = model_dir(tmp_path / "src", files)
    home = tmp_path / "home"
    out = pushed(push_hub(src, "huggingface/org/pushed", hub, home, "--ritual", "--metadata", "cpu_cores=3"))
    commit = out["commit"]
    assert out["address"] == f"huggingface/org/pushed@{commit}" and hub.head("org/pushed") == commit
    assert hub.count("/commit/main", method="POST") == 1  # one commit, whatever hf_xet says
    assert hub.count("xet") == 0 and hub.count(origin="cdn", method="PUT") == 1  # only the LFS file
    assert hub.file("org/pushed", "model.safetensors").lfs and not hub.file("org/pushed", "config.json").lfs
    manifest = json.loads(hub.file("org/pushed", "ritual_manifest.json").content.read())
    assert manifest["repo_id"] == "huggingface/org/pushed" and manifest["metadata"]["config.json"]["cpu_cores"] == 3
    for rel, data in files.items():
        assert hub.file("org/pushed", rel).content.read() == data

    hub.clear_log()
    with ProxyThread(home, hub.url) as px:
        for rel, data in files.items():
            got = call("GET", f"{px.url}/v1/files/huggingface/org/pushed/{rel}")
            assert got.status == 200 and got.body == data, rel
    assert hub.bytes_sent == {"hub": 0, "cdn": 0} and hub.requests == []


def test_hub_push_to_a_new_private_branch(hub: FakeHub, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src", {"model.bin": Content("branch", 200_000).read()})
    home = tmp_path / "home"
    out = pushed(push_hub(src, "huggingface/org/secret", hub, home, "--revision", "dev", "--private"))
    assert out["branch"] == "dev" and out["private"] is True and hub.head("org/secret", "dev") == out["commit"]
    assert hub.head("org/secret", "main") != out["commit"]  # main keeps the initial commit
    anonymous = call("GET", f"{hub.url}/api/models/org/secret")
    assert anonymous.status == 401  # private
    with Store(StoreConfig(home)) as store:
        ref = store.get_ref("huggingface/org/secret", "dev")
        snap = store.get_snapshot("huggingface/org/secret", out["commit"])
    assert ref is not None and ref.revision == out["commit"] and snap is not None and snap.restricted
    again = pushed(push_hub(src, "huggingface/org/secret", hub, home, "--revision", "dev"))  # branch exists: fine
    assert again["commit"] == out["commit"]  # nothing changed: no new commit


def test_upload_model_to_the_hub_writes_ritual_manifest(hub: FakeHub, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src", {"model.onnx": Content("api-hub", 50_000).read()})
    with Store(StoreConfig(tmp_path / "home")) as store:
        result = upload_model(
            src,
            "huggingface/org/api-model",
            {"model.onnx": {"cpu_cores": 8, "memory_requirements": 5}},
            hf_token="hf_writer",
            store=store,
            settings=PushSettings(hf_endpoint=hub.url),
        )
        assert store.get_ref("huggingface/org/api-model", "main").revision == result.revision  # type: ignore[union-attr]
    manifest = json.loads(hub.file("org/api-model", "ritual_manifest.json").content.read())
    assert manifest["metadata"]["model.onnx"]["cpu_cores"] == 8 and manifest["files"] == ["model.onnx"]
    assert hub.count("/commit/main", method="POST") == 1


def test_hub_push_needs_a_token_and_reports_refusals(hub: FakeHub, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src", {"a.txt": b"a"})
    none = push_hub(src, "huggingface/org/x", hub, tmp_path / "home", token=None)
    assert none.returncode == 2 and "HF_TOKEN" in none.stderr and hub.requests == []
    hub.tokens = {"good"}
    refused = push_hub(src, "huggingface/org/x", hub, tmp_path / "home", token="bad")
    assert refused.returncode == 4 and "refused this token" in refused.stderr, refused.stderr
    hub.pause()
    down = push_hub(src, "huggingface/org/x", hub, tmp_path / "home", token="good")
    assert down.returncode == 6 and "Traceback" not in down.stderr, down.stderr
