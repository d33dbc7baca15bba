"""``hoard prefetch`` as operators run it: several addresses of any source, manifests (-f),
failures that do not stop the rest, resuming after a kill, progress on a terminal, and warming
a running ``hoard serve`` (--upstream) instead of the local store.

Real ``hoard`` processes against fake origins (`FakeHub`, `FakeGateway`); no test sleeps to
synchronise (`wait_for` polls what the product reaches).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from hoard.store.config import StoreConfig
from hoard.store.store import Store

from .fakes.arweave import FakeGateway
from .fakes.content import Content
from .fakes.hub import FakeHub
from .harness import ServeProcess, run_on_a_terminal, serve_env, wait_for

MiB = 1 << 20
HOARD = [sys.executable, "-m", "hoard.cli.main"]
TOKEN = "hf_clarifai_secret_0123456789"
WEIGHTS = Content("prefetch-weights", 3 * MiB + 17)
ONNX = Content("prefetch-onnx", 200_000)


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_repo("org/model", {"config.json": b'{"a": 1}', "model.safetensors": WEIGHTS, "model.onnx": ONNX})
        fake.add_repo("org/other", {"config.json": b'{"b": 2}', "weights.bin": Content("other", 300_000)})
        fake.add_repo("org/secret", {"config.json": b'{"s": 1}', "w.safetensors": Content("secret", 400_000)},
                      private=True, allowed_tokens=[TOKEN])
        yield fake


@pytest.fixture(autouse=True)
def fresh(hub: FakeHub) -> Iterator[None]:
    hub.resume()
    hub.clear_faults()
    hub.clear_log()
    yield
    hub.resume()
    hub.clear_faults()


def cli(home: Path, *args: str, hub: FakeHub | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    base = dict(env or serve_env(), HOARD_HOME=str(home))
    if hub is not None:
        base["HOARD_HF_ENDPOINT"] = hub.url
    proc = subprocess.run([*HOARD, *args], env=base, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"hoard {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def cli_json(home: Path, *args: str, **kw: Any) -> Any:
    return json.loads(cli(home, *args, "--json", **kw).stdout)


def states(doc: dict[str, Any]) -> dict[str, str]:
    return {f"{f['repo']}/{f['path']}": f["state"] for f in doc["files_detail"]}


# -- several addresses, of several sources ------------------------------------------------------


def test_several_addresses_of_any_source_and_model_ids(hub: FakeHub, tmp_path: Path) -> None:
    with FakeGateway() as gw:
        a, b, c = Content("ar-a", 90_000), Content("ar-b", 60_000), Content("ar-c", 70_000)
        repo = gw.seed_ritual_repo(gw.wallet("alice"), "trio", {"a.onnx": a, "b.onnx": b, "c.bin": c})
        ar = f"arweave/{repo.owner}/{repo.name}"
        home = tmp_path / "home"
        doc = cli_json(home, "prefetch", f"{ar}:a.onnx,b.onnx", "huggingface/org/model:model.onnx", "org/other",
                       "--arweave-gateway", gw.url, hub=hub)
        assert doc["ok"] and doc["failed"] == 0 and doc["repo"] is None  # several repos
        got = states(doc)
        assert got == {f"{ar}/a.onnx": "fetched", f"{ar}/b.onnx": "fetched",
                       "huggingface/org/model/model.onnx": "fetched",
                       "huggingface/org/other/.gitattributes": "fetched", "huggingface/org/other/config.json": "fetched",
                       "huggingface/org/other/weights.bin": "fetched"}
        assert doc["files"] == 6 and doc["fetched"] == 6
        assert gw.tx_bytes_sent.get(repo.files["c.bin"].txid, 0) == 0  # only the named files
        assert hub.count("model.safetensors", origin="cdn") == 0
        assert [t["address"] for t in doc["targets"]] == [f"{ar}:a.onnx,b.onnx"] * 2 + [
            "huggingface/org/model:model.onnx", "org/other"]

        # again: everything is present, nothing is fetched
        gw_before, hub_before = gw.bytes_sent, hub.bytes_sent["cdn"]
        again = cli_json(home, "prefetch", f"{ar}:a.onnx,b.onnx", "org/other", "--arweave-gateway", gw.url, hub=hub)
        assert (again["fetched"], again["cached"]) == (0, 5) and set(states(again).values()) == {"present"}
        assert gw.bytes_sent == gw_before and hub.bytes_sent["cdn"] == hub_before
        text = cli(home, "prefetch", "org/other", hub=hub).stdout
        assert "huggingface/org/other@" in text and "3 already present" in text


def test_failures_are_reported_and_the_rest_is_still_fetched(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = cli(home, "prefetch", "org/does-not-exist", "org/other", "huggingface/org/model:nope.onnx", "--json",
               hub=hub, check=False)
    assert proc.returncode == 3, proc.stderr  # both failures are "not found": that exit code
    doc = json.loads(proc.stdout)
    assert doc["fetched"] == 3 and doc["failed"] == 2 and not doc["ok"]
    failed = {t["address"]: t["kind"] for t in doc["targets"] if t["error"]}
    assert set(failed) == {"org/does-not-exist", "huggingface/org/model:nope.onnx"}
    assert "org/does-not-exist" in proc.stderr and "nope.onnx" in proc.stderr
    assert {f["path"] for f in cli_json(home, "ls", "huggingface/org/other")["files"] if f["blake3"]} == {
        ".gitattributes", "config.json", "weights.bin"}

    # failures of different kinds (not found, an origin that cannot be reached): exit 1
    unreachable = "arweave/" + "A" * 43 + "/repo"
    mixed = cli(home, "prefetch", unreachable, "org/does-not-exist", "--arweave-gateway", "http://127.0.0.1:9",
                hub=hub, check=False)
    assert mixed.returncode == 1 and unreachable in mixed.stderr and "org/does-not-exist" in mixed.stderr
    alone = cli(home, "prefetch", unreachable, "--arweave-gateway", "http://127.0.0.1:9", check=False)
    assert alone.returncode == 6, alone.stderr


# -- manifests ------------------------------------------------------------------------------------


def test_list_file_and_clarifai_config_with_a_token_for_one_repo(hub: FakeHub, tmp_path: Path) -> None:
    listing = tmp_path / "models.txt"
    listing.write_text("# the fleet's models\n\norg/other   # a bare Hub id\nhuggingface/org/model:config.json\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "model:\n  id: secret-model\n  user_id: me\n"
        "checkpoints:\n"
        "  type: huggingface\n"
        "  repo_id: org/secret\n"
        f"  hf_token: {TOKEN}\n"
        "  when: runtime\n"
        "  allowed_file_patterns: ['*.safetensors', '*.json']\n"
    )
    home = tmp_path / "home"
    proc = cli(home, "prefetch", "-f", str(listing), "-f", str(config), "--json", hub=hub)
    doc = json.loads(proc.stdout)
    assert doc["ok"], doc
    assert set(states(doc)) == {
        "huggingface/org/other/.gitattributes", "huggingface/org/other/config.json", "huggingface/org/other/weights.bin",
        "huggingface/org/model/config.json",
        "huggingface/org/secret/config.json", "huggingface/org/secret/w.safetensors"}  # no .gitattributes
    # the token went to the Hub for org/secret only, and nowhere else
    for r in hub.requests:
        if r.origin == "hub" and "org/secret" in r.path:
            assert r.authorization == f"Bearer {TOKEN}", r.path
        else:
            assert r.authorization is None, (r.origin, r.path)
    assert TOKEN not in proc.stdout + proc.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_ritual_manifest_fetches_exactly_its_files(hub: FakeHub, tmp_path: Path) -> None:
    with FakeGateway() as gw:
        files = {"model.onnx": Content("rit-model", 120_000), "extra.bin": Content("rit-extra", 80_000)}
        repo = gw.seed_ritual_repo(gw.wallet("bob"), "iris", files)
        unique = f"arweave/{repo.owner}/{repo.name}"
        manifest = tmp_path / "ritual_manifest.json"
        manifest.write_text(json.dumps({
            "files": ["model.onnx"], "repo_id": unique, "artifact_type": "ModelArtifact",
            "metadata": {"model.onnx": {"id": f"{unique}:model.onnx", "cpu_cores": 2}}}))
        doc = cli_json(tmp_path / "home", "prefetch", "-f", str(manifest), "--arweave-gateway", gw.url)
        assert states(doc) == {f"{unique}/model.onnx": "fetched"}
        assert gw.tx_bytes_sent.get(repo.files["extra.bin"].txid, 0) == 0


def _resolved_names(hub: FakeHub) -> set[str]:
    """The file names hoard asked the Hub to resolve (``/resolve/<rev>/<path>``)."""
    return {unquote(r.path).rsplit("/", 1)[1] for r in hub.requests if r.origin == "hub" and "/resolve/" in r.path}


def test_exclude_skips_the_files_it_matches(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    doc = cli_json(home, "prefetch", "org/model", "--exclude", "*.safetensors", "--exclude", "*.onnx", hub=hub)
    assert doc["ok"] and states(doc) == {"huggingface/org/model/.gitattributes": "fetched",
                                         "huggingface/org/model/config.json": "fetched"}  # fmt: skip
    # the excluded files were never asked for: not resolved at the Hub, no byte from the CDN
    assert _resolved_names(hub) == {".gitattributes", "config.json"}
    assert hub.count(origin="cdn") == 0 and hub.bytes_sent["cdn"] == 0
    listed = {f["path"]: f["blake3"] for f in cli_json(home, "ls", "huggingface/org/model", hub=hub)["files"]}
    assert listed["model.safetensors"] is None and listed["model.onnx"] is None and listed["config.json"]

    # the same repo without --exclude: what was skipped is fetched now, the rest is present
    hub.clear_log()
    doc = cli_json(home, "prefetch", "org/model", hub=hub)
    assert states(doc) == {"huggingface/org/model/.gitattributes": "present",
                           "huggingface/org/model/config.json": "present",
                           "huggingface/org/model/model.safetensors": "fetched",
                           "huggingface/org/model/model.onnx": "fetched"}  # fmt: skip
    assert hub.bytes_sent["cdn"] == WEIGHTS.size + ONNX.size

    # a model id names its files: no glob applies to it
    refused = cli(home, "prefetch", "huggingface/org/model:model.onnx", "--exclude", "*.onnx", hub=hub, check=False)
    assert refused.returncode == 2 and "model id names its files" in refused.stderr


def test_clarifai_ignore_file_patterns_exclude_with_the_command_line_ones(hub: FakeHub, tmp_path: Path) -> None:
    """A Clarifai config's ``ignore_file_patterns`` skip files as --exclude does, and add to it."""
    config = tmp_path / "config.yaml"
    config.write_text("checkpoints:\n  type: huggingface\n  repo_id: org/model\n"
                      "  ignore_file_patterns: ['*.onnx']\n")  # fmt: skip
    doc = cli_json(tmp_path / "home", "prefetch", "-f", str(config), "--exclude", "*.json", hub=hub)
    assert doc["ok"] and states(doc) == {"huggingface/org/model/.gitattributes": "fetched",
                                         "huggingface/org/model/model.safetensors": "fetched"}  # fmt: skip
    assert _resolved_names(hub) == {".gitattributes", "model.safetensors"}
    assert hub.bytes_sent["cdn"] == WEIGHTS.size  # the weights only, nothing of model.onnx


