"""Mid-epoch resume: ``trainer run`` killed with ``kill -9`` in the middle of an epoch, then ``--resume``, trains
every batch of that epoch exactly once (the ones before the last backup before the kill, the rest after it), and
ends with the model an uninterrupted run gives; ``history.csv`` has one row per epoch."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import subprocess_env
from tests.trainer.recording import fingerprint, read
from trainer.backup import parse_save_every
from trainer.batches import BatchSource

EPOCHS = 3


def test_parse_save_every():
    assert parse_save_every("500") == (500, None)
    assert parse_save_every("90s") == (None, 90.0)
    assert parse_save_every("10m") == (None, 600.0)
    assert parse_save_every("1.5h") == (None, 5400.0)
    assert parse_save_every("0") == (None, None)
    for bad in ("ten", "-5", "1.5", "5d"):
        with pytest.raises(ValueError, match="--save-every"):
            parse_save_every(bad)


def _run(store: str, run_dir: str, record: str, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "trainer", "run", store, "--out", run_dir, "--epochs", str(EPOCHS), "--quiet",
            "--save-every", "3", "--model", "tests.trainer.recording:build", *extra]
    return subprocess.Popen(argv, env=subprocess_env() | {"RECORD_TO": record}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _state(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "backup", "state.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def _kill_mid_epoch(store: str, run_dir: str, record: str) -> dict | None:
    """Start a run, kill -9 it once a backup lands inside epoch 1; the backup in force after the kill."""
    proc = _run(store, run_dir, record)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        state = _state(run_dir)
        if state and state["epoch"] == 1 and state["step"] >= 3:
            break
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    return _state(run_dir)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_trains_each_batch_once(quest_store, tmp_path):
    source = BatchSource(quest_store, "train", label="clear")
    n = len(source)
    reference = [fingerprint(source.batch(i, e)[0]["numeric"]) for e in range(EPOCHS) for i in range(n)]
    for attempt in range(6):  # the kill must land inside an epoch, after a backup: retry the timing
        run_dir, before, after = (str(tmp_path / f"{name}{attempt}") for name in ("run", "before", "after"))
        state = _kill_mid_epoch(quest_store, run_dir, before)
        if state and 0 < state["step"] < n and not os.path.exists(os.path.join(run_dir, "model.keras")):
            break
    else:
        pytest.fail("no kill landed in the middle of an epoch in 6 attempts")
    epoch, step = state["epoch"], state["step"]
    resumed = _run(quest_store, run_dir, after, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    done_before = epoch * n + step  # batches the backup in force had trained
    trained_before, trained_after = read(before), read(after)
    assert trained_before[:done_before] == reference[:done_before]
    # the resumed run starts at the backed-up step of that epoch and trains the rest once, in order
    assert trained_after == reference[done_before:]
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == [str(e) for e in range(EPOCHS)]


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_model_of_an_uninterrupted_one(quest_store, tmp_path):
    """The backup holds weights, optimizer state and the dropout generator: same batches, same final model."""
    import keras
    source = BatchSource(quest_store, "train", label="clear")
    for attempt in range(6):
        run_dir = str(tmp_path / f"killed{attempt}")
        state = _kill_mid_epoch(quest_store, run_dir, str(tmp_path / f"r{attempt}"))
        if state and 0 < state["step"] < len(source):
            break
    else:
        pytest.fail("no kill landed in the middle of an epoch in 6 attempts")
    resumed = _run(quest_store, run_dir, str(tmp_path / "r_after"), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    whole = str(tmp_path / "whole")
    assert _run(quest_store, whole, str(tmp_path / "r_whole")).wait(timeout=300) == 0
    a = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    b = keras.models.load_model(os.path.join(whole, "model.keras"), compile=False)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # the resumed epoch's row covers the whole epoch: its running metrics were backed up and put back
    rows = [list(csv.DictReader(open(os.path.join(d, "history.csv")))) for d in (run_dir, whole)]
    for got, want in zip(*rows):
        for key in ("loss", "accuracy", "auc", "val_loss"):
            assert float(got[key]) == pytest.approx(float(want[key]), rel=1e-4), (got["epoch"], key)


def test_no_mid_epoch_backup_claims_the_epochs_last_batches(tmp_path):
    """A backup at the epoch's end is the epoch-end one (after validation and the history row), never a mid-epoch
    save at step == steps (with steps_per_execution the reported batch can even pass the end)."""
    from trainer.backup import Backup, BackupCallback

    saved = []

    class Recorder(Backup):
        def save(self, model, epoch, step):
            saved.append((epoch, step))

    callback = BackupCallback(Recorder(str(tmp_path)), steps=24, every_steps=1, skip=0)
    callback._model = None  # never touched: Recorder.save ignores it
    callback.on_epoch_begin(0)
    for batch in (7, 15, 23, 31):  # steps_per_execution 8: batch is the execution's last step
        callback.on_train_batch_end(batch)
    assert saved == [(0, 8), (0, 16)]


def _edit_state(run_dir: str, epoch: int, step: int) -> None:
    path = os.path.join(run_dir, "backup", "state.json")
    state = json.load(open(path))
    json.dump(state | {"epoch": epoch, "step": step}, open(path, "w"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_resuming_at_an_epochs_last_batch_trains_that_batch_then_the_next_epoch(quest_store, tmp_path, backend):
    """Keras reads a batch to build the model before training (JAX, PyTorch): with one batch left in the epoch
    that read covers the whole rest of the epoch and must not move the sequence on to the next one."""
    if backend == "jax":
        pytest.importorskip("jax")
    source = BatchSource(quest_store, "train", label="clear")
    n = len(source)
    run_dir, first, rest = str(tmp_path / "run"), str(tmp_path / "first"), str(tmp_path / "rest")
    env = {"KERAS_BACKEND": backend}
    argv = ["--out", run_dir, "--quiet", "--model", "tests.trainer.recording:build"]
    done = subprocess.run([sys.executable, "-m", "trainer", "run", quest_store, "--epochs", "1", *argv],
                          env=subprocess_env() | env | {"RECORD_TO": first}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    _edit_state(run_dir, 0, n - 1)  # as if killed after the backup of batch n-1 of epoch 0
    resumed = subprocess.run([sys.executable, "-m", "trainer", "run", quest_store, "--epochs", "2", "--resume",
                              *argv], env=subprocess_env() | env | {"RECORD_TO": rest}, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = [fingerprint(source.batch(n - 1, 0)[0]["numeric"])]
    expected += [fingerprint(source.batch(i, 1)[0]["numeric"]) for i in range(n)]
    assert read(rest) == expected
