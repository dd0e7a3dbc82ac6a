"""A ``tf.data`` pipeline over a :class:`~trainer.sequence.StoreSequence`, for the TensorFlow backend.

Keras wraps a ``PyDataset`` in ``tf.data.Dataset.from_generator`` with one Python call per *batch* (~0.4 ms of CPU
each on the 2-core development machine, competing with the model). Here Python is called once per *window* (16
batches by default): the generator yields the window's batches stacked ``[k, batch, ...]`` (views, no copy) and
``unbatch`` splits them in C++; ``prefetch`` keeps the next batches ready. Same batches, same order, same epoch rules
as the sequence (each iteration of the dataset is one pass of its feed, see :mod:`trainer.feed`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["tf_dataset"]


def tf_dataset(seq, prefetch: int | None = None):
    """The batches of ``seq`` as a ``tf.data.Dataset`` of ``(x,)``, ``(x, y)`` or ``(x, y, weight)``; iterate it
    once per epoch (``model.fit`` does). ``prefetch``: batches kept ready (default: tf.data's autotuning)."""
    import tensorflow as tf

    source = seq.source
    outputs = source.outputs()
    batch = source.batch_size

    def spec(name):
        cols, dtype = outputs[name]
        return tf.TensorSpec((None, None) if cols is None else (None, None, cols), tf.as_dtype(dtype))

    def structure(arrays):
        x = {k: arrays[k] for k in ("numeric", "categorical") if k in arrays}
        if "y" not in arrays:
            return (x,)
        return (x, arrays["y"], arrays["weight"]) if "weight" in arrays else (x, arrays["y"])

    def stacked(window, j, k):
        arrays = {name: window[name][j * batch:(j + k) * batch] for name in outputs}
        rows = len(next(iter(arrays.values())))
        full = rows // batch
        if full:
            yield structure({n: a[:full * batch].reshape((full, batch) + a.shape[1:]) for n, a in arrays.items()})
        if rows > full * batch:  # the epoch's short last batch
            yield structure({n: a[full * batch:][np.newaxis] for n, a in arrays.items()})

    def generator():
        for window, j, k in seq.feed.windows():
            yield from stacked(window, j, k)

    signature = structure({name: spec(name) for name in outputs})
    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature).unbatch()
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(seq)))
    return dataset.prefetch(tf.data.AUTOTUNE if prefetch is None else prefetch)
