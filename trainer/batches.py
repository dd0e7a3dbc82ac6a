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
from store.errors import OptionError, SchemaError, StoreError
from store.schema import Column

from .chunks import ArrayReader
from .task import Task, task_for

__all__ = ["BatchSource", "iter_batches", "DEFAULT_WINDOW", "LoaderError", "init_worker", "load_window_in_worker"]

DEFAULT_WINDOW = 16


@dataclass
class _Group:
    """The columns one array contributes to an output (numeric features, categorical features or the label)."""

    array: str
    indices: list[int]
    fill: np.ndarray | None  # numeric: replacement for missing, per column
    missing: float | int | None  # stored missing value of the array (None for float32: NaN)


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

    ``x`` is a dict: ``numeric`` float32 ``[batch, n_numeric]`` (raw values, missing filled) and ``categorical``
    int32 ``[batch, n_categorical]`` (codes, 0 = missing), each present when it has columns.
    """

    def __init__(self, path: str, split: str = "train", *, label: str | None | type = ..., features=None,
                 batch_size: int | None = None, shuffle: bool = True, seed: int = 0, window: int = DEFAULT_WINDOW):
        store = open_store(path)
        store.check_split(split)
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
        self._groups = {"numeric": self._plan(self.numeric, train_stats), "categorical": self._plan(self.categorical),
                        "label": self._plan([self.label] if self.label else [])}
        self.readers = {a: ArrayReader(path, split, a, dtype=self.schema.array_dtype(a),
                                       columns=len(self.schema.arrays[a]), rows=self.rows,
                                       batch_size=self.chunk_rows, chunks_per_shard=store.chunks_per_shard,
                                       compression=store.compression)
                        for a in {g.array for groups in self._groups.values() for g in groups}}

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

    def _plan(self, columns: list[Column], stats: dict | None = None) -> list[_Group]:
        groups: dict[str, _Group] = {}
        for col in columns:
            g = groups.setdefault(col.array, _Group(col.array, [], None, None if col.kind == "float"
                                                     else col.missing_value))
            g.indices.append(col.index)
        if stats is not None:
            for g in groups.values():
                cols = [c for c in columns if c.array == g.array]
                g.fill = np.array([_mean(stats.get(c.name, {})) for c in cols], dtype=np.float64)
        return list(groups.values())

    # -- order ------------------------------------------------------------------------------------------------

    @property
    def chunks(self) -> int:
        return -(-self.rows // self.chunk_rows)

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def batches_per_window(self) -> int:
        return self.window // self.per_batch if self.shuffle else 1

    def window_of(self, i: int) -> tuple[int, int]:
        """Batch ``i`` -> (window, batch within the window)."""
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range: the {self.split} split has {len(self)} batches")
        per = self.batches_per_window()
        return i // per, i % per

    def window_chunks(self, epoch: int, w: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(w * self.per_batch, min((w + 1) * self.per_batch, self.chunks))
        order = np.random.default_rng([self.seed, epoch]).permutation(self.chunks)
        return order[w * self.window:(w + 1) * self.window]

    # -- data -------------------------------------------------------------------------------------------------

    def load_window(self, epoch: int, w: int) -> dict[str, np.ndarray]:
        """Every batch of window ``w`` of ``epoch``, converted: ``numeric``, ``categorical``, ``y``, ``weight``."""
        chunks = self.window_chunks(epoch, w)
        raw = {a: np.concatenate([r.chunk(int(k)) for k in chunks]) for a, r in self.readers.items()}
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch, w]).permutation(len(next(iter(raw.values()))))
            raw = {a: v[perm] for a, v in raw.items()}
        out = {}
        if self.numeric:
            out["numeric"] = self._numeric(raw)
        if self.categorical:
            out["categorical"] = np.concatenate([raw[g.array][:, g.indices] for g in self._groups["categorical"]],
                                                axis=1).astype(np.int32)
        if self.label is not None:
            y, missing = self.task.targets(self.label, raw[self.label.array][:, self.label.index])
            out["y"] = y
            if missing.any():
                out["weight"] = (~missing).astype(np.float32)
        return out

    def _numeric(self, raw: dict) -> np.ndarray:
        parts = []
        for g in self._groups["numeric"]:
            values = raw[g.array][:, g.indices]
            missing = np.isnan(values) if g.missing is None else values == g.missing
            values = values.astype(np.float32)
            if missing.any():
                values = np.where(missing, g.fill.astype(np.float32), values)
            parts.append(values)
        order = np.argsort(self._numeric_positions(), kind="stable")
        return np.concatenate(parts, axis=1)[:, order] if len(parts) > 1 else parts[0]

    def _numeric_positions(self) -> list[int]:
        """Position in ``self.numeric`` of each column as the groups concatenate them."""
        pos = {(c.array, c.index): i for i, c in enumerate(self.numeric)}
        return [pos[(g.array, j)] for g in self._groups["numeric"] for j in g.indices]

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
