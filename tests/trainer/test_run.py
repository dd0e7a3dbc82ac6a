"""trainer run / evaluate / predict: the run directory, resume with each epoch once, user models, CLI errors."""

from __future__ import annotations

import csv
import json
import os
import re

import keras
import numpy as np
import pytest

import trainer.run
import trainer.rundir
from store import OutputExistsError, open_store
from trainer.cli import build_parser, main, run_config
from trainer.run import RunConfig, evaluate, predict, train
from trainer.sequence import StoreSequence


def _history(run_dir):
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_every_flag_reaches_the_config():
    args = build_parser().parse_args(
        ["run", "s.zarr", "--out", "r", "--label", "y", "--features", "a, b,c", "--epochs", "7", "--batch-size",
         "2000", "--workers", "3", "--use-multiprocessing", "--model", "m:f", "--seed", "4", "--resume",
         "--learning-rate", "0.01", "--mixed-precision", "--quiet", "--steps-per-execution", "8", "--save-every",
         "500"])
    cfg = run_config(args)
    assert (cfg.steps_per_execution, cfg.save_every) == (8, "500")
    threads = run_config(build_parser().parse_args(["run", "s", "--out", "r", "--loader", "threads"]))
    assert threads.use_multiprocessing is False
    assert run_config(build_parser().parse_args(["run", "s", "--out", "r"])).use_multiprocessing is True
    assert (cfg.store, cfg.out, cfg.label, cfg.features, cfg.epochs) == ("s.zarr", "r", "y", ["a", "b", "c"], 7)
    assert (cfg.batch_size, cfg.workers, cfg.use_multiprocessing, cfg.model) == (2000, 3, True, "m:f")
    assert (cfg.seed, cfg.resume, cfg.learning_rate, cfg.mixed_precision, cfg.verbose) == (4, True, 0.01, True, 0)


def test_run_writes_the_run_directory(quest_store, tmp_path):
    run_dir = str(tmp_path / "run")
    metrics = train(RunConfig(quest_store, run_dir, epochs=2, verbose=0))
    for name in ("model.keras", "config.json", "history.csv", "metrics.json", "learning_curve.png",
                 "checkpoints/epoch_001.keras", "checkpoints/epoch_002.keras", "logs"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    png = open(os.path.join(run_dir, "learning_curve.png"), "rb").read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"Matplotlib" in png[:4096]  # a chart with axes and labels
    rows = _history(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(rows[0])
    assert 0.5 < metrics["accuracy"] <= 1.0
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["label"] == "clear" and config["task"]["kind"] == "binary" and len(config["features"]) == 44
    assert evaluate(run_dir, quest_store)["accuracy"] == pytest.approx(metrics["accuracy"])
    out = predict(run_dir, quest_store, str(tmp_path / "p.csv"))
    rows = list(csv.reader(open(out)))
    split_rows = open_store(quest_store).rows
    assert rows[0] == ["row", "p_1"] and len(rows) == 1 + split_rows["validation"]
    zarr_out = predict(run_dir, quest_store, str(tmp_path / "p.zarr"), split="train")
    import zarr
    assert zarr.open_array(zarr_out).shape == (split_rows["train"], 1)
    # written a window at a time, the same numbers as the model over the whole split at once, in store order
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    whole = StoreSequence(quest_store, "validation", label=None, features=config["features"], shuffle=False)
    try:
        expected = np.concatenate([model.predict_on_batch(whole[i][0]) for i in range(len(whole))])
    finally:
        whole.close()
    got = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    assert [int(row[0]) for row in rows[1:]] == list(range(split_rows["validation"]))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)  # %.7g in the CSV
    left = [os.path.join(d, n) for d, _, names in os.walk(run_dir) for n in names if ".tmp" in n or "lock" in n]
    assert left == []  # no temporary or lock file stays behind


def _files(path) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(d, n), path): open(os.path.join(d, n), "rb").read()
            for d, _, names in os.walk(path) for n in names}


