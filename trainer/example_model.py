"""An example user model for ``trainer run STORE --model trainer.example_model:build``.

The function receives a :class:`trainer.model.ModelSpec` (feature names, vocabulary sizes, train statistics, the
task) and returns a ``keras.Model`` with inputs named ``numeric`` and/or ``categorical``. Return it uncompiled to
get the task's loss and metrics, or compile it yourself.
"""

import keras

from trainer.model import ModelSpec


def build(spec: ModelSpec) -> keras.Model:
    """A wide (linear) model: normalised numeric inputs and one-hot categories straight into the output."""
    inputs, parts = {}, []
    if spec.numeric:
        inputs["numeric"] = keras.Input((len(spec.numeric),), name="numeric")
        parts.append(keras.layers.Normalization(mean=list(spec.means), variance=[s * s for s in spec.stds])(
            inputs["numeric"]))
    if spec.categorical:
        inputs["categorical"] = keras.Input((len(spec.categorical),), dtype="int32", name="categorical")
        for j, size in enumerate(spec.vocabulary_sizes):
            parts.append(keras.layers.CategoryEncoding(size + 1, output_mode="one_hot")(inputs["categorical"][:, j]))
    h = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
    units = spec.task.classes if spec.task.kind == "multiclass" else 1
    activation = {"binary": "sigmoid", "multiclass": "softmax", "regression": None}[spec.task.kind]
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(h), name="wide")
