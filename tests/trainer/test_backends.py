"""The trainer under Keras' other backends, JAX and PyTorch (CPU), each in its own process (Keras picks its
backend when first imported): ``trainer run`` trains each epoch's batches once and in order (recorded by the
model itself), writes the run directory, backs up mid-epoch, and ``evaluate`` / ``predict`` work; loader processes
too. JAX is a test dependency; PyTorch is installed by CI (``.ci/run``) and these tests skip without it."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import subprocess_env
from tests.trainer.recording import fingerprint, read
from trainer.batches import BatchSource


def _needs(backend: str) -> None:
    module = {"jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (CI installs it: pip install torch==2.13.0 for a CPU build)")


def _trainer(backend: str, *argv: str, record: str | None = None) -> subprocess.CompletedProcess:
    env = subprocess_env() | {"KERAS_BACKEND": backend}
    if record:
        env["RECORD_TO"] = record
    return subprocess.run([sys.executable, "-m", "trainer", *argv], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("backend,loader", [("jax", ["--workers", "2", "--use-multiprocessing"]),
                                            ("torch", ["--workers", "2"])])
def test_run_evaluate_predict(quest_store, tmp_path, backend, loader):
    _needs(backend)
    run_dir, record = str(tmp_path / "run"), str(tmp_path / "trained.txt")
    result = _trainer(backend, "run", quest_store, "--out", run_dir, "--epochs", "2", "--quiet", "--save-every",
                      "5", "--model", "tests.trainer.recording:build", *loader, record=record)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trainer: finished; validation metrics" in result.stderr
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["backend"] == backend
    source = BatchSource(quest_store, "train", label="clear")
    assert read(record) == [fingerprint(source.batch(i, e)[0]["numeric"]) for e in range(2)
                            for i in range(len(source))]
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1"]
    state = json.load(open(os.path.join(run_dir, "backup", "state.json")))
    assert (state["epoch"], state["step"]) == (2, 0)  # the last backup: after the last epoch
    evaluated = _trainer(backend, "evaluate", run_dir, quest_store)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert 0.5 < json.loads(evaluated.stdout)["accuracy"] <= 1
    out = str(tmp_path / "p.csv")
    predicted = _trainer(backend, "predict", run_dir, quest_store, "--out", out)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "p_1"] and len(rows) == 1 + BatchSource(quest_store, "validation").rows
