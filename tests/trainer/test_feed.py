"""BatchFeed: the epoch follows the requests (a full pass then batch 0 starts the next epoch; batch 0 before the
end restarts the same pass), a skipped start serves the rest of an epoch, windows() serves the same batches as
batch(), look-ahead crosses into the next epoch, iter_batches and the tf.data pipeline give the same batches."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.batches import BatchSource, iter_batches
from trainer.feed import BatchFeed


def _same(a: tuple, b: tuple) -> None:
    assert len(a) == len(b)
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    for u, v in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(u, v)


def test_a_full_pass_then_batch_0_is_the_next_epoch_and_a_restart_is_not(quest_store):
    source = BatchSource(quest_store, "train", seed=3)
    with BatchFeed(BatchSource(quest_store, "train", seed=3), workers=2) as feed:
        for i in range(5):  # a partial pass (Keras' probe of the first batches) ...
            feed.batch(i)
        for i in range(len(feed)):  # ... then the pass again from 0: still epoch 0
            _same(feed.batch(i), source.batch(i, 0))
        _same(feed.batch(0), source.batch(0, 1))
        assert feed.epoch == 1


def test_skip_then_next_epoch_and_windows_match_batches(quest_store):
    source = BatchSource(quest_store, "train", seed=3, batch_size=200)
    n = len(source)
    with BatchFeed(BatchSource(quest_store, "train", seed=3, batch_size=200), workers=1) as feed:
        feed.set_epoch(2, skip=5)
        got = [source.batch_from(w, j + d) for w, j, k in feed.windows() for d in range(k)]
        assert len(got) == n - 5
        for i, batch in enumerate(got):
            _same(batch, source.batch(5 + i, 2))
        got = [source.batch_from(w, j + d) for w, j, k in feed.windows() for d in range(k)]
        assert feed.epoch == 3 and len(got) == n
        for i, batch in enumerate(got):
            _same(batch, source.batch(i, 3))
    with pytest.raises(ValueError, match="skip"):
        BatchFeed(source).set_epoch(0, skip=n)


def test_look_ahead_crosses_into_the_next_epoch(quest_store):
    with BatchFeed(BatchSource(quest_store, "train"), workers=1, ahead=2) as feed:
        for i in range(len(feed)):
            feed.batch(i)
        assert (1, 0) in feed.loader._futures  # the next epoch's first window is already on its way


@pytest.mark.parametrize("processes", [False, True])
def test_iter_batches_equals_the_source(tasks_store, processes):
    source = BatchSource(tasks_store, "train", label="label_missing", seed=1)
    got = list(iter_batches(tasks_store, "train", epoch=1, label="label_missing", seed=1, workers=2,
                            use_multiprocessing=processes))
    assert len(got) == len(source)
    for i, batch in enumerate(got):
        assert len(batch) == 3  # rows without a label: sample weights in every batch
        _same(batch, source.batch(i, 1))


def test_tf_dataset_gives_the_sequences_batches(tasks_store):
    """Short last batch (1050 rows, batch 100), weights, two epochs: the same as the sequence."""
    from trainer.sequence import StoreSequence
    from trainer.tfdata import tf_dataset
    source = BatchSource(tasks_store, "train", label="label_missing", batch_size=100, seed=2)
    seq = StoreSequence(tasks_store, "train", label="label_missing", batch_size=100, seed=2)
    try:
        dataset = tf_dataset(seq)
        assert int(dataset.cardinality()) == len(source)
        for epoch in range(2):
            got = [tuple(t.numpy() if not isinstance(t, dict) else {k: v.numpy() for k, v in t.items()}
                         for t in batch) for batch in dataset]
            assert len(got) == len(source)
            for i, batch in enumerate(got):
                _same(batch, source.batch(i, epoch))
    finally:
        seq.close()
