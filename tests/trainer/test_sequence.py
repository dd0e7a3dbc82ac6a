"""StoreSequence under Keras: the same batches with threads and processes; ``fit`` trains every epoch's batches
exactly once and in the epoch's order (checked on what the model actually received, with the TensorFlow backend's
read-ahead into the next epoch); loader errors and dead workers end training with one line."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.helpers import subprocess_env
from tests.trainer.recording import fingerprint, read
from trainer.batches import BatchSource, LoaderError
from trainer.model import spec_for
from trainer.sequence import StoreSequence


@pytest.mark.parametrize("workers,processes", [(1, False), (3, False), (2, True)])
def test_batches_equal_the_source(quest_store, workers, processes):
    seq = StoreSequence(quest_store, "train", workers=workers, use_multiprocessing=processes, seed=5)
    source = BatchSource(quest_store, "train", seed=5)
    try:
        for epoch in range(2):  # asking for batch 0 after a whole epoch starts the next epoch's order
            for i in range(len(seq)):
                x, y = seq[i]
                ref = source.batch(i, epoch)
                np.testing.assert_array_equal(x["numeric"], ref[0]["numeric"])
                np.testing.assert_array_equal(x["categorical"], ref[0]["categorical"])
                np.testing.assert_array_equal(y, ref[1])
        assert seq.epoch == 1
        assert seq.stats.batches == 2 * len(seq)
    finally:
        seq.close()


@pytest.mark.parametrize("workers,processes,steps", [(1, False, 1), (2, True, 5)])
def test_fit_trains_each_epochs_batches_once_in_order(quest_store, tmp_path, monkeypatch, workers, processes, steps):
    from tests.trainer.recording import build_compiled
    record = str(tmp_path / "trained.txt")
    monkeypatch.setenv("RECORD_TO", record)
    keras.utils.set_random_seed(0)
    train = StoreSequence(quest_store, "train", label="clear", workers=workers, use_multiprocessing=processes)
    val = StoreSequence(quest_store, "validation", label="clear", shuffle=False)
    try:
        model = build_compiled(spec_for(train.source), steps)
        model.fit(train, validation_data=val, epochs=3, shuffle=False, verbose=0)
    finally:
        train.close()
        val.close()
    source = BatchSource(quest_store, "train", label="clear")
    expected = [fingerprint(source.batch(i, e)[0]["numeric"]) for e in range(3) for i in range(len(source))]
    assert read(record) == expected


def test_the_weight_is_there_in_every_batch_when_some_labels_are_missing(tasks_store):
    seq = StoreSequence(tasks_store, "train", label="label_missing", shuffle=False)
    try:
        assert all(len(seq[i]) == 3 for i in range(len(seq)))
        weights = np.concatenate([seq[i][2] for i in range(len(seq))])
        assert 0 < (weights == 0).sum() < len(weights)
    finally:
        seq.close()


def test_a_set_epoch_with_skip_serves_the_rest_of_that_epoch_then_the_next(quest_store):
    seq = StoreSequence(quest_store, "train", seed=2)
    source = BatchSource(quest_store, "train", seed=2)
    n = len(source)
    try:
        seq.set_epoch(4, skip=7)
        assert len(seq) == n - 7
        got = [seq[i][1] for i in range(len(seq))]
        for i, y in enumerate(got):
            np.testing.assert_array_equal(y, source.batch(7 + i, 4)[1])
        np.testing.assert_array_equal(seq[0][1], source.batch(0, 5)[1])  # then epoch 5, from its start
        assert len(seq) == n
    finally:
        seq.close()


def test_fit_on_the_sequence_with_a_plain_keras_model(quest_store):
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


def test_damage_found_in_a_worker_names_array_and_chunk(tmp_path, quest_csv, make_store):
    from store.layout import shard_path
    out, _ = make_store(quest_csv, batch_size=100, label="clear")
    path = shard_path(out, "train", "float32", 0)
    data = bytearray(open(path, "rb").read())
    data[100] ^= 0xFF
    open(path, "wb").write(bytes(data))
    seq = StoreSequence(out, "train", workers=2, use_multiprocessing=True, shuffle=False)
    try:
        with pytest.raises(LoaderError, match=r"train/float32: chunk 0 fails its CRC32C checksum"):
            seq[0]
    finally:
        seq.close()


def _loader_workers(pid: int) -> list[int]:
    """PIDs of the spawned loader processes of ``pid`` (not its resource tracker)."""
    import psutil
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_trainer_ends_with_one_line_when_a_loader_process_is_killed(quest_store, tmp_path, seed):
    """The reported hang: `trainer run --workers 2 --use-multiprocessing`, one loader process killed with SIGKILL
    at a random moment of training; the run must stop with one line within seconds."""
    rng = random.Random(seed)
    argv = [sys.executable, "-m", "trainer", "run", quest_store, "--out", str(tmp_path / "run"), "--epochs", "500",
            "--quiet", "--workers", "2", "--use-multiprocessing"]
    proc = subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 120
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            workers = _loader_workers(proc.pid)
            time.sleep(0.05)
        assert len(workers) == 2, proc.communicate()[1][-2000:]
        time.sleep(rng.uniform(0.5, 4.0))
        os.kill(rng.choice(workers), signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err[-3000:]
    assert err.count("\n") == 1, err[-3000:]
    assert re.match(r"trainer: error: a loader worker process \(pid \d+\) died \(killed by signal 9\)", err), err
    assert took < 10
