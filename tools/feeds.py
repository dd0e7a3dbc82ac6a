"""The alternatives the benchmarks feed the same model with: the article's CSV Sequence and tf.data's CSV reader.

Both produce the default model's inputs (``numeric`` float32, ``categorical`` int32 codes with the store's
vocabularies) from 1000-row CSV files, so only the feeding differs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["csv_sequence", "tf_csv_dataset"]


def csv_sequence(source, files: list[str], workers: int = 2):
    """The seed article's recipe: one ``pandas.read_csv`` per 1000-row file in a Keras Sequence, worker processes."""
    import keras

    numeric = [c.name for c in source.numeric]
    vocab = {c.name: list(c.vocabulary) for c in source.categorical}
    label = source.label.name

    class CsvSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=True, max_queue_size=10)

        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            frame = pd.read_csv(files[i])
            x = {"numeric": frame[numeric].fillna(0).to_numpy(np.float32)}
            if vocab:
                x["categorical"] = np.stack([pd.Categorical(frame[c], categories=v).codes + 1
                                             for c, v in vocab.items()], axis=1).astype(np.int32)
            return x, frame[label].to_numpy(np.float32)

    return CsvSequence()


def tf_csv_dataset(source, files: list[str]):
    """``tf.data.experimental.make_csv_dataset`` over the files, parsed in TensorFlow, categories via StringLookup."""
    import tensorflow as tf

    numeric = [c.name for c in source.numeric]
    categorical = [c for c in source.categorical]
    header = pd.read_csv(files[0], nrows=0).columns.tolist()
    kinds = {c.name: c.kind for c in source.numeric + source.categorical}
    defaults = [[""] if kinds.get(name) == "category" else [0.0] for name in header]
    lookups = {c.name: tf.keras.layers.StringLookup(vocabulary=list(c.vocabulary), num_oov_indices=1)
               for c in categorical}

    def to_inputs(features, label):
        x = {"numeric": tf.stack([tf.cast(features[n], tf.float32) for n in numeric], axis=1)}
        if categorical:
            x["categorical"] = tf.stack([tf.cast(lookups[c.name](features[c.name]), tf.int32) for c in categorical],
                                        axis=1)
        return x, tf.cast(label, tf.float32)

    ds = tf.data.experimental.make_csv_dataset(files, batch_size=source.batch_size, column_defaults=defaults,
                                               label_name=source.label.name, num_epochs=1, shuffle=False,
                                               num_parallel_reads=tf.data.AUTOTUNE, sloppy=False)
    return ds.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
