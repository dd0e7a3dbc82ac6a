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
from dataclasses import dataclass

import numpy as np

from store import open_store
from store.chunks import read_chunks
from store.errors import OptionError, SchemaError, StoreError

from .task import Task, task_for

__all__ = ["BatchSource", "iter_batches", "DEFAULT_WINDOW", "LoaderError", "init_worker", "load_window_in_worker"]

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
        shard: ``(index, count)``: read only this worker's share of each epoch's chunks (multi-worker training).
            The epoch's chunk order is the same on every worker; worker ``index`` takes every ``count``-th chunk
            of it, ``chunks // count`` chunks in all, so the shares are disjoint and equally long (every worker
            runs the same number of steps); the up to ``count - 1`` chunks left over change from epoch to epoch
            when shuffling.

    ``x`` is a dict: ``numeric`` float32 ``[batch, n_numeric]`` (raw values, missing filled) and ``categorical``
    int32 ``[batch, n_categorical]`` (codes, 0 = missing), each present when it has columns.
    """

    def __init__(self, path: str, split: str = "train", *, label: str | None | type = ..., features=None,
                 batch_size: int | None = None, shuffle: bool = True, seed: int = 0, window: int = DEFAULT_WINDOW,
                 shard: tuple[int, int] = (0, 1)):
        store = open_store(path)
        store.check_split(split)
        self.shard = _check_shard(shard, -(-store.rows[split] // store.batch_size), split)
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
        self._fills = [(j, None if c.kind == "float" else np.float32(c.missing_value),
                        np.float32(_mean(self.stats[c.name])))
                       for j, c in enumerate(self.numeric) if split_stats.get(c.name, {}).get("missing", 1)]
        self.readers = {a: store.chunk_reader(split, a) for a in self._routes}

    def _check_batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self.chunk_rows
        if batch_size < 1 or batch_size % self.chunk_rows:
            raise OptionError(f"batch size {batch_size} is not a multiple of the store's chunk rows "
                              f"({self.chunk_rows}); use {self.chunk_rows} x k, or re-ingest with --batch-size "
                              f"{batch_size}")
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
    def share(self) -> int:
        """Chunks this source reads per epoch (all of them unless sharded)."""
        index, count = self.shard
        return self.chunks if count == 1 else self.chunks // count

    def __len__(self) -> int:
        if self.shard[1] == 1:
            return -(-self.rows // self.batch_size)
        return -(-self.share // self.per_batch)

    def batches_per_window(self) -> int:
        return self.window // self.per_batch if self.shuffle else 1

    def window_of(self, i: int) -> tuple[int, int]:
        """Batch ``i`` -> (window, batch within the window)."""
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range: the {self.split} split has {len(self)} batches")
        per = self.batches_per_window()
        return i // per, i % per

    def epoch_chunks(self, epoch: int) -> np.ndarray:
        """The chunks this source reads in ``epoch``, in reading order (this worker's share when sharded)."""
        cached = self._order
        if cached is None or cached[0] != epoch:  # once per epoch: the permutation grows with the store
            order = np.random.default_rng([self.seed, epoch]).permutation(self.chunks) if self.shuffle else \
                np.arange(self.chunks)
            index, count = self.shard
            cached = self._order = (epoch, order if count == 1 else order[index::count][:self.share])
        return cached[1]

    def window_chunks(self, epoch: int, w: int) -> np.ndarray:
        size = self.window if self.shuffle else self.per_batch
        return self.epoch_chunks(epoch)[w * size:(w + 1) * size]

    # -- data -------------------------------------------------------------------------------------------------

    def load_window(self, epoch: int, w: int) -> dict[str, np.ndarray]:
        """Every batch of window ``w`` of ``epoch``, converted: ``numeric``, ``categorical``, ``y``, ``weight``.

        Chunks are decoded straight into the output matrices: one copy does the type conversion and, when
        shuffling, the scatter of each row to its permuted place in the window.
        """
        chunks = self.window_chunks(epoch, w)
        sizes = [min(self.chunk_rows, self.rows - int(k) * self.chunk_rows) for k in chunks]
        n = sum(sizes)
        out = {"numeric": np.empty((n, len(self.numeric)), np.float32),
               "categorical": np.empty((n, len(self.categorical)), np.int32)}
        if self.label is not None:
            out["label"] = np.empty((n, 1), self.schema.array_dtype(self.label.array))
        # shuffled: each chunk's rows are scattered to their permuted places in the same copy
        perm = np.random.default_rng([self.seed, epoch, w]).permutation(n) if self.shuffle else None
        # every chunk of the window at once: a remote store fetches them in one concurrent batch of requests
        arrays = list(self._routes)
        data_of = iter(read_chunks([(self.readers[a], int(k)) for k in chunks for a in arrays]))
        start = 0
        for k, size in zip(chunks, sizes):
            rows = perm[start:start + size] if perm is not None else slice(start, start + size)
            for array in arrays:
                data = next(data_of)
                for r in self._routes[array]:
                    if isinstance(rows, slice) or isinstance(r.target, slice):
                        out[r.output][rows, r.target] = data[:, r.source]
                    else:  # two index lists: the cross product, not pairs
                        out[r.output][np.ix_(rows, r.target)] = data[:, r.source]
            start += size
        numeric = out["numeric"]
        for j, missing_value, fill in self._fills:
            column = numeric[:, j]
            column[np.isnan(column) if missing_value is None else column == missing_value] = fill
        result = {k: out[k] for k in ("numeric", "categorical") if out[k].shape[1]}
        if self.label is not None:
            y, missing = self.task.targets(self.label, out["label"][:, 0])
            result["y"] = y
            if missing.any():
                result["weight"] = (~missing).astype(np.float32)
        return result

    def batch_from(self, window: dict[str, np.ndarray], j: int) -> tuple:
        """Batch ``j`` of a loaded window, as Keras takes it."""
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


def _check_shard(shard, chunks: int, split: str) -> tuple[int, int]:
    index, count = (int(v) for v in shard)
    if not 0 <= index < count:
        raise OptionError(f"shard {index} of {count}: expected 0 <= index < count")
    if count > chunks:
        raise OptionError(f"the {split} split has {chunks} chunks, fewer than the {count} workers that share it; "
                          "use fewer workers or a smaller --batch-size at ingest")
    return index, count


def _mean(stats: dict) -> float:
    mean = stats.get("mean")
    return float(mean) if isinstance(mean, (int, float)) and math.isfinite(mean) else 0.0


def iter_batches(path: str, split: str = "train", *, epoch: int = 0, **options):
    """Framework-neutral iteration over one epoch of numpy batches (same order as the Keras Sequence).

    Example (PyTorch)::

        for epoch in range(3):
            for x, y in iter_batches("quest.zarr", "train", epoch=epoch, label="clear"):
                loss = step(torch.from_numpy(x["numeric"]), torch.from_numpy(x["categorical"]),
                            torch.from_numpy(y))
    """
    source = BatchSource(path, split, **options)
    try:
        per = source.batches_per_window()
        for w in range(-(-len(source) // per)):
            window = source.load_window(epoch, w)
            for j in range(min(per, len(source) - w * per)):
                yield source.batch_from(window, j)
    finally:
        source.close()


class LoaderError(StoreError, RuntimeError):
    """A loader worker failed: a worker process died, or reading a window raised."""


# -- loader worker processes (spawned: this module imports no TensorFlow) ----------------------------------------

_SOURCE: BatchSource | None = None


def init_worker(source: BatchSource) -> None:
    global _SOURCE
    _SOURCE = source


def load_window_in_worker(epoch: int, w: int) -> dict:
    try:
        return _SOURCE.load_window(epoch, w)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - name the window in whatever went wrong
        raise LoaderError(f"loading window {w} of epoch {epoch}: {type(exc).__name__}: {exc}") from None
