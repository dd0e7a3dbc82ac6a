"""Batches of a store split as numpy arrays: feature selection, missing-value policy, epoch order and row mixing.

No Keras here, so PyTorch, JAX or plain numpy loops can use it too (see :func:`iter_batches`).

Epoch order (``shuffle=True``): the split's chunks are permuted with a generator seeded by (seed, epoch) and
grouped into *windows* of ``window`` consecutive permuted chunks (16 by default, 16,000 rows at batch size 1000);
the rows of a window are permuted again, seeded by (seed, epoch, window), and cut into batches. Each batch thus
draws rows from up to 16 random places of the store, so even a store of rows sorted by label (ingested with
``--no-shuffle``) yields mixed batches, while every chunk is still read once per epoch. Without shuffle, batch i is
chunks ``i*k .. i*k+k-1`` in store order.

Missing values (the documented policy): a missing numeric value (float, int, bool, datetime) becomes the column's
mean over the train split, stored at ingest, i.e. 0 after normalisation; a missing category is code 0, which has
its own embedding row. Rows whose label is missing get sample weight 0.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from store import MAX_BATCH_SIZE, ChunkError, OptionError, SchemaError, StoreError, open_store, read_chunks

from .task import Task, task_for

__all__ = ["BatchSource", "iter_batches", "DEFAULT_WINDOW", "LoaderError"]

DEFAULT_WINDOW = 16


@dataclass(frozen=True)
class _Route:
    """Copy ``source`` columns of one stored array into ``target`` columns of one output matrix."""

    output: str  # numeric, categorical or label
    source: slice | list[int]
    target: slice | list[int]


def _as_slice(indices: list[int]) -> slice | list[int]:
    """A slice when the indices are consecutive (a plain copy instead of fancy indexing)."""
    if indices and indices == list(range(indices[0], indices[0] + len(indices))):
        return slice(indices[0], indices[0] + len(indices))
    return indices


class BatchSource:
    """Batches ``(x, y[, sample_weight])`` of one split, by index, for a given epoch.

    Args:
        path: the store.
        split: ``train`` or ``validation``.
        label: label column (default: the store's label); None for unlabelled batches ``(x,)``.
        features: feature columns (default: every column except the label).
        batch_size: rows per batch, a multiple of the store's chunk rows (default: the chunk rows).
        shuffle: permute chunks and mix rows across windows of chunks each epoch (seeded).
        seed: seed of that order.
        window: chunks per mixing window.
        share: ``(index, count)``: read only this worker's share of each epoch's chunks (multi-worker training).
            The epoch's chunk order is the same on every worker; worker ``index`` takes every ``count``-th chunk
            of it, ``chunks // count`` chunks in all, so the shares are disjoint and equally long (every worker
            runs the same number of steps); the up to ``count - 1`` chunks left over change from epoch to epoch
            when shuffling.

    ``x`` is a dict: ``numeric`` float32 ``[batch, n_numeric]`` (raw values, missing filled) and ``categorical``
    int32 ``[batch, n_categorical]`` (codes, 0 = missing), each present when it has columns.
    """

    def __init__(self, path: str, split: str = "train", *, label: str | None | type = ..., features=None,
                 batch_size: int | None = None, shuffle: bool = True, seed: int = 0, window: int = DEFAULT_WINDOW,
                 share: tuple[int, int] = (0, 1)):
        store = open_store(path)
        store.check_split(split)
        self.share = _check_share(share, -(-store.rows[split] // store.batch_size), split)
        self.path, self.split, self.shuffle, self.seed = path, split, shuffle, seed
        self.schema, self.rows, self.chunk_rows = store.schema, store.rows[split], store.batch_size
        self.batch_size = self._check_batch_size(batch_size)
        self.per_batch = self.batch_size // self.chunk_rows
        self.window = self.per_batch * max(1, math.ceil(window / self.per_batch))
        label = store.label if label is ... else label
        self.label = self.schema[label] if label is not None else None
        names = [c for c in self.schema.names if c != label] if features is None else list(features)
        self._check_features(names, label)
        self.numeric = [self.schema[n] for n in names if self.schema[n].kind != "category"]
        self.categorical = [self.schema[n] for n in names if self.schema[n].kind == "category"]
        train_stats = store.statistics.get("train", {})
        self.task: Task | None = task_for(self.label, train_stats.get(label, {})) if self.label else None
        self.stats = {n: train_stats.get(n, {}) for n in names}
        self._routes = self._plan()
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, chunk permutation)
        split_stats = store.statistics.get(split, {})
        # missing numeric values -> train mean; only columns with missing values in this split are checked
        fills = [(j, c) for j, c in enumerate(self.numeric) if split_stats.get(c.name, {}).get("missing", 1)]
        self._nan_fill = _nan_fill([(j, _mean(self.stats[c.name])) for j, c in fills if c.kind == "float"])
        self._sentinel_fills = [(j, np.float32(c.missing_value), np.float32(_mean(self.stats[c.name])))
                                for j, c in fills if c.kind != "float"]
        # a split with unlabelled rows gets sample weights (0 for those rows) in every batch, a fixed structure
        self.has_weight = self.label is not None and bool(split_stats.get(self.label.name, {}).get("missing", 1))
        self.readers = {a: store.chunk_reader(split, a) for a in self._routes}
        # stored values the model would index with: categorical codes (0..vocabulary size) and class labels;
        # checked once per chunk and process (see _check_values)
        self._code_limits = np.array([c.categories for c in self.categorical], np.uint32)
        self._checked = np.zeros(self.chunks, bool)
        self._local = threading.local()
        # Decode large chunks into reusable buffers (each is copied into the window at once): in a TensorFlow
        # process every allocation above 128 KB is mmap'd and page-faulted (TF's GeneratorDataset sets
        # M_TRIM_THRESHOLD, which freezes glibc's mmap threshold); reads measured 210 -> 127 µs per batch there.
        self.reuse_buffers = True

    def __getstate__(self):  # sent to loader processes: staging buffers stay in their thread
        state = dict(self.__dict__)
        del state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def _check_batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self.chunk_rows
        if batch_size < 1 or batch_size % self.chunk_rows:
            raise OptionError(f"batch size {batch_size} is not a multiple of the store's chunk rows "
                              f"({self.chunk_rows}); use {self.chunk_rows} x k, or re-ingest with --batch-size "
                              f"{batch_size}")
        if batch_size > MAX_BATCH_SIZE:
            raise OptionError(f"batch size {batch_size:,} is over the limit of {MAX_BATCH_SIZE:,} rows: a batch is "
                              "assembled whole in memory, several at a time by the loader; use a smaller multiple of "
                              f"the store's chunk rows ({self.chunk_rows})")
        return batch_size

    def _check_features(self, names: list[str], label: str | None) -> None:
        for name in names:
            self.schema[name]  # raises SchemaError naming the store's columns
        if label in names:
            raise SchemaError(f"the label {label!r} cannot also be a feature; drop it from --features")
        if not names:
            raise SchemaError("no feature columns; pass --features a,b,...")

    def _plan(self) -> dict[str, list[_Route]]:
        """Per stored array: which of its columns go where in the outputs."""
        outputs = {"numeric": self.numeric, "categorical": self.categorical,
                   "label": [self.label] if self.label is not None else []}
        routes: dict[str, list[_Route]] = {}
        for output, columns in outputs.items():
            for array in dict.fromkeys(c.array for c in columns):
                pairs = [(c.index, j) for j, c in enumerate(columns) if c.array == array]
                routes.setdefault(array, []).append(
                    _Route(output, _as_slice([p[0] for p in pairs]), _as_slice([p[1] for p in pairs])))
        return routes

    # -- order ------------------------------------------------------------------------------------------------

    @property
    def chunks(self) -> int:
        """Chunks of the split (all workers together)."""
        return -(-self.rows // self.chunk_rows)

    @property
    def chunks_per_epoch(self) -> int:
        """Chunks this source reads per epoch (all of them unless shared among workers)."""
        index, count = self.share
        return self.chunks if count == 1 else self.chunks // count

    def __len__(self) -> int:
        if self.share[1] == 1:
            return -(-self.rows // self.batch_size)
        return -(-self.chunks_per_epoch // self.per_batch)

    def batches_per_window(self) -> int:
        return self.window // self.per_batch if self.shuffle else 1

    def window_of(self, i: int) -> tuple[int, int]:
        """Batch ``i`` -> (window, batch within the window)."""
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range: the {self.split} split has {len(self)} batches")
        per = self.batches_per_window()
        return i // per, i % per

    def epoch_chunks(self, epoch: int) -> np.ndarray:
        """The chunks this source reads in ``epoch``, in reading order (only this worker's share, see ``share``)."""
        cached = self._order
        if cached is None or cached[0] != epoch:  # once per epoch: the permutation grows with the store
            order = np.random.default_rng([self.seed, epoch]).permutation(self.chunks) if self.shuffle else \
                np.arange(self.chunks)
            index, count = self.share
            cached = self._order = (epoch, order if count == 1 else order[index::count][:self.chunks_per_epoch])
        return cached[1]

    def window_chunks(self, epoch: int, w: int) -> np.ndarray:
        size = self.window if self.shuffle else self.per_batch
        return self.epoch_chunks(epoch)[w * size:(w + 1) * size]

    # -- data -------------------------------------------------------------------------------------------------

    @property
    def window_rows(self) -> int:
        """Rows of the largest window (the shape of a loader's window buffers)."""
        return (self.window if self.shuffle else self.per_batch) * self.chunk_rows

    def outputs(self) -> dict[str, tuple[int | None, np.dtype]]:
        """What a window holds: name -> (columns, dtype); columns is None for the 1-D ``y`` and ``weight``.
        The same for every window of the split (``weight`` is there when the split has rows without a label)."""
        out: dict[str, tuple[int | None, np.dtype]] = {}
        if self.numeric:
            out["numeric"] = (len(self.numeric), np.dtype(np.float32))
        if self.categorical:
            out["categorical"] = (len(self.categorical), np.dtype(np.int32))
        if self.task is not None:
            out["y"] = (None, np.dtype(np.int32 if self.task.kind == "multiclass" else np.float32))
            if self.has_weight:
                out["weight"] = (None, np.dtype(np.float32))
        return out

    def window_buffers(self, rows: int | None = None) -> dict[str, np.ndarray]:
        """Empty arrays for one window (see :meth:`outputs`)."""
        rows = self.window_rows if rows is None else rows
        return {name: np.empty((rows,) if cols is None else (rows, cols), dtype)
                for name, (cols, dtype) in self.outputs().items()}

    def load_window(self, epoch: int, w: int, out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Every batch of window ``w`` of ``epoch``, converted: ``numeric``, ``categorical``, ``y``, ``weight``.

        The window's chunks are decoded and converted into contiguous staging matrices (slice copies), missing
        values filled, and then, when shuffling, the rows permuted into ``out`` (e.g. a loader's shared-memory
        buffers; new arrays when None) with one gather per output; without shuffle they go straight to ``out``.
        Returns views of the window's rows in ``out``.
        """
        chunks = self.window_chunks(epoch, w).tolist()
        sizes = [min(self.chunk_rows, self.rows - k * self.chunk_rows) for k in chunks]
        n = sum(sizes)
        out = self.window_buffers(n) if out is None else {k: v[:n] for k, v in out.items()}
        staged = self._staging() if self.shuffle else out
        targets = {k: staged[k][:n] for k in ("numeric", "categorical") if k in staged}
        if self.label is not None:
            targets["label"] = self._staging()["label"][:n]
        starts = np.cumsum([0] + sizes[:-1]).tolist()
        for array, data_of in self._chunk_data(chunks):
            routes = self._routes[array]
            for data, start, size in zip(data_of, starts, sizes):
                rows = slice(start, start + size)
                for r in routes:
                    targets[r.output][rows, r.target] = data[:, r.source]
        if "numeric" in targets:
            self._fill_missing(targets["numeric"])
        y = self.task.targets(self.label, targets["label"][:, 0]) if self.label is not None else None
        if not self._checked[chunks].all():
            self._check_values(targets, y[0] if y is not None else None, chunks, starts)
        if self.label is not None:
            y, missing = y
            targets["y"] = y
            if "weight" in out:
                targets["weight"] = np.logical_not(missing).astype(np.float32)
            if not self.shuffle:
                out["y"][:] = y
                if "weight" in out:
                    out["weight"][:] = targets["weight"]
        if self.shuffle:  # rows of up to `window` random chunks mixed into every batch: one gather per output
            perm = np.random.default_rng([self.seed, epoch, w]).permutation(n)
            for name, dest in out.items():
                np.take(targets[name], perm, axis=0, out=dest)
        return out

    def _chunk_data(self, chunks: list[int]):
        """(array, iterator of its decoded chunks in ``chunks`` order) for each array the batches use. A remote
        store's chunks, all arrays together, are fetched in one concurrent batch of requests."""
        arrays = list(self._routes)
        if any(self.readers[a].remote for a in arrays):
            data_of = read_chunks([(self.readers[a], k) for a in arrays for k in chunks])
            return [(a, (next(data_of) for _ in chunks)) for a in arrays]
        return [(a, self.readers[a].chunks_of(chunks, transient=self.reuse_buffers)) for a in arrays]

    def _check_values(self, targets: dict, y: np.ndarray | None, chunks: list[int], starts: list[int]) -> None:
        """Refuse (ChunkError naming the array and chunk) a categorical code outside its column's vocabulary or a
        class label outside the task's classes: a damaged or edited store would otherwise index past an embedding
        or the output layer (an error on CPU, silently zeros on GPU). Once per chunk: ~1 µs per batch."""
        checks = []
        if "categorical" in targets:
            checks.append((targets["categorical"], self._code_limits, self.categorical))
        if self.label is not None and self.label.kind == "category":
            checks.append((targets["label"], np.array([self.label.categories], np.uint64), [self.label]))
        if y is not None and self.task.kind == "multiclass":
            checks.append((y[:, None], np.array([self.task.classes - 1], np.uint32), [self.label]))
        for values, limits, columns in checks:
            unsigned = values.view(values.dtype.str.replace("i", "u"))  # a negative value becomes a large one
            if unsigned.size and unsigned.max() > limits.min() and (_column_max(unsigned) > limits).any():
                row = int(np.flatnonzero((unsigned > limits).any(axis=1))[0])
                j = int(np.flatnonzero(unsigned[row] > limits)[0])
                col, value = columns[j], int(values[row, j])
                chunk = chunks[int(np.searchsorted(starts, row, side="right")) - 1]
                what = f"code {value}, outside its {_codes(col)}" \
                    if col.kind == "category" else f"{value}, outside the {self.task.classes} classes its train " \
                    "statistics give"
                raise ChunkError(f"{self.path}: {self.split}/{col.array}: chunk {chunk}: column {col.name!r} holds "
                                 f"{what}; the store is damaged or was edited, re-create it with ingest",
                                 path=self.path, array=f"{self.split}/{col.array}", chunk=chunk, column=col.name)
        self._checked[chunks] = True

    def _staging(self) -> dict[str, np.ndarray]:
        """This thread's reusable staging matrices for one window (allocated once per thread)."""
        staging = getattr(self._local, "staging", None)
        if staging is None:
            staging = self.window_buffers()
            if self.label is not None:
                staging["label"] = np.empty((self.window_rows, 1), self.schema.array_dtype(self.label.array))
            self._local.staging = staging
        return staging

    def _fill_missing(self, numeric: np.ndarray | None) -> None:
        """Missing numeric values -> the column's train mean (see the module docstring)."""
        if self._nan_fill is not None:  # float columns: one vectorised pass over their block of columns
            lo, hi, row = self._nan_fill
            block = numeric[:, lo:hi]
            mask = np.isnan(block)
            if mask.any():
                np.copyto(block, row, where=mask)
        for j, missing_value, fill in self._sentinel_fills:
            column = numeric[:, j]
            column[column == missing_value] = fill

    def batch_from(self, window: dict[str, np.ndarray], j: int) -> tuple:
        """Batch ``j`` of a loaded window, as Keras takes it: ``(x,)``, ``(x, y)`` or ``(x, y, weight)``."""
        sl = slice(j * self.batch_size, (j + 1) * self.batch_size)
        x = {k: window[k][sl] for k in ("numeric", "categorical") if k in window}
        if "y" not in window:
            return (x,)
        if "weight" in window:
            return x, window["y"][sl], window["weight"][sl]
        return x, window["y"][sl]

    def batch(self, i: int, epoch: int = 0) -> tuple:
        w, j = self.window_of(i)
        return self.batch_from(self.load_window(epoch, w), j)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


def _codes(col) -> str:
    return f"vocabulary of {col.categories} values" if col.vocabulary is not None else \
        f"{col.categories} hash buckets"


def _column_max(values: np.ndarray, fold: int = 64) -> np.ndarray:
    """Per-column maximum of a C-ordered ``[n, k]`` matrix. numpy's axis-0 reduction runs a k-long inner loop per
    row (~10x slower for a few columns), so ``fold`` rows at a time are first reduced as one long row."""
    n, k = values.shape
    full = n // fold * fold
    top = values[:full].reshape(-1, fold * k).max(axis=0, initial=0).reshape(fold, k).max(axis=0)
    return np.maximum(top, values[full:].max(axis=0, initial=0))


def _check_share(share, chunks: int, split: str) -> tuple[int, int]:
    index, count = (int(v) for v in share)
    if not 0 <= index < count:
        raise OptionError(f"share {index} of {count}: expected 0 <= index < count")
    if count > chunks:
        raise OptionError(f"the {split} split has {chunks} chunks, fewer than the {count} workers that share it; "
                          "use fewer workers or a smaller --batch-size at ingest")
    return index, count


def _nan_fill(columns: list[tuple[int, float]]) -> tuple[int, int, np.ndarray] | None:
    """(first, last + 1, fill row) covering the float columns to fill; NaN (a no-op) for the columns between them
    that are not filled (they hold no NaN)."""
    if not columns:
        return None
    lo, hi = columns[0][0], columns[-1][0] + 1
    row = np.full(hi - lo, np.nan, np.float32)
    for j, mean in columns:
        row[j - lo] = mean
    return lo, hi, row


def _mean(stats: dict) -> float:
    mean = stats.get("mean")
    return float(mean) if isinstance(mean, (int, float)) and math.isfinite(mean) else 0.0


def iter_batches(path: str, split: str = "train", *, epoch: int = 0, workers: int = 1,
                 use_multiprocessing: bool = False, **options):
    """Framework-neutral iteration over one epoch of numpy batches (same order as the Keras Sequence), with
    windows loaded ahead in ``workers`` threads (or processes, see :mod:`trainer.loader`).

    Example (PyTorch)::

        for epoch in range(3):
            for x, y in iter_batches("quest.zarr", "train", epoch=epoch, label="clear"):
                loss = step(torch.from_numpy(x["numeric"]), torch.from_numpy(x["categorical"]),
                            torch.from_numpy(y))
    """
    from .feed import BatchFeed

    with BatchFeed(BatchSource(path, split, **options), workers=workers, processes=use_multiprocessing) as feed:
        feed.set_epoch(epoch)
        for i in range(len(feed)):
            yield feed.batch(i)


class LoaderError(StoreError, RuntimeError):
    """A loader worker failed: a worker process died, or reading a window raised."""
