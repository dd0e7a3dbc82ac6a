"""The default tabular model and the contract for user models (``--model MODULE:FUNCTION``).

A user function receives a :class:`ModelSpec` and returns an uncompiled (or compiled) ``keras.Model`` whose
inputs are named ``numeric`` (float32 ``[batch, len(spec.numeric)]``) and/or ``categorical`` (int32
``[batch, len(spec.categorical)]``) — see ``trainer/example_model.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from dataclasses import dataclass

import keras

from store import OptionError

from .task import Task

__all__ = ["ModelSpec", "HEADS", "build_model", "default_model", "load_model_function", "compile_for", "loss_for",
           "metrics_for"]


@dataclass(frozen=True)
class ModelSpec:
    """What a model builder needs: feature columns, their statistics and vocabularies, and the task."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    vocabulary_sizes: tuple[int, ...]  # per categorical column; codes run 0..size (0 = missing; hash buckets too)
    means: tuple[float, ...]  # per numeric column, train split
    stds: tuple[float, ...]
    task: Task


def spec_for(source) -> ModelSpec:
    """The ModelSpec of a :class:`trainer.batches.BatchSource`."""
    def stat(col, key, default):
        value = source.stats.get(col.name, {}).get(key)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default

    return ModelSpec(
        numeric=tuple(c.name for c in source.numeric), categorical=tuple(c.name for c in source.categorical),
        vocabulary_sizes=tuple(c.categories for c in source.categorical),
        means=tuple(stat(c, "mean", 0.0) for c in source.numeric),
        stds=tuple(stat(c, "std", 1.0) or 1.0 for c in source.numeric), task=source.task)


def default_model(spec: ModelSpec, *, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.1) -> keras.Model:
    """Normalised numeric inputs (stored statistics, no extra pass) + one embedding per categorical column
    (width ~1.6 * vocabulary**0.56, at most 32) -> MLP -> an output layer fitting the task."""
    inputs, parts = {}, []
    if spec.numeric:
        inputs["numeric"] = keras.Input((len(spec.numeric),), name="numeric")
        norm = keras.layers.Normalization(mean=list(spec.means), variance=[s * s for s in spec.stds],
                                          name="normalise")
        parts.append(norm(inputs["numeric"]))
    if spec.categorical:
        inputs["categorical"] = keras.Input((len(spec.categorical),), dtype="int32", name="categorical")
        for j, (name, size) in enumerate(zip(spec.categorical, spec.vocabulary_sizes)):
            width = min(32, max(2, round(1.6 * (size + 1) ** 0.56)))
            embed = keras.layers.Embedding(size + 1, width, name=f"embed_{_safe(name)}")
            parts.append(embed(inputs["categorical"][:, j]))
    h = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(h)
        h = keras.layers.Dropout(dropout, name=f"dropout_{i}")(h)
    task = spec.task
    units = task.classes if task.kind == "multiclass" else 1
    out = keras.layers.Dense(units, activation=HEADS[task.kind].activation, dtype="float32",
                             name=_safe(task.label))(h)
    return keras.Model(inputs, out, name="tabular_mlp")


@dataclass(frozen=True)
class Head:
    """What a task kind fixes: the output activation, the loss (a Keras loss class name) and the metrics."""

    activation: str | None
    loss: str
    metrics: tuple[tuple[str, str], ...]  # (Keras metric class, name in history.csv)


# The one table per task kind, used by the default model, compile_for and the multi-worker loop alike, so every
# training mode logs the same history columns.
HEADS = {
    "binary": Head("sigmoid", "BinaryCrossentropy", (("BinaryAccuracy", "accuracy"), ("AUC", "auc"))),
    "multiclass": Head("softmax", "SparseCategoricalCrossentropy", (("SparseCategoricalAccuracy", "accuracy"),)),
    "regression": Head(None, "MeanSquaredError", (("MeanAbsoluteError", "mae"),)),
}


def loss_for(task: Task, **kwargs) -> keras.losses.Loss:
    return getattr(keras.losses, HEADS[task.kind].loss)(**kwargs)


def metrics_for(task: Task) -> list[keras.metrics.Metric]:
    return [getattr(keras.metrics, cls)(name=name) for cls, name in HEADS[task.kind].metrics]


def compile_for(model: keras.Model, task: Task, learning_rate: float, steps_per_execution: int = 1) -> None:
    """Loss and metrics follow the task (HEADS): accuracy and AUC for binary classification, accuracy for
    multiclass, MAE for regression; Adam."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss_for(task), metrics=metrics_for(task),
                  steps_per_execution=steps_per_execution)


def build_model(spec: ModelSpec, name: str = "mlp", *, learning_rate: float, steps_per_execution: int = 1,
                strategy=None) -> keras.Model:
    """The model ``--model`` names for ``spec`` (``mlp``: :func:`default_model`, else a ``MODULE:FUNCTION``),
    compiled for its task by :func:`compile_for` unless the function compiled it itself — the one builder of every
    training mode. ``strategy``: a ``tf.distribute`` strategy whose scope the variables are made in (several GPUs,
    several workers); None for one device."""
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = default_model(spec) if name == "mlp" else load_model_function(name)(spec)
        if not model.compiled:
            compile_for(model, spec.task, learning_rate, steps_per_execution=steps_per_execution)
    return model


def load_model_function(target: str):
    """``MODULE:FUNCTION`` -> the function (a clear error when either is missing)."""
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise OptionError(f"--model {target!r}: expected mlp or MODULE:FUNCTION, e.g. trainer.example_model:build")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OptionError(f"--model {target!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise OptionError(f"--model {target!r}: {module_name} has no function {func_name!r}")
    return func


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "column"
