"""``BatchFeed``: the batches of one split in training order, with windows loaded ahead — the engine behind
:class:`~trainer.sequence.StoreSequence` and :func:`~trainer.batches.iter_batches`, without Keras.

Position. A feed serves *passes*: pass ``p`` over epoch ``e`` is batches ``skip .. len-1`` of that epoch's order
(``skip`` is non-zero only for an epoch resumed in the middle). ``batch(i)`` is batch ``skip + i``. A request for
index 0 after the whole pass was served starts the next epoch (``skip`` 0); a request for index 0 before that
restarts the same pass (e.g. Keras' probe of the first batches before training). So the epoch follows the data
itself, not the timing of callbacks: Keras' TensorFlow backend starts reading the next epoch before
``on_epoch_end`` runs, and still gets that epoch's order. Access must be in order within a pass (Keras asks in
order when the sequence is given ``workers=1``, which :class:`StoreSequence` does: the parallelism is here).

Look-ahead. After each batch the feed asks its loader for the next ``ahead`` windows, across the end of the pass
into the next epoch, so a new epoch (or the validation pass between two) does not start with a stall.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from store import StoreError

from .batches import BatchSource, LoaderError
from .loader import WindowLoader, loader_for

__all__ = ["BatchFeed", "FeedStats"]

_KEPT_WINDOWS = 2  # taken windows kept for batches asked slightly out of order


@dataclass
class FeedStats:
    """Time the consumer spent inside :meth:`BatchFeed.batch` (its whole cost of the feed), and the part of it
    spent waiting for a window that was not loaded yet."""

    batches: int = 0
    seconds: float = 0.0
    waiting: float = 0.0

    @property
    def us_per_batch(self) -> float:
        return self.seconds / self.batches * 1e6 if self.batches else 0.0

    @property
    def waiting_us_per_batch(self) -> float:
        return self.waiting / self.batches * 1e6 if self.batches else 0.0


class BatchFeed:
    """Batches of ``source`` in order, loaded ahead by ``workers`` threads or processes.

    Args:
        source: the split's :class:`BatchSource`.
        workers: loader threads, or processes with ``processes=True``.
        processes: decode in worker processes into shared memory (see :mod:`trainer.loader`).
        ahead: windows requested ahead of the one being served (default ``2 * workers``, at least 2).
    """

    def __init__(self, source: BatchSource, *, workers: int = 1, processes: bool = False, ahead: int | None = None):
        self.source = source
        self.workers, self.processes = max(1, workers), bool(processes)
        self.ahead = ahead if ahead is not None else max(2, 2 * self.workers)
        self.epoch, self.skip = 0, 0
        self.stats = FeedStats()
        self.error: StoreError | None = None  # the last error raised to the consumer (see trainer.run)
        self._served = 0
        self._current = None  # key of the window served last
        self._windows: OrderedDict = OrderedDict()
        self._loader: WindowLoader | None = None
        self._closed = False
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.source) - self.skip

    @property
    def loader(self) -> WindowLoader:
        if self._loader is None:
            if self._closed:  # e.g. a read-ahead of an abandoned tf.data iterator: never start workers again
                raise LoaderError(f"the feed of {self.source.path} ({self.source.split}) was closed")
            self._loader = loader_for(self.source, self.workers, self.processes)
        return self._loader

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Serve ``epoch`` from batch ``skip`` on (``len(feed)`` becomes the batches left in that epoch)."""
        if not 0 <= skip < len(self.source):
            raise ValueError(f"skip {skip} outside 0..{len(self.source) - 1}")
        with self._lock:
            self.epoch, self.skip, self._served, self._current = int(epoch), int(skip), 0, None
            self._windows.clear()
            if self._loader is not None:  # keep what was already loaded ahead for this position
                wanted = {self._key(self.epoch, self.source.window_of(self.skip)[0]), *self._upcoming(0)}
                self._loader.discard(keep=wanted.__contains__)

    def batch(self, index: int) -> tuple:
        """Batch ``index`` of the current pass: ``(x,)``, ``(x, y)`` or ``(x, y, weight)`` of numpy arrays."""
        started = time.perf_counter()
        window, j, _ = self._serve(index, 1)
        batch = self.source.batch_from(window, j)
        self.stats.batches += 1
        self.stats.seconds += time.perf_counter() - started
        return batch

    def windows(self):
        """One pass, a window at a time: ``(window, j, k)`` — batches ``j .. j+k-1`` of ``window`` are the pass's
        next ``k`` batches (the same order and epoch rules as :meth:`batch`; for pipelines that split windows
        into batches themselves, see :mod:`trainer.tfdata`)."""
        index = 0
        while index < len(self):
            started = time.perf_counter()
            served = self._serve(index, self.source.batches_per_window())
            self.stats.batches += served[2]
            self.stats.seconds += time.perf_counter() - started
            yield served
            index += served[2]

    def _serve(self, index: int, most: int) -> tuple[dict, int, int]:
        """(window, j, k): up to ``most`` batches of the pass from ``index`` on, all in one window."""
        try:
            with self._lock:
                if not 0 <= index < len(self):
                    raise IndexError(f"batch {index} out of range: this pass has {len(self)} batches")
                if index == 0 and self._served:
                    if self._served >= len(self):
                        self.set_epoch(self.epoch + 1)
                    else:
                        self._served = 0  # the same pass again from its start
                w, j = self.source.window_of(self.skip + index)
                key = self._key(self.epoch, w)
                window = self._window(key)
                k = min(most, self.source.batches_per_window() - j, len(self) - index)
                self._served += k
                if key != self._current:  # a new window: ask for the ones after it
                    self._current = key
                    self._look_ahead(index)
                return window, j, k
        except StoreError as exc:
            self.error = exc
            raise

    def _key(self, epoch: int, w: int) -> tuple[int, int]:
        return (epoch if self.source.shuffle else 0, w)  # unshuffled windows are the same in every epoch

    def _window(self, key) -> dict[str, np.ndarray]:
        window = self._windows.get(key)
        if window is None:
            waited = time.perf_counter()
            window = self._windows[key] = self.loader.take(key)
            self.stats.waiting += time.perf_counter() - waited
            while len(self._windows) > _KEPT_WINDOWS:
                self._windows.popitem(last=False)
        return window

    def _upcoming(self, index: int) -> list[tuple[int, int]]:
        """Keys of the ``ahead`` windows after the one of batch ``index``: this pass, then the next epoch's."""
        per = self.source.batches_per_window()
        windows = -(-len(self.source) // per)
        w = (self.skip + index) // per
        keys = [self._key(self.epoch, v) for v in range(w + 1, min(windows, w + 1 + self.ahead))]
        keys += [self._key(self.epoch + 1, v) for v in range(min(windows, self.ahead - len(keys)))]
        return keys

    def _look_ahead(self, index: int) -> None:
        for key in self._upcoming(index):
            if key not in self._windows:
                self.loader.request(key)

    def close(self) -> None:
        """Stop the loader (threads, or processes and their shared memory) and close the store's files."""
        with self._lock:
            self._closed = True
            if self._loader is not None:
                self._loader.close()
                self._loader = None
            self._windows.clear()
        self.source.close()

    def __enter__(self) -> "BatchFeed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
