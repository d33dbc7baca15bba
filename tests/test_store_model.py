"""A Hypothesis state machine drives the store and a plain-dict model side by side.

Operations: add content under a name (an alias), fill a partial chunk by chunk in random
order, read, pin/unpin, gc to a random size, remove a name's blob through the store's one
removal path. After every step the store must agree with the model: what is present reads
back byte-exact, nothing pinned is gone, and the index agrees with the files (verify is
clean). The store has no gc grace period, so gc is free to take anything unpinned.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hoard.store.config import StoreConfig
from hoard.store.gc import execute_gc, plan_gc
from hoard.store.partial import Partial
from hoard.store.records import ExpectedHash
from hoard.store.removal import Doomed, remove
from hoard.store.store import Published, Store
from hoard.store.verify import select_blobs, verify

CHUNK = 4096
contents = st.binary(min_size=0, max_size=5 * CHUNK + 17)
names = st.sampled_from([f"url:n{i}" for i in range(6)])


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="hoard-model-"))
        self.store = Store(StoreConfig(self.dir, chunk_size=CHUNK, gc_grace=0))
        self.model: dict[str, bytes] = {}  # alias -> content, for complete blobs
        self.pinned: set[str] = set()  # aliases whose blob is pinned

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _b3(self, alias: str) -> str | None:
        return self.store.resolve(alias)

    @rule(name=names, data=contents)
    def add(self, name: str, data: bytes) -> None:
        if name in self.model:
            return  # a name means one content forever, as upstream identities do
        b3, size = self.store.add_bytes(data, aliases=[name])
        assert size == len(data)
        self.model[name] = data
        # content published with no promised hash is named by its sha256 too
        self.model["sha256:" + hashlib.sha256(data).hexdigest()] = data

    @rule(data=contents, order=st.randoms(use_true_random=False))
    def fill_partial(self, data: bytes, order) -> None:  # type: ignore[no-untyped-def]
        alias = "sha256:" + hashlib.sha256(data).hexdigest()
        got = self.store.open_file(alias, len(data), ExpectedHash("sha256", alias[7:]))
        if isinstance(got, Published):
            assert alias in self.model
            return
        p: Partial = got
        chunks = list(range(p.nchunks))
        order.shuffle(chunks)
        for i in chunks:
            w = p.claim(i)
            assert w is not None
            w.write(data[w.start : w.end])
            assert w.commit() == []
        assert p.finalize() is not None
        self.store.release(p)
        self.model[alias] = data

    @precondition(lambda self: bool(self.model))
    @rule(pick=st.data())
    def read(self, pick) -> None:  # type: ignore[no-untyped-def]
        alias = pick.draw(st.sampled_from(sorted(self.model)))
        b3 = self._b3(alias)
        assert b3 is not None
        assert self.store.blob_path(b3).read_bytes() == self.model[alias]

    @precondition(lambda self: bool(self.model))
    @rule(pick=st.data())
    def pin(self, pick) -> None:  # type: ignore[no-untyped-def]
        alias = pick.draw(st.sampled_from(sorted(self.model)))
        self.store.pin(f"blob:{self._b3(alias)}")
        self.pinned.add(alias)

    @precondition(lambda self: bool(self.pinned))
    @rule(pick=st.data())
    def unpin(self, pick) -> None:  # type: ignore[no-untyped-def]
        alias = pick.draw(st.sampled_from(sorted(self.pinned)))
        b3 = self._b3(alias)
        self.store.unpin(f"blob:{b3}")
        # every alias of that content loses the pin
        self.pinned = {a for a in self.pinned if self._b3(a) != b3}

    @rule(limit=st.integers(min_value=0, max_value=12 * CHUNK))
    def gc(self, limit: int) -> None:
        execute_gc(self.store, plan_gc(self.store, limit))
        pinned_b3 = {self._b3(a) for a in self.pinned}
        for alias in list(self.model):
            if self._b3(alias) is None:
                assert alias not in self.pinned
                del self.model[alias]
        for alias in self.pinned:
            assert self._b3(alias) in pinned_b3
        assert self.store.usage()["blob_bytes"] <= max(limit, sum(
            len(self.model[a]) for a in {self._b3(x): x for x in self.pinned}.values()
        ))

    @precondition(lambda self: bool(set(self.model) - self.pinned))
    @rule(pick=st.data())
    def remove(self, pick) -> None:  # type: ignore[no-untyped-def]
        alias = pick.draw(st.sampled_from(sorted(set(self.model) - self.pinned)))
        b3 = self._b3(alias)
        if any(self._b3(p) == b3 for p in self.pinned):
            return
        assert b3 is not None
        done = remove(self.store, Doomed(blobs=[b3]))
        assert done.blobs == [b3]
        assert not self.store.blob_path(b3).exists()
        for a in list(self.model):
            if self._b3(a) is None:
                del self.model[a]

    @invariant()
    def agrees_with_model(self) -> None:
        for alias, data in self.model.items():
            b3 = self._b3(alias)
            assert b3 is not None, alias
            blob = self.store.blob(b3)
            assert blob is not None and blob.size == len(data)
        # identical content is stored once
        distinct = {hashlib.sha256(d).digest() for d in self.model.values()}
        assert self.store.usage()["blobs"] == len(distinct)

    @invariant()
    def index_matches_files(self) -> None:
        report = verify(self.store, select_blobs(self.store), dry_run=True)
        assert report.ok, report.findings


StoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestStoreModel = StoreMachine.TestCase
