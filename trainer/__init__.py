"""Training from a store: ``StoreSequence`` (a Keras PyDataset), ``iter_batches`` (framework-neutral),
``tf_dataset`` (a tf.data pipeline over a sequence) and the ``trainer`` command (``trainer run | evaluate |
predict``).

Keras is imported only when a Keras-facing name is used, so loader worker processes (which import
``trainer.batches``) never load TensorFlow.
"""

from importlib import import_module

__all__ = ["StoreSequence", "BatchSource", "BatchFeed", "iter_batches", "tf_dataset", "LoaderError", "train",
           "evaluate", "predict", "RunConfig"]

_WHERE = {"StoreSequence": "sequence", "BatchSource": "batches", "BatchFeed": "feed", "iter_batches": "batches",
          "tf_dataset": "tfdata", "LoaderError": "batches", "train": "run", "evaluate": "run", "predict": "run",
          "RunConfig": "run"}


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
