"""A model that records every batch it trains on, for tests of what ``fit`` actually trains (each batch once
per epoch, in the sequence's order; a resumed epoch continues where its backup was saved).

``--model tests.trainer.recording:build`` with ``RECORD_TO=/path`` appends one line per trained batch: the SHA-1
of the batch's ``numeric`` matrix. Works under the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import hashlib
import os

import keras
import numpy as np

from trainer.model import compile_for, default_model


def fingerprint(numeric: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(numeric, np.float32).tobytes()).hexdigest()


def _write(x) -> None:
    with open(os.environ["RECORD_TO"], "a") as f:
        f.write(fingerprint(np.asarray(x)) + "\n")


@keras.saving.register_keras_serializable(package="tests")
class Record(keras.layers.Layer):
    """Identity; in training, writes the batch's fingerprint as the step runs."""

    def call(self, x, training=None):
        if not training or "RECORD_TO" not in os.environ:
            return x
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf
            tf.numpy_function(lambda v: _write(v) or np.int64(0), [x], tf.int64)
        elif backend == "jax":
            import jax
            jax.debug.callback(_write, x, ordered=True)
        else:
            _write(keras.ops.convert_to_numpy(x))
        return x


def build(spec) -> keras.Model:
    """The default MLP with a Record layer on the numeric input, uncompiled: the trainer compiles it as it does
    its own model (task's loss and metrics, default steps per execution)."""
    base = default_model(spec)
    inputs = {name: keras.Input(t.shape[1:], dtype=t.dtype, name=name) for name, t in base.input.items()}
    recorded = dict(inputs, numeric=Record(name="record")(inputs["numeric"]))
    return keras.Model(inputs, base(recorded), name="recording")


def build_compiled(spec, steps_per_execution: int = 1) -> keras.Model:
    model = build(spec)
    compile_for(model, spec.task, 1e-3, steps_per_execution=steps_per_execution)
    return model


def read(path: str) -> list[str]:
    with open(path) as f:
        return f.read().split()