# -- --jobs: files fetched N at a time ------------------------------------------------------------


def _in_flight(hub: FakeHub) -> set[str]:
    """The CDN objects whose answer is under way: headers sent, body not all written yet."""
    return {r.path for r in hub.requests if r.origin == "cdn" and r.method == "GET" and not r.aborted
            and r.body_length is not None and r.bytes_sent < r.body_length}  # fmt: skip


@pytest.mark.parametrize(("jobs", "count", "stall"), [(3, 5, 2.0), (1, 3, 1.0)], ids=["jobs3", "jobs1"])
def test_jobs_files_are_fetched_that_many_at_a_time(hub: FakeHub, tmp_path: Path, jobs: int, count: int,
                                                     stall: float) -> None:  # fmt: skip
    """The CDN holds every answer ``stall`` seconds after its headers (a slow origin): while
    held, the files being fetched are counted at the origin, polled all through the run. With
    --jobs N that count reaches N and never exceeds it."""
    repo = f"org/jobs{jobs}"
    files = {f"w{i}.bin": Content(f"{repo}-{i}", 100_000 + i) for i in range(count)}  # one chunk each, on the CDN
    hub.add_repo(repo, files, gitattributes=False)
    hub.fault(origin="cdn", method="GET", stall=stall, stall_at=0)
    env = dict(serve_env(), HOARD_HOME=str(tmp_path / "home"), HOARD_HF_ENDPOINT=hub.url)
    proc = subprocess.Popen([*HOARD, "prefetch", f"huggingface/{repo}", "--jobs", str(jobs), "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen: list[int] = []

    def sample() -> bool:
        seen.append(len(_in_flight(hub)))
        return proc.poll() is not None

    try:
        wait_for(sample, timeout=120)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0 and "Traceback" not in err, err
    doc = json.loads(out)
    assert doc["fetched"] == count and set(states(doc).values()) == {"fetched"}
    print(f"--jobs {jobs}: files in flight at the CDN, most at once {max(seen)} ({len(seen)} samples)")
    assert max(seen) == jobs, seen
    cdn = [r.path for r in hub.requests if r.origin == "cdn" and r.method == "GET"]
    assert len(set(cdn)) == count  # every file came from the CDN
    if jobs == 1:  # one after the other: each file's requests are one run in the origin's log
        runs = [p for i, p in enumerate(cdn) if i == 0 or cdn[i - 1] != p]
        assert len(runs) == count, cdn


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"\x00\x01\x02binary", "blob.bin", "not text"),
        (b'{"weights": 1}', "thing.json", "not a ritual_manifest.json"),
        (b"model:\n  id: x\n", "config.yaml", "without a checkpoints: section"),
        (b"checkpoints:\n  type: s3\n  repo_id: a/b\n", "config.yaml", "only type: huggingface"),
        (b"# only a comment\n\n", "list.txt", "names no address"),
        (b"org/ok\nhuggingface/org/../x\n", "list.txt", "not allowed"),
    ],
    ids=["binary", "json", "yaml-no-checkpoints", "yaml-s3", "empty-list", "bad-line"],
)
def test_a_file_of_no_known_kind_is_a_clear_error(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    proc = cli(tmp_path / "home", "prefetch", "-f", str(path), check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and proc.stderr.count("\n") == 1


# -- resuming, progress ---------------------------------------------------------------------------


def _present(home: Path, identity: str) -> int:
    with Store(StoreConfig(home)) as store:
        status = store.partial_status(identity)
        return 0 if status is None else status[0]


def test_a_killed_prefetch_resumes_from_the_chunks_stored(hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    identity = f"sha256:{WEIGHTS.sha256}"
    hub.fault(origin="cdn", method="GET", slow=1 * MiB)  # about a second per MiB: a window to kill in
    env = dict(serve_env(), HOARD_HOME=str(home), HOARD_HF_ENDPOINT=hub.url)
    proc = subprocess.Popen([*HOARD, "prefetch", "huggingface/org/model", "--include", "*.safetensors",
                             "--chunk-size", "256KiB"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _present(home, identity) >= 1 * MiB, timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    kept = _present(home, identity)
    assert 1 * MiB <= kept < WEIGHTS.size
    hub.clear_faults()
    hub.clear_log()
    doc = cli_json(home, "prefetch", "huggingface/org/model", "--include", "*.safetensors", "--chunk-size", "256KiB",
                   hub=hub)
    assert doc["ok"] and doc["fetched"] == 1
    resent = hub.bytes_sent["cdn"]
    print(f"resumed: {kept} bytes were kept, {resent} of {WEIGHTS.size} fetched again")
    assert resent <= WEIGHTS.size - kept + 256 * 1024  # at most the chunk in flight again
    assert cli_json(home, "info", "huggingface/org/model/model.safetensors")["blake3"] == WEIGHTS.blake3


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: the total's line as cli/progress.py draws it: description, bar, rich's DownloadColumn
#: ("done/total unit"), TransferSpeedColumn ("?" until it has two samples) and
#: TimeRemainingColumn ("-:--:--" until it can estimate, then h:mm:ss)
_TOTAL_LINE = re.compile(r"^prefetch: (?P<finished>\d+)/(?P<files>\d+) file\(s\) .*? "
                         r"(?P<done>[\d.,]+)/(?P<total>[\d.,]+) (?P<unit>bytes|kB|MB|GB) "
                         r"(?P<rate>\?|[\d.,]+ (?:bytes|kB|MB|GB)/s) (?P<eta>-:--:--|\d+:\d\d:\d\d)$")


def _frames(drawn: str) -> list[str]:
    """Every line rich drew, its colours and cursor movements taken out: one entry per
    redraw of each bar (a redraw starts with a carriage return or a cursor move)."""
    return [line.strip() for line in _ANSI.sub("", drawn).replace("\r", "\n").splitlines() if line.strip()]


def test_progress_on_a_terminal_shows_each_file_and_a_total(hub: FakeHub, tmp_path: Path) -> None:
    """The CDN sends 2 MiB/s and chunks are fetched one at a time (``--origin-connections
    1``): the weights take a second and a half, about eight redraws of the total's line, which
    shows files done, bytes done of the bytes to fetch, a rate and the time remaining."""
    hub.fault(origin="cdn", method="GET", slow=2 * MiB)
    env = dict(serve_env(), HOARD_HOME=str(tmp_path / "home"), HOARD_HF_ENDPOINT=hub.url)
    code, drawn, _ = run_on_a_terminal([*HOARD, "prefetch", "org/model", "--chunk-size", "256KiB",
                                      "--origin-connections", "1"], env)  # fmt: skip
    assert code == 0, drawn
    assert "org/model/model.safetensors" in drawn  # the file's own bar
    assert "prefetch:" in drawn and "file(s)" in drawn  # the total
    assert "/s" in drawn  # a rate

    frames = _frames(drawn)
    totals = [m for m in map(_TOTAL_LINE.match, frames) if m]  # once the total size is known
    assert totals, "\n".join(frames)
    size = sum(hub.file("org/model", p).size for p in (".gitattributes", "config.json", "model.safetensors",
                                                       "model.onnx"))  # fmt: skip
    for m in totals:  # rich's decimal units: the bytes of the whole fetch, every frame
        assert (m["files"], m["total"], m["unit"]) == ("4", f"{size / 1e6:.1f}", "MB"), m.group(0)
    during = [m for m in totals if float(m["done"]) < float(m["total"])]
    assert during, "\n".join(frames)  # drawn while bytes were still coming
    assert any(re.fullmatch(r"\d+:\d\d:\d\d", m["eta"]) and m["rate"] != "?" for m in during), "\n".join(frames)
    last = totals[-1]  # the final redraw: everything done, nothing remaining
    assert (last["finished"], last["done"], last["eta"]) == ("4", last["total"], "0:00:00"), "\n".join(frames)
    print("the total's last redraws:", *[m.group(0) for m in totals[-3:]], sep="\n  ")


# -- warming a running hoard serve ---------------------------------------------------------------


def test_upstream_warms_that_server_and_follows_its_progress(hub: FakeHub, tmp_path: Path) -> None:
    parent_home, home = tmp_path / "parent", tmp_path / "node"
    with ServeProcess(parent_home, hub.url, "--admin-token", "s3cret", env=serve_env()) as parent:
        refused = cli(home, "prefetch", "org/model", "--upstream", parent.url, check=False)
        assert refused.returncode == 4 and "X-Hoard-Admin-Token" in refused.stderr
        env = dict(serve_env(), HOARD_ADMIN_TOKEN="s3cret")
        doc = cli_json(home, "prefetch", "org/model", "org/other:config.json", "--upstream", parent.url, env=env)
        assert doc["ok"] and doc["upstream"] == [parent.url]
        sizes = [hub.file("org/model", p).size for p in (".gitattributes", "config.json", "model.safetensors",
                                                        "model.onnx")] + [hub.file("org/other", "config.json").size]
        assert doc["files"] == 5 and doc["fetched"] == 5 and doc["bytes"] == doc["done_bytes"] == sum(sizes)
        assert doc["repo"] is None and {t["repo"] for t in doc["targets"]} == {"huggingface/org/model",
                                                                              "huggingface/org/other"}
        # the parent has the files; this node's store was not touched
        listed = json.loads(subprocess.run([*HOARD, "ls", "huggingface/org/model", "--json", "--home", str(parent_home)],
                                           capture_output=True, text=True, timeout=60).stdout)
        assert all(f["blake3"] for f in listed["files"])
        assert not (home / "blobs").exists() or not any((home / "blobs").rglob("*"))
        # failures on the server come back with their exit code
        missing = cli(home, "prefetch", "org/none", "--upstream", parent.url, env=env, check=False)
        assert missing.returncode == 3 and "org/none" in missing.stderr
        # --local fills this store through the parent instead
        local = cli_json(home, "prefetch", "org/other", "--upstream", parent.url, "--local", env=env)
        assert local["fetched"] == 3 and local["upstream"] == []


def test_a_remote_prefetch_draws_the_servers_progress(hub: FakeHub, tmp_path: Path) -> None:
    # 2 MiB/s, one chunk at a time: the server's fetch lasts a second and a half, the bars get
    # drawn (with its 8 connections at once it could end before the first poll of its job)
    hub.fault(origin="cdn", method="GET", slow=2 * MiB)
    with ServeProcess(tmp_path / "parent", hub.url, "--chunk-size", "256KiB", "--origin-connections", "1",
                      env=serve_env()) as parent:  # fmt: skip
        env = dict(serve_env(), HOARD_HOME=str(tmp_path / "node"))
        code, drawn, _ = run_on_a_terminal([*HOARD, "prefetch", "org/model", "--upstream", parent.url], env)
    assert code == 0, drawn
    assert f"prefetch on {parent.url}" in drawn and "org/model/model.safetensors" in drawn and "/s" in drawn
