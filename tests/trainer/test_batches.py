"""Batches: every row once per epoch, seeded order, rows mixed across chunks, tasks, missing-value policy."""

from __future__ import annotations

import numpy as np
import pytest

from store import OptionError, SchemaError, open_store
from trainer.batches import BatchSource, iter_batches


def _ids(source, epoch):
    col = [c.name for c in source.numeric].index("row_id")
    return np.concatenate([source.batch(i, epoch)[0]["numeric"][:, col] for i in range(len(source))])


@pytest.mark.parametrize("batch_size", [50, 100, 250])
def test_every_row_exactly_once_per_epoch(tasks_store, batch_size):
    source = BatchSource(tasks_store, label="binary_int", batch_size=batch_size)
    assert len(source) == -(-1050 // batch_size)
    for epoch in (0, 1):
        ids = _ids(source, epoch)
        assert sorted(ids.tolist()) == list(range(1050))
    sizes = [len(source.batch(i)[1]) for i in range(len(source))]
    assert sum(sizes) == 1050 and all(s == batch_size for s in sizes[:-1] if s != 1050 % batch_size)


def test_order_is_seeded_and_changes_each_epoch(tasks_store):
    a = BatchSource(tasks_store, label="binary_int", seed=1)
    b = BatchSource(tasks_store, label="binary_int", seed=1)
    c = BatchSource(tasks_store, label="binary_int", seed=2)
    assert np.array_equal(_ids(a, 0), _ids(b, 0))
    assert not np.array_equal(_ids(a, 0), _ids(a, 1))
    assert not np.array_equal(_ids(a, 0), _ids(c, 0))


def test_rows_are_mixed_across_chunks(tasks_store):
    source = BatchSource(tasks_store, label="binary_int")
    first = source.batch(0)[0]["numeric"][:, [c.name for c in source.numeric].index("row_id")]
    assert len(set((first // 50).astype(int))) >= 8  # one batch draws from many chunks


def test_without_shuffle_batches_follow_the_store(tasks_store):
    source = BatchSource(tasks_store, label="binary_int", shuffle=False, batch_size=100)
    assert _ids(source, 0).tolist() == list(range(1050))


def test_sorted_by_label_store_still_gives_mixed_batches(tmp_path, make_store):
    from tools.synth import write_csv
    path = write_csv(tmp_path / "sorted.csv", 4000, seed=3, sort_by_label=True)
    out, _ = make_store(str(path), batch_size=100, label="clear", shuffle=False)
    source = BatchSource(out)
    rates = [source.batch(i)[1].mean() for i in range(len(source) - 1)]
    assert 0.1 < min(rates) and max(rates) < 0.9  # no batch is all one label


@pytest.mark.parametrize("label,kind,classes,dtype", [
    ("binary_int", "binary", 2, np.float32), ("binary_bool", "binary", 2, np.float32),
    ("binary_cat", "binary", 2, np.float32), ("multi_cat", "multiclass", 4, np.int32),
    ("multi_int", "multiclass", 5, np.int32), ("target", "regression", 1, np.float32)])
def test_the_task_follows_the_label(tasks_store, label, kind, classes, dtype):
    source = BatchSource(tasks_store, label=label, shuffle=False)
    assert (source.task.kind, source.task.classes) == (kind, classes)
    x, y = source.batch(0)
    assert y.dtype == dtype and y.shape == (50,)
    frame = open_store(tasks_store).read_frame("train", 0, 50)
    if kind == "regression":
        np.testing.assert_array_equal(y, frame[label].to_numpy(np.float32))
    elif label == "binary_cat" or label == "multi_cat":
        names = source.task.names
        assert [names[int(v)] for v in y] == frame[label].tolist()
    else:
        assert y.astype(int).tolist() == frame[label].astype(int).tolist()


def test_missing_label_gets_zero_weight(tasks_store):
    source = BatchSource(tasks_store, label="label_missing", shuffle=False)
    x, y, weight = source.batch(0)
    frame = open_store(tasks_store).read_frame("train", 0, 50)
    assert (weight == 0).tolist() == frame["label_missing"].isna().tolist()


def test_missing_numeric_values_become_the_train_mean(tasks_store):
    store = open_store(tasks_store)
    source = BatchSource(tasks_store, label="binary_int", shuffle=False, features=["x_missing", "n_missing"])
    x = source.batch(0)[0]["numeric"]
    frame = store.read_frame("train", 0, 50)
    for j, col in enumerate(["x_missing", "n_missing"]):
        missing = frame[col].isna().to_numpy()
        assert missing.any()
        np.testing.assert_allclose(x[missing, j], store.statistics["train"][col]["mean"], rtol=1e-6)
        np.testing.assert_array_equal(x[~missing, j], frame[col][~missing].to_numpy(np.float32))


def test_feature_subset_and_categorical_codes(tasks_store):
    source = BatchSource(tasks_store, label="binary_int", features=["colour", "x"], shuffle=False)
    x, _ = source.batch(0)
    assert x["numeric"].shape == (50, 1) and x["categorical"].shape == (50, 1)
    vocab = open_store(tasks_store).schema["colour"].vocabulary
    frame = open_store(tasks_store).read_frame("train", 0, 50)
    assert [vocab[c - 1] for c in x["categorical"][:, 0]] == frame["colour"].tolist()


def test_bad_arguments_are_clear(tasks_store):
    with pytest.raises(OptionError, match="batch size 75 is not a multiple of the store's chunk rows \\(50\\)"):
        BatchSource(tasks_store, label="x", batch_size=75)
    with pytest.raises(OptionError, match="batch size 1,048,600 is over the limit of 1,048,576 rows"):
        BatchSource(tasks_store, label="x", batch_size=1_048_600)
    with pytest.raises(SchemaError, match="unknown column 'nope'"):
        BatchSource(tasks_store, label="nope")
    with pytest.raises(SchemaError, match="unknown column 'zz'"):
        BatchSource(tasks_store, label="x", features=["zz"])
    with pytest.raises(SchemaError, match="cannot also be a feature"):
        BatchSource(tasks_store, label="x", features=["x"])


def test_iter_batches_matches_the_source(tasks_store):
    source = BatchSource(tasks_store, label="multi_cat", seed=4)
    got = list(iter_batches(tasks_store, "train", epoch=2, label="multi_cat", seed=4))
    assert len(got) == len(source)
    for i, (x, y) in enumerate(got):
        ref = source.batch(i, 2)
        np.testing.assert_array_equal(x["numeric"], ref[0]["numeric"])
        np.testing.assert_array_equal(y, ref[1])


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_shares_are_disjoint_equal_and_change_per_epoch(quest_store, count, shuffle):
    sources = [BatchSource(quest_store, "train", shuffle=shuffle, seed=4, share=(i, count)) for i in range(count)]
    whole = BatchSource(quest_store, "train", shuffle=shuffle, seed=4)
    for epoch in range(3):
        shares = [set(s.epoch_chunks(epoch).tolist()) for s in sources]
        assert len({len(s) for s in sources}) == 1 and all(len(sh) == whole.chunks // count for sh in shares)
        assert len(set().union(*shares)) == sum(map(len, shares))  # disjoint
        rows = sum(sum(len(b[1]) for b in (s.batch(i, epoch) for i in range(len(s)))) for s in sources)
        assert rows == sum(min(whole.chunk_rows, whole.rows - k * whole.chunk_rows) for sh in shares for k in sh)
    if shuffle:
        assert sources[0].epoch_chunks(0).tolist() != sources[0].epoch_chunks(1).tolist()


def test_more_workers_than_chunks_is_refused(quest_store):
    with pytest.raises(OptionError, match="fewer than the 99 workers"):
        BatchSource(quest_store, "validation", share=(0, 99))
