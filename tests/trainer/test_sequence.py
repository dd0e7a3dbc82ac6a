"""StoreSequence under Keras: same batches with threads and processes, a dead worker process raises quickly
instead of hanging, errors inside workers surface, and fit works on it."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from trainer.batches import BatchSource, LoaderError  # noqa: E402
from trainer.sequence import StoreSequence  # noqa: E402


def _all(seq):
    return [seq[i] for i in range(len(seq))]


@pytest.mark.parametrize("workers,processes", [(1, False), (3, False), (2, True)])
def test_batches_equal_the_source(quest_store, workers, processes):
    seq = StoreSequence(quest_store, "train", workers=workers, use_multiprocessing=processes, seed=5)
    source = BatchSource(quest_store, "train", seed=5)
    try:
        for i, (x, y) in enumerate(_all(seq)):
            ref = source.batch(i, 0)
            np.testing.assert_array_equal(x["numeric"], ref[0]["numeric"])
            np.testing.assert_array_equal(y, ref[1])
        seq.on_epoch_end()
        np.testing.assert_array_equal(seq[0][1], source.batch(0, 1)[1])
        workers = list(seq._pool._processes.values()) if processes else []
    finally:
        seq.close()
    assert not any(w.is_alive() for w in workers)  # close() leaves no worker processes behind


def test_a_killed_worker_process_raises_within_seconds(quest_store):
    seq = StoreSequence(quest_store, "train", workers=2, use_multiprocessing=True)
    try:
        seq[0]
        workers = list(seq._pool._processes.values())
        victim = workers[0].pid
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(LoaderError, match="loader worker process died while reading batch"):
            for i in range(len(seq)):
                seq.set_epoch(i + 1)  # force new windows to be read
                seq[i]
        assert time.monotonic() - started < 10
    finally:
        seq.close()
    deadline = time.monotonic() + 10
    while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(w.is_alive() for w in workers)  # no orphan processes


def test_damage_found_in_a_worker_names_array_and_chunk(tmp_path, quest_csv, make_store):
    from store.layout import shard_path
    out, _ = make_store(quest_csv, batch_size=100, label="clear")
    path = shard_path(out, "train", "float32", 0)
    data = bytearray(open(path, "rb").read())
    data[100] ^= 0xFF
    open(path, "wb").write(bytes(data))
    seq = StoreSequence(out, "train", workers=2, use_multiprocessing=True, shuffle=False)
    try:
        with pytest.raises(Exception, match=r"train/float32: chunk 0 fails its CRC32C checksum"):
            seq[0]
    finally:
        seq.close()


def test_fit_and_evaluate_on_the_sequence(quest_store):
    keras.utils.set_random_seed(0)
    train = StoreSequence(quest_store, "train", workers=2)
    val = StoreSequence(quest_store, "validation", shuffle=False)
    inputs = {"numeric": keras.Input((40,), name="numeric"), "categorical": keras.Input((4,), name="categorical",
                                                                                         dtype="int32")}
    h = keras.layers.Concatenate()([keras.layers.Normalization()(inputs["numeric"]),
                                    keras.ops.cast(inputs["categorical"], "float32")])
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    train.close()
    val.close()