def test_a_second_run_into_the_same_directory_is_refused_and_touches_nothing(quest_store, tmp_path, capsys):
    from store.lock import Lock
    run_dir = str(tmp_path / "run")
    assert main(["run", quest_store, "--out", run_dir, "--epochs", "1", "--quiet"]) == 0
    before = _files(run_dir)
    capsys.readouterr()
    lock = os.path.join(run_dir, trainer.rundir.LOCK)
    with Lock(lock, "training", made_by="trainer"):  # the first run, still training
        assert main(["run", quest_store, "--out", run_dir, "--epochs", "2", "--resume", "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err == (f"trainer: error: training into {run_dir} is in progress in another process (PID "
                       f"{os.getpid()}, lock {lock}); wait for it to finish or stop it, then run again\n")
    assert _files(run_dir) == before


def test_a_save_that_fails_leaves_no_torn_checkpoint(quest_store, tmp_path, monkeypatch, capsys):
    import errno

    def torn(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(keras.Model, "save", torn)
    run_dir = str(tmp_path / "run")
    assert main(["run", quest_store, "--out", run_dir, "--epochs", "1", "--quiet"]) == 1
    assert "no space left on device" in capsys.readouterr().err
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == []
    assert not os.path.exists(os.path.join(run_dir, "model.keras"))


class _Crash(Exception):
    pass


def test_resume_after_a_crash_logs_each_epoch_once(quest_store, tmp_path, monkeypatch):
    run_dir = str(tmp_path / "run")
    real = trainer.run._callbacks

    class CrashAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise _Crash()

    with monkeypatch.context() as patch:
        patch.setattr(trainer.run, "_callbacks", lambda *a: real(*a) + [CrashAfterSecondEpoch()])
        with pytest.raises(_Crash):
            train(RunConfig(quest_store, run_dir, epochs=3, verbose=0))
    with pytest.raises(OutputExistsError, match="already holds a run; pass --resume"):
        train(RunConfig(quest_store, run_dir, epochs=3, verbose=0))
    train(RunConfig(quest_store, run_dir, epochs=3, verbose=0, resume=True))
    assert [r["epoch"] for r in _history(run_dir)] == ["0", "1", "2"]


def test_user_model_and_feature_subset(quest_store, tmp_path, capsys):
    run_dir = str(tmp_path / "wide")
    assert main(["run", quest_store, "--out", run_dir, "--epochs", "1", "--quiet", "--model",
                 "trainer.example_model:build", "--features", "level,difficulty,f00,f01"]) == 0
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["features"] == ["level", "f00", "f01", "difficulty"]
    assert keras.models.load_model(os.path.join(run_dir, "model.keras")).name == "wide"


def _future_store(store: str, tmp_path) -> str:
    """A copy of ``store`` claiming a format version from the future."""
    import shutil
    copy = str(tmp_path / "future.zarr")
    shutil.copytree(store, copy)
    meta = json.load(open(os.path.join(copy, "zarr.json")))
    meta["attributes"]["tabular_store"]["version"] = 99
    json.dump(meta, open(os.path.join(copy, "zarr.json"), "w"))
    return copy


@pytest.mark.parametrize("argv,message", [
    (["run", "{store}", "--label", "nope"], "unknown column 'nope'"),
    (["run", "{store}", "--features", "clear,f00"], "cannot also be a feature"),
    (["run", "{store}", "--batch-size", "150"], "not a multiple of the store's chunk rows (100)"),
    (["run", "{store}", "--model", "no_such_module:f"], "cannot import 'no_such_module'"),
    (["run", "{store}", "--model", "mlp2"], "expected mlp or MODULE:FUNCTION"),
    (["run", "{store}", "--epochs", "0"], "--epochs must be >= 1"),
    (["run", "{store}", "--batch-size", "0"], "--batch-size must be a positive number"),
    (["run", "{store}", "--batch-size", "1000000000000"], "--batch-size 1,000,000,000,000 is over the limit of "
                                                          "1,048,576 rows"),
    (["run", "{store}", "--seed", "-1"], "--seed must be in [0, 2**32)"),
    (["run", "{store}", "--learning-rate", "nan"], "--learning-rate must be a positive number"),
    (["run", "{store}", "--out", "{file}/run"], "Not a directory; check the path"),
    (["run", "{future}"], "version 99, this code reads versions 1, 2"),
    (["run", "{missing}"], "no such store"),
    (["evaluate", "{tmp}", "{store}"], "not a finished run"),
])
def test_user_errors_are_one_line(quest_store, tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("")
    values = {"store": quest_store, "missing": str(tmp_path / "missing.zarr"), "tmp": str(tmp_path),
              "file": str(tmp_path / "file"), "future": _future_store(quest_store, tmp_path)}
    argv = [a.format(**values) for a in argv]
    if argv[0] == "run" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("trainer: error: ") and err.count("\n") == 1 and message in err


@pytest.mark.slow
def test_kill_9_then_resume_ends_with_each_epoch_once(quest_store, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import subprocess_env

    def killed_run(attempt: int, epochs_logged: int) -> tuple[list[str], bool]:
        """Start a 6-epoch run, SIGKILL it once ``epochs_logged`` epochs are in history.csv (0: once it started);
        return its argv and whether the kill interrupted it."""
        run_dir = str(tmp_path / f"run{attempt}")
        argv = [sys.executable, "-m", "trainer", "run", quest_store, "--out", run_dir, "--epochs", "6", "--quiet"]
        proc = subprocess.Popen(argv, env=subprocess_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        history, config = os.path.join(run_dir, "history.csv"), os.path.join(run_dir, "config.json")
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            logged = len(open(history).read().splitlines()) - 1 if os.path.exists(history) else 0
            if os.path.exists(config) and logged >= epochs_logged:
                break
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return argv, not os.path.exists(os.path.join(run_dir, "metrics.json"))

    # a kill that lands after the run finished proves nothing: try again, killing earlier each time
    for attempt, epochs_logged in enumerate((2, 1, 0)):
        argv, interrupted = killed_run(attempt, epochs_logged)
        if interrupted:
            break
    else:
        pytest.fail("training finished before the kill in all 3 attempts; the test never interrupted a run")
    run_dir = argv[argv.index("--out") + 1]
    resumed = subprocess.run(argv + ["--resume"], env=subprocess_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["epoch"] for r in _history(run_dir)] == ["0", "1", "2", "3", "4", "5"]


def test_full_disk_stops_with_one_line_then_resume_finishes(quest_store, small_disk, capsys):
    disk = small_disk("1m")  # less than a checkpoint and a backup need (with margin)
    argv = ["run", quest_store, "--out", str(disk / "run"), "--epochs", "2", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("trainer: error: no space left on device") and err.count("\n") == 1 and "--resume" in err
    assert not os.path.exists(disk / "run" / "model.keras")
    small_disk.grow(disk, "64m")
    assert main(argv + ["--resume"]) == 0
    assert [r["epoch"] for r in _history(str(disk / "run"))] == ["0", "1"]


def test_enospc_from_any_write_is_one_line(quest_store, tmp_path, monkeypatch, capsys):
    import errno

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(trainer.rundir, "write_atomic", full)
    assert main(["run", quest_store, "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("trainer: error: no space left on device while writing ") and err.count("\n") == 1


def test_a_damaged_chunk_stops_training_naming_array_and_chunk(quest_store, tmp_path, capsys):
    import shutil

    from store.layout import shard_path
    damaged = str(tmp_path / "damaged.zarr")
    shutil.copytree(quest_store, damaged)
    path = shard_path(damaged, "train", "float32", 0)
    data = bytearray(open(path, "rb").read())
    data[100] ^= 0xFF
    open(path, "wb").write(bytes(data))
    assert main(["run", damaged, "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.match(r"trainer: error: train/float32: chunk 0 fails its CRC32C checksum", err), err
    assert not os.path.exists(tmp_path / "run" / "model.keras")


def test_predict_and_resume_never_replace_what_is_not_theirs(quest_store, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert main(["run", quest_store, "--out", run_dir, "--epochs", "1", "--quiet"]) == 0
    capsys.readouterr()
    user = tmp_path / "results.zarr"
    user.mkdir()
    (user / "data.bin").write_bytes(b"mine")
    for out in (str(user), quest_store):  # a user's folder; the input store itself
        assert main(["predict", run_dir, quest_store, "--out", out]) == 1
        err = capsys.readouterr().err
        assert "a folder that trainer predict did not write" in err and err.count("\n") == 1, err
    assert (user / "data.bin").read_bytes() == b"mine" and open_store(quest_store).rows
    ours = str(tmp_path / "p.zarr")
    assert main(["predict", run_dir, quest_store, "--out", ours]) == 0
    assert main(["predict", run_dir, quest_store, "--out", ours]) == 0  # its own output: replaced
    capsys.readouterr()
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"jpg")
    assert main(["run", quest_store, "--out", str(folder), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "is not a run directory of this tool" in err and err.count("\n") == 1
    assert sorted(os.listdir(folder)) == ["a.jpg"]


def test_a_hashed_column_trains_evaluates_and_predicts(tmp_path):
    import numpy as np
    import pandas as pd

    from ingest import IngestConfig, ingest
    rng = np.random.default_rng(0)
    n = 2000
    pd.DataFrame({"user": [f"u{i}" for i in rng.integers(0, 500, n)], "x": rng.standard_normal(n),
                  "won": rng.choice(["yes", "no"], n)}).to_csv(tmp_path / "log.csv", index=False)
    store = str(tmp_path / "s.zarr")
    ingest(IngestConfig([str(tmp_path / "log.csv")], store, label="won", max_categories=64, val_fraction=0.2,
                        batch_size=100, workers=1, progress=False))
    assert open_store(store).schema["user"].hash_buckets == 64
    run_dir = str(tmp_path / "run")
    metrics = train(RunConfig(store, run_dir, epochs=1, verbose=0))
    assert json.load(open(os.path.join(run_dir, "config.json")))["task"]["kind"] == "binary"
    assert evaluate(run_dir, store)["accuracy"] == pytest.approx(metrics["accuracy"])
    rows = list(csv.reader(open(predict(run_dir, store, str(tmp_path / "p.csv")))))
    assert len(rows) == 1 + open_store(store).rows["validation"]
