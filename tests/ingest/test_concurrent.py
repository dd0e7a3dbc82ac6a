"""Readers during `ingest --overwrite` see the old complete store, the new one, or a clear error — never a mix."""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest

import ingest.pipeline as ingest_pipeline
from ingest import IngestConfig, ingest
from store import StoreError, open_store


def test_readers_see_old_or_new_store_or_a_clear_error(tmp_path, quest_csv, small_blocks, monkeypatch):
    versions = {}  # the exact row order each seed gives, from stores nobody replaces
    for seed in (1, 2, 3, 4):
        ref = str(tmp_path / f"ref{seed}.zarr")
        ingest(IngestConfig([quest_csv], ref, seed=seed, workers=1, progress=False))
        versions[seed] = open_store(ref).read_frame("train", columns=["attempt_id"])["attempt_id"].to_numpy()
    out = str(tmp_path / "s.zarr")
    ingest(IngestConfig([quest_csv], out, seed=1, workers=1, progress=False))
    seen, errors, done = [], [], threading.Event()
    reads, swaps = [], []  # (start, end) of every read, and of every swap (the publishing renames and removals)
    publish = ingest_pipeline._publish

    def timed_publish(*args):
        started = time.monotonic()
        try:
            return publish(*args)
        finally:
            swaps.append((started, time.monotonic()))

    monkeypatch.setattr(ingest_pipeline, "_publish", timed_publish)

    def reader():
        while not done.is_set():
            started = time.monotonic()
            try:
                ids = open_store(out).read_frame("train", columns=["attempt_id"])["attempt_id"].to_numpy()
            except StoreError as exc:  # between the two renames, or a chunk of the removed store
                errors.append(str(exc))
                continue
            except FileNotFoundError as exc:  # zarr-python opening an array of the renamed store
                errors.append(str(exc))
                continue
            finally:
                reads.append((started, time.monotonic()))
            seen.append(next((seed for seed, v in versions.items() if np.array_equal(ids, v)), "mixed"))

    def overlaps() -> int:
        return sum(1 for r0, r1 in list(reads) for s0, s1 in swaps if r0 <= s1 and s0 <= r1)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(3):  # more rounds only while no read has overlapped a swap yet (timing-dependent)
        for seed in (2, 3, 4):
            ingest(IngestConfig([quest_csv], out, seed=seed, overwrite=True, workers=1, progress=False))
        if overlaps():
            break
    done.set()
    for t in threads:
        t.join()
    assert overlaps() >= 1, f"no read overlapped any of the {len(swaps)} swaps: the test exercised nothing"
    assert seen and "mixed" not in seen  # every successful read is one complete version
    assert len(set(seen)) >= 2  # the readers saw the store change under them
    assert all("\n" not in e for e in errors)
    final = open_store(out).read_frame("train", columns=["attempt_id"])["attempt_id"].to_numpy()
    assert np.array_equal(final, versions[4])


def test_a_reader_never_mixes_the_replaced_store_with_the_new_one(tmp_path, quest_csv):
    out = str(tmp_path / "s.zarr")
    ingest(IngestConfig([quest_csv], out, seed=1, batch_size=100, workers=1, progress=False))
    store = open_store(out)
    reader = store.chunk_reader("train", "int64")  # attempt_id lives here
    old = [reader.chunk(k).copy() for k in range(3)]
    ingest(IngestConfig([quest_csv], out, seed=2, batch_size=100, overwrite=True, workers=1, progress=False))
    assert np.array_equal(reader.chunk(1), old[1])  # same shard file, still open: the old store's bytes
    fresh = open_store(out).chunk_reader("train", "int64")
    assert not np.array_equal(fresh.chunk(1), old[1])
    with pytest.raises(StoreError, match="replaced"):
        pickle.loads(pickle.dumps(reader)).chunk(0)  # a worker process re-opening it refuses the new store
    with pytest.raises(StoreError, match="replaced or removed"):
        store.read_frame("train")


def digest(path: str, epoch: int) -> str:
    """SHA-256 of every batch of one epoch, in order."""
    import hashlib

    from trainer.batches import iter_batches
    h = hashlib.sha256()
    for x, y in iter_batches(path, "train", epoch=epoch, label="clear"):
        for part in (x["numeric"], x["categorical"], y):
            h.update(part.tobytes())
    return h.hexdigest()


READ_ALL = "import sys; from tests.ingest.test_concurrent import digest; print(digest(sys.argv[1], int(sys.argv[2])))"


def test_several_processes_read_one_store_at_once(tmp_path, quest_csv):
    """Concurrent training readers: each process gets exactly the batches a lone reader gets."""
    import subprocess
    import sys

    from tests.helpers import subprocess_env
    out = str(tmp_path / "s.zarr")
    ingest(IngestConfig([quest_csv], out, batch_size=50, label="clear", workers=1, progress=False))
    expected = {epoch: digest(out, epoch) for epoch in range(4)}
    procs = [subprocess.Popen([sys.executable, "-c", READ_ALL, out, str(epoch)], stdout=subprocess.PIPE, text=True,
                              env=subprocess_env()) for epoch in (0, 1, 2, 3, 0, 1)]
    results = [(p.communicate(timeout=120)[0].strip(), p.returncode) for p in procs]
    assert results == [(expected[e], 0) for e in (0, 1, 2, 3, 0, 1)]
