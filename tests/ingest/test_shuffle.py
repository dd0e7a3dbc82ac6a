"""Global shuffle, validation draw and determinism (same input + seed => same store, whatever the workers)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from ingest.config import BUCKET_BYTES, SMALL_BUCKET_BYTES, SMALL_BUCKETS, bucket_count
import ingest.passes
import ingest.pipeline
from ingest.passes import ShardPart
from ingest.pipeline import _shard_items
from ingest.shuffle import RUN_ROWS, Segments, ShardJob, SpillReader, spill_intact, write_spill
from store import StoreError, open_store
from tests.helpers import tree, without_timings
from tools.synth import write_csv


def _arrays(path):
    """Every data file of a store, by relative path, plus the root metadata (less its timings)."""
    out = tree(path)
    out["zarr.json"] = without_timings(out["zarr.json"])
    return out


def test_same_seed_same_store_for_any_worker_count(quest_csv, make_store, small_blocks):
    a, _ = make_store(quest_csv, val_fraction=0.1, seed=3, workers=1)
    b, _ = make_store(quest_csv, val_fraction=0.1, seed=3, workers=2)
    c, _ = make_store(quest_csv, val_fraction=0.1, seed=4, workers=2)
    assert _arrays(a) == _arrays(b)
    assert _arrays(a) != _arrays(c)


@pytest.mark.parametrize("options", [dict(val_fraction=0.1), dict(shuffle=False)])
def test_shards_written_in_parts_are_the_same_bytes(quest_csv, make_store, small_blocks, monkeypatch, options):
    """A store with fewer shards than the workers can share is written in parts of whole chunks that different
    workers encode and the last one assembles: the same store as one worker writing whole shards, with the parts
    gone. Forced inline (3 parts of every shard) and with forked workers (4 workers, 2 shards + 1: parts)."""
    reference, _ = make_store(quest_csv, batch_size=64, **options)
    items = []
    real = ingest.pipeline._shard_items
    with monkeypatch.context() as patch:
        patch.setattr(ingest.pipeline, "_shard_items",
                      lambda jobs, workers, batch: items.extend(real(jobs, 3, batch)) or real(jobs, 3, batch))
        inline, _ = make_store(quest_csv, batch_size=64, **options)
    assert {type(item).__name__ for item in items} == {"ShardPart"}
    items.clear()
    with monkeypatch.context() as patch:
        patch.setattr(ingest.pipeline, "_shard_items", lambda *args: items.extend(real(*args)) or real(*args))
        forked, _ = make_store(quest_csv, batch_size=64, workers=4, **options)
    assert {type(item).__name__ for item in items} == {"ShardPart"}
    assert _arrays(inline) == _arrays(reference) == _arrays(forked)
    assert not os.path.exists(ingest.pipeline.partial_path(inline))


def test_a_part_of_another_cut_is_never_assembled(quest_csv, make_store, small_blocks, monkeypatch):
    """Each part records how its shard was cut; a part file of another cut (left by an earlier run, were its
    deletion to fail) stops the assembly instead of going into the shard."""
    real = ingest.pipeline._shard_items
    monkeypatch.setattr(ingest.pipeline, "_shard_items", lambda jobs, workers, batch: real(jobs, 3, batch))
    real_assemble = ingest.passes._assemble

    def assemble_with_a_stale_part(c, job, folder, parts):
        path = os.path.join(folder, "1.json")
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        meta["cut"][1] += 1
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        return real_assemble(c, job, folder, parts)

    monkeypatch.setattr(ingest.passes, "_assemble", assemble_with_a_stale_part)
    with pytest.raises(StoreError, match="was cut as"):
        make_store(quest_csv, batch_size=64)


def test_shard_items_cut_shards_only_when_the_workers_would_wait():
    def job(rows):
        return ShardJob("train", 0, 0, rows, ((0, rows, 0, rows),))

    jobs = [job(1000) for _ in range(8)]
    assert _shard_items(jobs, 4, 10) == jobs and _shard_items(jobs, 1, 10) == jobs  # 2 per worker: enough
    parts = _shard_items(jobs[:3], 4, 10)  # 3 shards, 4 workers: 3 parts each
    assert len(parts) == 9 and all(isinstance(p, ShardPart) and p.parts == 3 for p in parts)
    assert [(p.first_chunk, p.stop_chunk) for p in parts[:3]] == [(0, 33), (33, 66), (66, 100)]
    assert _shard_items([job(15)], 16, 10) == [ShardPart(job(15), 0, 2, 0, 1), ShardPart(job(15), 1, 2, 1, 2)]
    assert _shard_items([job(5)], 16, 10) == [job(5)]  # one chunk: nothing to divide


def test_a_shard_job_cut_into_rows_takes_the_same_rows():
    whole = ShardJob("train", 2, 100, 160, ((3, 50, 30, 50), (4, 40, 0, 40)))  # 20 rows of bucket 3, 40 of 4
    assert whole.rows(0, 60) == whole
    assert whole.rows(0, 20).pieces == ((3, 50, 30, 50),)
    assert whole.rows(10, 30) == ShardJob("train", 2, 110, 130, ((3, 50, 40, 50), (4, 40, 0, 10)))
    assert whole.rows(25, 60).pieces == ((4, 40, 5, 40),)


def test_rows_are_globally_shuffled(quest_csv, make_store, small_blocks):
    out, _ = make_store(quest_csv)
    ids = open_store(out).read_frame("train", columns=["attempt_id"])["attempt_id"].to_numpy()
    source = pd.read_csv(quest_csv, usecols=["attempt_id"])["attempt_id"].to_numpy()
    assert sorted(ids) == sorted(source) and not np.array_equal(ids, source)
    rank = np.searchsorted(np.sort(source), ids)
    # rows from the whole file in every part of the store: no long ordered runs, correlation ~ 0
    assert abs(np.corrcoef(np.arange(len(rank)), rank)[0, 1]) < 0.1
    assert rank[:300].min() < 300 and rank[:300].max() > 2700


def test_no_shuffle_keeps_source_order(quest_csv, make_store, small_blocks):
    out, _ = make_store(quest_csv, shuffle=False, workers=2)
    ids = open_store(out).read_frame("train", columns=["attempt_id"])["attempt_id"]
    assert ids.tolist() == pd.read_csv(quest_csv, usecols=["attempt_id"])["attempt_id"].tolist()


def test_sorted_by_label_input_gives_mixed_batches(tmp_path, make_store, small_blocks):
    path = write_csv(tmp_path / "sorted.csv", 3000, seed=1, sort_by_label=True)
    out, _ = make_store(str(path), batch_size=100, label="clear")
    labels = open_store(out).read_frame("train", columns=["clear"])["clear"].to_numpy()
    per_batch = labels[: len(labels) // 100 * 100].reshape(-1, 100).mean(axis=1)
    assert per_batch.min() > 0.2 and per_batch.max() < 0.7


def test_validation_fraction_is_random_not_the_tail(quest_csv, make_store, small_blocks):
    out, result = make_store(quest_csv, val_fraction=0.25, shuffle=False)
    assert 600 < result.rows["validation"] < 900
    store = open_store(out)
    val = store.read_frame("validation", columns=["attempt_id"])["attempt_id"]
    source = pd.read_csv(quest_csv, usecols=["attempt_id"])["attempt_id"]
    positions = np.searchsorted(source.to_numpy(), val.to_numpy())
    assert positions.min() < 300 and positions.max() > 2700  # drawn from everywhere
    train = store.read_frame("train", columns=["attempt_id"])["attempt_id"]
    assert set(train).isdisjoint(val) and len(train) + len(val) == 3000


def test_separate_validation_folder(tmp_path, make_store):
    from tools.synth import write_split_files
    write_split_files(tmp_path / "log_quest" / "splited", 2500, rows_per_file=1000)
    write_split_files(tmp_path / "log_quest_validate" / "splited", 700, rows_per_file=1000, offset=10_000)
    out, result = make_store(str(tmp_path / "log_quest" / "splited"),
                             val=[str(tmp_path / "log_quest_validate" / "splited")], label="clear")
    assert result.rows == {"train": 2500, "validation": 700}
    val_ids = open_store(out).read_frame("validation", columns=["attempt_id"])["attempt_id"]
    assert val_ids.min() >= 9_007_199_254_740_993 + 2 * 10_000


def test_statistics_match_numpy(quest_csv, make_store, small_blocks):
    out, _ = make_store(quest_csv, val_fraction=0.2, workers=2)
    store = open_store(out)
    frame = store.read_frame("train")
    for col in ("play_time", "f25", "level", "started_at"):
        values = frame[col].astype("float64").dropna().to_numpy()
        stats = store.statistics["train"][col]
        assert stats["count"] == len(values) and stats["missing"] == len(frame) - len(values)
        assert stats["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert stats["std"] == pytest.approx(values.std(), rel=1e-6)
        assert stats["min"] == values.min() and stats["max"] == values.max()
    assert store.statistics["train"]["quest_name"] == {"count": len(frame), "missing": 0}


@pytest.mark.parametrize("shuffle", [True, False])
def test_shard_jobs_take_every_row_of_the_split_once(shuffle):
    """The writing pass's work items (ingest.shuffle.Segments.jobs): consecutive shards of shard_rows rows, each
    made of pieces of the buckets (blocks without a shuffle) in order, together every row of the split once."""
    rng = np.random.default_rng(0)
    table = Segments(n_buckets=5, shuffle=shuffle)
    counts = {}
    for block in range(7):
        segments, first = [], 0
        for bucket in range(5) if shuffle else [block]:
            for split in (0, 1):
                n = int(rng.integers(0, 40))
                if n:
                    segments.append([bucket, split, first, n])
                    first += n
                    key = (bucket if shuffle else block, split)
                    counts[key] = counts.get(key, 0) + n
        table.add(block, segments)
    for split in (0, 1):
        total = sum(n for (_unit, s), n in counts.items() if s == split)
        assert table.rows(split) == total
        jobs = table.jobs(split, "train", shard_rows=37)
        assert [j.shard for j in jobs] == list(range(-(-total // 37)))
        taken: dict = {}
        for job in jobs:
            assert job.stop - job.start == sum(hi - lo for _u, _size, lo, hi in job.pieces)
            assert job.start == 37 * job.shard and job.stop == min(total, job.start + 37)
            for unit, size, lo, hi in job.pieces:
                assert size == counts[(unit, split)] and 0 <= lo < hi <= size
                assert taken.get(unit, 0) == lo  # each unit's rows in order, no gap, no overlap
                taken[unit] = hi
        assert taken == {u: n for (u, s), n in counts.items() if s == split}
        units = [u for job in jobs for u, *_ in job.pieces]
        assert units == sorted(units)  # buckets (blocks) in order


@pytest.mark.parametrize("shuffle", [True, False])
def test_items_run_at_once_in_threads_of_one_process_give_the_same_store(quest_csv, make_store, small_blocks,
                                                                          monkeypatch, shuffle):
    """A Dask worker runs several items at once in its threads (``dask worker`` starts one per core): their
    buffers are per thread, so the store is the one a single process gives (shared ones failed the spill's
    checksums, or mixed rows)."""
    options = dict(val_fraction=0.2, label="clear", batch_size=50, shuffle=shuffle)
    alone, _ = make_store(quest_csv, **options)

    @contextmanager
    def threads(config, ctx):
        ingest.passes.set_context(ctx)
        with ThreadPoolExecutor(4) as pool:
            yield lambda fn, items: pool.map(fn, list(items))

    monkeypatch.setattr(ingest.pipeline, "_map", threads)
    together, _ = make_store(quest_csv, workers=4, **options)
    assert _arrays(together) == _arrays(alone)


def test_the_segment_table_says_where_each_bucket_lies(tmp_path):
    table = Segments(n_buckets=2, shuffle=True)
    table.add(0, [[0, 0, 0, 3], [1, 0, 3, 2], [1, 1, 5, 4]])  # [bucket, split, first, rows]
    table.add(1, [[0, 1, 0, 1]])
    path = str(tmp_path / "segments.npy")
    table.save(path, row_bytes=8)
    rows, starts = np.load(path).tolist()
    # per block: first row of (bucket 0 train, bucket 1 train, bucket 0 validation, bucket 1 validation), then rows
    assert rows == [[0, 3, 5, 5, 9], [0, 0, 0, 1, 1]]
    # ... and the byte where each segment starts: its runs' checksums (4 bytes each), then its rows (8 bytes each)
    assert starts == [[0, 4 + 24, 28 + 4 + 16, 48, 48 + 4 + 32], [0, 0, 0, 4 + 8, 12]]


def _spill(tmp_path, name, counts, dtype=np.dtype([("f", "<f4", (3,)), ("i", "<i8", (1,))])):
    """A spill file of rows whose keys have ``counts`` rows each (in file order), and its records and metadata."""
    keys = np.repeat(np.arange(len(counts)), counts).astype(np.uint16)
    records = np.zeros(len(keys), dtype)
    records["f"] = np.arange(len(keys) * 3, dtype=np.float32).reshape(-1, 3)
    records["i"][:, 0] = np.arange(len(keys)) * 7
    path = str(tmp_path / name)
    meta = write_spill(path, records, keys, n_buckets=len(counts) // 2, meta={"block": 0})
    table = Segments(len(counts) // 2, shuffle=True)
    table.add(0, meta["segments"])
    table.save(str(tmp_path / f"{name}.segments.npy"), dtype.itemsize)
    firsts, starts = np.load(str(tmp_path / f"{name}.segments.npy"))
    return path, records, meta, firsts[0], starts[0]


def test_a_spill_file_reads_back_any_rows_of_its_segments_checked(tmp_path):
    """Whole segments (a shuffle's reads) and any rows of one (a shard's part of a block without a shuffle),
    across checksum runs, read back what was written."""
    counts = [3, 0, 2 * RUN_ROWS + 5, RUN_ROWS, 1, 0]
    path, records, meta, firsts, starts = _spill(tmp_path, "000000", counts)
    assert meta["spill_bytes"] == os.path.getsize(path + ".bin") == starts[-1]
    assert spill_intact(path, meta, records.dtype.itemsize, read=True)
    rng = np.random.default_rng(0)
    with SpillReader(lambda block: path) as spill:
        for key, count in enumerate(counts):
            lo = int(firsts[key])
            ranges = [(0, count)] + [tuple(sorted(rng.integers(0, count + 1, 2).tolist())) for _ in range(20)]
            for first, stop in ranges + [(RUN_ROWS - 1, RUN_ROWS + 1), (RUN_ROWS, 2 * RUN_ROWS)] * (count > RUN_ROWS):
                out = np.empty(stop - first, records.dtype)
                spill.read(0, out, int(starts[key]), count, first)
                assert out.tobytes() == records[lo + first:lo + stop].tobytes(), (key, first, stop)


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_a_spill_file_the_disk_damaged_is_never_read_as_rows(tmp_path, damage):
    """A spill file is never flushed (ingest.shuffle.write_spill): what the disk lost or changed after it was
    written fails the checksum of the runs it is in, is missing or short — one line naming the file — while the
    other rows still read; after a reboot --resume finds it by reading the file (spill_intact)."""
    counts = [5, 2 * RUN_ROWS + 5]
    path, records, meta, firsts, starts = _spill(tmp_path, "000003", counts)
    row = records.dtype.itemsize
    bad = int(starts[1]) + 4 * 3 + (RUN_ROWS + 10) * row  # in the second run of the second segment
    if damage == "flip":
        with open(path + ".bin", "r+b") as f:
            f.seek(bad)
            byte = f.read(1)
            f.seek(bad)
            f.write(bytes([byte[0] ^ 0x01]))
    elif damage == "truncate":
        os.truncate(path + ".bin", bad)
    else:
        os.remove(path + ".bin")
    assert not spill_intact(path, meta, row, read=True)
    assert spill_intact(path, meta, row, read=False) == (damage == "flip")  # the same boot trusts its size
    with SpillReader(lambda block: path) as spill:
        with pytest.raises(StoreError, match=f"{path}.bin") as info:
            spill.read(3, np.empty(counts[1], records.dtype), int(starts[1]), counts[1], 0)
        assert "\n" not in str(info.value)
        with pytest.raises(StoreError):
            spill.read(3, np.empty(2, records.dtype), int(starts[1]), counts[1], RUN_ROWS + 9)
        readable = {"flip": [(0, RUN_ROWS), (2 * RUN_ROWS, counts[1])], "truncate": [(0, RUN_ROWS)], "remove": []}
        for first, stop in readable[damage]:  # the runs before (and after) the damage
            out = np.empty(stop - first, records.dtype)
            spill.read(3, out, int(starts[1]), counts[1], first)
            assert out.tobytes() == records[counts[0] + first:counts[0] + stop].tobytes()


def test_after_a_reboot_an_older_spill_file_of_the_same_size_is_not_taken_for_the_new_one(tmp_path):
    """Every run of an older spill file of the block (a first parse under the wrong quote parity, whose
    replacement a power cut lost) matches its own checksums; the metadata's CRC of the checksums tells them apart."""
    path, records, meta, _firsts, _starts = _spill(tmp_path, "000004", [RUN_ROWS + 3, 5])
    old = records.copy()
    old["i"] += 1
    keys = np.repeat(np.arange(2), [RUN_ROWS + 3, 5]).astype(np.uint16)
    write_spill(path, old, keys, n_buckets=1, meta={"block": 4})
    assert os.path.getsize(path + ".bin") == meta["spill_bytes"]
    assert spill_intact(path, meta, records.dtype.itemsize, read=False)  # the same boot trusts what it wrote last
    assert not spill_intact(path, meta, records.dtype.itemsize, read=True)


