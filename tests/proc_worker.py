"""A store client run as a separate process by the multi-process tests.

``python -m tests.proc_worker HOME ALIAS SIZE SEED LOG [--die-at STAGE[:N]]``

Fills the partial for ALIAS with deterministic content (blake3 XOF of SEED), claiming chunks
in a random order, appending "pid chunk" to LOG for every chunk it claims, and waits for
chunks other processes hold. ``--die-at`` kills the process with SIGKILL at a chosen point,
after printing ``dying`` (so the test knows it happened, without sleeping):

* ``mid-chunk:N``  — with the N-th claimed chunk half written, before commit;
* ``after-mark:N`` — right after the N-th chunk is marked present;
* ``after-link``   — after the verified file is linked into blobs/, before it is indexed.

``--hold-until PATH`` makes the worker stop with its first chunk half written until PATH
exists, so a test can run another process against the partial at a known moment.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sys
import time
from pathlib import Path

import blake3

from hoard.store.config import StoreConfig
from hoard.store.partial import Partial
from hoard.store.records import ExpectedHash
from hoard.store.store import Published, Store

CHUNK = 64 << 10


def content(seed: str, size: int) -> bytes:
    return blake3.blake3(seed.encode()).digest(length=size)


def die() -> None:
    print("dying", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("home")
    ap.add_argument("alias")
    ap.add_argument("size", type=int)
    ap.add_argument("seed")
    ap.add_argument("log")
    ap.add_argument("--die-at", default="")
    ap.add_argument("--hold-until", default="")
    args = ap.parse_args()
    stage, _, nth = args.die_at.partition(":")
    nth_i = int(nth or 0)

    data = content(args.seed, args.size)
    expected = ExpectedHash("sha256", hashlib.sha256(data).hexdigest())
    store = Store(StoreConfig(Path(args.home), chunk_size=CHUNK))

    if stage == "after-link":
        real_link = os.link

        def link_then_die(src, dst, *a, **k):  # type: ignore[no-untyped-def]
            real_link(src, dst, *a, **k)
            if "/blobs/" in str(dst):
                die()

        os.link = link_then_die  # type: ignore[assignment]

    got = store.open_file(args.alias, args.size, expected)
    if isinstance(got, Published):
        print(f"published {got.b3}", flush=True)
        return 0
    p: Partial = got
    order = list(range(p.nchunks))
    random.Random(os.getpid()).shuffle(order)
    claimed = 0
    log = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        progress = False
        for i in order:
            w = p.claim(i)
            if w is None:
                continue
            progress = True
            claimed += 1
            os.write(log, f"{os.getpid()} {i}\n".encode())
            if stage == "mid-chunk" and claimed == nth_i:
                w.write(data[w.start : w.start + w.length // 2])
                die()
            if args.hold_until and claimed == 1:
                w.write(data[w.start : w.start + w.length // 2])
                print("holding", flush=True)
                while not os.path.exists(args.hold_until):  # released by the test
                    time.sleep(0.01)
                w.rewind()
            w.write(data[w.start : w.end])
            w.commit()
            if stage == "after-mark" and claimed == nth_i:
                die()
        p.refresh()
        if p.b3 is not None:
            break
        if p.complete:
            b3 = p.finalize()
            if b3 is not None:
                break
            continue
        if not progress:
            time.sleep(0.01)  # chunks held by other processes: poll for them
    print(f"published {p.b3}", flush=True)
    store.release(p)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
