"""The run directory's shared pieces (issue 13: one trainer): the resolved config, the final metrics and the finish
that every training mode uses. That both modes write the same files is tested end to end in test_distribution.py."""

from __future__ import annotations

import json
import os
import types

import keras
import pytest

from store import OptionError
from trainer import rundir
from trainer.model import ModelSpec, build_model
from trainer.run import RunConfig
from trainer.task import Task

TASK = Task("binary", "clear", 2, ("0", "1"))
SPEC = ModelSpec(numeric=("level", "f00"), categorical=("colour",), vocabulary_sizes=(3,), means=(0.0, 1.0),
                 stds=(1.0, 2.0), task=TASK)
RESOLVED = ["task", "backend"]  # after the options; label, features and steps_per_execution are resolved in place


def test_config_records_every_option_then_what_the_run_resolved(tmp_path):
    cfg = RunConfig("s.zarr", str(tmp_path), epochs=2)
    written = rundir.write_config(cfg, "clear", SPEC, types.SimpleNamespace(steps_per_execution=8))
    assert json.load(open(tmp_path / rundir.CONFIG)) == json.loads(json.dumps(written))
    options = [f for f in RunConfig.__dataclass_fields__]
    assert list(written) == options + RESOLVED
    assert (written["label"], written["epochs"], written["steps_per_execution"]) == ("clear", 2, 8)
    assert written["features"] == ["level", "f00", "colour"] and written["task"]["kind"] == "binary"
    assert (written["backend"], written["steps_per_execution"]) == (keras.backend.backend(), 8)
    more = rundir.write_config(cfg, "clear", SPEC, types.SimpleNamespace(steps_per_execution=1), workers_in_cluster=2)
    assert list(more) == options + RESOLVED + ["workers_in_cluster"]


def test_config_on_resume_refuses_another_run_and_keeps_its_config(tmp_path):
    model = types.SimpleNamespace(steps_per_execution=1)
    rundir.write_config(RunConfig("s.zarr", str(tmp_path)), "clear", SPEC, model)
    before = (tmp_path / rundir.CONFIG).read_bytes()
    with pytest.raises(OptionError, match=r"--resume: .* was started with seed=0, this command gives 3"):
        rundir.write_config(RunConfig("s.zarr", str(tmp_path), seed=3, resume=True), "clear", SPEC, model)
    assert (tmp_path / rundir.CONFIG).read_bytes() == before
    rundir.write_config(RunConfig("s.zarr", str(tmp_path), epochs=9, resume=True), "clear", SPEC, model)  # more epochs
    assert json.load(open(tmp_path / rundir.CONFIG))["epochs"] == 9


@pytest.mark.parametrize("last, validation, expected", [
    # Keras' CSVLogger sorts its columns; Keras' evaluate gives loss first; the multi-worker loop its own order
    ({"epoch": 2.0, "accuracy": 0.8, "auc": 0.9, "loss": 0.4}, None, {"loss": 0.4, "accuracy": 0.8, "auc": 0.9}),
    ({"epoch": 2, "loss": 0.4, "accuracy": 0.8, "auc": 0.9, "val_loss": 0.5},
     {"loss": 0.5, "auc": 0.7, "accuracy": 0.6}, {"loss": 0.5, "accuracy": 0.6, "auc": 0.7}),
    ({"epoch": 0, "loss": 3.0, "mae": 1.5, "val_loss": float("nan")}, None, {"loss": 3.0, "mae": 1.5}),
    ({}, None, {}),
], ids=["training", "validation", "regression", "no-epoch"])
def test_final_metrics_have_one_shape(last, validation, expected):
    metrics = rundir.final_metrics(last, validation)
    assert metrics == expected and list(metrics) == list(expected)
    assert all(type(v) is float for v in metrics.values())


def test_last_epoch_is_the_last_history_row(tmp_path):
    assert rundir.last_epoch(str(tmp_path)) == {}
    for epoch in range(3):
        rundir.append_history(str(tmp_path / rundir.HISTORY), {"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    assert rundir.last_epoch(str(tmp_path)) == {"epoch": 2.0, "loss": pytest.approx(1 / 3)}


def test_finish_writes_the_model_metrics_and_curve(tmp_path):
    model = build_model(SPEC, learning_rate=1e-3)
    rundir.append_history(str(tmp_path / rundir.HISTORY), {"epoch": 0, "loss": 0.7, "accuracy": 0.6, "auc": 0.65})
    metrics = rundir.final_metrics(rundir.last_epoch(str(tmp_path)))
    rundir.finish(str(tmp_path), model, TASK, metrics)
    assert sorted(os.listdir(tmp_path)) == ["history.csv", "learning_curve.png", "metrics.json", "model.keras"]
    assert json.load(open(tmp_path / "metrics.json")) == {"loss": 0.7, "accuracy": 0.6, "auc": 0.65}
    assert keras.models.load_model(tmp_path / "model.keras", compile=False).count_params() == model.count_params()


def test_build_model_compiles_for_the_task_unless_the_function_did():
    model = build_model(SPEC, learning_rate=0.01, steps_per_execution=4)
    assert model.name == "tabular_mlp" and model.steps_per_execution == 4
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    own = build_model(SPEC, "tests.trainer.test_rundir:compiled_model", learning_rate=0.01)
    assert isinstance(own.optimizer, keras.optimizers.SGD)


def compiled_model(spec: ModelSpec) -> keras.Model:
    inputs = keras.Input((len(spec.numeric),), name="numeric")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    return model