def test_the_spill_reader_keeps_few_files_open(tmp_path, monkeypatch):
    """A bucket is read from every block's spill file; at 100 GB that is thousands of files, beyond a process's
    limit of open files: the reader closes them as it goes."""
    spills = [_spill(tmp_path, f"{block:06d}", [3, 0]) for block in range(10)]
    monkeypatch.setattr(SpillReader, "MAX_OPEN", 4)
    with SpillReader(lambda block: str(tmp_path / f"{block:06d}")) as spill:
        for block in list(range(10)) * 2:
            _path, records, _meta, _firsts, starts = spills[block]
            out = np.empty(2, records.dtype)
            spill.read(block, out, int(starts[0]), 3, 1)
            assert out.tobytes() == records[1:3].tobytes()
            assert len(spill._files) <= 4
    assert not spill._files


def test_bucket_count_grows_with_the_input_and_never_past_the_large_bucket_counts():
    """4 MiB buckets up to 4 GiB (a shard loads few rows besides its own), then 1,024 buckets, then 64 MiB ones: never
    more buckets (spill segments per block) than 64 MiB buckets gave beyond 64 GiB, and only the size decides."""
    mib, gib = 2**20, 2**30
    assert bucket_count(0) == bucket_count(1) == 1
    assert bucket_count(330 * 10**6) == 79  # the benchmark's log: 4 MiB buckets (64 MiB gave 5)
    assert bucket_count(SMALL_BUCKET_BYTES * SMALL_BUCKETS) == SMALL_BUCKETS == bucket_count(16 * gib)
    assert bucket_count(100 * gib) == 100 * gib // BUCKET_BYTES == 1600
    sizes = [0, 1, 3 * mib, 4 * mib + 1, 700 * mib, 4 * gib, 5 * gib, 63 * gib, 64 * gib + 1, 300 * gib]
    counts = [bucket_count(size) for size in sizes]
    assert counts == sorted(counts)
    for size, n in zip(sizes, counts):
        assert n >= -(-size // BUCKET_BYTES)  # no bucket larger than 64 MiB
        assert n <= max(SMALL_BUCKETS, -(-size // BUCKET_BYTES))
    assert bucket_count(700 * mib) == 175 and bucket_count(4 * mib + 1) == 2  # 4 MiB each below 4 GiB
