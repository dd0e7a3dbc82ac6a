"""``StoreSequence``: the store as a Keras ``PyDataset`` (Keras 3's ``Sequence``), for every Keras backend."""

from __future__ import annotations

import warnings

import keras

from .batches import DEFAULT_WINDOW, BatchSource, LoaderError
from .feed import BatchFeed

__all__ = ["StoreSequence", "LoaderError"]


class StoreSequence(keras.utils.PyDataset):
    """Batches of a store split for ``model.fit`` / ``evaluate`` / ``predict``.

    ``len(seq)`` is the number of batches, ``seq[i]`` is batch ``i`` as numpy ``(x, y)`` (or ``(x, y, weight)``
    when the split has rows without a label, ``(x,)`` without a label); ``x`` is a dict with ``numeric`` float32
    and ``categorical`` int32 matrices (see :class:`trainer.batches.BatchSource`). Each epoch permutes the chunks
    and mixes rows across windows of chunks (seeded by ``seed`` and the epoch), so pass ``shuffle=False`` to
    ``fit``: Keras' own shuffle only reorders whole batches and defeats the window cache.

    Loading runs ahead of training in this object's own threads or processes (:mod:`trainer.loader`); Keras is
    told ``workers=1`` and asks for batches in order, which also lets the sequence follow the epochs by itself:
    asking for batch 0 again after a whole epoch starts the next epoch's order (see :mod:`trainer.feed`).
    ``on_epoch_end`` does nothing.

    Args:
        path: store directory or URL.
        split: ``train`` or ``validation``.
        label: label column (default: the store's), or None.
        features: feature columns (default: all but the label).
        batch_size: a multiple of the store's chunk rows (default: the chunk rows).
        shuffle: reorder and mix rows each epoch.
        seed: seed of that order.
        workers: loader threads (or processes), each decoding whole windows ahead of training.
        use_multiprocessing: decode in ``workers`` spawned processes that write into shared memory; the
            training process only copies each window out (no pickled batches). A worker that dies ends training
            with a one-line LoaderError within a second, never a hang (keras issue 11461).
        max_queue_size: passed to Keras (unused: Keras gets ``workers=1`` and no queue).
        window: chunks per mixing window.
        share: ``(index, count)``: this worker's disjoint share of each epoch (see BatchSource).
        ahead: windows loaded ahead (default ``2 * workers``, at least 2).

    Example::

        train = StoreSequence("quest.zarr", "train", label="clear", workers=2)
        val = StoreSequence("quest.zarr", "validation", label="clear", shuffle=False)
        model.fit(train, validation_data=val, epochs=3, shuffle=False)
    """

    def __init__(self, path: str, split: str = "train", *, label=..., features=None, batch_size=None,
                 shuffle: bool = True, seed: int = 0, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10, window: int = DEFAULT_WINDOW, share: tuple[int, int] = (0, 1),
                 ahead: int | None = None):
        # Keras reads in order on one thread; the parallel loading is the feed's (see the class docstring)
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=max_queue_size)
        source = BatchSource(path, split, label=label, features=features, batch_size=batch_size, shuffle=shuffle,
                             seed=seed, window=window, share=share)
        self.feed = BatchFeed(source, workers=workers, processes=use_multiprocessing, ahead=ahead)
        self.source = source
        self._last = -1
        self._warned = False

    @property
    def epoch(self) -> int:
        return self.feed.epoch

    @property
    def stats(self):
        """:class:`trainer.feed.FeedStats`: time spent in ``__getitem__`` (the training side's feed cost)."""
        return self.feed.stats

    def __len__(self) -> int:
        return len(self.feed)

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        self._note_order(index)
        return self.feed.batch(index)

    def _note_order(self, index: int) -> None:
        if 0 < index < self._last - 1 and not self._warned:
            self._warned = True
            warnings.warn("StoreSequence batches are requested out of order (fit(shuffle=True)?): pass "
                          "shuffle=False to fit; the sequence shuffles rows itself, and random batch order makes "
                          "every batch decode its whole window and confuses the epoch order", stacklevel=3)
        self._last = index

    def on_epoch_end(self):
        """Nothing: the sequence follows the epochs from the order of requests (Keras calls this once before the
        first epoch too, and its TensorFlow backend starts the next epoch's reads before calling it)."""

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Serve ``epoch`` from batch ``skip`` on (``trainer run --resume`` continues an epoch in its middle)."""
        self.feed.set_epoch(epoch, skip)
        self._last = -1

    def close(self) -> None:
        """Stop the loader threads or processes (waiting for them) and close files."""
        self.feed.close()

    def __del__(self):
        try:
            self.feed.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
