"""``StoreSequence``: the store as a Keras ``PyDataset`` (Keras 3's ``Sequence``)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import threading
import warnings
from collections import OrderedDict

import keras

from .batches import DEFAULT_WINDOW, LoaderError, BatchSource, init_worker, load_window_in_worker

__all__ = ["StoreSequence", "LoaderError"]

_CACHED_WINDOWS = 8


class StoreSequence(keras.utils.PyDataset):
    """Batches of a store split for ``model.fit`` / ``evaluate`` / ``predict``.

    ``len(seq)`` is the number of batches, ``seq[i]`` is batch ``i`` as numpy ``(x, y)`` (or ``(x, y, weight)``
    when the label has missing values, ``(x,)`` without a label); ``x`` is a dict with ``numeric`` float32 and
    ``categorical`` int32 matrices (see :class:`trainer.batches.BatchSource`). Each epoch permutes the chunks and
    mixes rows across windows of chunks (seeded by ``seed`` and the epoch), so pass ``shuffle=False`` to ``fit``:
    Keras' own shuffle only reorders whole batches and defeats the window cache.

    Args:
        path: store directory.
        split: ``train`` or ``validation``.
        label: label column (default: the store's), or None.
        features: feature columns (default: all but the label).
        batch_size: a multiple of the store's chunk rows (default: the chunk rows).
        shuffle: reorder and mix rows each epoch.
        seed: seed of that order.
        workers: loader threads (Keras' thread pool) reading chunks in parallel (chunk reads and Blosc release
            the GIL).
        use_multiprocessing: decode windows in ``workers`` separate processes instead. The processes are this
            class's own (``concurrent.futures``), not Keras': a worker that dies ends training with a LoaderError
            at once instead of hanging ``fit`` forever (keras issue 11461), and the processes persist across epochs.
        max_queue_size: batches Keras prepares ahead.
        window: chunks per mixing window.
        shard: ``(index, count)``: this worker's disjoint share of each epoch (see BatchSource).

    Example::

        train = StoreSequence("quest.zarr", "train", label="clear", workers=2)
        val = StoreSequence("quest.zarr", "validation", label="clear", shuffle=False)
        model.fit(train, validation_data=val, epochs=3, shuffle=False)
    """

    def __init__(self, path: str, split: str = "train", *, label=..., features=None, batch_size=None,
                 shuffle: bool = True, seed: int = 0, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10, window: int = DEFAULT_WINDOW, shard: tuple[int, int] = (0, 1)):
        # Keras' own process pool is not used (see above); its thread pool is, for both modes.
        super().__init__(workers=max(1, workers), use_multiprocessing=False, max_queue_size=max_queue_size)
        self.source = BatchSource(path, split, label=label, features=features, batch_size=batch_size,
                                  shuffle=shuffle, seed=seed, window=window, shard=shard)
        self.processes = max(1, workers) if use_multiprocessing else 0
        self.epoch = 0
        self._windows: OrderedDict = OrderedDict()
        self._served: dict = {}
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._last = -1
        self._warned = False

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        w, j = self.source.window_of(index)
        self._note_order(index)
        key = (self.epoch, w)
        try:
            window = self._future(key).result()
        except cf.BrokenExecutor:  # the process pool lost a worker
            self._shutdown()
            raise LoaderError(f"a loader worker process died while reading batch {index} (window {w} of epoch "
                              f"{self.epoch}) of {self.source.path}: killed, out of memory, or it could not start "
                              "(worker processes are spawned: start training under `if __name__ == \"__main__\":`)"
                              "; or use threads (no --use-multiprocessing)") from None
        self._count(key)
        return self.source.batch_from(window, j)

    def _future(self, key) -> cf.Future:
        """The window's future: submitted to the process pool, or loaded by the first thread that needs it
        (outside the lock, so threads load different windows in parallel; others wait on the future)."""
        with self._lock:
            future = self._windows.get(key)
            load_here = future is None and not self.processes
            if future is None:
                future = self._pool_submit(*key) if self.processes else cf.Future()
                self._windows[key] = future
                self._served[key] = 0
                while len(self._windows) > _CACHED_WINDOWS:
                    old, _ = self._windows.popitem(last=False)
                    self._served.pop(old, None)
        if load_here:
            try:
                future.set_result(self.source.load_window(*key))
            except Exception as exc:  # noqa: BLE001 - delivered to every batch of the window
                future.set_exception(exc)
        return future

    def _pool_submit(self, epoch: int, w: int) -> cf.Future:
        if self._pool is None:
            # spawn: the workers import numpy and this package's reader, never TensorFlow (see trainer/__init__)
            self._pool = cf.ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=init_worker, initargs=(self.source,))
        return self._pool.submit(load_window_in_worker, epoch, w)

    def _count(self, key) -> None:
        with self._lock:
            if key in self._served:
                self._served[key] += 1
                if self._served[key] >= self.source.batches_per_window():
                    self._windows.pop(key, None)
                    self._served.pop(key, None)

    def _note_order(self, index: int) -> None:
        if index < self._last - 2 * self.workers - self.max_queue_size and not self._warned:
            self._warned = True
            warnings.warn("StoreSequence batches are requested out of order (fit(shuffle=True)?): pass "
                          "shuffle=False to fit; the sequence shuffles rows itself, and random batch order makes "
                          "every batch decode its whole window", stacklevel=3)
        self._last = max(self._last, index)

    def on_epoch_end(self):
        """Next epoch: new chunk order and row mixing (Keras also calls this once before the first epoch)."""
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from now on (``trainer run`` syncs it with Keras' epoch, also on resume)."""
        with self._lock:
            self.epoch = epoch
            self._windows.clear()
            self._served.clear()
            self._last = -1

    def _shutdown(self, wait: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        """Stop the worker processes (waiting for them to exit) and close files (also done, without waiting, when
        the object is garbage-collected)."""
        self._shutdown(wait=True)
        self.source.close()

    def __del__(self):
        try:
            self._shutdown()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
