"""Multi-worker training: TF_CONFIG parsing, and two worker processes on 127.0.0.1 (CPU) training one model under
MultiWorkerMirroredStrategy, the chief alone writing the run directory, --resume continuing on every worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from store import OptionError
from tests.helpers import subprocess_env
from tools.measure import free_ports
from trainer.distribution import Cluster, cluster_from_env


def _tf_config(workers: list[str], index: int, kind: str = "worker", chief: list[str] | None = None) -> dict:
    cluster = {"worker": workers} | ({"chief": chief} if chief else {})
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def test_cluster_from_env():
    assert cluster_from_env({}) is None
    assert cluster_from_env(_tf_config(["a:1"], 0)) is None  # a single task: plain training
    assert cluster_from_env(_tf_config(["a:1", "b:2"], 1)) == Cluster(1, 2, chief=False)
    assert cluster_from_env(_tf_config(["a:1", "b:2"], 0)) == Cluster(0, 2, chief=True)
    assert cluster_from_env(_tf_config(["a:1"], 0, "chief", chief=["c:3"])) == Cluster(0, 2, chief=True)
    assert cluster_from_env(_tf_config(["a:1"], 0, "worker", chief=["c:3"])) == Cluster(1, 2, chief=False)
    with pytest.raises(OptionError, match="TF_CONFIG is not valid"):
        cluster_from_env({"TF_CONFIG": "{not json"})
    with pytest.raises(OptionError, match="task worker 5 is not in the cluster"):
        cluster_from_env(_tf_config(["a:1", "b:2"], 5))


def _run_workers(store: str, outs: list[str], *args: str) -> list[subprocess.CompletedProcess]:
    workers = [f"127.0.0.1:{p}" for p in free_ports(len(outs))]
    procs = [subprocess.Popen([sys.executable, "-m", "trainer", "run", store, "--out", out, *args],
                              env=subprocess_env() | _tf_config(workers, i), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for i, out in enumerate(outs)]
    results = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out))
    return results


def _history(run_dir: str) -> list[dict]:
    import csv
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_workers_train_one_model_and_only_the_chief_writes(quest_store, tmp_path):
    chief, other = str(tmp_path / "chief"), str(tmp_path / "other")
    results = _run_workers(quest_store, [chief, other], "--epochs", "2")
    for r in results:
        assert r.returncode == 0, r.stdout[-3000:]
    assert not os.path.exists(other)  # worker 1 wrote nothing
    assert {"config.json", "history.csv", "metrics.json", "model.keras", "learning_curve.png"} <= set(os.listdir(chief))
    assert [r["epoch"] for r in _history(chief)] == ["0", "1"]
    # the columns of a single-process run: training and validation metrics of the task
    assert set(_history(chief)[0]) == {"epoch", "loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"}
    assert 0.5 < float(_history(chief)[1]["accuracy"]) <= 1
    metrics = json.load(open(os.path.join(chief, "metrics.json")))
    assert metrics["accuracy"] > 0.6
    # both workers report the same validation metrics: each evaluated its share, the states were summed
    finals = [[line for line in r.stdout.splitlines() if line.startswith("worker ")][-1].split(" ", 2)[2]
              for r in results]
    assert finals[0] == finals[1]
    assert json.load(open(os.path.join(chief, "config.json")))["workers_in_cluster"] == 2


@pytest.mark.slow
def test_resume_continues_on_every_worker(quest_store, tmp_path):
    run = str(tmp_path / "run")  # one directory on a filesystem both workers see
    for r in _run_workers(quest_store, [run, run], "--epochs", "1", "--quiet"):
        assert r.returncode == 0, r.stdout[-3000:]
    results = _run_workers(quest_store, [run, run], "--epochs", "2", "--resume")
    for r in results:
        assert r.returncode == 0, r.stdout[-3000:]
        assert "epoch 1/2" not in r.stdout and "epoch 2/2" in r.stdout
    assert [r["epoch"] for r in _history(run)] == ["0", "1"]
    # the optimizer continued: its step count after epoch 2 is twice that after epoch 1 (Adam's moments too)
    import keras
    steps = [int(keras.models.load_model(os.path.join(run, "checkpoints", f"epoch_{e:03d}.keras"))
                 .optimizer.iterations) for e in (1, 2)]
    assert steps[0] > 0 and steps[1] == 2 * steps[0]


def _json(run_dir: str, name: str) -> dict:
    with open(os.path.join(run_dir, name)) as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize("validation", [True, False], ids=["validation", "no-validation"])
def test_both_modes_write_the_same_run_files(quest_store, tasks_store, tmp_path, validation):
    """One trainer (issue 13): a single-process run and a two-worker run write config.json with the same keys (plus
    workers_in_cluster), history.csv with the same columns, metrics.json of the same shape; a finished two-worker
    run resumed keeps that shape; a --resume with other options is refused by the chief, as in a single process."""
    from trainer.run import RunConfig, train
    from trainer.rundir import read_history
    store, args = (quest_store, []) if validation else (tasks_store, ["--label", "binary_int"])
    single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
    metrics = train(RunConfig(store, single, label=None if validation else "binary_int", epochs=1, verbose=0))
    for r in _run_workers(store, [multi, multi], "--epochs", "1", "--quiet", *args):  # one shared run directory
        assert r.returncode == 0, r.stdout[-3000:]
    config = _json(multi, "config.json")
    assert list(config) == list(_json(single, "config.json")) + ["workers_in_cluster"]
    assert (config["backend"], config["steps_per_execution"], config["workers_in_cluster"]) == ("tensorflow", 1, 2)
    columns = [set(read_history(os.path.join(d, "history.csv"))) for d in (single, multi)]  # NA-only columns out
    assert columns[0] == columns[1]
    expected = ["loss", "accuracy", "auc"]
    assert list(metrics) == list(_json(single, "metrics.json")) == list(_json(multi, "metrics.json")) == expected
    before = _json(multi, "metrics.json")
    for r in _run_workers(store, [multi, multi], "--epochs", "1", "--resume", "--quiet", *args):  # nothing left
        assert r.returncode == 0, r.stdout[-3000:]
    assert _json(multi, "metrics.json") == pytest.approx(before, rel=1e-5)
    assert list(_json(multi, "metrics.json")) == expected
    config = _json(multi, "config.json")
    results = _run_workers(store, [multi, multi], "--epochs", "2", "--resume", "--seed", "1", "--quiet", *args)
    assert [r.returncode for r in results] == [1, 1]
    errors = [[line for line in r.stdout.splitlines() if line.startswith("trainer: error: ")] for r in results]
    assert errors[0] == [f"trainer: error: --resume: {multi} was started with seed=0, this command gives 1; resume "
                         "with the same options, or start a new run with another --out"]
    assert "worker 1 of 2: the cluster stopped" in errors[1][0]
    assert _json(multi, "config.json") == config and len(_history(multi)) == 1


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import trainer.run
# what mirrored_strategy picks on a host with two GPUs, here on two logical CPU devices
trainer.run.mirrored_strategy = lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
if __name__ == "__main__":  # loader processes are spawned: they import this script
    metrics = trainer.run.train(trainer.run.RunConfig(sys.argv[1], sys.argv[2], epochs=1, verbose=0))
    print("accuracy", metrics["accuracy"])
"""


@pytest.mark.slow
def test_mirrored_strategy_trains_with_fit(quest_store, tmp_path):
    """The several-GPUs path (MirroredStrategy + Keras fit, embeddings included), on two logical CPUs."""
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    run = str(tmp_path / "run")
    result = subprocess.run([sys.executable, str(script), quest_store, run], env=subprocess_env(),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) > 0.55
    assert os.path.exists(os.path.join(run, "model.keras"))


@pytest.mark.slow
def test_a_failing_worker_stops_the_others_with_one_line(quest_store, tmp_path):
    chief, other = tmp_path / "chief", tmp_path / "other"
    chief.mkdir()
    (chief / "something").write_text("a previous run")  # the chief refuses to overwrite it
    results = _run_workers(quest_store, [str(chief), str(other)], "--epochs", "1", "--quiet")
    assert all(r.returncode == 1 for r in results)
    errors = [[line for line in r.stdout.splitlines() if line.startswith("trainer: error: ")] for r in results]
    assert "already holds a run" in errors[0][0]
    assert "worker 1 of 2: the cluster stopped" in errors[1][0] and len(errors[1]) == 1
    assert "Traceback" not in results[1].stdout
